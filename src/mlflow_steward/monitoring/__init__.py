"""Monitoring: drift statistics, the monitoring host, detectors and rules.

The choices below are named here, in a module that imports nothing, so that the CLI can offer
them without importing numpy or pandas.
"""

#: Multiple-testing corrections of the per-column p-values.
CORRECTIONS = ("bonferroni", "benjamini-hochberg", "none")
#: Metrics of the realised performance of served predictions.
PERFORMANCE_METRICS = ("accuracy", "rmse", "mae")
