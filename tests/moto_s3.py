"""moto's threaded S3 server for tests, and the environment that points MLflow and boto3 at it.

moto keeps its buckets in module globals that every moto server of one process shares: a server
started later in the same pytest worker would show the buckets (and objects) an earlier test left
on another one. ``moto_server`` therefore resets moto's state when it starts (moto's own
``POST /moto-api/reset``).
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator

from mlflow_steward.deployment.onprem.ports import free_port


def s3_environment(endpoint: str) -> dict[str, str]:
    """Test credentials (moto takes any), the region, and ``MLFLOW_S3_ENDPOINT_URL``."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }


@contextlib.contextmanager
def moto_server(port: int | None = None, *, reset: bool = True) -> Iterator[str]:
    """moto's threaded server on 127.0.0.1 (a free port unless given), empty unless
    ``reset=False`` (a restart that must keep what was stored); yields its endpoint URL and stops
    it at the end."""
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        if reset:
            request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200, f"moto's reset answered {response.status}"
        yield endpoint
    finally:
        server.stop()
