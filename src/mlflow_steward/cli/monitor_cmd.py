"""``steward monitor``: judge production data against a version's baseline."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext, echo_json
from mlflow_steward.monitoring import CORRECTIONS, PERFORMANCE_METRICS


@click.group()
def monitor() -> None:
    """Drift and data quality of registered versions against their baselines."""


@monitor.command("check")
@click.argument("model_uri")
@click.option(
    "--data",
    required=True,
    help="CSV/Parquet/JSONL file or glob, or an on-prem deployment's request-log folder.",
)
@click.option(
    "--method",
    default="auto",
    show_default=True,
    help="auto, a built-in detector (ks, wasserstein, psi, jensen-shannon, chi-square, linf) or "
    "a plugin's (`steward plugins`).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option of the --method detector (repeatable); read for the option's declared type, "
    "the others get their defaults.",
)
@click.option(
    "--correction",
    type=click.Choice(CORRECTIONS),
    default="benjamini-hochberg",
    show_default=True,
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--min-samples", type=int, default=100, show_default=True)
@click.option("--drift-share", type=float, default=0.3, show_default=True)
@click.option(
    "--labels",
    help="Labels that arrived later (request_id, label[, row]): also judge the realised "
    "performance of the served predictions (DATA must be a request log).",
)
@click.option(
    "--performance-metric",
    type=click.Choice(PERFORMANCE_METRICS),
    default="accuracy",
    show_default=True,
)
@click.option("--max-performance-drop", type=float, default=0.05, show_default=True)
@click.option("--no-log", is_flag=True, help="Do not log an MLflow run nor tag the version.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check_cmd(
    obj: StewardContext,
    model_uri: str,
    data: str,
    method: str,
    params: tuple[str, ...],
    correction: str,
    alpha: float,
    min_samples: int,
    drift_share: float,
    labels: str | None,
    performance_metric: str,
    max_performance_drop: float,
    no_log: bool,
    as_json: bool,
) -> None:
    """Check MODEL_URI (models:/NAME@ALIAS) on DATA once. Exit 0 healthy, 1 drift or degraded, 2 not judged."""
    from mlflow_steward.monitoring.check import check
    from mlflow_steward.monitoring.data import read_current

    detector_params = _detector_params(obj, method, params)
    result = check(
        obj.session(),
        model_uri,
        data,
        log=not no_log,
        labels=read_current(labels) if labels else None,
        performance_metric=performance_metric,
        max_performance_drop=max_performance_drop,
        method=method,
        params=detector_params,
        correction=correction,
        alpha=alpha,
        min_samples=min_samples,
        drift_share=drift_share,
    )
    verdict = result.verdict
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"models:/{result.model}/{result.version}: {verdict.status.upper()}")
        for f in verdict.columns:
            stat = "-" if f.statistic is None else f"{f.statistic:.4g}"
            p = "" if f.p_value is None else f" p={f.p_value:.3g}"
            click.echo(
                f"  {'DRIFT' if f.drifted else 'ok   '} {f.column:<20} {f.method:<32} "
                f"{stat}{p} (threshold {f.threshold:g}; n={f.n_reference}/{f.n_current})"
                + (f" {f.note}" if f.note else "")
            )
        for q in verdict.quality:
            click.echo(f"  finding: {q}")
        if result.run_id:
            click.echo(f"  logged: run {result.run_id} (experiment steward-monitoring)")
    codes = {"healthy": 0, "drift": 1, "degraded": 1}
    click.get_current_context().exit(codes.get(verdict.status, 2))


def _detector_params(obj: StewardContext, method: str, given: tuple[str, ...]) -> dict:
    """``--param KEY=VALUE`` checked against the --method detector's declared options (values
    read for their types, defaults filled in), before any data is read or anything logged."""
    from mlflow_steward.config import did_you_mean
    from mlflow_steward.errors import MonitoringError
    from mlflow_steward.plugins.options import check, parse_pairs

    try:
        pairs = parse_pairs(given, "--param")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None
    if method == "auto":
        if pairs:
            raise click.BadParameter(
                "--param sets options of the detector named by --method, not of auto",
                param_hint="--param",
            )
        return {}
    detectors = obj.pm.hooks.detectors()
    if method not in detectors:
        valid = sorted(detectors)
        raise MonitoringError(
            f"unknown detector {method!r}{did_you_mean(method, valid)}; use auto or one of "
            + ", ".join(valid)
        )
    try:
        return check(
            pairs,
            detectors[method].options,
            f"detector {method!r}",
            plugin=obj.pm.hooks.plugin_of("steward_detectors", method),
            text=True,
            none="(this detector takes no options)",
        )
    except ValueError as exc:
        raise MonitoringError(f"--param: {exc}") from None


def _print_run(result) -> None:
    head = (
        f"{result.monitor}: models:/{result.model}/{result.version or '?'} {result.status.upper()}"
    )
    if result.rows:
        head += f" ({result.rows} rows, {result.seconds:.2f}s)"
    click.echo(head)
    if result.error:
        click.echo(f"  error: {result.error}")
    if result.drifted:
        click.echo(f"  drifted columns: {', '.join(result.drifted)} (share {result.share:.2f})")
    for q in result.quality:
        click.echo(f"  finding: {q}")
    if result.run_id:
        click.echo(f"  logged: run {result.run_id} (experiment steward-monitoring)")
    for a in result.actions:
        mark = "" if a["ok"] else " FAILED"
        click.echo(f"  {a['action']}{mark}: {a['result']}")


@monitor.command("run")
@click.option("--monitor", "names", multiple=True, help="Only this monitor (repeatable).")
@click.option(
    "--no-log",
    is_flag=True,
    help="Do not log MLflow runs nor write the status tags. The rules still act (a monitor's "
    "`dry_run: true` makes them only report).",
)
@click.option(
    "--fail-on-drift",
    is_flag=True,
    help="Exit 1 when a monitor finds drift (or degraded performance).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Run the monitors in this many processes (monitors that read the same data run "
    "together, so a deployment's request log is read once).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def run_cmd(
    obj: StewardContext,
    names: tuple[str, ...],
    no_log: bool,
    fail_on_drift: bool,
    workers: int,
    as_json: bool,
) -> None:
    """Run the monitors of steward.yaml once (for cron, Airflow, a Kubernetes CronJob).

    Exit 0 when every monitor ran, 1 when one failed (its data source or detector raised; the
    others still ran), or found drift with --fail-on-drift."""
    import time

    from mlflow_steward.monitoring.runner import MonitorRunner

    runner = MonitorRunner(obj.session(), log=not no_log)
    if not runner.monitors:
        raise click.ClickException(
            f"no monitors in {obj.config.source or 'the configuration (no steward.yaml found)'}; "
            "add a `monitors:` section (see docs/monitoring.md)"
        )
    started = time.perf_counter()
    results = runner.run(
        names,
        progress=None if as_json else lambda m: click.echo(m, err=True),
        workers=workers,
    )
    total = time.perf_counter() - started
    if as_json:
        echo_json({"seconds": total, "runs": [r.to_dict() for r in results]})
    else:
        for result in results:
            _print_run(result)
        click.echo(
            f"{len(results)} monitor(s) in {total:.2f}s"
            + (f", {total / len(results):.2f}s per monitor" if results else "")
        )
    failed = any(r.status == "error" for r in results)
    drift = any(r.status in ("drift", "degraded") for r in results)
    click.get_current_context().exit(1 if failed or (fail_on_drift and drift) else 0)


@monitor.command("watch")
@click.option("--monitor", "names", multiple=True, help="Only this monitor (repeatable).")
@click.option("--max-runs", type=int, help="Stop after this many monitor runs.")
@click.pass_obj
def watch_cmd(obj: StewardContext, names: tuple[str, ...], max_runs: int | None) -> None:
    """Run the monitors on their `schedule:` until stopped (Ctrl-C, SIGTERM)."""
    import contextlib
    import signal
    import threading

    from mlflow_steward.monitoring.runner import MonitorRunner

    runner = MonitorRunner(obj.session())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for m in runner.select(names):
        click.echo(f"watching {m.name} ({m.model}) every {m.schedule:g}s", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        runner.watch(names, stop=stop, report=_print_run, max_runs=max_runs)
