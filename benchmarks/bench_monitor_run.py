"""One `steward monitor run` over many monitored versions against a single `monitor check` of one
version in a warm process, in one run.

Setup (not timed): an embedded registry (SQLite, local artifacts) with `--models` registered
models, each version 1 logged with `steward.log_baseline` over `--rows` x `--columns` floats, one
current-data Parquet file per model of the same size (a third of the models shifted), and a
steward.yaml with one monitor per model (files source, a `tag` rule on drift).

Timed, in this one process after a warm-up check:
- the peer: `monitoring.check.check(...)` of one model (baseline load, verdict, MLflow run with
  metrics and the HTML/PNG report, version tags through governance), `--repeat` times, median;
- `MonitorRunner.run(workers=--workers)` over every monitor (the same work per model, plus
  reading the monitor's data source, the rules and the run record; with workers > 1 in a pool of
  processes, their start included), `--repeat` times: total, and per model.

Bar (issue 15): with `--workers 2`, per-model time of the run at most 1.0x the single check
(median of the repeats).

    python benchmarks/bench_monitor_run.py [--models 100] [--rows 10000] [--columns 20] \
        [--repeat 3] [--workers 2]
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

import _common  # noqa: F401  (MLflow's telemetry off)


def setup(root: Path, models: int, rows: int, columns: int) -> str:
    import mlflow
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd

    import mlflow_steward as steward

    db_uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(db_uri)
    mlflow.set_registry_uri(db_uri)
    mlflow.set_experiment("bench")
    names = [f"c{j:02d}" for j in range(columns)]

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    monitors = ["monitors:"]
    (root / "current").mkdir()
    for i in range(models):
        rng = np.random.default_rng(i)
        X = pd.DataFrame(rng.normal(size=(rows, columns)).astype("float32"), columns=names)
        with mlflow.start_run():
            # requirements named: MLflow would otherwise infer them in a new process per model
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=Identity(),
                pip_requirements=mlflow.pyfunc.get_default_pip_requirements(),
            )
            steward.log_baseline(X, model_info=info)
        mlflow.register_model(info.model_uri, f"model-{i:03d}")
        current = pd.DataFrame(rng.normal(size=(rows, columns)).astype("float32"), columns=names)
        if i % 3 == 0:
            current[names[: columns // 2]] += 0.5
        current.to_parquet(root / "current" / f"{i:03d}.parquet")
        monitors += [
            f"  model-{i:03d}:",
            f"    model: models:/model-{i:03d}/1",
            f"    data: {root / 'current' / f'{i:03d}.parquet'}",
            "    rules:",
            "      - when: drift",
            "        do: [tag]",
        ]
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    (root / "steward.yaml").write_text("\n".join(monitors) + "\n")
    return db_uri


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        db_uri = setup(root, args.models, args.rows, args.columns)
        print(
            f"setup: {args.models} models, baselines and current data of {args.rows} x "
            f"{args.columns} in {time.perf_counter() - started:.0f}s"
        )
        os.environ["MLFLOW_STEWARD_CONFIG"] = str(root / "steward.yaml")
        os.environ["MLFLOW_STEWARD_ACTOR"] = "bench"
        os.environ["MLFLOW_TRACKING_URI"] = db_uri

        from mlflow_steward.lifecycle.session import StewardSession
        from mlflow_steward.monitoring.check import check
        from mlflow_steward.monitoring.runner import MonitorRunner

        session = StewardSession(registry_uri=f"steward+{db_uri}", tracking_uri=db_uri)
        one = str(root / "current" / "001.parquet")
        check(session, "models:/model-001/1", one)  # warm-up: imports, first MLflow run
        singles = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            check(session, "models:/model-001/1", one)
            singles.append(time.perf_counter() - t)
        single = statistics.median(singles)

        runner = MonitorRunner(session)
        totals, per_model_medians, statuses = [], [], {}
        for _ in range(args.repeat):
            t = time.perf_counter()
            results = runner.run(workers=args.workers)
            totals.append(time.perf_counter() - t)
            per_model_medians.append(statistics.median(r.seconds for r in results))
            statuses = {s: sum(r.status == s for r in results) for s in {r.status for r in results}}
        total = statistics.median(totals)
        per_model = total / args.models
        ratio = per_model / single
        print(f"single `monitor check` of one model, warm: median {single:.3f}s of {args.repeat}")
        print(
            f"`monitor run --workers {args.workers}` over {args.models} monitors: median total {total:.1f}s of "
            f"{args.repeat} ({', '.join(f'{t:.1f}s' for t in totals)}); per model "
            f"{per_model:.3f}s (median of per-monitor times {statistics.median(per_model_medians):.3f}s)"
        )
        print(f"verdicts: {statuses}")
        print(f"ratio per-model / single check: {ratio:.2f}x (bar <= 1.0x)")
        print("bar met" if ratio <= 1.0 else "bar MISSED")
        return 0 if ratio <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
