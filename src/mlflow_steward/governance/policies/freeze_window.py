"""Built-in policy ``freeze-window``: no promotions inside configured time windows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {name!r} (use an IANA name like Europe/Berlin)"
        ) from exc


def _clock(value: Any) -> time:
    if isinstance(value, int):  # YAML reads 16:00 as sexagesimal 960; take it back to minutes
        return time(value // 60, value % 60)
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a time of day like 16:30") from exc


def _moment(value: Any, zone: ZoneInfo) -> datetime:
    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a date/time like 2026-12-20T00:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _describe(window: Mapping[str, Any]) -> str:
    if "start" in window:
        return f"{window['start']} to {window['end']}"
    days = ", ".join(window.get("days", DAYS))
    return f"{days} {_clock(window.get('from', '00:00'))}-{_clock(window.get('to', '23:59:59'))}"


def _inside(window: Mapping[str, Any], now: datetime, zone: ZoneInfo) -> bool:
    if "start" in window:
        return _moment(window["start"], zone) <= now < _moment(window["end"], zone)
    days = [str(d).lower()[:3] for d in window.get("days", DAYS)]
    start, end = _clock(window.get("from", "00:00")), _clock(window.get("to", "23:59:59"))
    local = now.astimezone(zone)
    return DAYS[local.weekday()] in days and start <= local.time() <= end


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    zone = _zone(options["timezone"])
    for i, window in enumerate(options["windows"], start=1):
        if _inside(window, event.time, zone):
            return PolicyVerdict.deny(
                f"promotions are frozen now ({event.time.astimezone(zone):%Y-%m-%d %H:%M} "
                f"{options['timezone']}): window {i} ({_describe(window)})"
            )
    return PolicyVerdict.allow("outside every freeze window")


def validate(options: Mapping[str, Any]) -> None:
    zone = _zone(options["timezone"])
    for i, window in enumerate(options["windows"], start=1):
        if not isinstance(window, dict):
            raise ValueError(f"window {i} must be a mapping")
        keys = set(window)
        if "start" in keys or "end" in keys:
            if keys != {"start", "end"}:
                raise ValueError(f"window {i}: a dated window has exactly `start` and `end`")
            if _moment(window["start"], zone) >= _moment(window["end"], zone):
                raise ValueError(f"window {i}: start must be before end")
        else:
            unknown = keys - {"days", "from", "to"}
            if unknown or not keys:
                raise ValueError(
                    f"window {i}: use `start`/`end`, or `days`/`from`/`to` "
                    f"(unknown: {', '.join(sorted(unknown)) or 'empty window'})"
                )
            bad = [d for d in window.get("days", DAYS) if str(d).lower()[:3] not in DAYS]
            if bad:
                raise ValueError(f"window {i}: unknown day {bad[0]!r}; use {', '.join(DAYS)}")
            _clock(window.get("from", "00:00"))
            _clock(window.get("to", "23:59:59"))


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="freeze-window",
        check=check,
        description="Refuses promotions inside time windows: dated (start/end) or weekly "
        "(days/from/to), in a given timezone.",
        options=(
            Option("windows", "list", "list of {start, end} or {days, from, to} windows"),
            Option("timezone", "str", "IANA timezone the windows are written in", "UTC"),
        ),
        validate=validate,
    )
