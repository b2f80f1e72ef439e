"""`steward monitor run` on a deployment's request log of `--requests` logged single-row requests
of `--features` features, judged from sketches under a memory budget: end-to-end time and peak
memory, in one run.

Setup (not timed): an embedded registry with one model version and its baseline (`log_baseline`
of 100,000 rows), a deployment record pointing at a request-log folder (its gateway is not
started: monitoring reads only the record and the log), and the log written through the real
`RequestLog` (Parquet, typed by the signature), the second half of the requests shifted by one
standard deviation on the first `--shifted` features.

Timed: `steward monitor run --json --no-log` as a subprocess (imports included), `--repeat`
times; its peak resident memory from the kernel (`ru_maxrss` of the child).

Bars (issue 15): 10,000,000 requests of 20 features judged in at most 30 s on this machine, peak
memory under the budget, the shifted columns named.

With `--keep DIR` the registry and the log are written to DIR and kept, and a later run with the
same `--keep DIR` times the monitor run on them again without writing anything (the setup of 10
million requests takes minutes).

    python benchmarks/bench_monitor_volume.py [--requests 10000000] [--budget 1GiB] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (MLflow's telemetry off)


def setup(root: Path, requests: int, features: int, shifted: int) -> None:
    import mlflow
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd

    import mlflow_steward as steward
    from mlflow_steward.deployment.onprem.reqlog import RequestLog
    from mlflow_steward.plugins.targets import DeploymentInfo
    from mlflow_steward.records import db
    from mlflow_steward.records.deployments import DeploymentStore

    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(db_uri)
    mlflow.set_registry_uri(db_uri)
    # the model's artifacts beside the registry (not ./mlruns of the working folder), so that
    # a --keep folder holds everything a later run reads
    artifacts = (root / "artifacts").as_uri()
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("volume", artifacts))
    names = [f"f{j:02d}" for j in range(features)]

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(100_000, features)), columns=names)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Identity())
        steward.log_baseline(X, model_info=info)
    mlflow.register_model(info.model_uri, "volume")
    folder = root / "requests"
    store = DeploymentStore(db.get_engine(db_uri))
    with store.engine.begin() as conn:
        store.insert_row(
            conn,
            DeploymentInfo(
                name="volume",
                target="steward-onprem",
                kind="onprem",
                model="volume",
                version="1",
                status="serving",
                options={"request_log_dir": str(folder)},
            ),
        )
    log = RequestLog(folder, deployment="volume", fmt="parquet", rotate_rows=100_000)
    log.set_signature("1", dict.fromkeys(names, "double"))
    # The bytes json.dumps({"dataframe_split": {"columns": names, "data": [row]}}) gives, made
    # faster (the writer is what is measured here, not the client).
    head, tail = json.dumps({"dataframe_split": {"columns": names, "data": [["@"]]}}).split('"@"')
    block = 100_000
    for start in range(0, requests, block):
        values = rng.normal(size=(min(block, requests - start), features)).round(6)
        values[max(0, requests // 2 - start) :, :shifted] += 1.0  # the second half shifted
        for i, row in enumerate(values.tolist(), start):
            log.add(
                request_id=f"{i:x}",
                version="1",
                status=200,
                latency_ms=1.0,
                content_type="application/json",
                request=f"{head}{', '.join(map(repr, row))}{tail}".encode(),
                response=b'{"predictions": [0]}',
            )
        log.flush()
    log.close()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--shifted", type=int, default=5)
    parser.add_argument("--budget", default="1GiB")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the log here and keep it; reuse it")
    args = parser.parse_args()
    from mlflow_steward.monitoring.monitors import parse_size

    budget = parse_size(args.budget)
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="steward-bench-")))
        else:
            root = args.keep.resolve()
            root.mkdir(parents=True, exist_ok=True)
        db_uri = f"sqlite:///{root / 'mlflow.db'}"
        if (root / "setup.json").exists():
            logged = json.loads((root / "setup.json").read_text())
            if logged != [args.requests, args.features, args.shifted]:
                sys.exit(f"{root} holds a log of {logged} (requests, features, shifted)")
            print(f"setup: reusing the {args.requests:,} requests logged in {root}")
        else:
            started, cpu = time.perf_counter(), time.process_time()
            setup(root, args.requests, args.features, args.shifted)
            wall = time.perf_counter() - started
            print(
                f"setup: {args.requests:,} requests written in {wall:.0f}s "
                f"({time.process_time() - cpu:.0f} CPU seconds; {os.getloadavg()[0]:.1f} load)"
            )
            (root / "setup.json").write_text(
                json.dumps([args.requests, args.features, args.shifted])
            )
        (root / "steward.yaml").write_text(
            "monitors:\n  volume:\n    model: models:/volume/1\n    data: {requests: volume}\n"
            f"    memory_budget: {args.budget}\n    drift_share: 0.2\n"
        )
        env = {
            **os.environ,
            "MLFLOW_STEWARD_CONFIG": str(root / "steward.yaml"),
            "MLFLOW_TRACKING_URI": db_uri,
            "MLFLOW_REGISTRY_URI": f"steward+{db_uri}",
            "MLFLOW_STEWARD_ACTOR": "bench",
        }
        steward = Path(sys.executable).parent / "steward"
        times = []
        run: dict = {}
        for _ in range(args.repeat):
            t = time.perf_counter()
            done = subprocess.run(
                [str(steward), "monitor", "run", "--json", "--no-log"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            times.append(time.perf_counter() - t)
            run = json.loads(done.stdout[done.stdout.index("{") :])["runs"][0]
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    seconds = statistics.median(times)
    expected = [f"f{j:02d}" for j in range(args.shifted)]
    print(f"status {run['status']}, drifted {run['drifted']}, rows {run['rows']:,}")
    print(f"quality: {run['quality'][:2]}")
    print(
        f"end to end: median {seconds:.1f}s of {args.repeat}; peak memory "
        f"{peak / 2**20:,.0f} MiB (budget {budget / 2**20:,.0f} MiB)"
    )
    met = seconds <= 30 and peak < budget and run["drifted"] == expected
    print("bar met" if met else "bar MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
