"""An edge device's update check with nothing new: steward's ``ChannelReader.latest()`` against
python-tuf's own ``Updater(...).refresh()`` on the same channel, in the same run.

Issue 16 reports the time (python-tuf does it in under 2 ms on its authors' machine); the bar
here is steward's check at most 1.5x python-tuf's (steward adds reading the verified targets
metadata to find the newest release). The channel is a real one (``Channel.init`` and one
``publish`` of a small bundle), served by ``python -m http.server`` on 127.0.0.1; both clients
start from a device state that has seen the current release, and are alternated.

    .venv/bin/python benchmarks/bench_edge_check.py --checks 200 --repeats 5
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow_steward.deployment.edge.bundle import FORMAT
from mlflow_steward.deployment.edge.channel import Channel
from mlflow_steward.deployment.edge.reader import ChannelReader
from tests.edge_helpers import static_server


def _bundle(path: Path) -> None:
    """A minimal bundle (a manifest and one file): publishing reads only the manifest."""
    manifest = {
        "format": FORMAT,
        "model": "bench",
        "version": "1",
        "digest": "sha256:" + "0" * 64,
        "created": "2026-01-01T00:00:00+00:00",
        "files": {},
    }
    with tarfile.open(path, "w:gz") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("bundle/manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _raw_check(url: str, state: Path, root: bytes) -> None:
    from tuf.ngclient import Updater

    Updater(
        metadata_dir=str(state),
        metadata_base_url=f"{url}/metadata/",
        target_base_url=f"{url}/targets/",
        bootstrap=root,
    ).refresh()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200, help="checks per repeat and client")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        channel = Channel(root / "channel", root / "keys")
        channel.init()
        _bundle(root / "bench-1.tar.gz")
        channel.publish(root / "bench-1.tar.gz")
        trusted = root / "channel" / "metadata" / "1.root.json"
        with static_server(root / "channel") as url:
            reader = ChannelReader(url, trusted, str(root / "steward-device"))
            assert reader.latest() is not None
            raw_state = root / "raw-device"
            raw_state.mkdir()
            _raw_check(url, raw_state, trusted.read_bytes())
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(args.repeats):
                for fn, out in (
                    (lambda: reader.latest(), ours),
                    (lambda: _raw_check(url, raw_state, trusted.read_bytes()), theirs),
                ):
                    start = time.perf_counter()
                    for _ in range(args.checks):
                        fn()
                    out.append((time.perf_counter() - start) / args.checks)
    ours_ms, theirs_ms = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
    ratio = ours_ms / theirs_ms
    met = ratio <= 1.5
    print(f"update check, nothing new, over HTTP on 127.0.0.1 ({args.checks} x {args.repeats}):")
    print(f"  python-tuf Updater.refresh():   {theirs_ms:.2f} ms")
    print(f"  steward ChannelReader.latest(): {ours_ms:.2f} ms ({ratio:.2f}x)")
    print(f"bar (at most 1.5x): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
