"""The one option checker: what a plugin declares with :class:`Option`, checked the same way
wherever a value comes from.

Used for policies (``with:``), detectors (``params:``, ``--param``), rule actions (``do:``),
alerters (``alerters:``) and deployment targets (``deployments:``, ``-C key=value``,
``mlflow deployments -C``). Values from a configuration file arrive typed (YAML); values from a
command line arrive as text and are read with :func:`from_text` first.

:func:`check` raises :class:`OptionError`; the callers turn it into a :class:`ConfigError` naming
file, key and line (:func:`mlflow_steward.config.check_options`) or into a one-line CLI error.
Keep this module free of heavy imports: plugin packages import :class:`Option` at import time.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

OptionKind = Literal["str", "int", "number", "bool", "str_list", "mapping", "duration", "list"]

_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One option a plugin's policy, detector, rule action, alerter or target accepts."""

    name: str
    kind: OptionKind
    help: str
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def describe(self) -> str:
        """One help line: ``name (kind): help (default: ...)``."""
        text = f"{self.name} ({self.kind}): {self.help}"
        if self.choices is not None:
            text += f"; one of {', '.join(map(str, self.choices))}"
        return text + (" (required)" if self.required else f" (default: {self.default!r})")


class OptionError(ValueError):
    """A value that does not fit the declared options. ``key`` is the option (``None``: the
    problem is about the whole set, e.g. a missing required option)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"``, ``"1w"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 2h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; use e.g. 30s, 5m, 2h or 7d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    # .nan, .inf or 400 digits: no timeout or schedule can wait that long (nor compare it)
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration; use e.g. 30s, 5m, 2h or 7d")
    return seconds


def did_you_mean(value: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or nothing."""
    close = difflib.get_close_matches(value, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(option: Option, value: Any) -> Any:
    """Check one value against its option; raises ValueError with a user-facing message."""
    kind = option.kind
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
    elif kind == "str_list":
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, str) for i in items):
            raise ValueError(f"expected a string or a list of strings, got {value!r}")
        value = list(items)
    elif kind == "list":
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
    elif kind == "mapping":
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
    elif kind == "duration":
        value = parse_duration(value)
    if option.choices is not None:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in option.choices]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(map(str, option.choices))}")
    return value


def default_value(option: Option) -> Any:
    """An option's default, checked like a given value (so ``"7d"`` becomes seconds)."""
    return None if option.default is None else coerce(option, option.default)


def from_text(option: Option, raw: Any) -> Any:
    """A command-line value (``--param k=v``, ``-C k=v``) read for its option's kind: strings
    stay as they are, ``str_list`` splits on commas, anything else is read as a YAML scalar
    (``3``, ``0.5``, ``true``, ``[a, b]``, ``{k: v}``)."""
    if not isinstance(raw, str) or option.kind == "str":
        return raw
    if option.kind == "str_list":
        return [part.strip() for part in raw.split(",") if part.strip()]
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if option.kind == "number" and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as text
            return float(raw)
        except ValueError:
            pass
    return value


def parse_pairs(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["k=v", ...]`` from a repeatable ``KEY=VALUE`` flag; raises ValueError naming ``flag``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {item!r}: use {flag} KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def check(
    given: Mapping[str, Any],
    options: Iterable[Option],
    owner: str,
    *,
    plugin: str | None = None,
    text: bool = False,
    fill: bool = True,
    none: str = "(no options)",
) -> dict[str, Any]:
    """``given`` checked against the declared ``options`` of ``owner`` (``"detector 'ratio'"``):
    unknown keys, values of the wrong type and missing required options raise
    :class:`OptionError`; defaults are filled in. ``plugin`` (``"'acme' (distribution acme
    1.0)"``) is named in type errors; ``text``: the values come from a command line;
    ``fill=False``: one layer of several (no defaults, no missing-option check)."""
    declared = {o.name: o for o in options}
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in declared:
            valid = sorted(declared) or [none]
            raise OptionError(
                f"{owner} has no option {key!r}{did_you_mean(key, valid)}; valid: "
                + ", ".join(valid),
                key,
            )
        option = declared[key]
        try:
            out[key] = coerce(option, from_text(option, value) if text else value)
        except ValueError as exc:
            raise OptionError(
                f"{exc} (option {key!r} of {owner}"
                + (f" from plugin {plugin}" if plugin else "")
                + ")",
                key,
            ) from None
    for name, option in declared.items() if fill else ():
        if name not in out:
            if option.required:
                raise OptionError(f"{owner} needs option {name!r}: {option.help}")
            out[name] = default_value(option)
    return out


def defaults(options: Iterable[Option]) -> dict[str, Any]:
    """The defaults of every optional option (what an empty mapping of settings gets)."""
    return {o.name: default_value(o) for o in options if not o.required}


def help_section(options: Iterable[Option], *, flag: str = "-C") -> str:
    """The ``Options`` section of a help text, generated from the declared options."""
    lines = [f"  {o.describe()}" for o in options]
    if not lines:
        return "Options: none."
    return f"Options ({flag} key=value):\n" + "\n".join(lines)
