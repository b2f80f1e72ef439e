"""Monitoring: drift statistics, the monitoring host, detectors and rules.

The choices and names below are defined here, in a module that imports nothing, so that the CLI
can offer them without importing numpy or pandas, and each has one home that every monitoring
module imports.
"""

#: Multiple-testing corrections of the per-column p-values.
CORRECTIONS = ("bonferroni", "benjamini-hochberg", "none")
#: Metrics of the realised performance of served predictions.
PERFORMANCE_METRICS = ("accuracy", "rmse", "mae")

#: The actor of what monitors do (version tags, alias moves, retraining) in the audit log.
MONITOR_ACTOR = "steward-monitor"
#: The version tags a monitor run sets: its verdict, and when it ran (with its MLflow run id).
STATUS_TAG = "steward.monitor.status"
LAST_RUN_TAG = "steward.monitor.last_run"
#: Statuses that are no verdict on the model (rules on them may only alert).
NO_VERDICT = ("invalid", "insufficient data", "error")
#: The status of a model whose realised performance (labels that arrived later) fell by more
#: than ``max_performance_drop``: not drift, which is about its inputs.
DEGRADED = "degraded"
#: A rule condition, not a status: this run is healthy again after an unhealthy one.
RECOVERED = "recovered"
#: Statuses a monitor recovers from (``when: recovered``); ``insufficient data`` is looked past.
UNHEALTHY = ("drift", DEGRADED, "invalid", "error")

#: Reserved column names: the label and the prediction in a baseline's table, and the request id
#: joining a request log to its ground truth.
LABEL = "__label__"
PREDICTION = "__prediction__"
REQUEST_ID = "__request_id__"
#: ``DataFrame.attrs`` key of notes a data source has on the data it read (the verdict's quality
#: findings repeat them), e.g. that a request log was read in its slow 0.1.0 format.
NOTES = "steward.notes"
