"""Deployment host: targets, governed deploys, shared deployment state."""
