"""What the reviewers' page shows, read from the registry database and the registry through the
worker's governed session, filtered to the models the request's user may read."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mlflow_steward.plugins.events import REVIEWED_ACTIONS
from mlflow_steward.records import approvals, db, schema
from mlflow_steward.records.audit import AuditEntry, AuditLog, VerifyResult
from mlflow_steward.records.deployments import DeploymentStep, DeploymentStore

#: How far back the page looks for approval requests.
PENDING_WINDOW_SECONDS = 30 * 86400
#: The most audit entries, deployments steps and monitor runs one page lists.
PAGE_LIMIT = 200
#: At most this many pending requests get a live policy check per page view (each hashes the
#: version's artifacts, as the promotion itself would); the others show their recorded decisions.
MAX_LIVE_CHECKS = 10
#: What the audit view's time filters accept: a UTC date, optionally with a time.
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?$")

MayRead = Callable[[str], bool]


class InvalidFilter(ValueError):
    """A filter value the audit view cannot use (HTTP 400 with this message)."""


@dataclass
class Review:
    """One entry of the approvals table, as the page shows it."""

    verdict: str
    actor: str
    comment: str
    created: float

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.created))


@dataclass
class EvidenceItem:
    """One recorded decision the reviewer sees with a pending request: what was decided, by
    which policies, for whom, when (one audit entry)."""

    seq: int
    when: str
    actor: str
    action: str
    decision: str
    outcome: str
    policies: list[dict[str, Any]]


@dataclass
class Pending:
    """An approval request whose move has not happened yet, with its reviews and evidence."""

    model: str
    version: str
    alias: str
    action: str
    requester: str
    requested: float
    reviews: list[Review] = field(default_factory=list)
    evidence: list[EvidenceItem] = field(default_factory=list)
    #: Each policy's verdict if the requester made the move now (what ``steward check`` says).
    check: list[dict[str, Any]] = field(default_factory=list)
    check_error: str = ""
    checked: bool = False
    #: The version's tags (steward's reserved ones included), as text.
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model}/{self.version}@{self.alias}/{self.action}"

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.requested))

    @property
    def approvals(self) -> int:
        return sum(1 for r in self.reviews if r.verdict == "approve")

    @property
    def rejections(self) -> int:
        return sum(1 for r in self.reviews if r.verdict == "reject")


def evidence_for(session: Any, pending: Pending) -> list[EvidenceItem]:
    """What a pending request's decision rests on, as the page shows it.

    Today: the audit log's decision entries on this version and alias (the request, each
    review and any attempted move) with each policy's verdict and reason as recorded. This is the
    one place where recorded evidence artifacts (issue 18, point 2) plug in later.
    """
    log = AuditLog(session.governor.db_engine)
    entries = log.entries(
        model=pending.model,
        workspace=session.governor.workspace(),
        limit=PAGE_LIMIT,
        newest_first=True,
    )
    return [
        EvidenceItem(
            seq=e.seq,
            when=e.ts,
            actor=e.actor,
            action=e.action,
            decision=e.decision,
            outcome=e.outcome,
            policies=policy_rows(e.reasons),
        )
        for e in entries
        if e.version == pending.version and e.alias in (pending.alias, None)
    ]


def policy_rows(reasons: Any) -> list[dict[str, Any]]:
    """Each policy's verdict in an audit entry's reasons (raw text, if someone broke them)."""
    if not isinstance(reasons, list):
        return [{"policy": "?", "allowed": False, "reason": str(reasons)}]
    rows = []
    for reason in reasons:
        if isinstance(reason, dict):
            rows.append(
                {
                    "policy": str(reason.get("policy", "?")),
                    "allowed": bool(reason.get("allowed")),
                    "reason": str(reason.get("reason", "")),
                }
            )
        else:
            rows.append({"policy": "?", "allowed": False, "reason": str(reason)})
    return rows


def _alias_holds(session: Any, model: str, alias: str) -> str | None:
    """The version ``alias`` of ``model`` points at now, or ``None``."""
    registered = session.store.get_registered_model(model)
    aliases = registered.aliases
    if isinstance(aliases, dict):
        value = aliases.get(alias)
    else:  # a list of alias objects
        value = next((a.version for a in aliases if getattr(a, "alias", None) == alias), None)
    return None if value is None else str(value)


def pending_requests(session: Any, may_read: MayRead, *, with_checks: bool = True) -> list[Pending]:
    """Approval requests of the last :data:`PENDING_WINDOW_SECONDS` whose move has not happened,
    on models the user may read, newest first."""
    reviews = approvals.list_reviews(
        session.governor.db_engine,
        since=time.time() - PENDING_WINDOW_SECONDS,
        workspace=session.governor.workspace(),
    )
    grouped: dict[tuple[str, str, str, str], Pending] = {}
    for entry in reviews:  # oldest first
        key = (entry.model, entry.version, entry.alias, entry.action)
        if entry.verdict == "request":
            # A new request opens the item again; reviews before it stay listed.
            item = grouped.get(key)
            if item is None:
                grouped[key] = Pending(
                    entry.model,
                    entry.version,
                    entry.alias,
                    entry.action,
                    entry.approver,
                    entry.created,
                )
            else:
                item.requester, item.requested = entry.approver, entry.created
            continue
        if key in grouped:
            grouped[key].reviews.append(
                Review(entry.verdict, entry.approver, entry.comment, entry.created)
            )
    readable: dict[str, bool] = {}
    found = []
    for item in grouped.values():
        if item.model not in readable:
            readable[item.model] = may_read(item.model)
        if not readable[item.model] or item.action not in REVIEWED_ACTIONS:
            continue
        try:
            holder = _alias_holds(session, item.model, item.alias)
        except Exception:  # the model was deleted since: nothing to review any more
            continue
        done = holder == item.version if item.action == "set_alias" else holder != item.version
        if done:
            continue
        item.evidence = evidence_for(session, item)
        try:
            tags = session.store.get_model_version(item.model, item.version).tags or {}
            item.tags = {str(k): str(v) for k, v in sorted(tags.items())}
        except Exception:  # deleted version: nothing to promote any more
            continue
        found.append(item)
    found.sort(key=lambda p: p.requested, reverse=True)
    if with_checks:
        for item in found[:MAX_LIVE_CHECKS]:
            _add_check(session, item)
    return found


def _add_check(session: Any, item: Pending) -> None:
    """Each policy's verdict on the move if its requester made it now (nothing is written or
    audited: a dry run, as ``steward check``)."""
    from mlflow_steward.governance.governor import acting_as

    try:
        with acting_as(item.requester):
            decision = session.check(
                f"models:/{item.model}/{item.version}", action=item.action, alias=item.alias
            )
        item.check = [o.to_dict() for o in decision.outcomes]
        item.checked = True
    except Exception as exc:  # shown on the page: the check is advice, the move decides
        item.check_error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"


@dataclass
class AuditView:
    entries: list[AuditEntry]
    verification: VerifyResult
    #: The failed entry's message, withheld when it names a model the user may not read.
    problem: str
    actions: list[str]
    filters: dict[str, str]
    limited: bool


def _time_filter(value: str, name: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _TIME.match(value):
        raise InvalidFilter(
            f"{name} {value[:60]!r} is not a UTC date or time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        )
    return value.replace(" ", "T")


def audit_view(session: Any, may_read: MayRead, args: dict[str, str]) -> AuditView:
    """The audit log's entries matching ``args`` (action, actor, model, since, until) on models
    the user may read, newest first, and the whole chain's verification."""
    filters = {
        k: (args.get(k) or "").strip()[:256] for k in ("action", "actor", "model", "since", "until")
    }
    since = _time_filter(filters["since"], "since")
    until = _time_filter(filters["until"], "until")
    log = AuditLog(session.governor.db_engine)
    workspace = session.governor.workspace()
    readable: dict[str, bool] = {}

    def readable_model(name: str) -> bool:
        if name not in readable:
            readable[name] = may_read(name)
        return readable[name]

    entries: list[AuditEntry] = []
    limited = False
    for entry in log.entries(
        model=filters["model"] or None,
        action=filters["action"] or None,
        actor=filters["actor"] or None,
        since=since,
        until=until,
        workspace=workspace,
        newest_first=True,
        limit=PAGE_LIMIT * 5,
    ):
        if not readable_model(entry.model):
            continue
        if len(entries) == PAGE_LIMIT:
            limited = True
            break
        entries.append(entry)
    verification = log.verify()
    problem = verification.problem
    if not verification.ok and verification.bad_seq is not None:
        with db.reading(session.governor.db_engine) as conn:
            bad_model = conn.execute(
                sa.select(schema.audit.c.model).where(schema.audit.c.seq == verification.bad_seq)
            ).scalar()
        if bad_model is not None and not readable_model(bad_model):
            problem = f"entry {verification.bad_seq} failed verification"
    with db.reading(session.governor.db_engine) as conn:
        actions = sorted(
            r[0]
            for r in conn.execute(
                sa.select(schema.audit.c.action)
                .where(schema.audit.c.workspace == workspace)
                .distinct()
            )
        )
    return AuditView(entries, verification, problem, actions, filters, limited)


@dataclass
class DeploymentRow:
    name: str
    target: str
    model: str
    version: str | None
    status: str
    endpoint: str | None
    reason: str | None
    traffic: dict[str, Any]
    updated: str
    history: list[DeploymentStep]


def deployments(session: Any, may_read: MayRead) -> list[DeploymentRow]:
    """Every recorded deployment of a model the user may read, with its newest steps."""
    store = DeploymentStore(session.governor.db_engine, session.governor.workspace())
    rows = []
    for info in store.list():
        if not may_read(info.model):
            continue
        rows.append(
            DeploymentRow(
                name=info.name,
                target=info.target,
                model=info.model,
                version=info.version,
                status=info.status,
                endpoint=info.endpoint,
                reason=info.reason,
                traffic=dict(info.traffic or {}),
                updated=str(info.updated or info.created or ""),
                history=list(reversed(store.history(info.name)))[:10],
            )
        )
    return rows


@dataclass
class MonitorRow:
    monitor: str
    model: str
    version: str | None
    status: str
    when: str
    run_id: str | None
    run_url: str | None
    actions: list[dict[str, Any]]


def monitor_runs(session: Any, may_read: MayRead, *, ui_base: str = "") -> list[MonitorRow]:
    """The newest monitor runs (verdicts) on models the user may read, with links to their
    MLflow runs (where the report and plots are logged)."""
    table = schema.monitor_runs.c
    query = (
        sa.select(schema.monitor_runs)
        .where(table.workspace == session.governor.workspace())
        .order_by(table.id.desc())
        .limit(PAGE_LIMIT)
    )
    with db.reading(session.governor.db_engine) as conn:
        found = list(conn.execute(query))
    experiments: dict[str, str | None] = {}
    rows = []
    for row in found:
        if not may_read(row.model):
            continue
        url = None
        if row.run_id:
            if row.run_id not in experiments:
                experiments[row.run_id] = _experiment_of(session, row.run_id)
            experiment = experiments[row.run_id]
            url = f"{ui_base}/#/experiments/{experiment}/runs/{row.run_id}" if experiment else None
        try:
            actions = [a for a in json.loads(row.actions) if isinstance(a, dict)]
        except (TypeError, ValueError):
            actions = []
        rows.append(
            MonitorRow(
                monitor=row.monitor,
                model=row.model,
                version=row.version,
                status=row.status,
                when=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row.ts)),
                run_id=row.run_id,
                run_url=url,
                actions=actions,
            )
        )
    return rows


def _experiment_of(session: Any, run_id: str) -> str | None:
    try:
        return str(session.governor.ctx.client.get_run(run_id).info.experiment_id)
    except Exception:  # a deleted run: listed without a link
        return None
