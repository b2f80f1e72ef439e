"""Load steward's test kit: the ``steward_plugin_manager`` and ``steward_event`` fixtures."""

pytest_plugins = ["mlflow_steward.plugins.testing"]
