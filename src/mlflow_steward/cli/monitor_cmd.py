"""``steward monitor``: judge production data against a version's baseline."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext, echo_json


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
    type=click.Choice(["auto", "ks", "wasserstein", "psi", "jensen-shannon", "chi-square", "linf"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--correction",
    type=click.Choice(["benjamini-hochberg", "bonferroni", "none"]),
    default="benjamini-hochberg",
    show_default=True,
)
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--min-samples", type=int, default=100, show_default=True)
@click.option("--drift-share", type=float, default=0.3, show_default=True)
@click.option("--no-log", is_flag=True, help="Do not log an MLflow run nor tag the version.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check_cmd(
    obj: StewardContext,
    model_uri: str,
    data: str,
    method: str,
    correction: str,
    alpha: float,
    min_samples: int,
    drift_share: float,
    no_log: bool,
    as_json: bool,
) -> None:
    """Check MODEL_URI (models:/NAME@ALIAS) on DATA once. Exit 0 healthy, 1 drift, 2 not judged."""
    from mlflow_steward.monitoring.check import check

    result = check(
        obj.session(),
        model_uri,
        data,
        log=not no_log,
        method=method,
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
    codes = {"healthy": 0, "drift": 1}
    click.get_current_context().exit(codes.get(verdict.status, 2))
