"""The edge agent: a device's long-running process that serves the installed model and follows
its channel.

On start it takes the state folder's lock (one agent per folder), recovers what a killed run
left (:meth:`Installer.recover`), loads and health-checks the ``current`` install and serves it
(:mod:`.serve`: MLflow's scoring protocol and ``/status``). Then, every ``interval`` (each wait
drawn from ``interval * (1 ± jitter)``, so a fleet does not check in step), it refreshes the
channel's metadata through python-tuf's updater (:class:`ChannelReader`). A newer release is
downloaded (verified against its metadata), unpacked into a new folder, health-checked on the
model's input example and on its serving input example through the scoring protocol, and only
then committed: ``current`` moves, the loaded model replaces the served one in one assignment
(requests in flight finish on the old model), and the previous folder is kept until the next
update.

Nothing refused is installed, and the agent keeps serving what it has:

- the channel's metadata refused (an attack, or a channel left unsigned): recorded with
  python-tuf's reason, checked again at the next interval;
- a bundle refused (its bytes do not match the metadata): recorded, tried again after
  ``interval * 2**attempts`` (at most an hour), in case a mirror repairs it;
- a bundle that fails its health check: recorded and not tried again (its bytes are fixed by the
  metadata, so is the outcome); the next release is;
- a release during whose install the agent died twice (killed, out of memory): not tried again;
- the channel unreachable: recorded, tried again at the next interval.

State folder (``--state-dir``)::

    agent.lock                the lock one running agent holds
    device.json               the device's id (made on the first start unless --device-id)
    current, releases/        the installs (see install.py)
    status.json               installed release, last check, last refusal, failed releases
    events.jsonl              one JSON line per event (start, install, refusal, ...); rotated
                              to events.jsonl.1 past 1 MiB
    tuf/metadata/             the trusted metadata (what refuses rollbacks), tuf/downloads/
    stats/                    the statistics' spool and state (stats.py), when they are on

For tests, ``MLFLOW_STEWARD_EDGE_AGENT_PAUSE=STEP[:RELEASE]`` (``install``, ``swap`` or
``commit``) makes the agent stop at that step of an install (of that release only), writing
``paused-<step>`` in the state folder, until it is killed.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import importlib
import json
import logging
import os
import random
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mlflow_steward.deployment.edge.channel import Release, write_whole
from mlflow_steward.deployment.edge.install import Installed, Installer, health_check
from mlflow_steward.deployment.edge.serve import JSON, ModelServer, Serving, answer
from mlflow_steward.env import EDGE_AGENT_PAUSE_ENV as PAUSE_ENV
from mlflow_steward.errors import DeploymentError

_logger = logging.getLogger("mlflow_steward.edge.agent")

STATISTICS_MODULE = "mlflow_steward.deployment.edge.stats"
LOCK = "agent.lock"
DEVICE = "device.json"
EVENTS = "events.jsonl"
EVENTS_MAX_BYTES = 1 << 20
SERVING_INPUT_EXAMPLE = "serving_input_example.json"
#: The longest the loop sleeps between two statistics ticks.
TICK_SECONDS = 5.0
#: The longest wait before a refused bundle is downloaded again.
MAX_BACKOFF = 3600.0
#: After the agent died this many times while installing one release, it is not tried again.
MAX_DEATHS = 2
#: The device's health: of the last HEALTH_WINDOW predictions the served release answered, at
#: least HEALTH_MIN_REQUESTS and more than MAX_ERROR_RATE of them server errors (HTTP 5xx: the
#: model raised) is ``failing``. A client's bad request (4xx) is not the model's failure.
HEALTH_WINDOW = 20
HEALTH_MIN_REQUESTS = 5
MAX_ERROR_RATE = 0.5
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Watched:
    """The served model, noting whether each of its last predictions raised (the device's
    health). MLflow's scoring answers a model that raises with HTTP 400, as it answers a bad
    request: only here can the two be told apart. A bounded deque: appends are atomic, no lock
    on the request path."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.metadata = model.metadata
        self.outcomes: collections.deque[bool] = collections.deque(maxlen=HEALTH_WINDOW)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        try:
            answered = self.model.predict(data, params=params)
        except BaseException:
            self.outcomes.append(True)
            raise
        self.outcomes.append(False)
        return answered

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def health(self) -> dict[str, Any]:
        """``{"health": "healthy" | "failing", "recent": {...}}``."""
        recent = list(self.outcomes)
        errors = sum(recent)
        failing = len(recent) >= HEALTH_MIN_REQUESTS and errors > MAX_ERROR_RATE * len(recent)
        return {
            "health": "failing" if failing else "healthy",
            "recent": {"predictions": len(recent), "errors": errors},
        }


class Agent:
    """One device's agent on ``channel``, trusting ``trusted_root``, keeping its state in
    ``state_dir`` and serving on ``host``:``port``. ``statistics`` (optional, an
    :class:`~mlflow_steward.deployment.edge.stats.EdgeStatistics` or anything with its
    methods) is told about every successful prediction (``observe(frame, "NAME/VERSION")``),
    ticked in every loop iteration (``tick()``, at least every few seconds), given the device's
    report when it changes (``report(dict)``) and closed at stop (``close()``)."""

    def __init__(
        self,
        *,
        channel: str,
        trusted_root: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        port: int,
        host: str = "127.0.0.1",
        group: str | None = None,
        device_id: str | None = None,
        interval: float = 30.0,
        jitter: float = 0.2,
        statistics: Any = None,
    ) -> None:
        from mlflow_steward.deployment.edge.reader import ChannelReader

        if not interval > 0:
            raise DeploymentError(f"--interval {interval:g}s: the interval must be more than 0")
        if not 0 <= jitter < 1:
            raise DeploymentError(
                f"--jitter {jitter:g}: use a fraction from 0 up to (not including) 1; 0.2 draws "
                "each wait from the interval +-20%"
            )
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        _check_root(trusted_root)
        self.reader = ChannelReader(channel, trusted_root, str(self.state))
        self.installer = Installer(self.state)
        self.channel = channel
        self.host, self.port = host, port
        self.group = group
        self.interval, self.jitter = float(interval), float(jitter)
        self.device_id = self._device_id(device_id)
        self.server = ModelServer(self.status)
        self.statistics: Any = None
        self.use_statistics(statistics)
        self.stopping = threading.Event()
        self.started = _now()
        self.checks = 0
        self.last_check: dict[str, Any] | None = None
        persisted = self.installer.status()
        self.last_refusal: dict[str, Any] | None = persisted.get("last_refusal")
        self.failed: dict[str, dict[str, Any]] = dict(persisted.get("failed_releases") or {})
        self._retry_at: dict[str, float] = {}
        self._lock: IO[str] | None = None
        self._tick_errors = 0
        #: A newer release the channel has that its staged rollout has not reached this
        #: device with yet (``None``: none).
        self.waiting: dict[str, Any] | None = None
        self._reported: dict[str, Any] | None = None

    def use_statistics(self, statistics: Any) -> None:
        self.statistics = statistics
        self.server.statistics = statistics

    # -- what the agent reports ------------------------------------------------------------------

    def say(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    def status(self) -> dict[str, Any]:
        """What ``GET /status`` answers."""
        serving = self.server.serving
        return {
            "device_id": self.device_id,
            "group": self.group,
            "channel": self.reader.url,
            "pid": os.getpid(),
            "started": self.started,
            "installed": serving.describe() if serving is not None else None,
            **self._health(),
            "waiting": self.waiting,
            "runtime": serving.runtime if serving is not None else None,
            "last_check": self.last_check,
            "last_refusal": self.last_refusal,
            "failed_releases": sorted(self.failed.values(), key=lambda f: f["release"]["release"]),
            "checks": self.checks,
            "interval": self.interval,
            "statistics": self._statistics_state(),
            "statistics_errors": self.server.statistics_errors + self._tick_errors,
        }

    def _health(self) -> dict[str, Any]:
        """The served model's health: ``failing`` when, of its last :data:`HEALTH_WINDOW`
        predictions, at least :data:`HEALTH_MIN_REQUESTS` and more than :data:`MAX_ERROR_RATE`
        of them raised."""
        serving = self.server.serving
        if serving is None:
            return {"health": "no model"}
        watched = serving.model
        return watched.health() if isinstance(watched, _Watched) else {"health": "healthy"}

    def _statistics_state(self) -> dict[str, Any] | None:
        """``None`` without statistics; else what they report of themselves (``state()``)."""
        if self.statistics is None:
            return None
        state = getattr(self.statistics, "state", None)
        try:
            return dict(state()) if callable(state) else {}
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _report(self) -> None:
        """Tell the statistics (which upload it as the device's report) what this device serves,
        how healthy it is, which release waits for its rollout step and how its last check
        went; only when that changed."""
        report = getattr(self.statistics, "report", None)
        if not callable(report):
            return
        serving = self.server.serving
        check = self.last_check or {}
        failing = check.get("result") in ("refused", "failed", "skipped")
        document = {
            "model": serving.name if serving else None,
            "version": serving.version if serving else None,
            "release": serving.release if serving else None,
            **self._health(),
            "waiting": self.waiting,
            "channel": self.reader.url,
            "last_check": check.get("result"),
            "update_failed": {
                "release": check.get("release"),
                "reason": check.get("reason"),
            }
            if failing
            else None,
        }
        if document == self._reported:
            return
        self._reported = document
        try:
            report(document)
        except Exception:
            self._tick_errors += 1
            _logger.exception("statistics failed to take the device's report")

    def _event(self, event: str, **fields: Any) -> None:
        path = self.state / EVENTS
        line = json.dumps({"time": _now(), "event": event, **fields}, default=str) + "\n"
        try:
            if path.exists() and path.stat().st_size > EVENTS_MAX_BYTES:
                os.replace(path, path.with_name(EVENTS + ".1"))
            with open(path, "a") as f:
                f.write(line)
        except OSError as exc:  # a full disk must not stop the serving
            _logger.warning("cannot write %s: %s", path, exc)

    # -- start and stop --------------------------------------------------------------------------

    def _device_id(self, given: str | None) -> str:
        path = self.state / DEVICE
        try:
            stored = json.loads(path.read_text()).get("device_id")
        except (OSError, ValueError, AttributeError):
            stored = None
        device = given or stored or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        if not _DEVICE_ID.match(device):
            raise DeploymentError(
                f"device id {device!r}: use letters, digits, '.', '_' and '-' (up to 128)"
            )
        if device != stored:
            write_whole(path, json.dumps({"device_id": device}).encode())
        return device

    def _take_lock(self) -> None:
        lock = open(self.state / LOCK, "a")  # noqa: SIM115 -- held until stop()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise DeploymentError(
                f"another agent is running on {self.state} (it holds {LOCK}); give each agent "
                "its own --state-dir"
            ) from None
        self._lock = lock

    def start(self) -> None:
        """Take the lock, recover, listen, then load and serve the current install."""
        self._take_lock()
        try:
            self.server.start(self.host, self.port)
        except OSError as exc:
            self._release_lock()
            raise DeploymentError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = self.server.port
        self._event("started", device_id=self.device_id, group=self.group, pid=os.getpid())
        self.say(
            f"agent {self.device_id} listening on http://{self.host}:{self.port}, "
            f"following {self.reader.url} every {self.interval:g}s"
        )
        self._recover()

    def _recover(self) -> None:
        for marker in self.state.glob("paused-*"):
            marker.unlink(missing_ok=True)
        removed = self.installer.recover()
        current = self.installer.current()
        status = self.installer.status()
        attempting = status.get("attempting")
        if removed:
            self._event("recovered", removed=removed)
            self.say(f"removed what an interrupted install left: {', '.join(removed)}")
        if attempting is not None:
            self._interrupted(attempting, current)
        if current is not None:
            self._serve_installed(current)
        self._report()

    def _interrupted(self, attempting: dict[str, Any], current: Installed | None) -> None:
        """The last run died while installing ``attempting``: count it, unless it got as far
        as the switch (then it is installed)."""
        release = attempting["release"]
        if current is not None and current.release == release:
            self.installer.record(attempting=None)
            return
        deaths = int(attempting.get("deaths", 0)) + 1
        self._event("interrupted", release=release, deaths=deaths)
        if deaths < MAX_DEATHS:
            self.installer.record(attempting={"release": release, "deaths": deaths})
            return
        self.installer.record(attempting=None)
        message = f"the agent stopped {deaths} times while installing it"
        self._fail(Release(**release), "interrupted", message, final=True)

    def _serve_installed(self, current: Installed) -> None:
        release = current.release or {}
        try:
            model = health_check(current)
        except DeploymentError as exc:
            self._event("broken-install", folder=current.folder.name, reason=str(exc))
            self.say(f"the installed {current.folder.name} fails its health check: {exc}")
            return
        serving = Serving(
            _Watched(model),
            str(current.manifest["model"]),
            str(current.manifest["version"]),
            int(release.get("release", 0)),
        )
        self.server.swap(serving)
        self._event("serving", **serving.describe())
        self.say(f"serving {serving.name} v{serving.version} (release {serving.release})")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def stop(self) -> None:
        self.server.stop()
        close = getattr(self.statistics, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:
                _logger.warning("statistics failed to close: %s", exc)
        self._event("stopped")
        self.say("agent stopped")
        self._release_lock()

    def run(self) -> int:
        """Start, check the channel until SIGTERM or SIGINT, stop. Returns the exit code."""
        self.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())
        try:
            self.loop()
        finally:
            self.stop()
        return 0

    # -- the loop --------------------------------------------------------------------------------

    def next_wait(self) -> float:
        return self.interval * (1 + random.uniform(-self.jitter, self.jitter))

    def loop(self) -> None:
        due = time.monotonic()
        while not self.stopping.is_set():
            if time.monotonic() >= due:
                self.check()
                due = time.monotonic() + self.next_wait()
            self._tick()
            self._report()  # when the health changed
            self.stopping.wait(max(0.0, min(TICK_SECONDS, due - time.monotonic())))

    def _tick(self) -> None:
        if self.statistics is None:
            return
        try:
            self.statistics.tick()
        except Exception:
            self._tick_errors += 1
            if self._tick_errors == 1:
                _logger.exception("statistics failed to tick (reported once)")

    def check(self) -> dict[str, Any]:
        """One check of the channel (and an update when there is a newer release); returns the
        check's record (``last_check``)."""
        self.checks += 1
        started = time.perf_counter()
        try:
            return self._check(started)
        except Exception as exc:  # the loop goes on, whatever a check meets
            _logger.exception("check failed")
            return self._checked(started, "error", error=f"{type(exc).__name__}: {exc}")

    def _check(self, started: float) -> dict[str, Any]:
        from mlflow_steward.deployment.edge.reader import ChannelRefused, ChannelUnreachable
        from mlflow_steward.deployment.edge.rollout import current_step, release_for

        try:
            releases = self.reader.releases()
        except ChannelUnreachable as exc:
            return self._checked(started, "unreachable", error=str(exc))
        except ChannelRefused as exc:
            self._refusal(None, exc.reason, str(exc))
            return self._checked(started, "refused", reason=exc.reason, error=str(exc))
        if not releases:
            self.waiting = None
            return self._checked(started, "empty")
        # A staged release reaches this device at its step: until then the newest release
        # that includes it is the one to run (the previous one, usually).
        now = time.time()
        chosen = release_for(self.device_id, releases, now)
        newest = releases[-1]
        self.waiting = None
        if chosen is None or newest.release > chosen.release:
            plan = newest.rollout or {}
            self.waiting = {
                "release": newest.release,
                "model": newest.model,
                "version": newest.version,
                "step": current_step(plan, now) if plan else None,
                "steps": plan.get("steps"),
            }
        serving = self.server.serving
        have = serving.release if serving is not None else 0
        if chosen is None:
            return self._checked(started, "waiting", release=newest.release)
        if chosen.release <= have:
            return self._checked(started, "current", release=chosen.release)
        if serving is not None and self._same_bundle(serving, chosen):
            return self._adopt(started, serving, chosen)
        failed = self.failed.get(str(chosen.release))
        if failed is not None and (
            failed["final"] or time.monotonic() < self._retry_at.get(str(chosen.release), 0.0)
        ):
            return self._checked(
                started, "skipped", release=chosen.release, reason=failed["reason"]
            )
        return self._update(started, chosen)

    def _same_bundle(self, serving: Serving, release: Release) -> bool:
        """Whether ``release`` is the bundle the device serves (published again: a halted
        rollout, a rollback to the version it runs)."""
        if (serving.name, serving.version) != (release.model, release.version):
            return False
        current = self.installer.current()
        installed = (current.release or {}) if current is not None else {}
        return bool(release.sha256) and installed.get("sha256") == release.sha256

    def _adopt(self, started: float, serving: Serving, release: Release) -> dict[str, Any]:
        """Take ``release`` as what the device runs without installing anything: its bundle is
        the one served (a device a halted rollout never reached stays as it is)."""
        from mlflow_steward.deployment.edge.install import RELEASE_FILE

        current = self.installer.current()
        if current is not None:
            write_whole(current.folder / RELEASE_FILE, json.dumps(release.to_dict()).encode())
        adopted = Serving(serving.model, serving.name, serving.version, release.release)
        self.server.swap(adopted)
        self._event("adopted", **adopted.describe(), previous=serving.describe())
        self.say(
            f"release {release.release} is the {serving.name} v{serving.version} served: "
            "nothing to install"
        )
        return self._checked(started, "adopted", release=release.release)

    def _update(self, started: float, release: Release) -> dict[str, Any]:
        from mlflow_steward.deployment.edge.reader import ChannelRefused, ChannelUnreachable

        self.say(f"release {release.release} ({release.model} v{release.version}): downloading")
        try:
            fetched = self.reader.fetch(release)
        except ChannelUnreachable as exc:
            return self._checked(started, "unreachable", release=release.release, error=str(exc))
        except ChannelRefused as exc:
            self._fail(release, exc.reason, str(exc), final=False)
            return self._checked(
                started, "refused", release=release.release, reason=exc.reason, error=str(exc)
            )
        if fetched is None:  # the channel emptied meanwhile
            return self._checked(started, "empty")
        self.installer.record(attempting={"release": release.to_dict(), "deaths": 0})
        try:
            installed = self.installer.install(
                fetched.path, release, check=self._serves_example, on_step=self._pause_at(release)
            )
        except DeploymentError as exc:
            self.installer.record(attempting=None)
            self._fail(release, "unhealthy", str(exc), final=True)
            return self._checked(
                started, "failed", release=release.release, reason="unhealthy", error=str(exc)
            )
        except Exception:  # not the release's fault (a full disk): tried again next time
            self.installer.record(attempting=None)
            raise
        new = Serving(_Watched(installed.model), release.model, release.version, release.release)
        previous = self.server.swap(new)
        self.installer.record(attempting=None)
        self._event("installed", **new.describe(), previous=previous and previous.describe())
        keep = {installed.folder.name}
        current_before = self._folder_of(previous)
        if current_before is not None:
            keep.add(current_before)
        self.installer.prune(keep)
        self.reader.forget()
        self.failed = {k: v for k, v in self.failed.items() if int(k) > release.release}
        self.installer.record(failed_releases=self.failed)
        self.say(
            f"installed and serving {new.name} v{new.version} (release {new.release})"
            + (f", was v{previous.version}" if previous is not None else "")
        )
        return self._checked(started, "installed", release=release.release)

    def _folder_of(self, serving: Serving | None) -> str | None:
        if serving is None:
            return None
        from mlflow_steward.deployment.edge.install import RELEASE_FILE

        matches = sorted(self.installer.releases.glob(f"{serving.release}-v{serving.version}*"))
        if not matches:  # an adopted release: the folder of the release first installed
            for folder in sorted(self.installer.releases.glob(f"*-v{serving.version}*")):
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    known = json.loads((folder / RELEASE_FILE).read_text())
                    if known.get("release") == serving.release:
                        matches.append(folder)
        return matches[-1].name if matches else None

    def _serves_example(self, installed: Installed) -> None:
        """The health check's second half: the model's serving input example, sent through the
        scoring protocol as a client would send it, must be answered."""
        example = installed.model_dir / SERVING_INPUT_EXAMPLE
        if not example.is_file():
            return
        schema = installed.model.metadata.get_input_schema()
        status, body, _ = answer(installed.model, schema, example.read_bytes(), JSON)
        if status != 200:
            raise DeploymentError(
                f"a request with its serving input example was answered HTTP {status}: "
                f"{body.decode('utf-8', 'replace')[:300]}"
            )

    def _pause_at(self, release: Release) -> Callable[[str], None]:
        """The install's step hook: the test-only pause (``STEP`` or ``STEP:RELEASE``)."""
        wanted, _, only = os.environ.get(PAUSE_ENV, "").partition(":")

        def step(name: str) -> None:
            if name == wanted and only in ("", str(release.release)):
                (self.state / f"paused-{name}").write_text(str(os.getpid()))
                self.say(f"paused at {name} ({PAUSE_ENV})")
                self.stopping.wait()

        return step

    # -- recording outcomes ----------------------------------------------------------------------

    def _refusal(self, release: Release | None, reason: str, error: str) -> None:
        refusal = {
            "time": _now(),
            "release": release.release if release is not None else None,
            "reason": reason,
            "error": error,
        }
        previous = self.last_refusal or {}
        self.last_refusal = refusal
        self.installer.record(last_refusal=refusal)
        if (previous.get("reason"), previous.get("release"), previous.get("error")) != (
            reason,
            refusal["release"],
            error,
        ):
            self._event("refused", **refusal)
            self.say(f"refused: {error}")

    def _fail(self, release: Release, reason: str, error: str, *, final: bool) -> None:
        key = str(release.release)
        attempts = int((self.failed.get(key) or {}).get("attempts", 0)) + 1
        # A new dict, not a change in place: /status reads it from the server's threads.
        self.failed = {**self.failed}
        self.failed[key] = {
            "release": release.to_dict(),
            "reason": reason,
            "error": error,
            "attempts": attempts,
            "final": final,
            "time": _now(),
        }
        if not final:
            self._retry_at[key] = time.monotonic() + min(self.interval * 2**attempts, MAX_BACKOFF)
        self.installer.record(failed_releases=self.failed)
        self._refusal(release, reason, error)

    def _checked(self, started: float, result: str, **detail: Any) -> dict[str, Any]:
        record = {
            "time": _now(),
            "result": result,
            "seconds": round(time.perf_counter() - started, 6),
            **detail,
        }
        previous = self.last_check or {}
        self.last_check = record
        changed = (previous.get("result"), previous.get("reason"), previous.get("release")) != (
            result,
            detail.get("reason"),
            detail.get("release"),
        )
        if changed:
            self._report()
            self.installer.record(last_check=record)
            if result not in ("installed", "refused"):  # those have their own event
                self._event("check", **record)
            if result in ("unreachable", "error"):
                self.say(f"channel {result}: {detail.get('error')}")
        return record


def _check_root(trusted_root: str | os.PathLike[str]) -> None:
    """A clear error when ``trusted_root`` is not a TUF root metadata file."""
    from mlflow_steward.deployment.edge import require_tuf

    require_tuf()
    from tuf.api.metadata import Metadata, Root

    try:
        data = Path(trusted_root).read_bytes()
    except OSError as exc:
        raise DeploymentError(f"cannot read the trusted root {trusted_root}: {exc}") from None
    try:
        root = Metadata.from_bytes(data)
    except Exception as exc:
        raise DeploymentError(
            f"{trusted_root} is not TUF metadata ({type(exc).__name__}: {exc}); give the "
            "channel's metadata/1.root.json"
        ) from None
    if not isinstance(root.signed, Root):
        raise DeploymentError(
            f"{trusted_root} is {root.signed.type} metadata, not root; give the channel's "
            "metadata/1.root.json"
        )


def load_statistics(
    agent: Agent,
    *,
    uploads: str | None = None,
    window_seconds: float = 300,
    spool_cap_bytes: int = 64 << 20,
) -> Any:
    """:class:`EdgeStatistics` (:mod:`mlflow_steward.deployment.edge.stats`) for ``agent``:
    windows of ``window_seconds`` spooled in the state folder (at most ``spool_cap_bytes``) and
    uploaded, with the device's reports, to ``uploads``. ``None``, with a message, when this
    steward has no statistics or they cannot start; a bad option is a :class:`DeploymentError`."""
    try:
        module = importlib.import_module(STATISTICS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name == STATISTICS_MODULE:
            agent.say("statistics: not available in this version of steward; serving without them")
        else:
            agent.say(f"statistics: need {exc.name} (not installed); serving without them")
        return None
    try:
        statistics = module.EdgeStatistics(
            agent.state,
            device_id=agent.device_id,
            group=agent.group,
            window_seconds=window_seconds,
            spool_cap_bytes=spool_cap_bytes,
            uploads=uploads,
        )
    except ValueError as exc:  # an option they refuse
        raise DeploymentError(f"statistics: {exc}") from None
    except Exception as exc:  # statistics are never a reason not to serve
        agent.say(f"statistics: cannot start ({type(exc).__name__}: {exc}); serving without them")
        return None
    where = f"uploaded to {uploads}" if uploads else "kept in the state folder (no --uploads)"
    agent.say(f"statistics: {window_seconds:g}s windows, {where}")
    return statistics


def run_agent(
    *,
    statistics: bool = True,
    uploads: str | None = None,
    window_seconds: float = 300,
    spool_cap_bytes: int = 64 << 20,
    **options: Any,
) -> int:
    """Run an agent in this process until SIGTERM (the ``steward edge agent`` command)."""
    logging.basicConfig(level=logging.WARNING)
    agent = Agent(**options)
    if statistics:
        agent.use_statistics(
            load_statistics(
                agent,
                uploads=uploads,
                window_seconds=window_seconds,
                spool_cap_bytes=spool_cap_bytes,
            )
        )
    elif uploads:
        agent.say("--uploads without statistics: nothing is uploaded (--no-statistics)")
    with contextlib.suppress(KeyboardInterrupt):
        return agent.run()
    return 0
