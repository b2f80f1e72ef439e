"""Requests to the deployment's gateway (MLflow's ``/invocations`` protocol)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _invocation(endpoint: str, rows: pd.DataFrame) -> urllib.request.Request:
    body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)})
    return urllib.request.Request(
        f"{endpoint}/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
    )


def predict(endpoint: str, rows: pd.DataFrame) -> tuple[int, str, object]:
    """The HTTP status, the version that answered and the predictions (None on an error)."""
    try:
        with urllib.request.urlopen(_invocation(endpoint, rows), timeout=30) as response:
            version = response.headers.get("X-Steward-Model-Version", "?")
            return response.status, version, json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Steward-Model-Version", "?"), None


def send(endpoint: str, rows: pd.DataFrame, *, batch: int = 10) -> None:
    """Sends ``rows`` in requests of ``batch`` rows (an error status raises ``HTTPError``)."""
    for start in range(0, len(rows), batch):
        with urllib.request.urlopen(
            _invocation(endpoint, rows.iloc[start : start + batch]), timeout=30
        ):
            pass
