"""The ``steward.yaml`` configuration: discovery, parsing with line numbers, validation.

Discovery: ``--config`` (or ``path=``), then ``MLFLOW_STEWARD_CONFIG``, then ``./steward.yaml``;
with none of them the configuration is empty. Unknown keys and bad values are :class:`ConfigError`
naming the file, the key path (``policies[2].with.metric``) and the line, with the valid choices.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_steward.env import CONFIG_ENV
from mlflow_steward.errors import ConfigError
from mlflow_steward.plugins.options import (
    Option,
    OptionError,
    check,
    did_you_mean,
    parse_duration,
)
from mlflow_steward.plugins.types import ACTIONS

DEFAULT_CONFIG_NAME = "steward.yaml"
DEFAULT_POLICY_TIMEOUT = 10.0

TOP_LEVEL_KEYS = {
    "registry_uri": "registry URI to govern (else MLFLOW_REGISTRY_URI / MLFLOW_TRACKING_URI)",
    "policy_timeout": "seconds (or 10s, 2m) a policy may take before it counts as a deny",
    "policies": "list of policies to enforce",
    "deployments": "per-deployment settings: NAME: {target: ..., production: ..., <target options>}",
    "monitors": "monitors: NAME: {model: models:/NAME@ALIAS, data: ..., rules: [...], ...}",
    "alerters": "alert channels: NAME: {use: webhook|slack|smtp|<plugin>, <its options>}",
}
POLICY_KEYS = {
    "use": "name of the policy (see `steward plugins`)",
    "id": "a label for this entry in reasons and the audit log (default: the policy name)",
    "when": "which actions the entry applies to",
    "with": "the policy's options",
    "timeout": "seconds this policy may take",
}
WHEN_KEYS = {
    "action": "action name or list",
    "alias": "alias name, glob or list",
    "stage": "legacy stage name or list",
    "model": "registered model name, glob or list",
    "actor": "actor name, glob or list",
    "target": "deployment target name, glob or list (action deploy)",
    "prompts": "include, exclude or only: whether the policy judges MLflow prompts",
}

#: ``when: {prompts: ...}``: whether a policy judges prompts (registered models MLflow created as
#: prompts). Unset: the policy's own default (``Policy.applies_to_prompts``).
PROMPT_SCOPES = ("include", "exclude", "only")

Path_ = tuple[str | int, ...]


def _fmt(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "<top level>"


@dataclass
class Located:
    """Parsed YAML plus the line of every key and list item, for error messages."""

    data: Any
    lines: dict[Path_, int]
    path: str | None

    def error(self, key: Path_, message: str) -> ConfigError:
        # The key's own line, else its nearest parent's (the document's first line at the top).
        line = None
        probe = key
        while line is None:
            line = self.lines.get(probe)
            if not probe:
                break
            probe = probe[:-1]
        return ConfigError(message, path=self.path, line=line, key=_fmt(key))


#: The most values (scalars, lists, mappings) a configuration may expand to.
MAX_VALUES = 100_000


def _compose(text: str, path: str | None) -> Located:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        # The context mark (where the broken construct starts) is where a person should look;
        # the problem mark is where the parser gave up, often at the end of the file.
        start = getattr(exc, "context_mark", None)
        end = getattr(exc, "problem_mark", None)
        mark = start or end
        line = mark.line + 1 if mark is not None else None
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
            line = text[: exc.position].count("\n") + 1
        detail = str(getattr(exc, "problem", None) or exc)
        if start is not None and end is not None and end.line != start.line:
            detail += f" (noticed at line {end.line + 1})"
        raise ConfigError(f"not valid YAML: {detail}", path=path, line=line) from exc
    lines: dict[Path_, int] = {}
    constructor = yaml.constructor.SafeConstructor()
    #: The collections being converted: an alias to one of them is a cycle (``a: &x [*x]``).
    open_nodes: set[int] = set()
    #: Values converted so far: aliases of aliases can expand a small file exponentially.
    converted = [0]

    def convert(node: yaml.Node, where: Path_) -> Any:
        converted[0] += 1
        if converted[0] > MAX_VALUES:
            raise ConfigError(
                f"the document expands to more than {MAX_VALUES:,} values (aliases of aliases?)",
                path=path,
                line=node.start_mark.line + 1,
                key=_fmt(where),
            )
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in open_nodes:
                raise ConfigError(
                    "an alias refers to a value that contains it (a cycle)",
                    path=path,
                    line=node.start_mark.line + 1,
                    key=_fmt(where),
                )
            open_nodes.add(id(node))
            try:
                return convert_collection(node, where)
            finally:
                open_nodes.discard(id(node))
        return construct(node, where)

    def construct(node: yaml.Node, where: Path_) -> Any:
        """A scalar (or a key) as the safe loader reads it; a tag it does not know (``!!python/
        object``, ``!custom``) or a number Python will not convert is an error at the node's
        line, not a traceback."""
        try:
            return constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: an int of 4,300+ digits
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(
                f"not valid here: {problem}",
                path=path,
                line=node.start_mark.line + 1,
                key=_fmt(where),
            ) from None

    def convert_collection(node: yaml.Node, where: Path_) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = construct(key_node, where)
                if not isinstance(key, str):
                    raise ConfigError(
                        f"keys must be strings, got {key!r}",
                        path=path,
                        line=key_node.start_mark.line + 1,
                        key=_fmt(where),
                    )
                if key in out:
                    raise ConfigError(
                        "duplicate key",
                        path=path,
                        line=key_node.start_mark.line + 1,
                        key=_fmt((*where, key)),
                    )
                lines[(*where, key)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, (*where, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                lines[(*where, i)] = item.start_mark.line + 1
                items.append(convert(item, (*where, i)))
            return items
        raise AssertionError(node)  # convert() passes collections only

    if root is not None:
        lines[()] = root.start_mark.line + 1
    data = convert(root, ()) if root is not None else {}
    return Located(data, lines, path)


def _unknown(loc: Located, where: Path_, key: str, valid: Iterable[str], what: str) -> ConfigError:
    valid = sorted(valid)
    hint = did_you_mean(key, valid)
    return loc.error((*where, key), f"unknown {what} {key!r}{hint}; valid: {', '.join(valid)}")


def _check_keys(
    loc: Located, where: Path_, value: Any, valid: Mapping[str, str], what: str
) -> dict:
    if not isinstance(value, dict):
        raise loc.error(
            where,
            f"expected a mapping with keys {', '.join(sorted(valid))}, got {type(value).__name__}",
        )
    for key in value:
        if key not in valid:
            raise _unknown(loc, where, key, valid, what)
    return value


def _str_list(loc: Located, where: Path_, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise loc.error(
                (*where, i) if isinstance(value, list) else where,
                f"expected a string or a list of strings, got {item!r}",
            )
    return tuple(str(i) for i in items)


@dataclass(frozen=True)
class When:
    """Which events a configured policy applies to; empty fields match everything."""

    actions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    actors: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    prompts: str | None = None

    def matches(
        self,
        action: str,
        *,
        alias: str | None,
        stage: str | None,
        model: str,
        actor: str,
        default_actions: frozenset[str],
        target: str | None = None,
    ) -> bool:
        if action not in (self.actions or default_actions):
            return False
        # Aliases match without regard to case: MLflow keeps "PRODUCTION" apart from
        # "production" on SQLite and PostgreSQL, but a case-insensitive MySQL collation does not,
        # and to a reader they are the same pointer either way.
        if self.aliases and not (
            alias and any(fnmatch.fnmatch(alias.lower(), p.lower()) for p in self.aliases)
        ):
            return False
        if self.stages and not (stage and stage.lower() in {s.lower() for s in self.stages}):
            return False
        if self.models and not any(fnmatch.fnmatchcase(model, p) for p in self.models):
            return False
        if self.targets and not (
            target and any(fnmatch.fnmatchcase(target, p) for p in self.targets)
        ):
            return False
        return not (self.actors and not any(fnmatch.fnmatchcase(actor, p) for p in self.actors))


@dataclass(frozen=True)
class PolicyEntry:
    """One ``policies:`` entry, before it is matched with a registered policy."""

    use: str
    label: str
    when: When
    options: Mapping[str, Any]
    timeout: float | None
    where: Path_


@dataclass
class StewardConfig:
    """The parsed configuration. ``source`` is the file it came from (``None``: no file)."""

    source: str | None = None
    registry_uri: str | None = None
    policy_timeout: float = DEFAULT_POLICY_TIMEOUT
    policies: list[PolicyEntry] = field(default_factory=list)
    #: ``deployments:``: deployment name -> its raw settings (checked against the target's
    #: options when the deployment is used, so errors still name file, key and line).
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``monitors:`` and ``alerters:``, raw (checked by ``monitoring.monitors`` when used).
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerters: dict[str, dict[str, Any]] = field(default_factory=dict)
    located: Located | None = None

    def error(self, where: Path_, message: str) -> ConfigError:
        if self.located is None:
            return ConfigError(message, key=_fmt(where))
        return self.located.error(where, message)


def _parse_when(loc: Located, where: Path_, value: Any) -> When:
    if value is None:
        return When()
    _check_keys(loc, where, value, WHEN_KEYS, "key under when")
    actions = _str_list(loc, (*where, "action"), value["action"]) if "action" in value else ()
    for action in actions:
        if action not in ACTIONS:
            raise loc.error(
                (*where, "action"),
                f"unknown action {action!r}{did_you_mean(action, ACTIONS)}; valid: "
                + ", ".join(ACTIONS),
            )
    return When(
        actions=actions,
        aliases=_str_list(loc, (*where, "alias"), value["alias"]) if "alias" in value else (),
        stages=_str_list(loc, (*where, "stage"), value["stage"]) if "stage" in value else (),
        models=_str_list(loc, (*where, "model"), value["model"]) if "model" in value else (),
        actors=_str_list(loc, (*where, "actor"), value["actor"]) if "actor" in value else (),
        targets=_str_list(loc, (*where, "target"), value["target"]) if "target" in value else (),
        prompts=_prompt_scope(loc, (*where, "prompts"), value["prompts"])
        if "prompts" in value
        else None,
    )


def _prompt_scope(loc: Located, where: Path_, value: Any) -> str:
    if value not in PROMPT_SCOPES:
        raise loc.error(
            where,
            f"expected one of {', '.join(PROMPT_SCOPES)}, not {value!r}"
            + (did_you_mean(value, PROMPT_SCOPES) if isinstance(value, str) else ""),
        )
    return str(value)


def parse_config(text: str, *, path: str | None = None) -> StewardConfig:
    """Parse and check the structure of a configuration (policy names are checked later)."""
    loc = _compose(text, path)
    data = _check_keys(loc, (), loc.data, TOP_LEVEL_KEYS, "top-level key")
    config = StewardConfig(source=path, located=loc)
    if "registry_uri" in data:
        if not isinstance(data["registry_uri"], str):
            raise loc.error(("registry_uri",), "expected a URI string")
        config.registry_uri = data["registry_uri"]
    if "policy_timeout" in data:
        try:
            config.policy_timeout = parse_duration(data["policy_timeout"])
        except ValueError as exc:
            raise loc.error(("policy_timeout",), str(exc)) from None
    for section, what in (
        ("deployments", "deployment"),
        ("monitors", "monitor"),
        ("alerters", "alerter"),
    ):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise loc.error((section,), f"expected a mapping: {what} name -> settings")
        for name, settings in entries.items():
            if not isinstance(settings, dict):
                raise loc.error((section, name), "expected a mapping of settings")
            getattr(config, section)[name] = settings
    policies = data.get("policies") or []
    if not isinstance(policies, list):
        raise loc.error(("policies",), "expected a list of policies (each `- use: NAME`)")
    labels: dict[str, Path_] = {}
    for i, entry in enumerate(policies):
        where: Path_ = ("policies", i)
        if isinstance(entry, str):
            entry = {"use": entry}
        _check_keys(loc, where, entry, POLICY_KEYS, "key in a policy entry")
        if "use" not in entry or not isinstance(entry["use"], str):
            raise loc.error(where, "each policy entry needs `use: NAME`")
        label = entry.get("id", entry["use"])
        if not isinstance(label, str):
            raise loc.error((*where, "id"), "expected a string")
        if label in labels:
            raise loc.error(
                (*where, "id") if "id" in entry else (*where, "use"),
                f"{label!r} is used by two entries; give one an `id:`",
            )
        labels[label] = where
        options = entry.get("with") or {}
        if not isinstance(options, dict):
            raise loc.error((*where, "with"), "expected a mapping of options")
        timeout = None
        if "timeout" in entry:
            try:
                timeout = parse_duration(entry["timeout"])
            except ValueError as exc:
                raise loc.error((*where, "timeout"), str(exc)) from None
        config.policies.append(
            PolicyEntry(
                use=entry["use"],
                label=label,
                when=_parse_when(loc, (*where, "when"), entry.get("when")),
                options=options,
                timeout=timeout,
                where=where,
            )
        )
    return config


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.is_file() else None


def load_config(path: str | os.PathLike[str] | None = None) -> StewardConfig:
    """Find and parse the configuration; an explicitly named file must exist."""
    found = find_config_path(path)
    if found is None:
        return StewardConfig()
    try:
        raw = found.read_bytes()
    except OSError as exc:
        origin = "--config" if path else (CONFIG_ENV if os.environ.get(CONFIG_ENV) else "")
        hint = f" (from {origin})" if origin else ""
        raise ConfigError(
            f"cannot read the configuration file{hint}: {exc.strerror}", path=str(found)
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not valid UTF-8 text: byte {raw[exc.start]:#04x} at offset {exc.start}",
            path=str(found),
            line=line,
        ) from None
    return parse_config(text, path=str(found))


def check_options(
    config: StewardConfig,
    where: Path_,
    given: Mapping[str, Any],
    options: Iterable[Option],
    owner: str,
    *,
    plugin: str | None = None,
    none: str = "(no options)",
) -> dict[str, Any]:
    """``given`` (the settings at ``where`` in the file) checked by the one option checker
    (:func:`mlflow_steward.plugins.options.check`) against the declared ``options`` of ``owner``;
    its errors become :class:`ConfigError` naming file, key and line. Defaults are filled in."""
    try:
        return check(given, options, owner, plugin=plugin, none=none)
    except OptionError as exc:
        raise config.error(where if exc.key is None else (*where, exc.key), str(exc)) from None
