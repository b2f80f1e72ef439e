"""What an edge device's statistics cost a prediction: ``EdgeStatistics.observe()`` on single-row
frames, and the sketching ``tick()`` does with what observe() buffered, against a single-row
pyfunc ``predict`` of a small scikit-learn model, in the same run.

Issue 16's bar: the agent's throughput with statistics on at least 0.9x the same agent with them
off. Measured three ways (medians of ``--repeats``):

- observe() alone, microseconds per call (what a request waits for);
- observe() plus its share of tick() (the buffered frames turned into sketches), per row: the
  whole CPU cost of the statistics;
- a closed loop of predict + observe with tick() every ``--tick-every`` rows (an agent's loop
  ticks every few seconds), against predict alone, alternated: the throughput ratio (the bar).

    .venv/bin/python benchmarks/bench_edge_stats.py --calls 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks._common  # noqa: F401  (MLflow's telemetry off)

COLUMNS = 8


def _model(folder: Path):
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(500, COLUMNS)), columns=[f"x{i}" for i in range(COLUMNS)])
    y = (X["x0"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    path = folder / "model"
    mlflow.sklearn.save_model(model, path, signature=infer_signature(X, model.predict(X)))
    return mlflow.pyfunc.load_model(str(path)), X


def _rows(X, n: int) -> list:
    """``n`` single-row frames, as an agent decodes one request's input each time."""
    import pandas as pd

    records = X.to_dict("records")
    return [pd.DataFrame([records[i % len(records)]]) for i in range(n)]


def _per_call(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="single-row calls per repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tick-every", type=int, default=500, help="rows between ticks")
    args = parser.parse_args()

    from mlflow_steward.deployment.edge.stats import EdgeStatistics

    with tempfile.TemporaryDirectory(prefix="bench-edge-stats-") as tmp:
        model, X = _model(Path(tmp))
        frames = _rows(X, args.calls)
        stats = EdgeStatistics(Path(tmp, "device"), device_id="bench", window_seconds=300)
        for frame in frames[:50]:  # warm up both paths
            model.predict(frame)
            stats.observe(frame, "bench/1")
        stats.tick()

        predict_us, observe_us, total_us, loop_off, loop_on = [], [], [], [], []
        for _ in range(args.repeats):
            predict_us.append(_per_call(model.predict, frames))
            start = time.perf_counter()
            observe_us.append(_per_call(lambda f: stats.observe(f, "bench/1"), frames))
            stats.tick()
            total_us.append((time.perf_counter() - start) / len(frames) * 1e6)

            # closed loops, alternated by slices of 50 rows (the machine's load drifts):
            # predict alone, then predict + observe with a tick every --tick-every rows
            off = on = 0.0
            for at in range(0, len(frames), 50):
                chunk = frames[at : at + 50]
                start = time.perf_counter()
                for frame in chunk:
                    model.predict(frame)
                off += time.perf_counter() - start
                start = time.perf_counter()
                for frame in chunk:
                    model.predict(frame)
                    stats.observe(frame, "bench/1")
                if (at + len(chunk)) % args.tick_every == 0 or at + 50 >= len(frames):
                    stats.tick()
                on += time.perf_counter() - start
            loop_off.append(len(frames) / off)
            loop_on.append(len(frames) / on)
        stats.close()

    predict = statistics.median(predict_us)
    observe = statistics.median(observe_us)
    total = statistics.median(total_us)
    ratio = statistics.median(on / off for on, off in zip(loop_on, loop_off, strict=True))
    print(f"single-row pyfunc predict ({COLUMNS} columns): {predict:9.1f} us/call")
    print(
        f"observe() alone:                         {observe:9.2f} us/call "
        f"({observe / predict:.2%} of predict)"
    )
    print(
        f"observe() + tick()'s sketching, per row: {total:9.2f} us "
        f"({total / predict:.2%} of predict)"
    )
    print(
        f"throughput, predict + statistics vs predict alone: "
        f"{statistics.median(loop_on):.0f} vs {statistics.median(loop_off):.0f} rows/s "
        f"medians; {ratio:.3f}x, the median of each repetition's ratio (bar: at least 0.9x)"
    )
    met = ratio >= 0.9 and observe <= 0.1 * predict
    print("bar met" if met else "BAR MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
