"""Statistics, not data: what an edge device keeps of its inputs, and how they reach a monitor.

On the device, :class:`EdgeStatistics` keeps mergeable sketches of every input column per
(model version, time window) (:mod:`mlflow_steward.monitoring.sketches`: KLL for numeric
columns, frequent items for categorical ones, counts and nulls; never a row). A closed window
is written to a bounded spool folder; spooled windows are uploaded when the destination is
reachable, each under a name fixed when it was spooled, so a window is uploaded exactly once
whatever fails in between. Nothing here raises into the agent: problems become counts and
notes in the next upload and in :meth:`EdgeStatistics.state`.

Device state (``state_dir``)::

    stats/spool/<model>/<version>/<start>--<device>--<token>.json   closed windows, to upload
    stats/state.json                    dropped windows, the device report, the last error

Uploads (a folder, ``file://`` or ``s3://bucket/prefix``)::

    stats/<model>/<version>/<start>--<device>--<token>.json   one closed window of one device
    stats/<model>/<version>/dropped--<device>.json            windows the device's spool cap
                                                              dropped (cumulative, overwritten)
    devices/<device>.json                                      the device's last report

``<start>`` is the window's start in UTC (``20261206T170000Z``); windows are aligned to the
epoch, so devices' windows line up. ``<token>`` tells apart the parts of one window written by
two runs of the agent (a restart inside a window).

On the reading side, :func:`read_uploads` merges a version's windows across devices (a group,
a start time) into one set of sketches that :func:`~mlflow_steward.monitoring.sketches.
judge_sketches` judges against a baseline's, and :func:`read_devices` lists device reports.

pandas, datasketches and boto3 are imported only when used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from mlflow_steward.deployment.edge.channel import write_whole
from mlflow_steward.errors import MonitoringError

if TYPE_CHECKING:
    from mlflow_steward.monitoring.sketches import ColumnSketch

log = logging.getLogger(__name__)

#: The window and report document format this steward writes and the newest it reads.
FORMAT = 1
MIB = 1 << 20
#: Rows waiting at which observe() turns them into sketches itself (tick() usually does): a
#: request pays that (tens of milliseconds) once in this many rows.
FLUSH_ROWS = 1024
#: Distinct notes kept per window (each with its count).
MAX_NOTES = 20
#: Seconds between upload attempts after a failure: doubles from the first, up to the last.
RETRY_SECONDS = (5.0, 300.0)
#: The longest window: a reader skips, unread, windows that started this long before ``since``.
MAX_WINDOW = 86400.0
#: A device's report is sent again after this many seconds (its last contact time).
HEARTBEAT_SECONDS = 60.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_WINDOW_FILE = re.compile(r"^(\d{8}T\d{6}Z)--(.+)--([0-9a-f]{8})\.json$")
_DROPPED_FILE = re.compile(r"^dropped--(.+)\.json$")
_STAMP = "%Y%m%dT%H%M%SZ"


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(_STAMP)


def _unstamp(stamp: str) -> float:
    return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC).timestamp()


def _check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r}: use letters, digits, '.', '_' and '-' (up to 128 characters, "
            "starting with a letter or digit): it is part of file and object names"
        )
    return value


# -- destinations ------------------------------------------------------------------------------


class UploadsUnreachable(Exception):
    """The uploads destination could not be written (network down, folder missing)."""


class _Folder:
    """A folder (a path or ``file://`` URI): objects are files, written whole by a rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def put(self, key: str, data: bytes) -> None:
        if not self.root.is_dir():
            raise UploadsUnreachable(f"the uploads folder {self.root} does not exist")
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_whole(path, data)
        except OSError as exc:
            raise UploadsUnreachable(f"cannot write {path}: {exc}") from None

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not self.root.is_dir():
            raise MonitoringError(f"the uploads folder {self.root} does not exist")
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


class _S3:
    """``s3://bucket/prefix`` through boto3 (``MLFLOW_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``
    for another endpoint): one ``put_object`` per object, atomic for readers."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not self.bucket:
            raise ValueError(f"uploads {uri!r}: expected s3://bucket/prefix")
        self.prefix = prefix.strip("/")
        self._client: Any = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def client(self) -> Any:
        if self._client is None:
            from mlflow_steward import s3

            # Short timeouts, one retry: an agent's loop must not hang on a dead network (the
            # window stays spooled and is tried again later).
            self._client = s3.client(connect_timeout=3, read_timeout=10, attempts=2)
        return self._client

    def put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise UploadsUnreachable(f"cannot write {self.uri}/{key}: {exc}") from None

    def keys(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        start = len(self._key(""))
        try:
            pages = self.client().get_paginator("list_objects_v2")
            found = [
                obj["Key"][start:]
                for page in pages.paginate(Bucket=self.bucket, Prefix=self._key(prefix))
                for obj in page.get("Contents", [])
            ]
        except (BotoCoreError, ClientError) as exc:
            raise MonitoringError(f"cannot read {self.uri}: {exc}") from None
        return sorted(k for k in found if "/" not in k[len(prefix) :])

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(
                self.client().get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            )
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"cannot read {self.uri}/{key}: {exc}") from None


def destination(uploads: str) -> _Folder | _S3:
    """The uploads destination ``uploads`` names: ``s3://bucket/prefix``, ``file://...`` or a
    folder path."""
    if not isinstance(uploads, str) or not uploads:
        raise ValueError(f"uploads {uploads!r}: expected a folder, file:// or s3://bucket/prefix")
    scheme = urlparse(uploads).scheme
    if scheme == "s3":
        if importlib.util.find_spec("boto3") is None:
            raise ValueError("s3:// uploads need boto3: pip install 'mlflow-steward[s3]'")
        return _S3(uploads)
    if scheme == "file":
        return _Folder(Path(unquote(urlparse(uploads).path)))
    if scheme and len(scheme) > 1:  # one letter: a Windows drive
        raise ValueError(
            f"uploads {uploads!r}: scheme {scheme}:// is not supported (a folder, file:// or "
            "s3://bucket/prefix)"
        )
    return _Folder(Path(uploads))


# -- the device side ---------------------------------------------------------------------------


@dataclass
class _Window:
    """One (model version, window) being sketched."""

    model: str
    version: str
    start: float
    end: float
    sketches: dict[str, Any] = field(default_factory=dict)
    rows: int = 0
    rejected: int = 0
    notes: Counter[str] = field(default_factory=Counter)

    def note(self, text: str, n: int = 1) -> None:
        if text in self.notes or len(self.notes) < MAX_NOTES:
            self.notes[text] += n


@dataclass
class _Schema:
    """A version's input columns and their kinds (``None`` until a value is seen)."""

    columns: tuple[str, ...]
    kinds: dict[str, str | None]


def _kind(column: Any) -> str:
    """The column's kind as monitoring's ``column_kind`` gives it, except that a column of
    mostly numbers with a stray string in it (the first rows a device sees may hold one) is
    numeric: the string is counted as missing, as later ones are."""
    import numbers

    from mlflow_steward.monitoring.sketches import CATEGORICAL, NUMERIC
    from mlflow_steward.monitoring.verdict import column_kind

    kind = column_kind(column)
    if kind == CATEGORICAL and column.dtype == object:
        present = column.dropna()
        share = present.map(
            lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)
        ).mean()
        if share > 0.5:
            return NUMERIC
    return kind


class EdgeStatistics:
    """Per-column sketches of the inputs an edge agent serves, spooled and uploaded.

    ``observe`` is called after every prediction, from any thread; ``tick`` from the agent's
    loop every few seconds; ``close`` at shutdown; ``report`` when the device's status changes.
    None of them raises: what goes wrong is counted, noted in the next window's upload and kept
    in :meth:`state`. ``clock`` is for tests (seconds since the epoch).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        device_id: str,
        group: str | None = None,
        window_seconds: float = 300,
        spool_cap_bytes: int = 64 * MIB,
        uploads: str | None = None,
        model: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device_id = _check_name("device id", device_id)
        self.group = None if group is None else _check_name("group", group)
        self.model = None if model is None else _check_name("model", model)
        if not (1 <= window_seconds <= MAX_WINDOW and float(window_seconds).is_integer()):
            raise ValueError(
                f"window_seconds {window_seconds!r}: a whole number of seconds from 1 to "
                f"{MAX_WINDOW:.0f} (a day)"
            )
        if spool_cap_bytes < 0:
            raise ValueError(f"spool_cap_bytes {spool_cap_bytes!r}: must be >= 0")
        self.window_seconds = float(window_seconds)
        self.spool_cap_bytes = int(spool_cap_bytes)
        self.uploads = uploads
        self._dest = destination(uploads) if uploads is not None else None
        self._clock = clock
        self.state_dir = Path(state_dir)
        self.home = self.state_dir / "stats"
        self.spool = self.home / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        # observe() only appends to _buffers under _lock; sketches change under _sketch_lock;
        # tick(), close() and report() run one at a time under _work_lock.
        self._lock = threading.Lock()
        self._sketch_lock = threading.Lock()
        self._work_lock = threading.RLock()
        self._buffers: dict[tuple[Any, float], list[Any]] = {}
        self._buffered = 0
        self._windows: dict[tuple[str, float], _Window] = {}
        self._schemas: dict[str, _Schema] = {}
        self._models: dict[str, tuple[str, str] | str] = {}
        self._problems: Counter[str] = Counter()
        self._failures = 0
        self._next_attempt = 0.0
        self._state = self._load_state()

    # -- observe -------------------------------------------------------------------------------

    def observe(self, frame: Any, version: str) -> None:
        """Count ``frame`` (the decoded input of one prediction) in the current window of
        ``version`` (``NAME/VERSION``, ``models:/NAME/VERSION``, or a version of the model given
        to the constructor or installed in ``state_dir``). About a microsecond: the frame is
        held by reference until the next tick (or until :data:`FLUSH_ROWS` rows wait) and never
        written, so the caller must not change it after this call (a copy would cost tens of
        microseconds a request)."""
        try:
            import pandas as pd

            # anything else is counted (as rejected, with a note) when it is sketched
            rows = len(frame.index) if isinstance(frame, pd.DataFrame) else 1
            now = self._clock()
            start = now - now % self.window_seconds
            with self._lock:
                self._buffers.setdefault((version, start), []).append(frame)
                self._buffered += rows
                full = self._buffered >= FLUSH_ROWS
            if full and self._sketch_lock.acquire(blocking=False):
                try:
                    self._flush()
                finally:
                    self._sketch_lock.release()
        except Exception as exc:  # never into the agent's request
            self._problem(f"observe failed: {type(exc).__name__}: {exc}")

    def _problem(self, text: str, n: int = 1) -> None:
        if text not in self._problems:
            log.warning("edge statistics: %s", text)
        if text in self._problems or len(self._problems) < MAX_NOTES:
            self._problems[text] += n

    def _model_of(self, version: Any) -> tuple[str, str] | str:
        """``(model, version)`` for what observe() was given, or the reason it cannot be filed."""
        if not isinstance(version, str):
            return f"observe() got version {version!r}: expected a string such as 'NAME/3'"
        found = self._models.get(version)
        if found is not None:
            return found
        text = version.removeprefix("models:/")
        model, sep, number = text.rpartition("/")
        if not sep:
            model = self.model or self._installed_model(text) or ""
        try:
            result: tuple[str, str] | str = (
                _check_name("model", model),
                _check_name("version", number),
            )
        except ValueError as exc:
            result = (
                f"observe() got version {version!r} but no model name is known: pass "
                f"'NAME/{number}' or EdgeStatistics(model=...)"
                if not model
                else f"observe() got version {version!r}: {exc}"
            )
        self._models[version] = result
        return result

    def _installed_model(self, version: str) -> str | None:
        """The model of the bundle installed in ``state_dir`` (the installer's ``current``),
        when it is this version."""
        try:
            manifest = json.loads(
                (self.state_dir / "current" / "bundle" / "manifest.json").read_text()
            )
        except (OSError, ValueError):
            return None
        if str(manifest.get("version")) == version and isinstance(manifest.get("model"), str):
            return str(manifest["model"])
        return None

    def _flush(self) -> None:
        """Turn the buffered frames into sketches (under _sketch_lock)."""
        with self._lock:
            buffers, self._buffers, self._buffered = self._buffers, {}, 0
        for (version, start), frames in buffers.items():
            model = self._model_of(version)
            if isinstance(model, str):
                self._problem(f"{model} (calls not counted)", len(frames))
                continue
            key = (f"{model[0]}/{model[1]}", start)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(
                    model[0], model[1], start, start + self.window_seconds
                )
            try:
                self._sketch(window, frames)
            except Exception as exc:
                window.rejected += len(frames)
                window.note(f"frames not counted: {type(exc).__name__}: {exc}", len(frames))

    def _sketch(self, window: _Window, frames: list[Any]) -> None:
        import pandas as pd

        good = []
        for frame in frames:
            if isinstance(frame, pd.DataFrame):
                if len(frame.index):
                    good.append(frame)
            else:
                window.rejected += 1
                window.note(f"observe() got a {type(frame).__name__}, not a pandas DataFrame")
        if not good:
            return
        key = f"{window.model}/{window.version}"
        schema = self._schemas.get(key)
        if schema is None:
            columns = tuple(str(c) for c in good[0].columns)
            schema = self._schemas[key] = _Schema(columns, dict.fromkeys(columns))
        expected = len(schema.columns)
        try:
            data = pd.concat(good, ignore_index=True)
            uniform = len(data.columns) == expected and all(
                len(f.columns) == expected for f in good
            )
            uniform = uniform and set(map(str, data.columns)) == set(schema.columns)
        except Exception:  # duplicate column names and the like: sort it out frame by frame
            uniform = False
        if not uniform:
            wanted = set(schema.columns)
            kept = []
            for frame in good:
                names = [str(c) for c in frame.columns]
                if len(names) == expected and set(names) == wanted:
                    kept.append(frame)
                    continue
                window.rejected += len(frame.index)
                missing = sorted(wanted - set(names))
                extra = sorted(set(names) - wanted)
                window.note(
                    "rows not counted: their columns differ from the version's first input ("
                    + "; ".join(
                        part
                        for part in (
                            f"missing {', '.join(missing)}" if missing else "",
                            f"extra {', '.join(extra)}" if extra else "",
                            "duplicate names" if len(set(names)) < len(names) else "",
                        )
                        if part
                    )
                    + ")",
                    len(frame.index),
                )
            if not kept:
                return
            data = pd.concat(kept, ignore_index=True)
        data.columns = [str(c) for c in data.columns]
        self._update(window, schema, data)
        window.rows += len(data.index)

    def _update(self, window: _Window, schema: _Schema, data: Any) -> None:
        import pandas as pd

        from mlflow_steward.monitoring.sketches import NUMERIC

        for name in schema.columns:
            column = data[name]
            if column.dtype == object:
                column = column.infer_objects()
            kind = schema.kinds[name]
            if kind is None and column.notna().any():
                kind = schema.kinds[name] = _kind(column)
            sketch = window.sketches.get(name)
            if sketch is None or (kind is not None and sketch.kind != kind):
                sketch = self._fresh(kind, sketch)
                window.sketches[name] = sketch
            if kind is None:
                sketch.nulls += len(column)
                continue
            if kind == NUMERIC and not pd.api.types.is_numeric_dtype(column):
                values = pd.to_numeric(column, errors="coerce")
                bad = int(values.isna().sum() - column.isna().sum())
                if bad:
                    window.note(
                        f"column {name}: values that are not numbers counted as missing", bad
                    )
                column = values
            sketch.update(column.to_numpy() if kind == NUMERIC else column)

    @staticmethod
    def _fresh(kind: str | None, previous: Any) -> Any:
        """An empty sketch of ``kind`` (categorical while unknown) keeping ``previous``'s nulls
        (a column that was all missing until now)."""
        from mlflow_steward.monitoring.sketches import CATEGORICAL, ColumnSketch

        sketch = ColumnSketch.empty(kind or CATEGORICAL)
        if previous is not None:
            sketch.nulls += previous.nulls
        return sketch

    # -- windows to the spool ------------------------------------------------------------------

    def tick(self) -> None:
        """Close the windows whose time has ended, spool them, keep the spool under its cap and
        upload what is spooled when the destination is reachable."""
        try:
            with self._work_lock:
                now = self._clock()
                self._spool_windows(lambda w: w.end <= now)
                self._upload(now)
        except Exception as exc:
            self._problem(f"tick failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Spool every window, the current ones too (a restart inside a window writes a second
        part of it, merged when read)."""
        try:
            with self._work_lock:
                self._spool_windows(lambda w: True)
        except Exception as exc:
            self._problem(f"close failed: {type(exc).__name__}: {exc}")

    def _spool_windows(self, closing: Callable[[_Window], bool]) -> None:
        with self._sketch_lock:
            self._flush()
            done = [key for key, window in self._windows.items() if closing(window)]
            windows = [self._windows.pop(key) for key in done]
        for window in sorted(windows, key=lambda w: w.start):
            if window.rows or window.rejected:
                self._write(window)
        if windows:
            self._enforce_cap()

    def _write(self, window: _Window) -> None:
        from mlflow_steward.monitoring.sketches import dumps

        document = {
            "format": FORMAT,
            "device": self.device_id,
            "group": self.group,
            "model": window.model,
            "version": window.version,
            "start": window.start,
            "end": window.end,
            "rows": window.rows,
            "rejected": window.rejected,
            "notes": [
                text if n == 1 else f"{text} ({n} times)" for text, n in window.notes.items()
            ],
            "sketches": json.loads(dumps(window.sketches)),
        }
        name = f"{_stamp(window.start)}--{self.device_id}--{secrets.token_hex(4)}.json"
        path = self.spool / window.model / window.version / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, json.dumps(document).encode())

    def _spooled(self) -> list[tuple[str, Path, int]]:
        """Spooled windows, oldest first: (path under the spool, path, size)."""
        found = []
        for path in self.spool.glob("*/*/*.json"):
            match = _WINDOW_FILE.match(path.name)
            if match is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                found.append(
                    (
                        match.group(1),
                        path.relative_to(self.spool).as_posix(),
                        path,
                        path.stat().st_size,
                    )
                )
        found.sort(key=lambda entry: (entry[0], entry[1]))
        return [(rel, path, size) for _, rel, path, size in found]

    def _enforce_cap(self) -> None:
        """Drop the oldest spooled windows until the spool fits its cap, counting them. The
        count is saved before the files go, so a crash in between neither loses nor repeats it."""
        spooled = self._spooled()
        total = sum(size for _, _, size in spooled)
        victims = []
        for rel, _, size in spooled:
            if total <= self.spool_cap_bytes:
                break
            victims.append(rel)
            total -= size
        if not victims:
            return
        for rel in victims:
            model, version, name = rel.split("/")
            stamp = name.split("--", 1)[0]
            per_window = self._state["dropped"].setdefault(f"{model}/{version}", {})
            per_window[stamp] = per_window.get(stamp, 0) + 1
        self._state["dropping"] = victims
        self._save_state()
        self._finish_dropping()

    def _finish_dropping(self) -> None:
        for rel in self._state.get("dropping", []):
            with contextlib.suppress(FileNotFoundError):
                (self.spool / rel).unlink()
        if self._state.get("dropping"):
            self._state["dropping"] = []
            self._save_state()

    # -- state ---------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"dropped": {}, "dropped_sent": {}, "dropping": []}
        path = self.home / "state.json"
        try:
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            state.update(loaded)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            self._problem(f"{path} was unreadable ({exc}): dropped-window counts start again")
        self._state = state
        self._finish_dropping()  # what a crash between counting and deleting left
        for leftover in self.spool.glob("*/*/.*"):
            leftover.unlink(missing_ok=True)  # a spool file a crash left half written
        return state

    def _save_state(self) -> None:
        write_whole(self.home / "state.json", json.dumps(self._state, sort_keys=True).encode())

    def state(self) -> dict[str, Any]:
        """What the statistics are doing: spooled windows and bytes, windows dropped by the spool
        cap (all time), the last upload and the last error, problems with observed input."""
        spooled = self._spooled()
        return {
            "spooled": len(spooled),
            "spool_bytes": sum(size for _, _, size in spooled),
            "dropped": sum(
                n for windows in self._state["dropped"].values() for n in windows.values()
            ),
            "last_upload": self._state.get("last_upload"),
            "last_error": self._state.get("last_error"),
            "failures": self._failures,
            "problems": dict(self._problems),
        }

    # -- uploads -------------------------------------------------------------------------------

    def _upload(self, now: float) -> None:
        """Upload spooled windows (oldest first), changed dropped counts and a due report. A
        window's object is named as its spool file, so uploading it again after a crash between
        the upload and the delete overwrites it: it is never counted twice."""
        if self._dest is None or now < self._next_attempt:
            return
        sent = 0
        try:
            for rel, path, _ in self._spooled():
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue
                self._dest.put(f"stats/{rel}", data)
                path.unlink(missing_ok=True)
                sent += 1
            for key, windows in self._state["dropped"].items():
                total = sum(windows.values())
                if self._state["dropped_sent"].get(key) == total:
                    continue
                model, version = key.split("/")
                ledger = {
                    "format": FORMAT,
                    "device": self.device_id,
                    "group": self.group,
                    "model": model,
                    "version": version,
                    "window_seconds": self.window_seconds,
                    "windows": windows,
                }
                self._dest.put(
                    f"stats/{key}/dropped--{self.device_id}.json", json.dumps(ledger).encode()
                )
                self._state["dropped_sent"][key] = total
                self._save_state()
                sent += 1
            report = self._state.get("report")
            last = self._state.get("report_sent")
            if report is not None and (last is None or now - last >= HEARTBEAT_SECONDS):
                document = {
                    **report,
                    "format": FORMAT,
                    "device": self.device_id,
                    "group": self.group,
                    "reported": self._state.get("report_at"),
                    "last_contact": now,
                    "statistics": self.state(),
                }
                self._dest.put(
                    f"devices/{self.device_id}.json", json.dumps(document, default=str).encode()
                )
                self._state["report_sent"] = now
                sent += 1
        except UploadsUnreachable as exc:
            self._failures += 1
            first, most = RETRY_SECONDS
            self._next_attempt = now + min(first * 2 ** (self._failures - 1), most)
            self._state.update(last_error=str(exc), last_error_at=now)
            self._save_state()
            return
        self._failures = 0
        self._next_attempt = 0.0
        if sent or self._state.get("last_error") is not None:  # a tick with nothing to send
            self._state.update(last_upload=now, last_error=None)  # writes nothing to disk
            self._save_state()

    def report(self, status: dict[str, Any]) -> None:
        """Send the device's report (``status``: ``version``, ``health`` and anything else
        JSON can hold) to ``<uploads>/devices/<device>.json`` now or, when the destination is
        unreachable, with the next upload; it is sent again every :data:`HEARTBEAT_SECONDS`
        with a new last contact time."""
        try:
            with self._work_lock:
                if not isinstance(status, dict):
                    self._problem(f"report() got a {type(status).__name__}, not a dict")
                    return
                now = self._clock()
                self._state.update(
                    report=json.loads(json.dumps(status, default=str)),
                    report_at=now,
                    report_sent=None,
                )
                self._save_state()
                self._upload(now)
        except Exception as exc:
            self._problem(f"report failed: {type(exc).__name__}: {exc}")


# -- the reading side --------------------------------------------------------------------------


@dataclass
class EdgeWindow:
    """A version's statistics merged across devices and windows: one sketch per column,
    the rows counted, the devices and (device, window) pairs that sent them, the windows
    devices dropped before they could send them, and what was left out or not counted."""

    sketches: dict[str, ColumnSketch]
    rows: int
    devices: list[str]
    windows: int
    dropped: int
    notes: list[str]


def _merge_into(
    merged: dict[str, ColumnSketch],
    sketches: dict[str, ColumnSketch],
    source: str,
    notes: list[str],
) -> None:
    from mlflow_steward.monitoring.sketches import ColumnSketch

    for name, sketch in sketches.items():
        have = merged.get(name)
        if have is None:
            merged[name] = sketch
        elif have.kind == sketch.kind:
            have.merge(sketch)
        elif sketch.count == 0:  # all missing where it came from: its kind was never known
            have.nulls += sketch.nulls
        elif have.count == 0:
            fresh = ColumnSketch.empty(sketch.kind)
            fresh.nulls = have.nulls
            fresh.merge(sketch)
            merged[name] = fresh
        else:
            notes.append(
                f"{source}: column {name} is {sketch.kind} there but {have.kind} elsewhere: "
                "left out"
            )


def read_uploads(
    uploads: str,
    model: str,
    version: str,
    *,
    group: str | None = None,
    since: float | None = None,
) -> EdgeWindow:
    """The statistics devices uploaded for ``model`` ``version``: every window (of devices in
    ``group``; ending after ``since``, seconds since the epoch) merged into one sketch per
    column. A file that cannot be read (corrupt, from a newer steward) is left out with a note;
    a destination that cannot be listed raises :class:`MonitoringError`."""
    from mlflow_steward.monitoring.sketches import loads

    try:
        dest = destination(uploads)
        _check_name("model", model)
        _check_name("version", str(version))
    except ValueError as exc:
        raise MonitoringError(str(exc)) from None
    prefix = f"stats/{model}/{version}/"
    merged: dict[str, ColumnSketch] = {}
    notes: list[str] = []
    rows = windows = dropped = 0
    devices: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for key in dest.keys(prefix):
        name = PurePosixPath(key).name
        window_file = _WINDOW_FILE.match(name)
        if window_file is None and not _DROPPED_FILE.match(name):
            continue
        if window_file and since is not None and _unstamp(window_file[1]) + MAX_WINDOW <= since:
            continue  # ended before since, whatever its length: not downloaded
        where = f"{dest.uri}/{key}"
        try:
            document = json.loads(dest.get(key))
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            found = int(document.get("format", 0))
        except (OSError, ValueError, TypeError) as exc:
            notes.append(f"{where} left out: not a steward statistics file ({exc})")
            continue
        if found > FORMAT:
            notes.append(
                f"{where} left out: format {found}, newer than this mlflow-steward reads "
                f"({FORMAT}): upgrade mlflow-steward"
            )
            continue
        if group is not None and document.get("group") != group:
            continue
        try:
            if window_file is None:
                counts = {str(stamp): int(n) for stamp, n in dict(document["windows"]).items()}
                dropped += sum(
                    n
                    for stamp, n in counts.items()
                    if since is None
                    or _unstamp(stamp) + float(document.get("window_seconds", 0)) > since
                )
                continue
            end = float(document["end"])
            if since is not None and end <= since:
                continue
            sketches = loads(json.dumps(document["sketches"]).encode(), "its sketch document")
            device = str(document["device"])
            part_rows = int(document["rows"])
        except MonitoringError as exc:
            notes.append(f"{where} left out: {exc}")
            continue
        except (KeyError, ValueError, TypeError) as exc:
            notes.append(
                f"{where} left out: not a steward statistics file ({type(exc).__name__}: {exc})"
            )
            continue
        _merge_into(merged, sketches, where, notes)
        rows += part_rows
        devices.add(device)
        seen.add((device, window_file.group(1)))
        notes.extend(f"{device}: {note}" for note in document.get("notes") or [])
        if document.get("rejected"):
            notes.append(
                f"{device}: {document['rejected']} rows not counted in the window from {window_file.group(1)}"
            )
    windows = len(seen)
    if not windows:
        notes.append(
            f"no statistics uploaded for {model} v{version}"
            + (f" by group {group}" if group is not None else "")
            + (" in the period asked" if since is not None else "")
        )
    if dropped:
        notes.append(f"{dropped} windows were dropped by devices' spool caps before upload")
    return EdgeWindow(merged, rows, sorted(devices), windows, dropped, notes)


def read_devices(uploads: str) -> list[dict[str, Any]]:
    """Every device's last report, by group then device id. A report that cannot be read is
    listed with its device id (from the file name) and ``error``."""
    try:
        dest = destination(uploads)
    except ValueError as exc:
        raise MonitoringError(str(exc)) from None
    out = []
    for key in dest.keys("devices/"):
        name = PurePosixPath(key).name
        if not name.endswith(".json"):
            continue
        try:
            document = json.loads(dest.get(key))
            if not isinstance(document, dict) or "device" not in document:
                raise ValueError("not a device report")
            if int(document.get("format", 0)) > FORMAT:
                raise ValueError(
                    f"format {document['format']}, newer than this mlflow-steward reads "
                    f"({FORMAT}): upgrade mlflow-steward"
                )
        except (OSError, ValueError, TypeError) as exc:
            document = {"device": name.removesuffix(".json"), "group": None, "error": str(exc)}
        out.append(document)
    return sorted(out, key=lambda d: (str(d.get("group") or ""), str(d["device"])))
