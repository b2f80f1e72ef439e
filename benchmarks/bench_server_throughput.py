"""Registry write throughput through `mlflow server --app-name steward` against a plain
`mlflow server`, on SQLite and on PostgreSQL, in one run.

8 concurrent clients each repeat: create a model version, tag it, move the `production` alias
to it (REST, as MlflowClient sends them). The steward server applies five built-in policies
(require-signature, allowed-requirements, required-tags, metric-threshold, freeze-window) and
appends every decision to the audit log. Rounds alternate plain/steward so both see the same
machine noise; the ratio is the median of the paired rounds' ratios (the ratio of the median
throughputs is printed too).

Bar (issue 3): steward throughput at least 0.8x the plain server's, on both backends; p50/p99
latency printed for both.

    python benchmarks/bench_server_throughput.py [--rounds 7] [--iterations 15]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
import warnings
from contextlib import ExitStack
from pathlib import Path

import requests
from _common import FIVE_POLICIES, log_models

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' server harness
from tests.mlflow_server import mlflow_server

CLIENTS = 8
BAR = 0.8


def _round(url: str, models: list[tuple[str, str]], iterations: int, tag: str):
    api = f"{url}/api/2.0/mlflow"
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        session = requests.Session()
        name = f"bench-{tag}-{i}"
        session.post(f"{api}/registered-models/create", json={"name": name}, timeout=60)
        for n in range(iterations):
            run_id, model_id = models[(i * iterations + n) % len(models)]
            start = time.perf_counter()
            created = session.post(
                f"{api}/model-versions/create",
                timeout=60,
                json={
                    "name": name,
                    "source": f"models:/{model_id}",
                    "run_id": run_id,
                    "model_id": model_id,
                },
            )
            mid = time.perf_counter()
            if created.status_code != 200:
                with lock:
                    errors.append(created.text[:200])
                continue
            version = created.json()["model_version"]["version"]
            tagged = session.post(
                f"{api}/model-versions/set-tag",
                timeout=60,
                json={"name": name, "version": version, "key": "owner", "value": "alice"},
            )
            t2 = time.perf_counter()
            aliased = session.post(
                f"{api}/registered-models/alias",
                timeout=60,
                json={"name": name, "alias": "production", "version": version},
            )
            end = time.perf_counter()
            with lock:
                latencies.extend([mid - start, t2 - mid, end - t2])
                for response in (tagged, aliased):
                    if response.status_code != 200:
                        errors.append(response.text[:200])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed, e.g. {errors[0]}")
    return len(latencies) / elapsed, latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _postgres_db(admin_uri: str, stack: ExitStack) -> str:
    import sqlalchemy as sa

    name = f"steward_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_uri, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    stack.callback(drop)
    return admin_uri.rsplit("/", 1)[0] + f"/{name}"


def _check_policies_applied(backend: str) -> None:
    """The steward server decided the timed calls with the five policies and logged them all."""
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    log = AuditLog(db.get_engine(backend))
    newest = {e.action: e for e in log.entries(limit=30, newest_first=True)}
    decided = {a: len(e.reasons) for a, e in newest.items()}
    if decided.get("set_alias") != 5 or decided.get("create_model_version") != 2:
        raise RuntimeError(f"the benchmark's policies did not apply: {decided}")
    if not log.verify().ok:
        raise RuntimeError("the steward server's audit log does not verify")
    db.dispose_engines()  # before the database is dropped


def run_backend(kind: str, args: argparse.Namespace) -> float:
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="steward-bench-")))
        (root / "steward.yaml").write_text(FIVE_POLICIES)
        servers = {}
        backends = {}
        for app in ("plain", "steward"):
            folder = root / app
            folder.mkdir()
            if kind == "sqlite":
                backend = f"sqlite:///{folder / 'mlflow.db'}"
            else:
                backend = _postgres_db(args.postgres, stack)
            backends[app] = backend
            servers[app] = stack.enter_context(
                mlflow_server(
                    backend,
                    folder,
                    app=None if app == "plain" else "steward",
                    config=root / "steward.yaml",
                    workers=args.workers,
                )
            )
        models = {app: log_models(s.url, args.models) for app, s in servers.items()}
        results: dict[str, list[tuple[float, list[float]]]] = {"plain": [], "steward": []}
        for r in range(args.rounds):
            for app in ("plain", "steward") if r % 2 == 0 else ("steward", "plain"):
                results[app].append(_round(servers[app].url, models[app], args.iterations, f"{r}"))
        _check_policies_applied(backends["steward"])
        for app, rounds in results.items():
            latencies = [x for _, lat in rounds for x in lat]
            print(
                f"{kind:<10} {app:<8} throughput median {statistics.median(t for t, _ in rounds):7.1f} "
                f"calls/s  p50 {_percentile(latencies, 0.5) * 1e3:7.1f} ms  "
                f"p99 {_percentile(latencies, 0.99) * 1e3:7.1f} ms  ({len(latencies)} calls)"
            )
        # Each round of one server ran right next to the same round of the other, so the two
        # saw the same machine: the bar is the median of those paired ratios.
        pairs = [s / p for (s, _), (p, _) in zip(results["steward"], results["plain"], strict=True)]
        ratio = statistics.median(pairs)
        of_medians = statistics.median(t for t, _ in results["steward"]) / statistics.median(
            t for t, _ in results["plain"]
        )
        print(f"{kind:<10} paired round ratios: {' '.join(f'{x:.2f}' for x in pairs)}")
        print(
            f"{kind:<10} steward/plain throughput: {ratio:.2f}x median of paired rounds "
            f"({of_medians:.2f}x ratio of the medians) (bar {BAR}x) "
            f"{'OK' if ratio >= BAR else 'UNDER THE BAR'}"
        )
        return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per server")
    parser.add_argument("--iterations", type=int, default=15, help="per client and round")
    parser.add_argument("--models", type=int, default=20, help="logged models per server")
    parser.add_argument("--workers", type=int, default=2, help="server workers")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    ratios = [run_backend(kind, args) for kind in args.backends.split(",")]
    return 0 if all(r >= BAR for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
