"""The gateway's request log: every request and response, with request id and timestamp, in
rotating JSONL or Parquet files (the production data that monitoring reads).

Serving never waits for the disk: records go to an in-memory buffer that a background thread
writes out every ``flush_seconds``. A JSONL segment is appended to as it fills; a Parquet segment is
written whole when it rotates (after ``rotate_rows`` rows or ``rotate_seconds``) and at shutdown.
File names sort by time: ``requests-<UTC start>-<pid>-<n>.<ext>``. Payloads can be sampled
(``payload_sample`` in [0, 1]) or switched off (``0``); the metadata of every request is kept.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

#: Columns of every record, in file order.
COLUMNS = (
    "request_id",
    "ts",
    "deployment",
    "version",
    "status",
    "latency_ms",
    "content_type",
    "request",
    "response",
)


class RequestLog:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        deployment: str,
        fmt: str = "jsonl",
        payload_sample: float = 1.0,
        rotate_rows: int = 10_000,
        rotate_seconds: float = 300.0,
        flush_seconds: float = 1.0,
    ) -> None:
        if fmt not in ("jsonl", "parquet"):
            raise ValueError(f"request log format {fmt!r}: use jsonl or parquet")
        if not 0.0 <= payload_sample <= 1.0:
            raise ValueError(f"payload_sample {payload_sample}: give a fraction from 0 to 1")
        if fmt == "parquet":
            import pyarrow.parquet  # noqa: F401  (now, not at the first rotation)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.deployment = deployment
        self.fmt = fmt
        self.payload_sample = payload_sample
        self.rotate_rows = rotate_rows
        self.rotate_seconds = rotate_seconds
        self.flush_seconds = flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._segment: list[dict[str, Any]] = []  # parquet rows of the open segment
        self._segment_path: Path | None = None
        self._segment_rows = 0
        self._segment_started = 0.0
        self._counter = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steward-request-log", daemon=True)
        self._thread.start()

    def add(
        self,
        *,
        request_id: str,
        version: str,
        status: int,
        latency_ms: float,
        content_type: str | None,
        request: bytes,
        response: bytes,
    ) -> None:
        keep = self.payload_sample >= 1.0 or (
            self.payload_sample > 0.0 and random.random() < self.payload_sample
        )
        record = {
            "request_id": request_id,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "deployment": self.deployment,
            "version": version,
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "content_type": content_type,
            "request": request.decode("utf-8", "replace") if keep else None,
            "response": response.decode("utf-8", "replace") if keep else None,
        }
        with self._lock:
            self._buffer.append(record)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            records, self._buffer = self._buffer, []
        try:
            self._write(records)
        except Exception:
            _logger.exception("request log: %d records could not be written", len(records))

    def _new_segment(self) -> Path:
        self._counter += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._segment_started = time.monotonic()
        self._segment_rows = 0
        return self.directory / f"requests-{stamp}-{os.getpid()}-{self._counter}.{self.fmt}"

    def _due(self) -> bool:
        return self._segment_path is not None and (
            self._segment_rows >= self.rotate_rows
            or time.monotonic() - self._segment_started >= self.rotate_seconds
        )

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._due():
            self._close_segment()
        for record in records:
            if self._segment_path is None:
                self._segment_path = self._new_segment()
            self._segment.append(record)
            self._segment_rows += 1
            if self._segment_rows >= self.rotate_rows:
                self._close_segment()
        if self.fmt == "jsonl" and self._segment and self._segment_path is not None:
            _append_jsonl(self._segment_path, self._segment)
            self._segment = []

    def _close_segment(self) -> None:
        path, rows = self._segment_path, self._segment
        self._segment_path, self._segment = None, []
        if path is None or not rows:
            return
        if self.fmt == "jsonl":
            _append_jsonl(path, rows)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=_parquet_schema(pa))
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # readers never see a half-written file

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()
        self._close_segment()


def _append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)


def _parquet_schema(pa: Any) -> Any:
    return pa.schema(
        [
            ("request_id", pa.string()),
            ("ts", pa.string()),
            ("deployment", pa.string()),
            ("version", pa.string()),
            ("status", pa.int32()),
            ("latency_ms", pa.float64()),
            ("content_type", pa.string()),
            ("request", pa.string()),
            ("response", pa.string()),
        ]
    )


def read_request_log(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record under ``directory`` in time order (JSONL and Parquet segments)."""
    out: list[dict[str, Any]] = []
    for path in sorted(Path(directory).glob("requests-*")):
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as handle:
                out.extend(json.loads(line) for line in handle if line.endswith("\n"))
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            out.extend(pq.read_table(path).to_pylist())
    return out
