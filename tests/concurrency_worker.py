"""A worker process for test_concurrency.py: promotes and tags through the governed registry.

Prints one JSON object: how many calls succeeded, were refused, or failed otherwise (with the
errors), so the test can check that every call either succeeded or was refused cleanly.
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
    counts = {"applied": 0, "refused": 0}
    errors: list[str] = []
    for i in range(rounds):
        op = rng.choice(["promote", "promote", "tag", "weak"])
        try:
            if op == "promote":
                alias = rng.choice(["production", "staging"])
                version = str(rng.randint(1, 3))
                client.set_registered_model_alias("fraud", alias, version)
            elif op == "tag":
                client.set_model_version_tag("fraud", str(rng.randint(1, 3)), f"w{worker}", str(i))
            else:  # version 4 logged accuracy 0.5: must be refused for production
                client.set_registered_model_alias("fraud", "production", "4")
            counts["applied"] += 1
        except MlflowException as exc:
            if exc.error_code == "PERMISSION_DENIED":
                counts["refused"] += 1
            else:
                errors.append(f"{op}: {exc.error_code}: {exc.message[:300]}")
        except Exception as exc:
            errors.append(f"{op}: {type(exc).__name__}: {str(exc)[:300]}")
    print(json.dumps({"worker": worker, **counts, "errors": errors}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
