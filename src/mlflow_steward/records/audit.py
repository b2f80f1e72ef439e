"""The audit log: an append-only, hash-chained table in the registry's database.

Each entry's hash covers its canonical content and the previous entry's hash, so editing,
deleting or reordering any entry breaks verification from that entry on. Appends are serialized
in the database (the head row is updated first in the same transaction), never in process memory.
With ``MLFLOW_STEWARD_AUDIT_KEY`` set, hashes are HMAC-SHA256 under that key, so someone with write
access to the database but without the key cannot rebuild a consistent chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.env import AUDIT_KEY_ENV
from mlflow_steward.plugins.events import DEFAULT_WORKSPACE, ActionEvent, Decision
from mlflow_steward.records import db, schema
from mlflow_steward.records.prepared import Prepared


def utc_stamp(when: datetime) -> str:
    """``when`` as steward's tables store times (UTC, fixed width, so strings sort by time)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    return utc_stamp(datetime.now(UTC))


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    model: str
    version: str | None
    alias: str | None
    details: Mapping[str, Any]
    decision: str
    outcome: str
    reasons: list[Mapping[str, Any]]
    prev_hash: str
    hash: str = ""
    workspace: str = DEFAULT_WORKSPACE

    def content(self) -> dict[str, Any]:
        """What the entry's hash covers: every field but the hash. The workspace only when it is
        not the default one, so entries written before workspaces (0.1.0) still verify, and
        moving an entry into or out of the default workspace still changes what is hashed."""
        out = {name: getattr(self, name) for name in _CONTENT_FIELDS}
        if self.workspace != DEFAULT_WORKSPACE:
            out["workspace"] = self.workspace
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CONTENT_FIELDS = tuple(f.name for f in fields(AuditEntry) if f.name not in ("hash", "workspace"))


# Built once (and compiled once per database): an append runs on every governed write.
_HEAD_ROW = schema.audit_head.c.id == 1
_BUMP_HEAD = schema.audit_head.update().where(_HEAD_ROW).values(seq=schema.audit_head.c.seq + 1)
_BUMP_HEAD_RETURNING = Prepared(
    _BUMP_HEAD.returning(schema.audit_head.c.seq, schema.audit_head.c.hash)
)
_READ_HEAD = sa.select(schema.audit_head.c.seq, schema.audit_head.c.hash).where(_HEAD_ROW)
_INSERT_ENTRY = schema.audit.insert().values(
    {c.name: sa.bindparam(f"e_{c.name}") for c in schema.audit.c}
)
_SET_HEAD = schema.audit_head.update().where(_HEAD_ROW).values(hash=sa.bindparam("e_hash"))
_INSERT_ENTRY_AND_SET_HEAD = Prepared(_SET_HEAD.add_cte(_INSERT_ENTRY.cte("steward_new_entry")))
_INSERT_ENTRY_FAST = Prepared(_INSERT_ENTRY)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    bad_seq: int | None = None
    problem: str = ""
    head: Mapping[str, Any] = field(default_factory=dict)


#: The longest value each field of an entry keeps (the database's column sizes where it has
#: them); longer values are cut and marked, so a 12 MB name cannot bloat the log or fail an append.
FIELD_LIMITS = {"actor": 256, "model": 256, "version": 32, "alias": 256, "outcome": 2000}
#: The longest string anywhere in ``details`` or ``reasons`` (each value, each reason text).
VALUE_LIMIT = 2000
#: At most this many keys per mapping and items per list in ``details`` and ``reasons``.
ITEMS_LIMIT = 100


def truncate(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` characters, ending with a marker that says how many
    were dropped (``…[+1234 chars]``)."""
    if len(value) <= limit:
        return value
    keep = limit
    while True:
        marker = f"…[+{len(value) - keep} chars]"
        if keep + len(marker) <= limit:
            return value[:keep] + marker
        keep = max(0, limit - len(marker))
        if keep == 0:  # not even the marker fits: its start, counting every character dropped
            return f"…[+{len(value)} chars]"[:limit]


def _bounded_value(value: Any, depth: int = 0) -> Any:
    """A JSON-like value with every string, mapping and list bounded (nesting too)."""
    if isinstance(value, str):
        return truncate(value, VALUE_LIMIT)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= 8:
        return truncate(repr(value), VALUE_LIMIT)
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {truncate(str(k), 256): _bounded_value(v, depth + 1) for k, v in items[:ITEMS_LIMIT]}
        if len(items) > ITEMS_LIMIT:
            out["…"] = f"[+{len(items) - ITEMS_LIMIT} keys]"
        return out
    if isinstance(value, list | tuple):
        out_list = [_bounded_value(v, depth + 1) for v in list(value)[:ITEMS_LIMIT]]
        if len(value) > ITEMS_LIMIT:
            out_list.append(f"…[+{len(value) - ITEMS_LIMIT} items]")
        return out_list
    return truncate(str(value), VALUE_LIMIT)


def bounded_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an entry to append, each within its length bound (see :data:`FIELD_LIMITS`
    and :data:`VALUE_LIMIT`). Applied before hashing, so the stored entry verifies as stored."""
    out = dict(fields)
    for name, limit in FIELD_LIMITS.items():
        if out.get(name) is not None:
            out[name] = truncate(str(out[name]), limit)
    out["details"] = _bounded_value(dict(out["details"]))
    out["reasons"] = _bounded_value(list(out["reasons"]))
    return out


def canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class AuditLog:
    def __init__(self, engine: Engine, key: bytes | None = None) -> None:
        self.engine = engine
        if key is None and os.environ.get(AUDIT_KEY_ENV):
            key = os.environ[AUDIT_KEY_ENV].encode()
        self._key = key

    def _digest(self, content: Mapping[str, Any]) -> str:
        payload = canonical(content)
        if self._key:
            return hmac.new(self._key, payload, hashlib.sha256).hexdigest()
        return hashlib.sha256(payload).hexdigest()

    def append_decision(
        self,
        event: ActionEvent,
        decision: Decision,
        outcome: str,
        *,
        version: str | None = None,
        also: Callable[[Connection, int], None] | None = None,
        conn: Connection | None = None,
    ) -> AuditEntry:
        """Append the entry of ``decision`` on ``event`` (see :meth:`append`); ``version`` is the
        version the write made, for an event that names none (a new version)."""
        return self.append(
            actor=event.actor,
            action=event.action,
            model=event.model,
            version=version if version is not None else event.version,
            alias=event.alias,
            details=event.details(),
            decision="allowed" if decision.allowed else "refused",
            outcome=outcome,
            reasons=[o.to_dict() for o in decision.outcomes],
            also=also,
            conn=conn,
            workspace=event.workspace,
        )

    def append(
        self,
        *,
        actor: str,
        action: str,
        model: str,
        version: str | None,
        alias: str | None,
        details: Mapping[str, Any],
        decision: str,
        outcome: str,
        reasons: list[Mapping[str, Any]],
        also: Callable[[Connection, int], None] | None = None,
        conn: Connection | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> AuditEntry:
        """Append one entry; ``also(conn, seq)`` writes related rows in the same transaction.

        With ``conn`` (a connection in an open transaction) the entry is written there and
        commits with whatever else that transaction holds; else in a transaction of its own.
        Over-long values are truncated with a marker first (:func:`bounded_fields`).
        """
        bounded = bounded_fields(
            {
                "actor": actor,
                "model": model,
                "version": version,
                "alias": alias,
                "details": details,
                "outcome": outcome,
                "reasons": reasons,
            }
        )
        actor, model, version, alias = (bounded[k] for k in ("actor", "model", "version", "alias"))
        details, outcome, reasons = bounded["details"], bounded["outcome"], bounded["reasons"]

        def write(conn: Connection) -> AuditEntry:
            # Updating the head row first takes the database's write lock (SQLite) or the row
            # lock (PostgreSQL): concurrent appenders queue here, so the chain stays linear.
            if conn.dialect.update_returning:
                ((seq, prev_hash),) = _BUMP_HEAD_RETURNING.rows(conn)
            else:
                conn.execute(_BUMP_HEAD)
                seq, prev_hash = conn.execute(_READ_HEAD).one()
            content = {
                "seq": seq,
                "ts": utc_now(),
                "actor": actor,
                "action": action,
                "model": model,
                "version": version,
                "alias": alias,
                "details": dict(details),
                "decision": decision,
                "outcome": outcome,
                "reasons": list(reasons),
                "prev_hash": prev_hash,
            }
            if workspace != DEFAULT_WORKSPACE:
                content["workspace"] = workspace
            entry = AuditEntry(**content, hash=self._digest(content))
            row = {f"e_{name}": value for name, value in content.items()}
            row["e_workspace"] = workspace
            row["e_hash"] = entry.hash
            row["e_details"] = json.dumps(entry.details, sort_keys=True)
            row["e_reasons"] = json.dumps(entry.reasons)
            if conn.dialect.name == "postgresql":  # one round trip: WITH (INSERT ...) UPDATE
                _INSERT_ENTRY_AND_SET_HEAD.rows(conn, row)
            else:
                _INSERT_ENTRY_FAST.rows(conn, row)
                if conn.dialect.name != "sqlite":  # schema.SQLITE_HEAD_TRIGGER sets it on SQLite
                    conn.execute(_SET_HEAD, row)
            if also is not None:
                also(conn, seq)
            return entry

        if conn is not None:
            return write(conn)
        with self.engine.begin() as own:
            return write(own)

    @staticmethod
    def _from_row(row: Any) -> AuditEntry:
        return AuditEntry(
            seq=row.seq,
            ts=row.ts,
            actor=row.actor,
            action=row.action,
            model=row.model,
            version=row.version,
            alias=row.alias,
            details=_json_or_raw(row.details),
            decision=row.decision,
            outcome=row.outcome,
            reasons=_json_or_raw(row.reasons),
            prev_hash=row.prev_hash,
            hash=row.hash,
            workspace=row.workspace,
        )

    def entries(
        self,
        *,
        model: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        workspace: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[AuditEntry]:
        """Entries, optionally of one model and of one workspace (``None``: every workspace),
        of one action, by one actor, with timestamps from ``since`` and before ``until`` (UTC
        ISO 8601 text, compared as stored: ``2026-05-01`` or ``2026-05-01T12:00``)."""
        query = sa.select(schema.audit)
        if model is not None:
            query = query.where(schema.audit.c.model == model)
        if action is not None:
            query = query.where(schema.audit.c.action == action)
        if actor is not None:
            query = query.where(schema.audit.c.actor == actor)
        if since is not None:
            query = query.where(schema.audit.c.ts >= since)
        if until is not None:
            query = query.where(schema.audit.c.ts < until)
        if workspace is not None:
            query = query.where(schema.audit.c.workspace == workspace)
        query = query.order_by(schema.audit.c.seq.desc() if newest_first else schema.audit.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with db.reading(self.engine) as conn:
            return [self._from_row(r) for r in conn.execute(query)]

    def iter_all(self, batch: int = 5000, *, up_to: int | None = None) -> Iterator[AuditEntry]:
        """Every entry in order (up to sequence number ``up_to``), read in batches."""
        last = 0
        while True:
            query = sa.select(schema.audit).where(schema.audit.c.seq > last)
            if up_to is not None:
                query = query.where(schema.audit.c.seq <= up_to)
            with db.reading(self.engine) as conn:
                rows = conn.execute(query.order_by(schema.audit.c.seq).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                yield self._from_row(row)
            last = rows[-1].seq

    def _head(self) -> tuple[int, str, bool]:
        """The head's sequence number and hash, and whether an entry lies beyond it, read in one
        transaction (an append moves the head in the transaction that inserts the entry)."""
        with db.reading(self.engine) as conn:
            seq, hash_ = conn.execute(_READ_HEAD).one()
            beyond = conn.execute(
                sa.select(schema.audit.c.seq).where(schema.audit.c.seq > seq).limit(1)
            ).first()
        return seq, hash_, beyond is not None

    def verify(self) -> VerifyResult:
        """Check the chain up to the head as read first: entries appended while verifying are
        left for the next run instead of looking like a head that lags the chain."""
        head_seq, head_hash, beyond = self._head()
        expected_seq, prev_hash, count = 1, schema.GENESIS_HASH, 0
        for entry in self.iter_all(up_to=head_seq):
            count += 1
            if entry.seq != expected_seq:
                return VerifyResult(
                    False,
                    count,
                    expected_seq,
                    f"entry {expected_seq} is missing (next entry found is "
                    f"{entry.seq}): entries were deleted",
                )
            if entry.prev_hash != prev_hash:
                return VerifyResult(
                    False,
                    count,
                    entry.seq,
                    f"entry {entry.seq} does not link to entry {entry.seq - 1}: "
                    "entries were reordered, replaced or inserted",
                )
            if self._digest(entry.content()) != entry.hash:
                return VerifyResult(
                    False,
                    count,
                    entry.seq,
                    f"entry {entry.seq} does not match its hash: it was edited "
                    f"({entry.action} on {entry.model} by {entry.actor} at "
                    f"{entry.ts} as stored now)",
                )
            prev_hash, expected_seq = entry.hash, entry.seq + 1
        head = {"seq": head_seq, "hash": head_hash}
        if head_seq != expected_seq - 1 or head_hash != prev_hash:
            return VerifyResult(
                False,
                count,
                expected_seq,
                f"the chain ends at entry {expected_seq - 1} but the head records "
                f"entry {head_seq}: the newest entries were deleted or the head "
                "was edited",
                head,
            )
        if beyond:
            return VerifyResult(
                False,
                count,
                head_seq + 1,
                f"entry {head_seq + 1} comes after the head, which records entry {head_seq}: "
                "the head was edited",
                head,
            )
        return VerifyResult(True, count, head=head)

    def export_jsonl(self, out: IO[str]) -> int:
        n = 0
        for entry in self.iter_all():
            out.write(json.dumps(entry.to_dict(), sort_keys=True) + "\n")
            n += 1
        return n

    def registrant(
        self, model: str, version: str, workspace: str = DEFAULT_WORKSPACE
    ) -> str | None:
        """The actor of the applied ``create_model_version`` of ``model`` version ``version``."""
        table = schema.audit.c
        query = (
            sa.select(table.actor)
            .where(
                table.model == model,
                table.version == str(version),
                table.action == "create_model_version",
                table.outcome == "applied",
                table.workspace == workspace,
            )
            .order_by(table.seq.desc())
            .limit(1)
        )
        with db.reading(self.engine) as conn:
            return conn.execute(query).scalar_one_or_none()

    def last_entry_for_model(self, model: str) -> AuditEntry | None:
        found = self.entries(model=model, limit=1, newest_first=True)
        return found[0] if found else None


def _json_or_raw(text: str) -> Any:
    """Stored JSON, or the raw text when someone broke it (verification then flags the entry)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text
