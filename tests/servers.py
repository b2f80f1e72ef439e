"""Real `mlflow server` processes for the tests (the helper lives in the package)."""

from mlflow_steward.server.process import Server, free_port, mlflow_server

__all__ = ["Server", "free_port", "mlflow_server"]
