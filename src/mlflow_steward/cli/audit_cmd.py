"""``steward audit``: read, verify and export the hash-chained audit log."""

from __future__ import annotations

import re
import sys

import click

from mlflow_steward.cli.main import StewardContext, echo_json


def _uri(obj: StewardContext) -> str:
    from mlflow_steward.registry import governed_uri, resolve_registry_uri

    return governed_uri(resolve_registry_uri(obj.registry_uri, obj.config.registry_uri))


def _audit(obj: StewardContext):
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog
    from mlflow_steward.registry import inner_uri

    return AuditLog(db.get_engine(inner_uri(_uri(obj))))


# C0 and C1 control characters, DEL, the Unicode line and paragraph separators, and the
# backslash (so an escaped "\n" in a value cannot pass for an escaped newline).
_UNPRINTABLE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(value: object) -> str:
    """``value`` as one line of plain text: control characters (newline, carriage return, NUL,
    the ESC of terminal escape sequences, ...) and backslashes are escaped as Python does
    (``\\n``, ``\\x1b``), so no field can print as a second entry or rewrite the terminal."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(value))


@click.group()
def audit() -> None:
    """Read, verify and export the audit log."""


@audit.command("log")
@click.option("--model", help="Only entries for this registered model.")
@click.option("--limit", type=int, help="Only the newest N entries.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def log(obj: StewardContext, model: str | None, limit: int | None, as_json: bool) -> None:
    """Show audit entries, oldest first."""
    entries = _audit(obj).entries(model=model, limit=limit, newest_first=limit is not None)
    if limit is not None:
        entries.reverse()
    if as_json:
        echo_json([e.to_dict() for e in entries])
        return
    p = printable
    for e in entries:
        target = (
            p(e.model)
            + (f"/{p(e.version)}" if e.version else "")
            + (f"@{p(e.alias)}" if e.alias else "")
        )
        click.echo(
            f"#{e.seq} {p(e.ts)} {p(e.actor)} {p(e.action)} {target} "
            f"{p(e.decision).upper()} ({p(e.outcome)})"
        )
        reasons = e.reasons if isinstance(e.reasons, list) else [e.reasons]
        for r in reasons:
            if isinstance(r, dict):
                verdict = "PASS" if r.get("allowed") else "FAIL"
                click.echo(f"    {verdict} {p(r.get('policy'))}: {p(r.get('reason'))}")
            else:  # an entry edited in the database: shown as it is, verify names it
                click.echo(f"    {p(r)}")


@audit.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(obj: StewardContext, as_json: bool) -> None:
    """Check the hash chain. Exit 1, naming the first bad entry, if anything was changed."""
    from mlflow_steward.records import pending_writes

    log_ = _audit(obj)
    result = log_.verify()
    interrupted = pending_writes.pending(log_.engine)
    if as_json:
        echo_json(
            {
                "ok": result.ok,
                "entries": result.entries,
                "bad_seq": result.bad_seq,
                "problem": result.problem,
                "head": dict(result.head),
                "interrupted_writes": len(interrupted),
            }
        )
    elif result.ok:
        click.echo(f"audit log OK: {result.entries} entries, head {result.head.get('hash', '')}")
    else:
        click.echo(f"audit log BROKEN at entry {result.bad_seq}: {result.problem}", err=True)
    if interrupted and not as_json:
        click.echo(
            f"{len(interrupted)} interrupted write(s) not on the log yet (oldest: "
            f"{interrupted[0].action} on {interrupted[0].model} by {interrupted[0].actor} at "
            f"{interrupted[0].ts}); the next governed write on the model records them, or run "
            "`steward audit recover`",
            err=True,
        )
    click.get_current_context().exit(0 if result.ok else 1)


@audit.command()
@click.pass_obj
def recover(obj: StewardContext) -> None:
    """Record the writes a stopped process made but could not put on the audit log.

    Each is checked against the registry (does the alias point there, does the tag have the
    value, ...) and appended as applied, failed or unknown, marked `recovered`."""
    entries = obj.session().governor.recover_all()
    for e in entries:
        click.echo(f"#{e.seq} {e.actor} {e.action} {e.model} ({e.outcome})")
    click.echo(f"recovered {len(entries)} interrupted write(s)")


@audit.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="File (default: stdout).")
@click.pass_obj
def export(obj: StewardContext, fmt: str, output: str | None) -> None:
    """Export every entry with its hashes (one JSON object per line)."""
    log_ = _audit(obj)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            n = log_.export_jsonl(fh)
        click.echo(f"exported {n} entries to {output}", err=True)
    else:
        log_.export_jsonl(sys.stdout)
