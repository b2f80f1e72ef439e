"""``steward evidence``: what each governed promotion and deploy of a version rested on."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext, echo_json
from mlflow_steward.errors import StewardError


class EvidenceChanged(StewardError):
    """An evidence artifact no longer matches the digest recorded in its tag."""


@click.command()
@click.argument("model_uri")
@click.option("--verify", is_flag=True, help="Fail when an artifact's digest no longer matches.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def evidence(obj: StewardContext, model_uri: str, verify: bool, as_json: bool) -> None:
    """The evidence recorded for models:/NAME/VERSION: each governed promotion and deploy, every
    policy's verdict and the inputs it decided on (metrics and thresholds, approvals, content
    digest, requirements, baseline digest).

    With --verify, exit 1 naming every artifact whose sha256 differs from its steward.evidence.*
    tag (or that cannot be read)."""
    from mlflow_steward.cli.lineage_cmd import sources
    from mlflow_steward.lineage.evidence import evidence_index, read_evidence
    from mlflow_steward.lineage.records import resolve_version

    client, _ = sources(obj)
    name, version = resolve_version(client, model_uri)
    try:
        mv = client.get_model_version(name, version)
    except Exception as exc:
        raise StewardError(f"models:/{name}/{version} does not exist: {exc}") from None
    checked = [read_evidence(client, e) for e in evidence_index(dict(mv.tags or {}))]
    if as_json:
        echo_json({"model": name, "version": version, "evidence": checked})
    elif not checked:
        click.echo(
            f"models:/{name}/{version}: no evidence recorded (no governed promotion or deploy)"
        )
    for item in [] if as_json else checked:
        state = "ok" if item["ok"] else "CHANGED" if item["actual"] else "UNREADABLE"
        click.echo(f"{item.get('time')}  {item.get('action')} {item.get('on')}  [{state}]")
        click.echo(f"    {item['path']}  {item['sha256']}")
        for policy in (item.get("document") or {}).get("decision", {}).get("policies", []):
            verdict = "allow" if policy.get("allowed") else "DENY"
            options = ", ".join(f"{k}={v}" for k, v in sorted(policy.get("options", {}).items()))
            click.echo(
                f"    [{policy.get('policy')}] {verdict}: {policy.get('reason')}"
                + (f"  ({options})" if options else "")
            )
    if verify:
        bad = [item for item in checked if not item["ok"]]
        if bad:
            raise EvidenceChanged(
                f"models:/{name}/{version}: evidence does not verify: "
                + "; ".join(item["problem"] for item in bad)
            )
        if not as_json:
            click.echo(f"models:/{name}/{version}: {len(checked)} evidence artifact(s) verified")
