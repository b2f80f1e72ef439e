"""Run the monitors of steward.yaml: once (``steward monitor run``, for cron, Airflow or a
Kubernetes CronJob) or on their schedules (``steward monitor watch``).

Each monitor run is isolated: a data source or detector that raises fails that run visibly
(status ``error``, its message on the result, the run recorded) and the other monitors still
run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlflow_steward.monitoring.monitors import (
    SINCE_LAST_RUN,
    Monitor,
    load_monitors,
    parse_alerters,
)
from mlflow_steward.monitoring.rules import apply_rules
from mlflow_steward.plugins.types import ActionContext, SourceContext
from mlflow_steward.records.monitor_runs import last_run, record_run

if TYPE_CHECKING:
    from mlflow_steward.plugins.services import StewardServices

_logger = logging.getLogger(__name__)


@dataclass
class MonitorRun:
    monitor: str
    model: str
    version: str | None
    status: str
    run_id: str | None = None
    drifted: list[str] = field(default_factory=list)
    share: float = 0.0
    quality: list[str] = field(default_factory=list)
    performance: dict[str, Any] | None = None
    columns: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MonitorRunner:
    def __init__(self, session: StewardServices, *, log: bool = True) -> None:
        self.session = session
        self.pm = session.pm
        self.config = session.config
        self.log = log
        self.monitors: dict[str, Monitor] = load_monitors(self.config, self.pm)
        self.alerters = parse_alerters(self.config, self.pm)

    def select(self, names: tuple[str, ...] = ()) -> list[Monitor]:
        from mlflow_steward.monitoring.monitors import require

        if not names:
            return list(self.monitors.values())
        return [require(self.monitors, n, self.config) for n in names]

    def _read(self, spec: Any, context: SourceContext, budget: int | None = None) -> Any:
        source, spec = next(iter(spec.items())) if isinstance(spec, dict) else ("files", spec)
        if budget is not None and source == "requests" and isinstance(spec, str):
            streaming = _streaming(self.session, spec, context, budget)
            if streaming is not None:
                return streaming
        return self.pm.hooks.data_sources()[source].read(spec, context)

    def read(
        self,
        monitor: Monitor,
        version: str,
        now: float,
        columns: Mapping[str, str] | None = None,
        model: str | None = None,
    ) -> Any:
        """The monitor's window of current data: a DataFrame, or a window to judge from sketches
        (a request log bigger than the memory budget, a data source's SketchedWindow)."""
        if monitor.window == SINCE_LAST_RUN:
            since = last_run(
                self.session.db_engine,
                monitor.name,
                self.session.workspace(),
            )
        else:
            since = now - float(monitor.window) if monitor.window else None  # a duration here
        return self._read(
            monitor.data,
            SourceContext(version, since, self.session, columns, model),
            monitor.memory_budget,
        )

    def run_one(self, monitor: Monitor, *, now: float | None = None) -> MonitorRun:
        from mlflow_steward.monitoring.check import (
            check_current,
            model_columns,
            resolve,
            version_baseline,
        )
        from mlflow_steward.monitoring.sketches import SketchedWindow, StreamingWindow

        started = time.perf_counter()
        now = time.time() if now is None else now
        name = monitor.model.removeprefix("models:/").split("@")[0].split("/")[0]
        out = MonitorRun(monitor.name, name, None, "error")
        try:
            out.model, out.version = resolve(self.session, monitor.model)
            # The baseline first: a data source reads only the columns the model takes.
            baseline = version_baseline(self.session, out.model, out.version)
            current = self.read(monitor, out.version, now, model_columns(baseline), out.model)
            if isinstance(current, SketchedWindow):
                out.rows = current.rows
            elif not isinstance(current, StreamingWindow):
                out.rows = len(current)
            labels = None
            if monitor.labels is not None:  # labels arrive late: all of them, any version
                labels = self._read(monitor.labels, SourceContext(None, None, self.session))
            result = check_current(
                self.session,
                out.model,
                out.version,
                current,
                log=self.log,
                labels=labels,
                baseline=baseline,
                **monitor.performance,
                **monitor.judge_settings(),
            )
            verdict = result.verdict
            out.status, out.run_id = verdict.status, result.run_id
            out.drifted, out.share, out.quality = (
                list(verdict.drifted),
                verdict.share,
                list(verdict.quality),
            )
            out.columns = [asdict(c) for c in verdict.columns]
            if isinstance(current, StreamingWindow):
                out.rows = max((c.n_current for c in verdict.columns), default=0)
            out.performance = verdict.performance
        except Exception as exc:
            out.status = "error"
            out.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            who = self.session.pm.plugin_in_traceback(exc)  # a plugin detector or data source
            if who is not None:
                out.error = f"plugin {who} failed: {out.error}"
            _logger.warning("monitor %s failed: %s", monitor.name, out.error)
        try:
            # Also when the version could not be resolved (alias deleted, registry down): the
            # rules then see status error, on which they may only alert.
            context = ActionContext(
                monitor=monitor,
                model=out.model,
                version=out.version,
                status=out.status,
                drifted=tuple(out.drifted),
                share=out.share,
                run_id=out.run_id,
                session=self.session,
                dry_run=monitor.dry_run,
                alerters=self.alerters,
                channels=self.pm.hooks.alerters(),
            )
            out.actions = apply_rules(context, self.pm.hooks.monitor_actions(), now)
        except Exception as exc:  # one monitor's failure must not stop the others
            out.error = (out.error + "; " if out.error else "") + (
                f"rules: {type(exc).__name__}: {exc}"
            )
            out.status = "error"
        out.seconds = time.perf_counter() - started
        try:
            record_run(
                self.session.db_engine,
                monitor=monitor.name,
                model=out.model,
                version=out.version,
                status=out.status,
                run_id=out.run_id,
                actions=out.actions,
                detail={"error": out.error, "drifted": out.drifted, "rows": out.rows},
                ts=now,
                workspace=self.session.workspace(),
            )
        except Exception as exc:
            _logger.warning("monitor %s: its run could not be recorded: %s", monitor.name, exc)
            out.error = (out.error + "; " if out.error else "") + f"not recorded: {exc}"
            out.status = "error"
        return out

    def run(
        self,
        names: tuple[str, ...] = (),
        progress: Callable[[str], None] | None = None,
        *,
        workers: int = 1,
    ) -> list[MonitorRun]:
        """Every selected monitor once, on one clock (windows end at the same time). Monitors
        that read the same data are run together, so a deployment's request log is scanned once
        for all of them (:func:`~mlflow_steward.deployment.onprem.reqlog.shared_reads`); with
        ``workers`` > 1, those groups run in a pool of that many processes."""
        from mlflow_steward.deployment.onprem.reqlog import shared_reads

        selected = self.select(names)
        now = time.time()
        groups = _by_data(selected)
        if workers > 1 and len(groups) > 1:
            return self._run_pool(selected, groups, workers, now, progress)
        results: dict[str, MonitorRun] = {}
        done = 0
        for group in groups:
            with shared_reads():
                for monitor in group:
                    done += 1
                    if progress:
                        progress(f"[{done}/{len(selected)}] {monitor.name}: {monitor.model}")
                    results[monitor.name] = self.run_one(monitor, now=now)
        return [results[m.name] for m in selected]

    def _run_pool(
        self,
        selected: list[Monitor],
        groups: list[list[Monitor]],
        workers: int,
        now: float,
        progress: Callable[[str], None] | None,
    ) -> list[MonitorRun]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: the parent holds database connections and MLflow's caches.
        setup = (
            self.session.registry_uri,
            self.session.tracking_uri,
            self.config,
            self.log,
        )
        results: dict[str, MonitorRun] = {}
        with ProcessPoolExecutor(
            max_workers=min(workers, len(groups)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=setup,
        ) as pool:
            futures = [pool.submit(_run_group, [m.name for m in g], now) for g in groups]
            for future in as_completed(futures):
                for result in future.result():
                    results[result.monitor] = result
                    if progress:
                        progress(
                            f"[{len(results)}/{len(selected)}] {result.monitor}: {result.status}"
                        )
        return [results[m.name] for m in selected]

    def watch(
        self,
        names: tuple[str, ...] = (),
        *,
        stop: threading.Event | None = None,
        report: Callable[[MonitorRun], None] | None = None,
        max_runs: int | None = None,
    ) -> int:
        """Run each monitor now and then every ``schedule``; until ``stop`` is set (or
        ``max_runs`` runs were made). Returns the number of runs."""
        stop = stop or threading.Event()
        selected = self.select(names)
        due: Mapping[str, float] = {m.name: time.monotonic() for m in selected}
        due = dict(due)
        runs = 0
        while not stop.is_set():
            for monitor in selected:
                if time.monotonic() >= due[monitor.name]:
                    result = self.run_one(monitor)
                    runs += 1
                    due[monitor.name] = time.monotonic() + monitor.schedule
                    if report:
                        report(result)
                    if max_runs is not None and runs >= max_runs:
                        return runs
            stop.wait(max(0.05, min(due.values()) - time.monotonic()))
        return runs


def _streaming(
    session: StewardServices, deployment: str, context: SourceContext, budget: int
) -> Any:
    """A request-log window whose exact judging would not fit ``budget`` (``EXACT_PATH_FACTOR``
    times its estimated size), to be judged from sketches as it streams; None when it fits (then
    it is read whole and judged exactly)."""
    from mlflow_steward.deployment.onprem import reqlog
    from mlflow_steward.monitoring.data import request_log_dir
    from mlflow_steward.monitoring.sketches import EXACT_PATH_FACTOR, StreamingWindow

    folder = request_log_dir(session, deployment)
    if not folder.is_dir():
        return None  # the source says why
    size = reqlog.window_bytes(folder, context.since)
    if size * EXACT_PATH_FACTOR <= budget:
        return None
    batch = max(1_000, min(1_000_000, budget // 2 // 256))  # rows of ~32 columns of 8 bytes
    return StreamingWindow(
        lambda: reqlog.iter_window(folder, context.version, context.since, batch),
        size,
        budget,
    )


def _by_data(monitors: list[Monitor]) -> list[list[Monitor]]:
    """Monitors grouped by the data they read (source and spec, window), in first-seen order."""
    import json

    groups: dict[str, list[Monitor]] = {}
    for monitor in monitors:
        key = json.dumps([monitor.data, monitor.window], sort_keys=True, default=str)
        groups.setdefault(key, []).append(monitor)
    return list(groups.values())


_WORKER: MonitorRunner | None = None


def _start_worker(registry_uri: str, tracking_uri: str, config: Any, log: bool) -> None:
    """A pool process's own session (its own connections and plugin manager: plugins registered
    in the parent process only are not seen here) and runner."""
    global _WORKER
    from mlflow_steward.lifecycle.session import StewardSession

    logging.basicConfig(level=logging.WARNING)
    session = StewardSession(registry_uri=registry_uri, tracking_uri=tracking_uri, config=config)
    _WORKER = MonitorRunner(session, log=log)


def _run_group(names: list[str], now: float) -> list[MonitorRun]:
    from mlflow_steward.deployment.onprem.reqlog import shared_reads

    assert _WORKER is not None
    with shared_reads():
        return [_WORKER.run_one(_WORKER.monitors[name], now=now) for name in names]
