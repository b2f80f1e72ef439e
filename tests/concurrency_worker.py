"""A worker process for test_concurrency.py: promotes and tags through the governed registry.

Prints one JSON object with every call it made and how that call ended (``applied``,
``refused`` with the refusal's message, or ``error`` with the exception), so the test can check
the exact outcome of each call.
"""

from __future__ import annotations

import json
import random
import sys

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def main(tracking_uri: str, registry_uri: str, worker: int, rounds: int) -> None:
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    rng = random.Random(worker)
    calls: list[dict] = []
    for i in range(rounds):
        op = rng.choice(["promote", "promote", "tag", "weak"])
        call: dict = {"op": op}
        try:
            if op == "promote":
                call["alias"] = rng.choice(["production", "staging"])
                call["version"] = str(rng.randint(1, 3))
                client.set_registered_model_alias("fraud", call["alias"], call["version"])
            elif op == "tag":
                call["version"] = str(rng.randint(1, 3))
                client.set_model_version_tag("fraud", call["version"], f"w{worker}", str(i))
            else:  # version 4 logged accuracy 0.5: must be refused for production
                call.update(alias="production", version="4")
                client.set_registered_model_alias("fraud", "production", "4")
            call["outcome"] = "applied"
        except MlflowException as exc:
            refused = exc.error_code == "PERMISSION_DENIED"
            call["outcome"] = "refused" if refused else "error"
            call["message"] = f"{exc.error_code}: {exc.message[:500]}"
        except Exception as exc:
            call["outcome"] = "error"
            call["message"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        calls.append(call)
    print(json.dumps({"worker": worker, "calls": calls}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
