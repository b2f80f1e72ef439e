"""Wall time of `steward --help` and `steward plugins` against `mlflow --version`, in one run.

Bar (issue 2): each steward command at most 0.5 s, and (expected) under 0.15x `mlflow --version`.
It also runs `python -X importtime` on both steward commands and prints whether MLflow, pandas,
scikit-learn or scipy were imported (they must not be) and the slowest imports.

    python benchmarks/bench_cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("mlflow", "pandas", "sklearn", "scipy")
BAR_SECONDS = 0.5
EXPECTED_RATIO = 0.15


def _script(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if found.exists():
        return str(found)
    which = shutil.which(name)
    if which is None:
        raise SystemExit(f"{name} is not installed next to {sys.executable} nor on PATH")
    return which


def wall(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def imports(args: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import sys; from mlflow_steward.cli.main import main; main(sys.argv[1:])",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative), name.rstrip()))
    top_level = {name.strip().split(".")[0] for _, name in rows}
    heavy = [m for m in HEAVY if m in top_level]
    # A top-level import is written with one space of indentation by -X importtime.
    slowest = sorted((r for r in rows if not r[1].startswith("  ")), reverse=True)[:5]
    return heavy, slowest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    steward, mlflow = _script("steward"), _script("mlflow")
    baseline = wall([mlflow, "--version"], args.runs)
    print(f"mlflow --version        median {baseline:6.3f} s over {args.runs} runs")
    failed = False
    for cmd in (["--help"], ["plugins"]):
        seconds = wall([steward, *cmd], args.runs)
        ratio = seconds / baseline
        ok = seconds <= BAR_SECONDS
        failed |= not ok
        print(
            f"steward {' '.join(cmd):<15} median {seconds:6.3f} s  ratio {ratio:.3f}x "
            f"(bar {BAR_SECONDS} s: {'OK' if ok else 'OVER'}; expected < {EXPECTED_RATIO}x)"
        )
        heavy, slowest = imports(cmd)
        print(f"    heavy imports: {', '.join(heavy) or 'none'}")
        print(
            "    slowest top-level imports (cumulative us): "
            + ", ".join(f"{name.strip()} {us}" for us, name in slowest)
        )
        failed |= bool(heavy)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
