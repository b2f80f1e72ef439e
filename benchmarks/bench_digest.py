"""Content digest of a model folder (``mlflow_steward.governance.digest.digest_local``) vs
coreutils' ``sha256sum`` over the same files, in the same run.

Bar (issue: content digests): throughput at least 0.8x that of ``sha256sum`` (median of the
repeats; the two are alternated so both see the same page cache and the same neighbours).
The folder is 8 files of random bytes (``--size-mib`` in all, 1 GiB by default) plus an
``MLmodel`` and a ``requirements.txt``, written to a temporary folder and deleted afterwards.

    .venv/bin/python benchmarks/bench_digest.py                    # 1 GiB, 3 repeats
    .venv/bin/python benchmarks/bench_digest.py --size-mib 64 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BLOCK = 16 << 20  # bytes of random data written at a time


def _make_model(root: Path, size_mib: int, files: int) -> list[Path]:
    (root / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    (root / "requirements.txt").write_text("scikit-learn==1.5.0\nnumpy==2.0.0\n")
    per_file = (size_mib << 20) // files
    paths = [root / "MLmodel", root / "requirements.txt"]
    (root / "data").mkdir()
    for i in range(files):
        path = root / "data" / f"weights-{i}.bin"
        with open(path, "wb") as f:
            left = per_file
            while left:
                n = min(BLOCK, left)
                f.write(os.urandom(n))
                left -= n
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total size of the files")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to create the folder (default: TMP)")
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        print("sha256sum is not installed: nothing to compare against")
        return 1

    from mlflow_steward.governance.digest import digest_local

    with tempfile.TemporaryDirectory(prefix="bench-digest-", dir=args.dir) as tmp:
        root = Path(tmp)
        print(f"writing {args.size_mib} MiB in {args.files} files to {root} ...", flush=True)
        paths = _make_model(root, args.size_mib, args.files)
        total = sum(p.stat().st_size for p in paths)
        command = ["sha256sum", *map(str, paths)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # warm the page cache

        ours: list[float] = []
        theirs: list[float] = []
        expected = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            found = digest_local(root)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            theirs.append(time.perf_counter() - start)
            expected = {
                Path(p).relative_to(root).as_posix(): h
                for h, p in (line.split(maxsplit=1) for line in out.splitlines())
            }
            if dict(found.files) != expected:
                print("digest_local and sha256sum disagree on a file's hash")
                return 1

    mib = total / (1 << 20)
    t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
    rate_ours, rate_theirs = mib / t_ours, mib / t_theirs
    ratio = rate_ours / rate_theirs
    print(f"\n{mib:.0f} MiB in {len(paths)} files, {args.repeats} repeats, medians")
    print("| what | median time | throughput |\n|---|---|---|")
    print(f"| steward digest_local | {t_ours:.3f} s | {rate_ours:.0f} MiB/s |")
    print(f"| sha256sum | {t_theirs:.3f} s | {rate_theirs:.0f} MiB/s |")
    print(f"\nthroughput steward/sha256sum {ratio:.2f}x (bar >= 0.8x)")
    met = ratio >= 0.8
    print("bar met" if met else "bar MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
