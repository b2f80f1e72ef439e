"""The gateway's request log: every request and response, with request id and timestamp, in
rotating Parquet or JSONL segments (the production data that monitoring reads).

Since 0.2.0 a segment holds one **row per input row** of a request, with the model's input columns
as columns (typed from the model's signature when it has one) beside the request's metadata
(``__request_id__``, ``__ts__``, ``__version__``, ``__status__``, ... and ``__prediction__``), so
monitoring reads a window with one columnar scan filtered on version and time
(:func:`read_rows`). Such segments are named ``requests-<UTC start>-<pid>-<n>.rows.<ext>``.
Segments written by 0.1.0 (``requests-...-<n>.jsonl|parquet``: one record per request with the
payload as text) are still read, request by request (:func:`read_request_log`, and
:func:`read_rows` with a note).

Serving never waits for the disk nor for decoding: ``add`` puts the raw request in an in-memory
buffer; a background thread decodes the buffered requests into rows every ``flush_seconds`` and
writes them out. A JSONL segment is appended to as it fills; a Parquet segment is written whole
when it rotates (after ``rotate_rows`` rows or ``rotate_seconds``) and at shutdown. File names sort
by time. Payloads can be sampled (``payload_sample`` in [0, 1]) or switched off (``0``); the
metadata of every request is kept (one row without input columns). A request whose payload cannot
be decoded into columns (not JSON, an unknown layout, a failed request) keeps its bodies as text
in ``__request__`` and ``__response__``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

#: Columns of every record of :func:`read_request_log`, in file order (the 0.1.0 format).
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

#: The metadata columns of a row segment. Input columns of a model never take these names (a
#: request that uses one is kept as text).
REQUEST_ID, TS, DEPLOYMENT, VERSION, STATUS = (
    "__request_id__",
    "__ts__",
    "__deployment__",
    "__version__",
    "__status__",
)
LATENCY, CONTENT_TYPE, ROW, PREDICTION = (
    "__latency_ms__",
    "__content_type__",
    "__row__",
    "__prediction__",
)
RAW_REQUEST, RAW_RESPONSE = "__request__", "__response__"
META = (
    REQUEST_ID,
    TS,
    DEPLOYMENT,
    VERSION,
    STATUS,
    LATENCY,
    CONTENT_TYPE,
    ROW,
    PREDICTION,
    RAW_REQUEST,
    RAW_RESPONSE,
)
_META = frozenset(META)
#: The infix that marks a row segment's name.
ROWS = ".rows"

#: MLflow column types (a signature's ``inputs``) -> pyarrow type names.
_SIGNATURE_TYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool_",
    "string": "string",
    "binary": "binary",
    "datetime": "timestamp_us",
}


def read_signature(model_path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The input columns of the model at ``model_path`` and their MLflow types (``double``,
    ``long``, ...) from its ``MLmodel`` file, or None when it has no column signature (none, or
    tensors). Reads the YAML only: the gateway imports no MLflow."""
    import yaml

    try:
        meta = yaml.safe_load((Path(model_path) / "MLmodel").read_text())
        inputs = json.loads(meta["signature"]["inputs"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(inputs, list) or not all(
        isinstance(c, dict) and c.get("name") and c.get("type") in _SIGNATURE_TYPES for c in inputs
    ):
        return None
    return {str(c["name"]): str(c["type"]) for c in inputs}


@dataclass(slots=True)
class _Pending:
    request_id: str
    ts: datetime
    version: str
    status: int
    latency_ms: float
    content_type: str | None
    request: bytes | None
    response: bytes | None


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
        #: Input column types by version (from the model's signature), see :meth:`set_signature`.
        self.signatures: dict[str, dict[str, str]] = {}
        self._buffer: list[_Pending] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # the flush thread and close() both write
        self._segment: list[_Rows] = []  # rows of the open segment not yet written
        self._segment_path: Path | None = None
        self._segment_rows = 0
        self._segment_started = 0.0
        self._counter = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steward-request-log", daemon=True)
        self._thread.start()

    def set_signature(self, version: str, signature: Mapping[str, str] | None) -> None:
        """Type the input columns of requests ``version`` answers (MLflow type names by column,
        :func:`read_signature`); without one, types are taken from the values."""
        if signature:
            self.signatures[str(version)] = dict(signature)

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
        pending = _Pending(
            request_id,
            datetime.now(UTC),
            str(version),
            status,
            latency_ms,
            content_type,
            request if keep else None,
            response if keep else None,
        )
        with self._lock:
            self._buffer.append(pending)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._buffer = self._buffer, []
        try:
            with self._write_lock:
                self._write(pending)
        except Exception:
            _logger.exception("request log: %d requests could not be written", len(pending))

    def _new_segment(self) -> Path:
        self._counter += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self._segment_started = time.monotonic()
        self._segment_rows = 0
        name = f"requests-{stamp}-{os.getpid()}-{self._counter}{ROWS}.{self.fmt}"
        return self.directory / name

    def _due(self) -> bool:
        return self._segment_path is not None and (
            self._segment_rows >= self.rotate_rows
            or time.monotonic() - self._segment_started >= self.rotate_seconds
        )

    def _write(self, pending: list[_Pending]) -> None:
        if self._due():
            self._close_segment()
        for part in decode_batch(pending, self.deployment, self.signatures):
            # A segment rotates after the request that fills it (a request is never split).
            first = start = row = 0
            for index, size in enumerate(part.sizes, 1):
                if self._segment_path is None:
                    self._segment_path = self._new_segment()
                row += size
                self._segment_rows += size
                if self._segment_rows >= self.rotate_rows:
                    self._segment.append(part.take(first, index, start, row))
                    first, start = index, row
                    self._close_segment()
            if start < row:
                self._segment.append(part.take(first, len(part.sizes), start, row))
        if self.fmt == "jsonl" and self._segment and self._segment_path is not None:
            _append_jsonl(self._segment_path, self._segment)
            self._segment = []

    def _close_segment(self) -> None:
        path, parts = self._segment_path, self._segment
        self._segment_path, self._segment = None, []
        if path is None or not parts:
            return
        if self.fmt == "jsonl":
            _append_jsonl(path, parts)
            return
        import pyarrow.parquet as pq

        table = rows_table(parts, self._types())
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # readers never see a half-written file

    def _types(self) -> dict[str, str]:
        types: dict[str, str] = {}
        for signature in self.signatures.values():
            for name, kind in signature.items():
                types.setdefault(name, kind)
        return types

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()
        with self._write_lock:
            self._close_segment()


# -- decoding a request into rows --------------------------------------------------------------


class _NotColumns(ValueError):
    """The payload is not a table of named scalar columns."""


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def _named(count: int, signature: Mapping[str, str] | None) -> list[str]:
    names = list(signature or ())
    return names if len(names) == count else [str(i) for i in range(count)]


def _table_of(payload: Any, signature: Mapping[str, str] | None) -> tuple[list[str], list[list]]:
    """(column names, rows) of a scoring request in any of MLflow's JSON layouts."""
    if not isinstance(payload, dict):
        raise _NotColumns("not a JSON object")
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        data = split["data"]
        rows = [r if isinstance(r, list) else [r] for r in data]
        width = len(rows[0]) if rows else 0
        columns = split.get("columns") or _named(width, signature)
        return list(map(str, columns)), rows
    if "dataframe_records" in payload:
        return _records(payload["dataframe_records"])
    for key in ("inputs", "instances"):
        if key in payload:
            value = payload[key]
            if isinstance(value, dict):  # columns -> values
                columns = [str(c) for c in value]
                lists = [v if isinstance(v, list) else [v] for v in value.values()]
                return columns, [list(r) for r in zip(*lists, strict=True)]
            value = value if isinstance(value, list) else [value]
            if value and all(isinstance(v, dict) for v in value):
                return _records(value)
            rows = [v if isinstance(v, list) else [v] for v in value]
            return _named(len(rows[0]) if rows else 0, signature), rows
    raise _NotColumns(f"unknown payload keys {sorted(payload)}")


def _records(records: Any) -> tuple[list[str], list[list]]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise _NotColumns("dataframe_records is not a list of objects")
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(map(str, record)))
    names = list(columns)
    return names, [[record.get(c) for c in names] for record in records]


_NUMBERS = {"double": float, "float": float}
#: What a body that is not the table it claims to be raises while it is decoded.
_UNDECODABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)
_UNSEEN = object()


def _base(item: _Pending, deployment: str) -> dict[str, Any]:
    return {
        REQUEST_ID: item.request_id,
        TS: item.ts,
        DEPLOYMENT: deployment,
        VERSION: item.version,
        STATUS: item.status,
        LATENCY: round(item.latency_ms, 3),
        CONTENT_TYPE: item.content_type,
    }


def _parsed(
    item: _Pending, signature: Mapping[str, str] | None, answers: dict[bytes, Any] | None = None
) -> tuple[list[str], list[list], list] | None:
    """(columns, rows, predictions) of a successful request whose payload is a table of named
    columns, else None. ``answers`` keeps the responses parsed so far (many are the same bytes)."""
    if item.request is None or item.status != 200:
        return None
    try:
        columns, rows = _table_of(json.loads(item.request), signature)
        if not rows or set(map(len, rows)) != {len(columns)}:
            raise _NotColumns("rows of different widths")
        if not _META.isdisjoint(columns):
            raise _NotColumns("a column named like a metadata column")
        response = item.response or b"{}"
        if answers is None:
            answer = json.loads(response)
        elif (answer := answers.get(response, _UNSEEN)) is _UNSEEN:
            answer = answers[response] = json.loads(response)
    except _UNDECODABLE:
        return None
    predictions = answer.get("predictions") if isinstance(answer, dict) else answer
    if not (isinstance(predictions, list) and len(predictions) == len(rows)):
        predictions = [None] * len(rows)
    return columns, rows, predictions


def decode(
    item: _Pending, deployment: str, signature: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The rows of one logged request: one per input row of a successful request whose payload
    is a table, else one row of metadata (with the bodies as text when they were logged)."""
    base = _base(item, deployment)
    if item.request is None:
        return [base]
    table = _parsed(item, signature)
    if table is not None:
        columns, rows, predictions = table
        casts = [_NUMBERS.get((signature or {}).get(c, "")) for c in columns]
        out = []
        for i, (values, prediction) in enumerate(zip(rows, predictions, strict=True)):
            row = {**base, ROW: i, PREDICTION: _scalar(prediction)}
            for name, value, cast in zip(columns, values, casts, strict=True):
                if cast is not None and isinstance(value, int) and not isinstance(value, bool):
                    value = cast(value)  # 1 in a double column stays a double
                row[name] = _scalar(value)
            out.append(row)
        return out
    return [
        {
            **base,
            RAW_REQUEST: item.request.decode("utf-8", "replace"),
            RAW_RESPONSE: None
            if item.response is None
            else item.response.decode("utf-8", "replace"),
        }
    ]


@dataclass
class _Rows:
    """Decoded rows of consecutive requests, column by column: each list of ``columns`` holds
    one value a row (columns in the order the rows' keys first appear); ``sizes`` holds how many
    rows each request gave, in order."""

    columns: dict[str, list[Any]]
    sizes: list[int]

    @property
    def count(self) -> int:
        return len(self.columns[REQUEST_ID])

    @classmethod
    def of(cls, rows: list[dict[str, Any]], sizes: list[int]) -> _Rows:
        names: dict[str, None] = {}
        for row in rows:
            if len(row) > len(names) or any(k not in names for k in row):
                names.update(dict.fromkeys(row))
        return cls({name: [row.get(name) for row in rows] for name in names}, sizes)

    def take(self, first: int, last: int, start: int, stop: int) -> _Rows:
        """Requests ``first`` to ``last`` (excluded), which are rows ``start`` to ``stop``."""
        if first == 0 and last == len(self.sizes):
            return self
        return _Rows(
            {name: values[start:stop] for name, values in self.columns.items()},
            self.sizes[first:last],
        )

    def dicts(self) -> Iterator[dict[str, Any]]:
        names = list(self.columns)
        for values in zip(*self.columns.values(), strict=True):
            yield dict(zip(names, values, strict=True))


def _column(values: list[Any], cast: Any) -> list[Any]:
    """One input column of decoded rows, as :func:`decode` writes each value of it."""
    kinds = set(map(type, values))  # JSON's types: no subclasses (bool is not an int here)
    if cast is not None and int in kinds:
        values = [cast(v) if type(v) is int else v for v in values]
    if dict in kinds or list in kinds:
        values = [_scalar(v) for v in values]
    return values


class _Run:
    """Consecutive requests of one version whose payloads are tables of the same columns: their
    rows decoded together, column by column (what :func:`decode` gives row by row)."""

    def __init__(self, version: str, columns: list[str]) -> None:
        self.version, self.names = version, columns
        self.items: list[_Pending] = []
        self.sizes: list[int] = []
        # The values of every row, one after the other: the parsed bodies are not kept (a list
        # a row would be a container for the garbage collector to visit again and again).
        self.values: list[Any] = []
        self.predictions: list[Any] = []

    def add(self, item: _Pending, rows: list[list], predictions: list) -> None:
        self.items.append(item)
        self.sizes.append(len(rows))
        for row in rows:
            self.values.extend(row)
        self.predictions.extend(predictions)

    def rows(self, deployment: str, signature: Mapping[str, str] | None) -> _Rows:
        items, sizes, total = self.items, self.sizes, len(self.predictions)

        def each(values: list[Any]) -> list[Any]:  # a request's value on each of its rows
            if total == len(items):
                return values
            return [v for v, n in zip(values, sizes, strict=True) for _ in range(n)]

        columns: dict[str, list[Any]] = {
            REQUEST_ID: each([i.request_id for i in items]),
            TS: each([i.ts for i in items]),
            DEPLOYMENT: [deployment] * total,
            VERSION: [self.version] * total,
            STATUS: [200] * total,
            LATENCY: each([round(i.latency_ms, 3) for i in items]),
            CONTENT_TYPE: each([i.content_type for i in items]),
            ROW: [0] * total if total == len(items) else [i for n in sizes for i in range(n)],
            PREDICTION: _column(self.predictions, None),
        }
        width = len(self.names)
        for j, name in enumerate(self.names):
            cast = _NUMBERS.get((signature or {}).get(name, ""))
            columns[name] = _column(self.values[j::width], cast)
        return _Rows(columns, sizes)


def _bulk(
    item: _Pending, signature: Mapping[str, str] | None, answers: dict[bytes, Any]
) -> tuple[list[str], list[list], list] | None:
    """:func:`_parsed`, when its rows can be decoded column by column: columns named once each."""
    table = _parsed(item, signature, answers)
    if table is None or len(set(table[0])) != len(table[0]):
        return None
    return table


def decode_batch(
    items: list[_Pending], deployment: str, signatures: Mapping[str, Mapping[str, str]]
) -> list[_Rows]:
    """The rows of logged requests, in order, as :func:`decode` gives them: consecutive requests
    of one version with the same columns are decoded together, column by column; anything else
    (a failed or unsampled request, a body that is not a table) request by request."""
    parts: list[_Rows] = []

    def append(part: _Rows) -> None:
        last = parts[-1] if parts else None
        if last is not None and list(last.columns) == list(part.columns):
            for name, values in part.columns.items():
                last.columns[name].extend(values)
            last.sizes.extend(part.sizes)
        else:
            parts.append(part)

    run: _Run | None = None
    answers: dict[bytes, Any] = {}
    for item in items:
        signature = signatures.get(item.version)
        table = _bulk(item, signature, answers)
        if run is not None and (
            table is None or item.version != run.version or table[0] != run.names
        ):
            append(run.rows(deployment, signatures.get(run.version)))
            run = None
        if table is None:
            rows = decode(item, deployment, signature)
            append(_Rows.of(rows, [len(rows)]))
            continue
        if run is None:
            run = _Run(item.version, table[0])
        run.add(item, table[1], table[2])
    if run is not None:
        append(run.rows(deployment, signatures.get(run.version)))
    return parts


def _pa_type(pa: Any, kind: str | None) -> Any:
    name = _SIGNATURE_TYPES.get(kind or "")
    if name is None:
        return None
    if name == "timestamp_us":
        return pa.timestamp("us")
    return getattr(pa, name)()


def rows_table(parts: list[_Rows], types: Mapping[str, str] | None = None) -> Any:
    """A pyarrow table of decoded rows: metadata typed, input columns typed by ``types`` (MLflow
    type names) where the values allow, else by their values (text when they are mixed)."""
    import pyarrow as pa

    fixed = {
        REQUEST_ID: pa.string(),
        TS: pa.timestamp("us", tz="UTC"),
        DEPLOYMENT: pa.string(),
        VERSION: pa.string(),
        STATUS: pa.int32(),
        LATENCY: pa.float64(),
        CONTENT_TYPE: pa.string(),
        ROW: pa.int32(),
        RAW_REQUEST: pa.string(),
        RAW_RESPONSE: pa.string(),
    }
    names: dict[str, None] = dict.fromkeys(fixed)
    for part in parts:
        names.update(dict.fromkeys(part.columns))
    arrays = []
    for name in names:
        values: list[Any] = []
        for part in parts:
            column = part.columns.get(name)
            values.extend([None] * part.count if column is None else column)
        wanted = fixed.get(name) or _pa_type(pa, (types or {}).get(name))
        arrays.append(_array(pa, values, wanted))
    return pa.Table.from_arrays(arrays, names=list(names))


def _array(pa: Any, values: list[Any], wanted: Any) -> Any:
    if wanted is not None:
        try:
            return pa.array(values, type=wanted)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            pass  # a value the signature does not allow: keep what was sent
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return str(value)


def _append_jsonl(path: Path, parts: list[_Rows]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.writelines(
            json.dumps(
                {k: v for k, v in row.items() if v is not None},
                separators=(",", ":"),
                default=_json_default,
            )
            + "\n"
            for part in parts
            for row in part.dicts()
        )


# -- reading -----------------------------------------------------------------------------------


def is_rows_segment(path: Path) -> bool:
    return ROWS in path.suffixes


def segments(directory: str | os.PathLike[str]) -> list[Path]:
    """Every finished segment under ``directory`` (both layouts), in time order."""
    return sorted(
        p
        for p in Path(directory).glob("requests-*")
        if p.suffix in (".jsonl", ".parquet") and p.is_file()
    )


def _legacy_records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.endswith("\n")]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _complete_lines(path: Path) -> bytes:
    """A JSONL segment up to its last complete line (the gateway may be appending to it)."""
    data = path.read_bytes()
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


def read_jsonl_rows(paths: list[Path]) -> Any:
    """One pyarrow table of row-layout JSONL segments (parsed by pyarrow, in parallel)."""
    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ReadOptions(block_size=8 << 20)
    blobs = [b for b in (_complete_lines(p) for p in paths) if b]
    if not blobs:
        return None
    try:
        table = pj.read_json(pa.BufferReader(b"".join(blobs)), read_options=options)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Segments that disagree on a column's type (one version sent 1, another "a"): read
        # each on its own and widen.
        tables = [pj.read_json(pa.BufferReader(b), read_options=options) for b in blobs]
        table = pa.concat_tables(tables, promote_options="permissive")
    if TS in table.column_names and pa.types.is_string(table.schema.field(TS).type):
        stamps = table[TS].cast(pa.timestamp("us", tz="UTC"))  # ISO 8601 with offset
        table = table.set_column(table.schema.get_field_index(TS), TS, stamps)
    return table


def _rows_records(table: Any) -> Iterator[dict[str, Any]]:
    """0.1.0-style records (one per request) rebuilt from rows: the request as
    ``dataframe_split`` of its input columns, the response as its predictions."""
    meta = _META
    current: list[dict[str, Any]] = []

    def record(rows: list[dict[str, Any]]) -> dict[str, Any]:
        first = rows[0]
        ts = first[TS]
        out = {
            "request_id": first[REQUEST_ID],
            "ts": ts.isoformat(timespec="microseconds") if isinstance(ts, datetime) else ts,
            "deployment": first[DEPLOYMENT],
            "version": first[VERSION],
            "status": first[STATUS],
            "latency_ms": first[LATENCY],
            "content_type": first.get(CONTENT_TYPE),
            "request": first.get(RAW_REQUEST),
            "response": first.get(RAW_RESPONSE),
        }
        if first.get(ROW) is not None:
            columns = [
                c for c in first if c not in meta and any(r.get(c) is not None for r in rows)
            ]
            data = [[r.get(c) for c in columns] for r in rows]
            out["request"] = json.dumps(
                {"dataframe_split": {"columns": columns, "data": data}}, default=_json_default
            )
            out["response"] = json.dumps({"predictions": [r.get(PREDICTION) for r in rows]})
        return out

    for row in table.to_pylist():
        if current and (row.get(ROW) in (None, 0) or row[REQUEST_ID] != current[0][REQUEST_ID]):
            yield record(current)
            current = []
        current.append(row)
    if current:
        yield record(current)


def read_request_log(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every request under ``directory`` as a record of :data:`COLUMNS`, in time order (both
    layouts; from row segments the request body is rebuilt as ``dataframe_split``). A helper for
    tests and scripts; monitoring reads windows with :func:`read_rows`."""
    out: list[dict[str, Any]] = []
    for path in segments(directory):
        if not is_rows_segment(path):
            out.extend(_legacy_records(path))
            continue
        if path.suffix == ".jsonl":
            table = read_jsonl_rows([path])
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        if table is not None:
            out.extend(_rows_records(table))
    out.sort(key=lambda r: r["ts"])
    return out


@dataclass
class Window:
    """The rows of a window of a request log: input columns, ``__prediction__`` and
    ``__request_id__`` (a pandas DataFrame), and notes on how it was read."""

    frame: Any
    notes: list[str] = field(default_factory=list)
    skipped: int = 0


def _filter(version: str | None, since: float | None) -> Any:
    import pyarrow.compute as pc

    condition = pc.field(STATUS) == 200
    condition &= pc.field(ROW).is_valid()
    if version is not None:
        condition &= pc.field(VERSION) == str(version)
    if since is not None:
        condition &= pc.field(TS) >= _stamp(since)
    return condition


def _stamp(since: float) -> Any:
    import pyarrow as pa

    return pa.scalar(int(since * 1_000_000), type=pa.timestamp("us", tz="UTC"))


def _wanted(names: Iterable[str], *, version: bool = False) -> list[str]:
    """The columns monitoring reads: input columns, then the prediction and the request id (and
    the version, for a read shared by monitors of several versions)."""
    names = list(names)
    features = [c for c in names if c not in META]
    extra = (PREDICTION, REQUEST_ID, VERSION) if version else (PREDICTION, REQUEST_ID)
    return features + [c for c in extra if c in names]


def _scan(
    paths: list[Path], version: str | None, since: float | None, *, keep_version: bool = False
) -> tuple[Any, int]:
    """The matching rows of row segments as one pyarrow table (input columns, prediction, request
    id), and how many rows did not match (counted only when none did: for the error message)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    tables = []
    parquet = [p for p in paths if p.suffix == ".parquet"]
    jsonl = [p for p in paths if p.suffix == ".jsonl"]
    condition = _filter(version, since)
    if parquet:
        schema = pa.unify_schemas(
            [pq.read_schema(p) for p in parquet], promote_options="permissive"
        )
        dataset = ds.dataset([str(p) for p in parquet], schema=schema, format="parquet")
        columns = _wanted(schema.names, version=keep_version)
        tables.append(dataset.to_table(columns=columns, filter=condition))
    if jsonl:
        table = read_jsonl_rows(jsonl)
        if table is not None and STATUS in table.column_names:
            if ROW not in table.column_names:  # only metadata rows were logged
                table = table.append_column(ROW, pa.nulls(table.num_rows, pa.int32()))
            columns = _wanted(table.column_names, version=keep_version)
            tables.append(table.filter(condition).select(columns))
    tables = [t for t in tables if t.num_rows]
    if not tables:
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in parquet)
        if jsonl:
            total += sum(_complete_lines(p).count(b"\n") for p in jsonl)
        return None, total
    if len(tables) == 1:
        return tables[0], 0
    return pa.concat_tables(tables, promote_options="permissive"), 0


_SHARED: ContextVar[dict[tuple[str, float | None], tuple[Any, int]] | None] = ContextVar(
    "steward_reqlog_shared", default=None
)


@contextmanager
def shared_reads() -> Iterator[None]:
    """Within this block, a request log's window is scanned once for every version read from it
    with the same ``since`` (the monitors of one ``steward monitor run`` share a clock), and
    filtered on the version in memory."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _shared_scan(
    directory: str | os.PathLike[str], paths: list[Path], version: str | None, since: float | None
) -> tuple[Any, int]:
    cache = _SHARED.get()
    if cache is None:
        return _scan(paths, version, since)
    key = (str(Path(directory).resolve()), since)
    if key not in cache:
        cache[key] = _scan(paths, None, since, keep_version=True)
    table, skipped = cache[key]
    if table is None:
        return None, skipped
    if version is not None:
        import pyarrow.compute as pc

        mine = table.filter(pc.equal(table[VERSION], str(version)))
        skipped += table.num_rows - mine.num_rows
        table = mine
    table = table.drop_columns([VERSION])
    return (table, skipped) if table.num_rows else (None, skipped)


def _may_hold(paths: list[Path], since: float) -> list[Path]:
    """The segments that may hold rows logged at or after ``since``: a segment is written
    before the same process opens its next one, so when that next one was opened before
    ``since``, every row of the earlier one is older (names carry the start time and pid)."""
    by_writer: dict[str, list[tuple[datetime, Path]]] = {}
    for path in paths:
        parts = path.name.split(".")[0].split("-")  # requests, stamp, pid, n
        try:
            started = datetime.strptime(parts[1], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except (IndexError, ValueError):
            return paths  # a name this reader did not write: read everything
        by_writer.setdefault(parts[2], []).append((started, path))
    keep = set(paths)
    for written in by_writer.values():
        written.sort(key=lambda pair: (pair[0], pair[1].name))
        for (_, path), (next_started, _) in itertools.pairwise(written):
            if next_started.timestamp() < since:
                keep.discard(path)
    return [p for p in paths if p in keep]


def read_rows(
    directory: str | os.PathLike[str], version: str | None = None, since: float | None = None
) -> Window:
    """The rows of successful requests with a logged payload under ``directory``: only those
    ``version`` answered, when given, and only those logged at or after ``since`` (UNIX time),
    when given. Row segments are scanned as columns (the filter pushed into the Parquet reader);
    0.1.0 segments are read request by request, and a note says so."""
    import pandas as pd

    paths = segments(directory)
    if since is not None:
        paths = _may_hold(paths, since)
    rows = [p for p in paths if is_rows_segment(p)]
    legacy = [p for p in paths if not is_rows_segment(p)]
    frames: list[pd.DataFrame] = []
    notes: list[str] = []
    skipped = 0
    if rows:
        table, skipped = _shared_scan(directory, rows, version, since)
        if table is not None:
            # Columns of other versions' models (null in every row here) are not this one's.
            keep = [c for c in table.column_names if table[c].null_count < table.num_rows]
            frames.append(table.select(keep).to_pandas())
    if legacy:
        frame, dropped = _legacy_rows(legacy, version, since)
        skipped += dropped
        if frame is not None:
            frames.append(frame)
        notes.append(
            f"{len(legacy)} request-log segment(s) in the 0.1.0 per-request format were read "
            "request by request (slow); segments written since 0.2.0 are columnar"
        )
    if not frames:
        return Window(None, notes, skipped)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return Window(frame, notes, skipped)


def _legacy_rows(
    paths: Iterable[Path], version: str | None, since: float | None
) -> tuple[Any, int]:
    """0.1.0 segments: each request's payload decoded on its own (as 0.1.0 read them)."""
    import pandas as pd

    frames = []
    skipped = 0
    for path in paths:
        for record in _legacy_records(path):
            if record.get("status") != 200 or not record.get("request"):
                skipped += 1
                continue
            if version is not None and str(record.get("version")) != str(version):
                skipped += 1
                continue
            if since is not None and datetime.fromisoformat(record["ts"]).timestamp() < since:
                skipped += 1
                continue
            try:
                columns, values = _table_of(json.loads(record["request"]), None)
                rows = pd.DataFrame(values, columns=columns)
                answer = json.loads(record["response"] or "{}")
                predictions = answer.get("predictions") if isinstance(answer, dict) else answer
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                skipped += 1
                continue
            if isinstance(predictions, list) and len(predictions) == len(rows):
                rows[PREDICTION] = predictions
            rows[REQUEST_ID] = record["request_id"]
            frames.append(rows)
    if not frames:
        return None, skipped
    return pd.concat(frames, ignore_index=True), skipped


def window_bytes(directory: str | os.PathLike[str], since: float | None = None) -> int:
    """An upper bound of the memory a window of the log takes as a DataFrame: the rows of every
    segment that may hold it, 8 bytes a column (without reading any row)."""
    import pyarrow.parquet as pq

    paths = segments(directory)
    if since is not None:
        paths = _may_hold(paths, since)
    total = 0
    for path in paths:
        if path.suffix == ".parquet":
            meta = pq.ParquetFile(path).metadata
            total += meta.num_rows * meta.num_columns * 8
        else:
            total += path.stat().st_size * 2  # parsed JSON: about twice the text
    return total


def iter_window(
    directory: str | os.PathLike[str],
    version: str | None = None,
    since: float | None = None,
    batch_rows: int = 100_000,
) -> Iterator[Any]:
    """The window of :func:`read_rows` as DataFrames of at most ``batch_rows`` rows, read one
    after the other (memory bounded by a batch and a segment, whatever the window's size)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    paths = segments(directory)
    if since is not None:
        paths = _may_hold(paths, since)
    condition = _filter(version, since)
    for path in paths:
        if not is_rows_segment(path):
            frame, _ = _legacy_rows([path], version, since)
            if frame is not None:
                yield frame
            continue
        if path.suffix == ".parquet":
            schema = pq.read_schema(path)
            batches = ds.dataset(str(path), format="parquet").to_batches(
                columns=_wanted(schema.names), filter=condition, batch_size=batch_rows
            )
            for batch in batches:
                if batch.num_rows:
                    yield batch.to_pandas()
            continue
        table = read_jsonl_rows([path])
        if table is None or ROW not in table.column_names:
            continue
        table = table.filter(condition).select(_wanted(table.column_names))
        for start in range(0, table.num_rows, batch_rows):
            yield table.slice(start, batch_rows).to_pandas()
