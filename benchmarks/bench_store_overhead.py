"""Governed vs plain registry store on the same SQLite file: the price of governance per write.

Five built-in policies apply to the timed calls (require-signature, required-tags,
metric-threshold, allowed-requirements, freeze-window) and every decision is appended to the audit
log. The calls are the ones users make: ``MlflowClient.create_model_version`` and
``MlflowClient.set_registered_model_alias``, plain (``sqlite:///``) and governed
(``steward+sqlite:///``), alternated call by call so both see the same machine noise.

Bar (issue 2): governed median at most 1.25x the plain median, for each call.

    python benchmarks/bench_store_overhead.py [--calls 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

CONFIG = """\
policies:
  - use: require-signature
  - use: allowed-requirements
    with: {deny: [tensorflow], require_pinned: true}
  - use: required-tags
    when: {action: set_alias}
    with: {tags: [owner]}
  - use: metric-threshold
    when: {action: set_alias}
    with: {metric: accuracy, min: 0.8}
  - use: freeze-window
    when: {action: set_alias}
    with: {windows: [{start: "2001-01-01T00:00", end: "2001-01-02T00:00"}]}
"""
BAR = 1.25


def _log_models(tracking_uri: str, count: int) -> list[tuple[str, str]]:
    """``count`` distinct logged models (run id, model id): every timed version gets a source
    of its own, so the governed store cannot serve the model's files from its cache."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(50, 4))
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    signature = infer_signature(X, model.predict(X))
    mlflow.set_tracking_uri(tracking_uri)
    logged = []
    for _ in range(count):
        with mlflow.start_run() as run:
            mlflow.log_metric("accuracy", 0.93)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                pip_requirements=["scikit-learn==1.5.0", "numpy==2.0.0"],
            )
        logged.append((run.info.run_id, info.model_id))
    return logged


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_once(calls: int) -> dict[str, tuple[float, float]]:
    from mlflow import MlflowClient

    root = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "steward.yaml").write_text(CONFIG)
    os.environ["MLFLOW_STEWARD_CONFIG"] = str(root / "steward.yaml")
    os.environ["MLFLOW_TRACKING_URI"] = db_uri
    models = _log_models(db_uri, calls + 3)
    clients = {
        "plain": MlflowClient(tracking_uri=db_uri, registry_uri=db_uri),
        "governed": MlflowClient(tracking_uri=db_uri, registry_uri=f"steward+{db_uri}"),
    }
    times: dict[str, dict[str, list[float]]] = {
        call: {kind: [] for kind in clients} for call in ("create_model_version", "set_alias")
    }
    for kind, client in clients.items():
        client.create_registered_model(f"bench-{kind}")
        for run_id, model_id in models[-3:]:  # warm up: store built, engines ready
            v = client.create_model_version(
                f"bench-{kind}",
                f"models:/{model_id}",
                run_id=run_id,
                model_id=model_id,
                tags={"owner": "alice"},
            )
            client.set_registered_model_alias(f"bench-{kind}", "warm", v.version)
    for i, (run_id, model_id) in enumerate(models[:calls]):
        source = f"models:/{model_id}"
        order = list(clients.items()) if i % 2 == 0 else list(reversed(clients.items()))
        for kind, client in order:
            name = f"bench-{kind}"
            box = {}

            def create(
                client=client, name=name, box=box, source=source, run_id=run_id, model_id=model_id
            ):
                box["v"] = client.create_model_version(
                    name, source, run_id=run_id, model_id=model_id, tags={"owner": "alice"}
                )

            times["create_model_version"][kind].append(_timed(create))
            version = box["v"].version
            times["set_alias"][kind].append(
                _timed(
                    lambda c=client, n=name, v=version: c.set_registered_model_alias(
                        n, "production", v
                    )
                )
            )
    from mlflow_steward import db
    from mlflow_steward.governance.audit import AuditLog

    audit = AuditLog(db.get_engine(db_uri)).verify()
    if not audit.ok or audit.entries < 2 * calls:
        raise RuntimeError(f"the audit log does not hold every timed decision: {audit}")
    return {
        call: (statistics.median(t["plain"]), statistics.median(t["governed"]))
        for call, t in times.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=60, help="timed calls per kind and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="fresh databases")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    results: dict[str, list[tuple[float, float]]] = {}
    for repeat in range(args.repeats):
        for call, pair in run_once(args.calls).items():
            results.setdefault(call, []).append(pair)
            plain, governed = pair
            print(
                f"repeat {repeat + 1}: {call:<22} plain {plain * 1e3:7.2f} ms  "
                f"governed {governed * 1e3:7.2f} ms  ratio {governed / plain:.2f}x"
            )
    print()
    failed = False
    for call, pairs in results.items():
        ratios = [g / p for p, g in pairs]
        ratio = statistics.median(ratios)
        plain = statistics.median(p for p, _ in pairs)
        governed = statistics.median(g for _, g in pairs)
        ok = ratio <= BAR
        failed |= not ok
        print(
            f"{call:<22} median plain {plain * 1e3:7.2f} ms, governed {governed * 1e3:7.2f} ms: "
            f"{ratio:.2f}x (bar {BAR}x) {'OK' if ok else 'OVER THE BAR'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
