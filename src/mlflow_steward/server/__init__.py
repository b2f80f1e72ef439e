"""The governed MLflow server: ``mlflow server --app-name steward`` (entry point group ``mlflow.app``)."""
