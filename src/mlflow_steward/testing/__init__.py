"""Steward's test kit: what steward's own tests and benchmarks, and plugin authors testing against
a real server, use (``testing.server``: ``mlflow server`` as a child process). Nothing in the
runtime imports it; the pytest fixtures are in ``mlflow_steward.plugins.testing``."""
