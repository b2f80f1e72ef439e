"""Monitoring: drift statistics and (to come) the monitoring host, detectors and rules."""
