"""Governed vs plain registry store on the same SQLite file: the price of governance per write.

Five configured built-in policies apply to the timed calls (require-signature, required-tags,
metric-threshold, allowed-requirements, freeze-window), plus the two on by default since 0.2
(content-digest: the artifacts are hashed at registration and again at each promotion;
protect-prompt-markers), with version strings canonicalised, and every decision is appended to the
audit log. The calls are the ones users make: ``MlflowClient.create_model_version`` and
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

from _common import FIVE_POLICIES, log_models

BAR = 1.25


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_once(calls: int) -> dict[str, tuple[float, float]]:
    from mlflow import MlflowClient

    root = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "steward.yaml").write_text(FIVE_POLICIES)
    os.environ["MLFLOW_STEWARD_CONFIG"] = str(root / "steward.yaml")
    os.environ["MLFLOW_TRACKING_URI"] = db_uri
    models = log_models(db_uri, calls + 3)
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
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    log = AuditLog(db.get_engine(db_uri))
    audit = log.verify()
    if not audit.ok or audit.entries < 2 * calls:
        raise RuntimeError(f"the audit log does not hold every timed decision: {audit}")
    # The timed calls were decided by the policies named above (4 on a new version, 6 on a move);
    # each applied move is followed by its evidence (a record_evidence entry, timed with the move).
    decided = {}
    for e in log.entries(model="bench-governed", limit=8, newest_first=True):
        if e.action in ("set_alias", "create_model_version"):
            decided.setdefault(e.action, sorted(r["policy"] for r in e.reasons))
    if len(decided.get("set_alias", [])) != 6 or len(decided.get("create_model_version", [])) != 4:
        raise RuntimeError(f"the benchmark's policies did not apply: {decided}")
    from mlflow import MlflowClient

    from mlflow_steward.plugins.events import DIGEST_TAG

    registered = MlflowClient(tracking_uri=db_uri, registry_uri=db_uri)
    if DIGEST_TAG not in registered.get_model_version("bench-governed", "1").tags:
        raise RuntimeError("the governed versions were registered without a content digest")
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
