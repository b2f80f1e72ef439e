"""Property-based tests (issue 19, point 3), with hypothesis:

- any edit, deletion, insertion or reordering of audit entries, with and without the audit key,
  is detected by ``verify``, which names the first bad entry;
- every spelling of a version that MLflow's SQL store accepts maps to the one canonical version
  steward uses, and every spelling it refuses is refused by steward too;
- any YAML document either loads as a configuration or fails naming the file, the key and the
  line (a ``ConfigError``, never another exception);
- the KS statistic equals ``scipy.stats.ks_2samp``'s on random samples with ties, tiny samples
  and constant columns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from mlflow_steward.errors import ConfigError, InvalidVersion
from mlflow_steward.monitoring.stats import EXACT_MAX_N, _ks_sorted, ks_columns
from mlflow_steward.records import db, schema
from mlflow_steward.records.audit import AuditLog
from mlflow_steward.registry import canonical_version

settings.register_profile(
    "steward",
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# STEWARD_HYPOTHESIS_PROFILE=thorough: ten times the examples, for a run on demand.
settings.register_profile("thorough", parent=settings.get_profile("steward"), max_examples=400)
settings.load_profile(os.environ.get("STEWARD_HYPOTHESIS_PROFILE", "steward"))


# -- the audit log ------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_entry = st.fixed_dictionaries(
    {
        "actor": _text,
        "action": st.sampled_from(["set_alias", "create_model_version", "delete_alias", "deploy"]),
        "model": _text,
        "version": st.none() | st.integers(1, 99).map(str),
        "alias": st.none() | _text,
        "details": st.dictionaries(_text, st.integers() | _text, max_size=3),
        "decision": st.sampled_from(["allowed", "refused"]),
        "outcome": _text,
        "reasons": st.lists(
            st.fixed_dictionaries({"policy": _text, "allowed": st.booleans()}), max_size=2
        ),
    }
)

#: Fields of a stored row a tamperer may change, with a strategy for the new value.
_EDITABLE: dict[str, st.SearchStrategy[Any]] = {
    "ts": _text,
    "actor": _text,
    "action": _text,
    "model": _text,
    "version": st.none() | _text,
    "alias": st.none() | _text,
    "details": st.dictionaries(_text, _text, min_size=1, max_size=2).map(
        lambda d: json.dumps(d, sort_keys=True)
    ),
    "decision": _text,
    "outcome": _text,
    "reasons": st.just('[{"allowed": true}]'),
    "prev_hash": st.text("0123456789abcdef", min_size=64, max_size=64),
    "hash": st.text("0123456789abcdef", min_size=64, max_size=64),
    "workspace": _text.filter(bool),
}


@contextlib.contextmanager
def _audit_db() -> Iterator[tuple[sa.Engine, Path]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.db"
        engine = db.get_engine(f"sqlite:///{path}")
        try:
            yield engine, path
        finally:
            db.dispose_engines()


def _rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(sa.select(schema.audit).order_by(schema.audit.c.seq))
        ]


def _rewrite(engine: sa.Engine, rows: list[dict[str, Any]], head: tuple[int, str]) -> None:
    """Store ``rows`` as the audit table and ``head`` as its head, as someone with write access
    to the database would (the insert trigger is undone by setting the head last)."""
    with engine.begin() as conn:
        conn.execute(schema.audit.delete())
        for row in rows:
            conn.execute(schema.audit.insert().values(**row))
        conn.execute(
            schema.audit_head.update()
            .where(schema.audit_head.c.id == 1)
            .values(seq=head[0], hash=head[1])
        )


@st.composite
def _tampering(draw: st.DrawFn, n: int) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["edit", "delete", "insert", "reorder", "replay", "forge"]))
    if kind == "edit":
        return kind, (draw(st.integers(1, n)), draw(st.sampled_from(sorted(_EDITABLE))))
    if kind == "delete":
        return kind, draw(st.integers(1, n))
    if kind in ("insert", "forge"):
        # insert: a new row at position i, the later ones renumbered; forge: the same, its hash
        # computed as if the log had no key (and the head moved on when it is the newest).
        return kind, (draw(st.integers(1, n + 1)), draw(_entry))
    if kind == "replay":  # an existing entry copied to another position
        return kind, (draw(st.integers(1, n)), draw(st.integers(1, n + 1)))
    i = draw(st.integers(1, n - 1)) if n > 1 else 1
    return kind, (i, draw(st.integers(i + 1, n)) if n > 1 else 1)


def _first_difference(original: list[dict[str, Any]], stored: list[dict[str, Any]]) -> int | None:
    for k, (a, b) in enumerate(zip(original, stored, strict=False), start=1):
        if a != b:
            return k
    if len(stored) != len(original):
        return min(len(stored), len(original)) + 1
    return None


@given(
    entries=st.lists(_entry, min_size=1, max_size=6),
    keyed=st.booleans(),
    data=st.data(),
)
def test_any_tampering_is_detected_at_the_first_bad_entry(entries, keyed, data) -> None:
    key = b"audit-key" if keyed else None
    with _audit_db() as (engine, _):
        log = AuditLog(engine, key=key)
        for e in entries:
            log.append(**e)
        assert log.verify().ok
        original = _rows(engine)
        n = len(original)
        head = (n, original[-1]["hash"])
        kind, arg = data.draw(_tampering(n), label="tampering")
        rows = [dict(r) for r in original]
        if kind == "edit":
            i, name = arg
            value = data.draw(_EDITABLE[name], label="new value")
            row = rows[i - 1]
            old = AuditLog._from_row(SimpleNamespace(**row)).content()
            row[name] = value
            new = AuditLog._from_row(SimpleNamespace(**row)).content()
            # an edit that changes nothing verify can see (e.g. the same JSON spelled otherwise)
            assume(new != old or name in ("hash", "prev_hash"))
            assume(row != original[i - 1])
        elif kind == "delete":
            del rows[arg - 1]
        elif kind == "reorder":
            i, j = arg
            assume(i != j)
            rows[i - 1], rows[j - 1] = rows[j - 1], rows[i - 1]
            rows[i - 1]["seq"], rows[j - 1]["seq"] = i, j
            assume(rows[i - 1] != original[i - 1])
        else:
            if kind == "replay":
                src, i = arg
                new_row = dict(original[src - 1])
            else:
                i, fields = arg
                new_row = {
                    "ts": "2026-01-01T00:00:00.000000Z",
                    **fields,
                    "details": json.dumps(fields["details"], sort_keys=True),
                    "reasons": json.dumps(fields["reasons"]),
                    "workspace": "default",
                }
            new_row["seq"] = i
            new_row["prev_hash"] = rows[i - 2]["hash"] if i > 1 else schema.GENESIS_HASH
            if kind == "forge":
                content = AuditLog._from_row(SimpleNamespace(**{**new_row, "hash": ""})).content()
                new_row["hash"] = hashlib.sha256(
                    json.dumps(
                        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                    ).encode()
                ).hexdigest()
            elif kind == "insert":
                new_row["hash"] = "f" * 64
            for later in rows[i - 1 :]:
                later["seq"] += 1
            rows.insert(i - 1, new_row)
            if kind == "forge" and i == n + 1:
                head = (i, new_row["hash"])
            # A forged entry without a key is a valid entry (the key is what prevents that):
            # only keyed logs are required to refuse it where it stands.
            assume(keyed or kind != "forge")
        first = _first_difference(original, rows)
        assume(first is not None)
        _rewrite(engine, rows, head)
        result = AuditLog(engine, key=key).verify()
        assert not result.ok, (kind, arg)
        assert result.bad_seq == first, (kind, arg, result.problem)
        assert f"entry {first}" in result.problem


def test_a_keyless_forger_is_stopped_by_the_key() -> None:
    """The case the property leaves out: without a key, an entry whose hash the forger
    recomputed verifies (that is what the key is for); with the key it does not."""
    entry = {
        "actor": "a",
        "action": "set_alias",
        "model": "m",
        "version": "1",
        "alias": "p",
        "details": {},
        "decision": "allowed",
        "outcome": "applied",
        "reasons": [],
    }
    with _audit_db() as (engine, _):
        AuditLog(engine).append(**entry)
        assert AuditLog(engine).verify().ok
        keyed = AuditLog(engine, key=b"k").verify()
        assert (keyed.ok, keyed.bad_seq) == (False, 1)


# -- version spellings --------------------------------------------------------------------------

_VERSIONS = 12
_DIGITS = {
    name: "".join(chr(zero + i) for i in range(10))
    for name, zero in (
        ("ascii", 0x30),
        ("arabic-indic", 0x660),
        ("devanagari", 0x966),
        ("full-width", 0xFF10),
    )
}


@st.composite
def _spelling(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 4)) == 0:  # anything at all
        return draw(st.text(max_size=8))
    number = draw(st.integers(-3, 20) | st.integers(-(2**70), 2**70))
    digits = _DIGITS[draw(st.sampled_from(sorted(_DIGITS)))]
    body = "".join(digits[int(c)] for c in str(abs(number)))
    body = "0" * draw(st.integers(0, 3)) + body
    if len(body) > 1 and draw(st.booleans()):  # one underscore between two digits
        at = draw(st.integers(1, len(body) - 1))
        body = body[:at] + draw(st.sampled_from(["_", "__"])) + body[at:]
    sign = "-" if number < 0 else draw(st.sampled_from(["", "", "+"]))
    suffix = draw(st.sampled_from(["", "", "", ".0", "e0", ".", "L", "j"]))
    space = st.sampled_from(["", "", " ", "\t", "\n", "\u00a0", "\u2003", "\x0b"])
    return draw(space) + sign + body + suffix + draw(space)


@pytest.fixture(scope="module")
def mlflow_store():
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SqlAlchemyStore(f"sqlite:///{tmp}/mlflow.db")
        store.create_registered_model("m")
        for _ in range(_VERSIONS):
            store.create_model_version("m", "file:///tmp/none")
        yield store
        store.engine.dispose()


@settings(max_examples=150)
@given(spelling=_spelling())
def test_each_spelling_mlflow_accepts_is_one_canonical_version(mlflow_store, spelling) -> None:
    from mlflow.exceptions import MlflowException

    try:
        found: str | None = str(mlflow_store.get_model_version("m", spelling).version)
        refused = None
    except MlflowException as exc:
        found, refused = None, exc.error_code
    except Exception as exc:  # e.g. an integer SQLite cannot bind
        found, refused = None, type(exc).__name__
    try:
        ours: str | None = canonical_version(spelling)
    except InvalidVersion:
        ours = None
    if found is not None:  # MLflow read it as an existing version: steward reads the same one
        assert ours == found
    elif refused == "RESOURCE_DOES_NOT_EXIST":  # a number without a version: none for steward
        assert ours is None or not 1 <= int(ours) <= _VERSIONS
    else:  # refused (not a number; or too large: INTERNAL_ERROR, OverflowError): refused too
        assert ours is None, f"MLflow refuses {spelling!r} ({refused}); steward read {ours}"
    if ours is not None:  # the canonical form is its own canonical form, and plain digits
        assert canonical_version(ours) == ours
        assert ours.lstrip("-").isascii()
        assert ours.lstrip("-").isdigit()


# -- configuration files ------------------------------------------------------------------------

_KEYS = [
    "policies",
    "registry_uri",
    "policy_timeout",
    "monitors",
    "deployments",
    "alerters",
    "use",
    "id",
    "when",
    "with",
    "timeout",
    "action",
    "alias",
    "model",
    "actor",
    "stage",
    "prompts",
    "target",
    "tags",
    "metric",
    "min",
    "max",
    "set_alias",
    "production",
    "x",
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-10, 10**6)
    | st.floats(allow_nan=True)
    | st.sampled_from(
        [
            "require-signature",
            "required-tags",
            "set_alias",
            "30s",
            "5m",
            "-1s",
            "include",
            "only",
            "",
        ]
    )
    | st.text(max_size=6)
)
_yaml_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS) | _scalars, inner, max_size=4)
    ),
    max_leaves=12,
)
_documents = st.one_of(
    # structured: a mapping of (mostly) real keys, dumped as YAML
    st.dictionaries(st.sampled_from(_KEYS[:6]) | st.text(max_size=4), _yaml_values, max_size=4).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True, default_flow_style=None)
    ),
    st.builds(yaml.safe_dump, _yaml_values),
    # text with YAML's special characters: broken YAML, tags, anchors and aliases
    st.lists(
        st.sampled_from(
            [
                "policies:",
                "\n",
                "  - ",
                "use: ",
                "required-tags",
                "with: ",
                "{",
                "}",
                "[",
                "]",
                ":",
                "&a ",
                "*a",
                "!!python/object:os.system ",
                "!tag ",
                "? ",
                "---\n",
                "'",
                '"',
                "\t",
                "when: ",
                "action: ",
                "timeout: ",
                "1" * 4301,
                ".nan",
                ".inf",
                "%YAML 1.1\n",
                "- ",
                "#",
                "|\n",
            ]
        ),
        max_size=20,
    ).map("".join),
    st.text(max_size=40),
)


def _check_document(text: str | bytes) -> None:
    from mlflow_steward.config import load_config
    from mlflow_steward.governance.engine import PolicyEngine
    from mlflow_steward.plugins.manager import create_plugin_manager

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "steward.yaml"
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(text)
        error: ConfigError | None = None
        try:
            config = load_config(path)
            PolicyEngine(create_plugin_manager(autoload=False), config)
        except ConfigError as exc:
            error = exc
    if error is not None:
        message = str(error)
        assert error.path == str(path)
        assert error.line is not None, message
        assert error.line >= 1, message
        assert message.startswith(f"{path}:{error.line}: ")
        if not message.startswith(f"{path}:{error.line}: not valid "):
            assert error.key, message


@given(text=_documents)
def test_any_yaml_document_loads_or_names_file_key_and_line(text) -> None:
    _check_document(text)


# The documents it found (each now a ConfigError with file, key and line) are pinned in
# tests/test_config_edges.py.


# -- the KS statistic ---------------------------------------------------------------------------


@st.composite
def _samples(draw: st.DrawFn, max_n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    pool = draw(
        st.lists(
            st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=True), min_size=1, max_size=6
        )
        | st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=3)
    )

    def sample(n: int) -> np.ndarray:
        return np.array(
            draw(st.lists(st.sampled_from(pool) | st.floats(-10, 10), min_size=n, max_size=n))
        )

    n1, n2 = draw(st.integers(1, max_n)), draw(st.integers(1, max_n))
    return sample(n1), sample(n2)


@settings(max_examples=200)
@given(samples=_samples())
def test_ks_statistic_equals_scipys(samples) -> None:
    a, b = samples
    # scipy's exact method (small samples) states the statistic as the fraction h/lcm(n1, n2)
    # it looked up, the asymptotic one as computed: steward's own computation, used above
    # EXACT_MAX_N rows where scipy is asymptotic too, equals the latter to the last bit.
    assert _ks_sorted(np.sort(a), np.sort(b)) == stats.ks_2samp(a, b, method="asymp").statistic
    assert ks_columns(a, b).statistic[0] == stats.ks_2samp(a, b).statistic


@settings(max_examples=8)
@given(
    seed=st.integers(0, 2**32 - 1),
    values=st.integers(1, 50),
    constant=st.booleans(),
    n1=st.integers(EXACT_MAX_N + 1, EXACT_MAX_N + 3000),
    n2=st.integers(1, EXACT_MAX_N + 3000),
)
def test_ks_statistic_equals_scipys_on_large_samples(seed, values, constant, n1, n2) -> None:
    """Above EXACT_MAX_N rows steward computes the statistic itself (every column at once)."""
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, values, size=(n1, 3)).astype(float)
    cur = (rng.integers(0, values, size=(n2, 3)) + rng.integers(0, 2)).astype(float)
    if constant:
        ref[:, 1] = 7.0
        cur[:, 1] = rng.choice([7.0, 8.0])
    got = ks_columns(ref, cur)
    assert got.method.startswith("asymptotic")
    for j in range(3):
        assert got.statistic[j] == stats.ks_2samp(ref[:, j], cur[:, j]).statistic
