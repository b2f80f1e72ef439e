"""The lineage of a version as text for a terminal (``steward lineage`` without ``--json``)."""

from __future__ import annotations

import re
from typing import Any

ABSENT = "absent"

#: Control characters (terminal escape sequences among them) a name, comment or tag may hold:
#: shown as ``\xNN`` so that nothing in the registry can drive the reader's terminal.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _line(label: str, value: Any) -> str:
    return f"  {label + ':':<14} {value if value not in (None, '') else '-'}"


def _section(out: list[str], title: str, lineage: dict[str, Any], key: str, why: str) -> bool:
    """The heading; ``False`` (and the section marked) when there is nothing to show."""
    out.append("")
    if key in lineage.get("unavailable", ()):
        out.append(f"{title}: unavailable from a {why}")
        return False
    if lineage.get(key) in (None, []):
        out.append(f"{title}: {ABSENT} ({why})")
        return False
    out.append(f"{title}:")
    return True


def render(lineage: dict[str, Any]) -> str:
    out = [f"{lineage['uri']}"]
    if _section(out, "datasets", lineage, "datasets", "the run logged none with mlflow.log_input"):
        for d in lineage["datasets"]:
            source = d["source"]
            if isinstance(source, dict):
                source = source.get("uri") or source.get("path") or source.get("url") or source
            out.append(f"  - {d['name']}  digest {d['digest']}  ({d['source_type']}: {source})")
            if d.get("context"):
                out.append(f"    context: {d['context']}")
    if _section(out, "run", lineage, "run", "the version names no run"):
        run = lineage["run"]
        out += [
            _line("run id", run["run_id"]),
            _line("author", run["author"]),
            _line("started", run["start_time"]),
            _line("git commit", run["git_commit"]),
            _line("git repo", run["git_repo"]),
            _line("entry point", run["entry_point"] or run["source_name"]),
            _line("params", ", ".join(f"{k}={v}" for k, v in sorted(run["params"].items()))),
            _line("metrics", ", ".join(f"{k}={v:g}" for k, v in sorted(run["metrics"].items()))),
        ]
    if _section(out, "logged model", lineage, "logged_model", "registered from a path"):
        logged = lineage["logged_model"]
        out += [
            _line("model id", logged["model_id"]),
            _line("name", logged["name"]),
            _line("artifacts", logged["artifact_location"]),
        ]
    info = lineage["version_info"]
    out += [
        "",
        "registered version:",
        _line("version", f"{info['name']} v{info['version']}"),
        _line("created", info["created"]),
        _line("source", info["source"]),
        _line("aliases", ", ".join(f"@{a}" for a in info["aliases"])),
        _line("stage", info["stage"]),
        _line("digest", info["content_digest"] or "none recorded (registered without steward)"),
    ]
    if _section(out, "decisions", lineage, "decisions", "server: read them where it runs"):
        for e in lineage["decisions"]:
            where = f" @{e['alias']}" if e.get("alias") else ""
            out.append(
                f"  #{e['seq']} {e['ts']}  {e['action']}{where}  {e['decision']}, "
                f"{e['outcome']}  by {e['actor']}"
            )
            for reason in e.get("reasons") or []:
                verdict = "allow" if reason.get("allowed") else "DENY"
                out.append(f"      [{reason.get('policy')}] {verdict}: {reason.get('reason')}")
    if _section(out, "lifecycle moves", lineage, "moves", "no alias or stage moved to or from it"):
        for m in lineage["moves"]:
            where = f"@{m['alias']}" if m.get("alias") else f"stage {m.get('stage')}"
            out.append(
                f"  {m['ts']}  {where}  {m['kind']}  {m['previous_version'] or '-'} -> "
                f"{m['version'] or '-'}  by {m['actor']}  (audit #{m['audit_seq']})"
            )
    if _section(out, "approvals", lineage, "approvals", "no review recorded"):
        for r in lineage["approvals"]:
            comment = f"  {r['comment']!r}" if r.get("comment") else ""
            out.append(
                f"  {r['verdict']:<8} @{r['alias']} ({r['action']}) by {r['actor']}{comment}"
            )
    if _section(out, "deployments", lineage, "deployments", "never deployed"):
        for d in lineage["deployments"]:
            now = "serving it now" if d["serves_now"] else f"now serves v{d['serving_version']}"
            out.append(
                f"  {d['name']} on {d['target']} ({d['kind']}) at {d['endpoint'] or '-'}: "
                f"{d['status']}, {now}"
            )
            for s in d["steps"]:
                out.append(
                    f"      {s['ts']}  {s['kind']}  {s.get('from_version') or '-'} -> "
                    f"{s.get('version') or '-'}  {s['status']}  by {s['actor']}"
                )
    if _section(out, "monitoring", lineage, "monitoring", "no monitoring run"):
        for v in lineage["monitoring"]:
            share = v.get("drift_share")
            share_text = f", drift share {share:.2f}" if share is not None else ""
            out.append(f"  {v['time']}  {v['status']}{share_text}  run {v['link']}")
    if _section(out, "evidence", lineage, "evidence", "no governed promotion or deploy yet"):
        for e in lineage["evidence"]:
            out.append(f"  {e.get('time')}  {e.get('action')} {e.get('on')}: {e.get('path')}")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", "\n".join(out))
