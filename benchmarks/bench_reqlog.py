"""Reading a window of an on-prem request log for monitoring, against pandas reading the same rows
from one Parquet file, in one run.

Setup (not timed): `--requests` single-row requests of `--features` float features
(``dataframe_split``, as MLflow's clients send them), 95% answered by version 1 and 5% by
version 2, written through the gateway's real `RequestLog` (typed by a signature of doubles) into
a Parquet log and a JSONL log; the rows version 1 answered also go to one plain Parquet file (the
peer). With `--legacy N`, N requests are also written in the 0.1.0 per-request format (read
request by request) to show its speed.

Timed (median of `--repeat`): `read_rows(folder, version="1", since=start)` (the monitoring
read: a columnar scan filtered on version, status and time, into a DataFrame of the input
columns, prediction and request id) for each format, and `pandas.read_parquet` of the peer file.

Bars (issue 15): Parquet >= 1,000,000 rows/s, JSONL >= 200,000 rows/s.

    python benchmarks/bench_reqlog.py [--requests 200000] [--features 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def write_log(folder: Path, fmt: str, bodies: list[bytes], versions: list[str], names) -> float:
    from mlflow_steward.deployment.onprem.reqlog import RequestLog

    started = time.perf_counter()
    log = RequestLog(folder, deployment="bench", fmt=fmt, rotate_rows=10_000, flush_seconds=0.2)
    for version in ("1", "2"):
        log.set_signature(version, dict.fromkeys(names, "double"))
    for i, (body, version) in enumerate(zip(bodies, versions, strict=True)):
        log.add(
            request_id=f"{i:032x}",
            version=version,
            status=200,
            latency_ms=1.0,
            content_type="application/json",
            request=body,
            response=b'{"predictions": [1]}',
        )
    log.close()
    return time.perf_counter() - started


def write_legacy(folder: Path, bodies: list[bytes]) -> None:
    """The 0.1.0 format: one JSON record per request, the payload as text."""
    from datetime import UTC, datetime

    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC)
    with open(folder / "requests-20000101T000000000000Z-1-1.jsonl", "w") as handle:
        for i, body in enumerate(bodies):
            record = {
                "request_id": f"{i:032x}",
                "ts": stamp.isoformat(timespec="microseconds"),
                "deployment": "bench",
                "version": "1",
                "status": 200,
                "latency_ms": 1.0,
                "content_type": "application/json",
                "request": body.decode(),
                "response": '{"predictions": [1]}',
            }
            handle.write(json.dumps(record) + "\n")


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--legacy", type=int, default=5_000)
    args = parser.parse_args()

    from mlflow_steward.deployment.onprem.reqlog import read_rows

    rng = np.random.default_rng(0)
    names = [f"f{j:02d}" for j in range(args.features)]
    values = rng.normal(size=(args.requests, args.features)).round(6)
    versions = ["2" if v < 0.05 else "1" for v in rng.random(args.requests)]
    bodies = [
        json.dumps({"dataframe_split": {"columns": names, "data": [row]}}).encode()
        for row in values.tolist()
    ]
    with tempfile.TemporaryDirectory(prefix="steward-bench-reqlog-") as tmp:
        root = Path(tmp)
        since = time.time() - 1
        written = {
            fmt: write_log(root / fmt, fmt, bodies, versions, names) for fmt in ("parquet", "jsonl")
        }
        expected = sum(v == "1" for v in versions)
        mine = np.array([v == "1" for v in versions])
        peer = pd.DataFrame(values[mine], columns=names)
        peer["__prediction__"] = 1
        peer["__request_id__"] = [f"{i:032x}" for i in np.flatnonzero(mine)]
        peer.to_parquet(root / "peer.parquet", index=False)
        print(
            f"{args.requests} single-row requests of {args.features} features, {expected} answered "
            f"by v1; written through RequestLog in {written['parquet']:.1f}s (Parquet), "
            f"{written['jsonl']:.1f}s (JSONL); medians of {args.repeat}"
        )

        t_peer, frame = timed(lambda: pd.read_parquet(root / "peer.parquet"), args.repeat)
        assert len(frame) == expected
        rows = [("pandas read_parquet of one file (peer)", t_peer, "")]
        met = True
        for fmt, bar in (("parquet", 1_000_000), ("jsonl", 200_000)):
            t, window = timed(lambda fmt=fmt: read_rows(root / fmt, "1", since), args.repeat)
            assert len(window.frame) == expected, (fmt, len(window.frame))
            assert list(window.frame.columns[: args.features]) == names
            rate = expected / t
            met = met and rate >= bar
            rows.append(
                (
                    f"read_rows, {fmt} segments",
                    t,
                    f"{rate:,.0f} rows/s (bar {bar:,}); {t / t_peer:.1f}x pandas",
                )
            )
        if args.legacy:
            write_legacy(root / "legacy", bodies[: args.legacy])
            t, window = timed(lambda: read_rows(root / "legacy", "1", None), 1)
            rows.append(
                (
                    f"read_rows, 0.1.0 JSONL segment ({args.legacy} requests)",
                    t,
                    f"{args.legacy / t:,.0f} rows/s (no bar: old logs read as before, with a note)",
                )
            )
    print("\n| what | median time | note |\n|---|---|---|")
    for what, seconds, note in rows:
        print(f"| {what} | {seconds:.3f} s | {note} |")
    print("bar met" if met else "bar MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
