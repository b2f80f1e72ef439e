"""Model cards: a version's registry metadata, evaluation, feature importance, lineage, evidence,
approvals, deployments and monitoring history, rendered with jinja2 templates.

Sections follow the common card schemas (the Model Card Toolkit's model details, model
parameters, quantitative analysis and considerations; Hugging Face's uses, training details,
evaluation, limitations). The ``annex-iv`` layout orders the same sections under the headings of
the EU AI Act's Annex IV technical documentation.

Every value a user or a client wrote (names, comments, tags, descriptions) is text: the HTML card
autoescapes, and the Markdown card escapes HTML characters, so nothing in the registry can inject
markup or script into a card.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from mlflow_steward.errors import StewardError

FORMATS = ("md", "html")
LAYOUTS = ("default", "annex-iv")

#: Version or registered-model tags a team sets to document what steward cannot know.
CONSIDERATION_TAGS = {
    "intended_use": "Intended use",
    "out_of_scope_use": "Out-of-scope use",
    "limitations": "Limitations",
    "ethical_considerations": "Ethical considerations",
    "license": "License",
}

#: Rows of the baseline sample used for permutation importance (sampled with a fixed seed).
IMPORTANCE_ROWS = 2000


@dataclass
class Section:
    """One card section: paragraphs and tables of text, or why it is absent."""

    absent: str | None = None
    text: list[str] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)

    def table(self, columns: list[str], rows: list[list[Any]], caption: str = "") -> Section:
        self.tables.append(
            {
                "caption": caption,
                "columns": columns,
                "rows": [["-" if v in (None, "") else str(v) for v in r] for r in rows],
            }
        )
        return self


def _absent(reason: str) -> Section:
    return Section(absent=reason)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _details(
    lin: Mapping[str, Any], model_tags: Mapping[str, str], model_description: str | None
) -> Section:
    info = lin["version_info"]
    run = lin.get("run") or {}
    logged = lin.get("logged_model") or {}
    rows = [
        ["Name", info["name"]],
        ["Version", info["version"]],
        ["Description", info.get("description")],
        ["Model description", model_description],
        ["Owner", info["tags"].get("owner") or model_tags.get("owner")],
        ["Trained by", run.get("author")],
        ["Registered", info.get("created")],
        ["Aliases", ", ".join(f"@{a}" for a in info.get("aliases", []))],
        ["Stage", info.get("stage")],
        ["Source", info.get("source")],
        ["Logged model", logged.get("model_id")],
        ["Content digest", info.get("content_digest") or "none recorded"],
    ]
    return Section().table(["Field", "Value"], rows)


def _considerations(info: Mapping[str, Any], model_tags: Mapping[str, str]) -> Section:
    rows = []
    for tag, label in CONSIDERATION_TAGS.items():
        value = info["tags"].get(tag) or model_tags.get(tag)
        if value:
            rows.append([label, value])
    if not rows:
        tags = ", ".join(CONSIDERATION_TAGS)
        return _absent(f"not documented: set version or model tags {tags}")
    return Section().table(["Consideration", "Text"], rows)


def _training_data(lin: Mapping[str, Any]) -> Section:
    datasets = lin.get("datasets") or []
    if not datasets:
        return _absent("the training run logged no dataset (mlflow.log_input)")
    rows = []
    for d in datasets:
        source = d.get("source")
        if isinstance(source, Mapping):
            source = source.get("uri") or source.get("path") or source.get("url")
        columns = ""
        schema = d.get("schema")
        if isinstance(schema, Mapping) and isinstance(schema.get("mlflow_colspec"), list):
            columns = ", ".join(str(c.get("name")) for c in schema["mlflow_colspec"])
        rows.append([d["name"], d.get("context"), d["digest"], source or d["source_type"], columns])
    return Section().table(["Dataset", "Context", "Digest", "Source", "Columns"], rows)


def _procedure(lin: Mapping[str, Any]) -> Section:
    run = lin.get("run")
    if not run:
        return _absent("the version names no training run")
    section = Section().table(
        ["Field", "Value"],
        [
            ["Run", run["run_id"]],
            ["Started", run.get("start_time")],
            ["Git commit", run.get("git_commit")],
            ["Git repository", run.get("git_repo")],
            ["Entry point", run.get("entry_point") or run.get("source_name")],
        ],
    )
    if run.get("params"):
        section.table(
            ["Parameter", "Value"], [[k, v] for k, v in sorted(run["params"].items())], "Params"
        )
    return section


def _evaluation(lin: Mapping[str, Any]) -> Section:
    logged = (lin.get("logged_model") or {}).get("metrics") or {}
    run = (lin.get("run") or {}).get("metrics") or {}
    if not logged and not run:
        return _absent("no metrics were logged")
    rows = [[k, _fmt(v), "evaluation (logged model)"] for k, v in sorted(logged.items())]
    rows += [[k, _fmt(v), "training run"] for k, v in sorted(run.items()) if k not in logged]
    return Section().table(["Metric", "Value", "Logged on"], rows)


def _governance(lin: Mapping[str, Any]) -> Section:
    decisions = lin.get("decisions")
    if decisions is None:
        return _absent("the audit log is not readable through a server")
    if not decisions:
        return _absent("no decision recorded")
    rows = []
    for e in decisions:
        verdicts = "; ".join(
            f"[{r.get('policy')}] {'allow' if r.get('allowed') else 'deny'}: {r.get('reason')}"
            for r in e.get("reasons") or []
        )
        where = f"@{e['alias']}" if e.get("alias") else ""
        rows.append(
            [
                e["seq"],
                e["ts"],
                f"{e['action']} {where}".strip(),
                e["actor"],
                e["outcome"],
                verdicts,
            ]
        )
    return Section().table(["#", "Time", "Action", "Actor", "Outcome", "Policies"], rows)


def _approvals(lin: Mapping[str, Any]) -> Section:
    reviews = lin.get("approvals")
    if not reviews:
        return _absent("no review recorded")
    rows = [
        [
            datetime.fromtimestamp(r["created"], UTC).isoformat(timespec="seconds"),
            r["verdict"],
            f"@{r['alias']} ({r['action']})",
            r["actor"],
            r.get("comment"),
        ]
        for r in reviews
    ]
    return Section().table(["Time", "Review", "For", "By", "Comment"], rows)


def _evidence(checked: list[dict[str, Any]]) -> Section:
    if not checked:
        return _absent("no governed promotion or deploy recorded evidence")
    section = Section()
    rows = []
    for item in checked:
        state = "verified" if item["ok"] else f"DOES NOT VERIFY: {item['problem']}"
        rows.append([item.get("time"), f"{item.get('action')} {item.get('on')}", state])
    section.table(["Time", "Decision", "Artifact"], rows)
    for item in checked:
        doc = item.get("document") or {}
        policies = (doc.get("decision") or {}).get("policies") or []
        if not policies:
            continue
        section.table(
            ["Policy", "Verdict", "Reason", "Options"],
            [
                [
                    p.get("policy"),
                    "allow" if p.get("allowed") else "deny",
                    p.get("reason"),
                    ", ".join(f"{k}={v}" for k, v in sorted((p.get("options") or {}).items())),
                ]
                for p in policies
            ],
            f"{item.get('action')} {item.get('on')}: {item['path']} ({item['sha256']})",
        )
    return section


def _deployments(lin: Mapping[str, Any]) -> Section:
    deployments = lin.get("deployments")
    if not deployments:
        return _absent("never deployed")
    rows = [
        [
            d["name"],
            d["target"],
            d.get("endpoint"),
            d.get("status"),
            "yes" if d["serves_now"] else f"no (serves v{d.get('serving_version')})",
            d.get("created"),
        ]
        for d in deployments
    ]
    return Section().table(["Deployment", "Target", "Where", "Status", "Serves it", "Since"], rows)


def _moves(lin: Mapping[str, Any]) -> Section:
    moves = lin.get("moves")
    if moves is None:
        return _absent("the alias history is not readable through a server")
    if not moves:
        return _absent("no alias or stage moved to or from this version")
    rows = [
        [
            m["ts"],
            f"@{m['alias']}" if m.get("alias") else f"stage {m.get('stage')}",
            f"{m.get('previous_version') or '-'} -> {m.get('version') or '-'}",
            m["kind"],
            m["actor"],
        ]
        for m in moves
    ]
    return Section().table(["Time", "Pointer", "Move", "Kind", "By"], rows)


def _monitoring(lin: Mapping[str, Any]) -> Section:
    verdicts = lin.get("monitoring")
    if not verdicts:
        return _absent("no monitoring run")
    rows = [
        [
            v.get("time"),
            v.get("status"),
            _fmt(v["drift_share"]) if v.get("drift_share") is not None else None,
            v.get("link"),
        ]
        for v in verdicts
    ]
    return Section().table(["Time", "Verdict", "Drift share", "MLflow run"], rows)


def _importance(found: tuple[list[tuple[str, float, float]], str] | str) -> Section:
    if isinstance(found, str):
        return _absent(found)
    rows, how = found
    return Section(text=[how]).table(
        ["Feature", "Importance (mean)", "Std"], [[c, _fmt(m), _fmt(s)] for c, m, s in rows]
    )


def feature_importance(
    client: Any, lin: Mapping[str, Any]
) -> tuple[list[tuple[str, float, float]], str] | str:
    """Permutation importance of each feature on the baseline sample (``steward.log_baseline``
    with labels); a string saying why not when it cannot be computed."""
    from mlflow_steward.errors import MonitoringError
    from mlflow_steward.monitoring import LABEL, PREDICTION
    from mlflow_steward.monitoring.baseline import load_baseline

    info = lin["version_info"]
    try:
        baseline = load_baseline(client, info.get("model_id"), None, lin["uri"])
    except MonitoringError:
        return "no baseline sample was logged (mlflow_steward.log_baseline)"
    data = baseline.data
    if LABEL not in data:
        return "the baseline sample has no labels (log_baseline(X, y, ...))"
    if len(data) > IMPORTANCE_ROWS:
        data = data.sample(n=IMPORTANCE_ROWS, random_state=0)
    X = data.drop(columns=[LABEL, PREDICTION], errors="ignore")
    y = data[LABEL]
    try:
        model = _load(client, info["source"])
        return _permutation(model, X, y)
    except Exception as exc:  # a model that does not load here: say so in the card
        return f"could not compute it: {type(exc).__name__}: {exc}"


def _load(client: Any, source: str) -> Any:
    import mlflow
    import mlflow.pyfunc

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        return mlflow.pyfunc.load_model(source)
    finally:
        mlflow.set_tracking_uri(previous)


def _permutation(model: Any, X: Any, y: Any) -> tuple[list[tuple[str, float, float]], str]:
    import numpy as np
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import accuracy_score, r2_score

    classes = np.unique(y)
    classification = len(classes) <= 20 and np.allclose(classes, np.round(classes))
    metric = accuracy_score if classification else r2_score

    class _Predictor:
        def fit(self, *_: Any) -> _Predictor:  # sklearn checks for an estimator
            return self

        def predict(self, rows: Any) -> Any:
            return np.asarray(model.predict(rows)).reshape(len(rows), -1)[:, 0]

    def score(estimator: Any, rows: Any, labels: Any) -> float:
        return float(metric(labels, estimator.predict(rows)))

    found = permutation_importance(_Predictor(), X, y, scoring=score, n_repeats=5, random_state=0)
    rows = sorted(
        zip(X.columns, found.importances_mean, found.importances_std, strict=True),
        key=lambda r: -r[1],
    )
    how = (
        f"Drop in {'accuracy' if classification else 'R²'} when each feature is shuffled "
        f"(5 repeats) on {len(X)} rows of the logged baseline sample."
    )
    return [(str(c), float(m), float(s)) for c, m, s in rows], how


def card_data(client: Any, records: Any, pm: Any, name: str, version: str) -> dict[str, Any]:
    """Everything a card shows, as sections a template lays out."""
    from mlflow_steward.lineage.chain import lineage
    from mlflow_steward.lineage.evidence import read_evidence

    lin = lineage(client, records, name, version)
    try:
        registered = client.get_registered_model(name)
        model_tags, model_description = dict(registered.tags or {}), registered.description
    except Exception:  # read rights on versions only: the card shows what it can
        model_tags, model_description = {}, None
    checked = [read_evidence(client, e) for e in lin["evidence"]]
    extra = pm.hooks.card_sections(model=name, version=version, lineage=MappingProxyType(lin))
    sections = {
        "details": _details(lin, model_tags, model_description),
        "considerations": _considerations(lin["version_info"], model_tags),
        "training_data": _training_data(lin),
        "training_procedure": _procedure(lin),
        "evaluation": _evaluation(lin),
        "importance": _importance(feature_importance(client, lin)),
        "governance": _governance(lin),
        "moves": _moves(lin),
        "approvals": _approvals(lin),
        "evidence": _evidence(checked),
        "deployments": _deployments(lin),
        "monitoring": _monitoring(lin),
    }
    return {
        "model": name,
        "version": version,
        "uri": lin["uri"],
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "sections": sections,
        "extra": [
            {"title": s.title, "plugin": who, "section": _plugin_section(s)} for who, s in extra
        ],
        "lineage": lin,
    }


def _plugin_section(section: Any) -> Section:
    out = Section(text=[section.text] if section.text else [])
    if section.rows:
        out.table(["Field", "Value"], [list(r) for r in section.rows])
    return out


class _Escaped(str):
    """Markdown text already escaped (by a filter): the finalizer leaves it alone."""


def _md_text(value: Any) -> str:
    """Markdown output: HTML characters escaped (renderers pass raw HTML through)."""
    if isinstance(value, _Escaped):
        return value
    if value is None:
        return ""
    return html.escape(str(value), quote=False).translate(_MD_SPECIAL)


#: Markdown syntax that could turn a value into a link or an image (``[text](url)``), code, or
#: break a table: escaped with a backslash (HTML characters are escaped as entities first, so
#: ``<url>`` autolinks cannot form either).
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "[]`|"})


def _md_cell(value: Any) -> str:
    text = html.escape(str(value), quote=False).translate(_MD_SPECIAL)
    return text.replace("\r", " ").replace("\n", " ")


def _md_row(values: Any) -> _Escaped:
    """One Markdown table line."""
    return _Escaped("| " + " | ".join(_md_cell(v) for v in values) + " |")


def _md_rule(values: Any) -> _Escaped:
    return _Escaped("|" + " --- |" * len(list(values)))


def render(data: Mapping[str, Any], fmt: str, layout: str = "default") -> str:
    """The card as Markdown (``md``) or HTML (``html``), laid out by ``layout``."""
    import jinja2

    if fmt not in FORMATS:
        raise StewardError(f"unknown card format {fmt!r}; use one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise StewardError(f"unknown card layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlflow_steward.lineage", "templates"),
        autoescape=fmt == "html",
        finalize=_md_text if fmt == "md" else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["row"] = _md_row
    env.filters["rule"] = _md_rule
    template = "card" if layout == "default" else "annex-iv"
    return env.get_template(f"{template}.{fmt}.j2").render(**data)
