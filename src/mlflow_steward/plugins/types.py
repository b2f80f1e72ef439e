"""Frozen registration types that plugins yield from the ``steward_*`` registration hooks.

Keep this module free of heavy imports: plugin packages import it at their own import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

# Option lives with the one option checker; plugins import it from here as before.
from mlflow_steward.plugins.options import Option as Option
from mlflow_steward.plugins.options import OptionKind as OptionKind

if TYPE_CHECKING:
    import click

    from mlflow_steward.plugins.events import ActionEvent
    from mlflow_steward.plugins.services import MonitorConfig, StewardServices

#: Every action that steward governs. ``when: {action: ...}`` in the configuration takes these.
ACTIONS: tuple[str, ...] = (
    "create_registered_model",
    "update_registered_model",
    "rename_registered_model",
    "delete_registered_model",
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "create_model_version",
    "update_model_version",
    "delete_model_version",
    "set_model_version_tag",
    "delete_model_version_tag",
    "set_alias",
    "delete_alias",
    "transition_stage",
    "request_approval",
    "approve",
    "reject",
    "deploy",
    "retrain",
    # Registry webhooks send registry events to any URL: creating, changing, deleting or
    # test-firing one is governed too (the event's model is the webhook's name, or "*").
    "create_webhook",
    "update_webhook",
    "delete_webhook",
    "test_webhook",
)

#: Actions that move a version into a lifecycle position (an alias or a legacy stage).
PROMOTION_ACTIONS: frozenset[str] = frozenset({"set_alias", "transition_stage"})

#: Kinds of deployment target.
TARGET_KINDS: tuple[str, ...] = ("cloud", "onprem", "edge")

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def validate_name(kind: str, name: str) -> None:
    """Registered names are lower-case words joined by dashes (``metric-threshold``)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{kind} name {name!r} is not valid: use lower-case words joined by dashes, "
            "e.g. 'metric-threshold'"
        )


@dataclass(frozen=True)
class PolicyVerdict:
    """What one policy says about one action. Build it with :meth:`allow` or :meth:`deny`."""

    allowed: bool
    reason: str

    @classmethod
    def allow(cls, reason: str = "ok") -> PolicyVerdict:
        return cls(True, reason)

    @classmethod
    def deny(cls, reason: str) -> PolicyVerdict:
        return cls(False, reason)


PolicyCheck = Callable[["ActionEvent", Mapping[str, Any]], PolicyVerdict]


@dataclass(frozen=True)
class Policy:
    """A policy a plugin offers, yielded from ``steward_policies()``.

    ``check(event, options)`` must return a :class:`PolicyVerdict`; anything else, an exception or
    running past the timeout is a deny attributed to the plugin (policies fail closed).

    ``actions`` are the actions the policy applies to when the configuration's ``when:`` names
    none. ``enabled_by_default`` policies apply without being listed in the configuration (with
    their option defaults); the others apply only where a ``use:`` entry names them.
    ``validate(options)`` may raise ``ValueError`` to reject a combination of options when the
    configuration is loaded (the error then names the file and line).
    """

    name: str
    check: PolicyCheck
    description: str
    actions: frozenset[str] = PROMOTION_ACTIONS
    options: tuple[Option, ...] = ()
    enabled_by_default: bool = False
    applies_to_prompts: bool = False
    validate: Callable[[Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        validate_name("policy", self.name)
        unknown = set(self.actions) - set(ACTIONS)
        if unknown:
            raise ValueError(
                f"policy {self.name!r} names unknown actions {sorted(unknown)}; "
                f"valid actions: {', '.join(ACTIONS)}"
            )
        if not callable(self.check):
            raise TypeError(f"policy {self.name!r}: check must be callable")


@dataclass(frozen=True)
class CardSection:
    """A section a plugin adds to model cards, yielded from ``steward_card_sections()``.

    ``title`` is its heading; ``text`` a paragraph and ``rows`` ``(label, value)`` pairs shown as a
    table. Both are text, never markup: the HTML card escapes them and the Markdown card escapes
    HTML in them, so a value cannot inject markup into the card.
    """

    title: str
    text: str = ""
    rows: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError("a card section needs a title")
        if not isinstance(self.text, str):
            raise TypeError(f"card section {self.title!r}: text must be a string")
        rows = tuple((str(label), str(value)) for label, value in self.rows)
        object.__setattr__(self, "rows", rows)


@dataclass(frozen=True)
class Command:
    """A CLI command a plugin adds, yielded from ``steward_commands()``.

    ``load`` returns the :class:`click.Command`; it is called only when the command runs or help is
    shown, so a plugin can keep heavy imports inside it. Plugin commands may not shadow built-ins.
    """

    name: str
    load: Callable[[], click.Command]
    help: str = ""

    def __post_init__(self) -> None:
        validate_name("command", self.name)


@dataclass(frozen=True)
class DeploymentTarget:
    """A deployment target a plugin offers, yielded from ``steward_deployment_targets()``.

    ``client`` is a class (or factory) called as ``client(target, context)`` that returns an object
    with the methods of :class:`mlflow_steward.plugins.targets.TargetClient` (create, update,
    delete, list, get, predict, rollback, promote_canary, health, status). It is called only when
    a command needs the target, so a plugin can keep heavy imports inside it.
    ``options`` is the target's configuration schema (``-C key=value``, ``deployments:`` in
    steward.yaml); unknown keys and bad values are refused before anything starts.
    """

    name: str
    kind: Literal["cloud", "onprem", "edge"]
    client: Callable[..., Any]
    help: str
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        validate_name("deployment target", self.name)
        if self.kind not in TARGET_KINDS:
            raise ValueError(
                f"deployment target {self.name!r}: kind {self.kind!r} is not one of "
                f"{', '.join(TARGET_KINDS)}"
            )
        if not callable(self.client):
            raise TypeError(f"deployment target {self.name!r}: client must be callable")


@dataclass(frozen=True)
class PluginInfo:
    """What the manager knows about one registered plugin (for ``steward plugins``)."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    hooks: tuple[str, ...]
    provides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def as_tuple(items: Iterable[Any] | None) -> tuple[Any, ...]:
    """Registration hooks may return a list, a tuple, a generator or ``None``."""
    return tuple(items) if items is not None else ()


# --- monitoring -------------------------------------------------------------------------------

COLUMN_KINDS = ("numeric", "categorical")


@dataclass(frozen=True)
class DetectorResult:
    """One column's result from a detector: a p-value test (``p_value`` set; steward corrects it
    for the number of columns and compares it with ``alpha``) or a distance (``drifted`` decided
    against ``threshold`` by the detector)."""

    statistic: float
    p_value: float | None = None
    threshold: float | None = None
    drifted: bool | None = None
    note: str = ""
    #: How the result was reached, when more precise than the detector's name ("ks (exact)").
    method: str = ""
    #: One multivariate test whose result every column gets: counted once when p-values are
    #: corrected for the number of tests.
    joint: bool = False


@dataclass(frozen=True)
class Detector:
    """A drift detector, yielded from ``steward_detectors()``.

    ``measure(columns, params)`` gets ``{column: (reference_values, current_values)}`` (1-D numpy
    arrays, NaN and infinities already left out, every column of a kind in ``kinds``) and
    ``params`` (the monitor's ``params:`` for this detector, checked against ``options``), and
    returns ``{column: DetectorResult}`` for each column. Vectorise over the columns when you can.
    An exception fails the monitor run that uses the detector (visibly); it never becomes a
    verdict.

    ``measure_sketches(columns, params)``, when given, declares that the detector can judge from
    per-column sketches (a window bigger than the monitor's memory budget, or a data source that
    returns a :class:`~mlflow_steward.plugins.SketchedWindow`): it gets ``{column: (reference,
    current)}`` as :class:`~mlflow_steward.plugins.ColumnSketch` pairs, for every kind in
    ``kinds``, and returns ``{column: DetectorResult}`` with ``threshold`` and ``drifted`` (a
    distance: p-values are not used from sketches). ``None`` (the default): the detector needs
    the rows, and choosing it for a sketched window fails the run, naming the detectors that can.
    """

    name: str
    kinds: tuple[str, ...]
    measure: Callable[[Mapping[str, tuple[Any, Any]], Mapping[str, Any]], Mapping[str, Any]]
    help: str
    needs_labels: bool = False
    options: tuple[Option, ...] = ()
    measure_sketches: (
        Callable[[Mapping[str, tuple[Any, Any]], Mapping[str, Any]], Mapping[str, Any]] | None
    ) = None

    def __post_init__(self) -> None:
        validate_name("detector", self.name)
        bad = [k for k in self.kinds if k not in COLUMN_KINDS]
        if bad or not self.kinds:
            raise ValueError(
                f"detector {self.name!r}: kinds must be some of {', '.join(COLUMN_KINDS)}"
            )
        if not callable(self.measure):
            raise TypeError(f"detector {self.name!r}: measure must be callable")
        if self.measure_sketches is not None and not callable(self.measure_sketches):
            raise TypeError(f"detector {self.name!r}: measure_sketches must be callable or None")


@dataclass(frozen=True)
class Alert:
    """What an alerter sends: one monitor run's verdict and what the rules did about it."""

    monitor: str
    model: str
    version: str
    status: str
    drifted: tuple[str, ...]
    share: float
    actions: tuple[str, ...]
    run_id: str | None
    summary: str
    time: str

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class ActionContext:
    """What an action sees: the monitor, this run's result, a session, and the alert channels."""

    monitor: MonitorConfig
    model: str
    version: str | None  # None: the monitored version could not be resolved (status error)
    status: str
    drifted: tuple[str, ...]
    share: float
    run_id: str | None
    session: StewardServices
    dry_run: bool
    alerters: Mapping[str, Any]
    channels: Mapping[str, Any]
    done: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str | None:
        from mlflow_steward.registry import parse_model_uri

        return parse_model_uri(self.monitor.model).alias

    def alert(self) -> Alert:
        target = f"models:/{self.model}/{self.version}" if self.version else self.monitor.model
        summary = (
            f"monitor {self.monitor.name}: {self.status.upper()} on {target}"
            + (f"; drifted columns: {', '.join(self.drifted)}" if self.drifted else "")
            + (f"; actions: {'; '.join(self.done)}" if self.done else "")
        )
        return Alert(
            monitor=self.monitor.name,
            model=self.model,
            version=self.version or "",
            status=self.status,
            drifted=tuple(self.drifted),
            share=self.share,
            actions=tuple(self.done),
            run_id=self.run_id,
            summary=summary,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
        )


@dataclass(frozen=True)
class Alerter:
    """An alert channel, yielded from ``steward_alerters()``: ``send(alert, settings)`` delivers
    one :class:`Alert` (``settings``: the ``alerters:`` entry of steward.yaml, checked against
    ``options``). An exception is logged and retried; it never stops the monitor run."""

    name: str
    send: Callable[[Alert, Mapping[str, Any]], None]
    help: str
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        validate_name("alerter", self.name)
        if not callable(self.send):
            raise TypeError(f"alerter {self.name!r}: send must be callable")


@dataclass(frozen=True)
class MonitorAction:
    """What a monitor rule can do about a verdict, yielded from ``steward_monitor_actions()``.

    ``run(context, params)`` does it and returns a one-line description; ``context`` is a
    :class:`ActionContext` (the monitor, the verdict, a session
    acting as ``steward-monitor``, ``dry_run``). Registry changes go through that session, so
    policies can refuse them and they are audited. With ``dry_run`` set, describe, do nothing.
    """

    name: str
    run: Callable[[ActionContext, Mapping[str, Any]], str]
    help: str
    #: The settings ``do: [{NAME: {...}}]`` takes, checked when the configuration is read.
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        validate_name("monitor action", self.name)
        if not callable(self.run):
            raise TypeError(f"monitor action {self.name!r}: run must be callable")


@dataclass
class SourceContext:
    """What a data source's ``read`` is given besides its spec: the monitored ``version`` (keep
    only the rows it answered), ``since`` (a UNIX time or ``None``: keep only newer rows), the
    ``session`` and ``columns``: the columns the monitored version takes, by kind (``numeric``
    or ``categorical``, from its baseline), so a source may read only those (and
    ``__prediction__``, compared too where the data has it); ``None`` where not known (labels);
    ``model``: the monitored registered model's name (``None`` for labels)."""

    version: str | None
    since: float | None
    session: StewardServices
    columns: Mapping[str, str] | None = None
    model: str | None = None


@dataclass(frozen=True)
class DataSource:
    """Where current data comes from, yielded from ``steward_data_sources()``.

    A monitor's ``data: {NAME: spec}`` selects it; ``read(spec, context)`` returns a pandas
    DataFrame of current rows, or, for data too big to bring to this machine, a
    :class:`~mlflow_steward.plugins.SketchedWindow` (per-column sketches computed where the data
    lives; steward judges it from them with the detectors that declare ``measure_sketches``).
    ``context`` (a :class:`SourceContext`) has ``version`` (the monitored version: keep only the
    rows it answered, where the data says), ``since`` (a UNIX time or ``None``: keep only newer
    rows), ``session`` (:class:`StewardServices`) and ``columns`` (the model's columns by kind).
    Raise :class:`mlflow_steward.errors.MonitoringError` with a message a user can act on.
    """

    name: str
    read: Callable[[Any, SourceContext], Any]
    help: str

    def __post_init__(self) -> None:
        validate_name("data source", self.name)
        if not callable(self.read):
            raise TypeError(f"data source {self.name!r}: read must be callable")
