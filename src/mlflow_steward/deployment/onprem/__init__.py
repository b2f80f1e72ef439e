"""The on-prem target: real MLflow scoring servers behind a stable steward gateway."""
