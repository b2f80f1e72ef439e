"""Monitors and alerters of ``steward.yaml``, checked against the registered detectors, actions,
data sources and alert channels: every error names the file, the key and the line.

.. code-block:: yaml

    monitors:
      fraud-production:
        model: models:/fraud@production
        data: {requests: fraud-prod}        # or a path/glob, or {files: ...}, {<plugin source>: ...}
        window: 1h                          # only data newer than this
        schedule: 15m                       # for `steward monitor watch`
        detector: auto                      # or a detector name; params: {...} for its options
        min_samples: 100
        drift_share: 0.3
        rules:
          - when: drift                     # healthy, drift, degraded, invalid,
                                            # insufficient data, error; or recovered
            after: 2                        # consecutive runs with that status
            cooldown: 1h
            do: [tag, {alert: [ops]}, rollback]
    alerters:
      ops: {use: webhook, url: "http://127.0.0.1:9000/hook", secret_env: OPS_HOOK_SECRET}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow_steward.config import Path_, StewardConfig, check_options
from mlflow_steward.errors import ConfigError
from mlflow_steward.monitoring import CORRECTIONS, NO_VERDICT, PERFORMANCE_METRICS, RECOVERED
from mlflow_steward.plugins.options import Option, did_you_mean, parse_duration

STATUSES = ("healthy", "drift", "degraded", "invalid", "insufficient data", "error")
#: What a rule's `when:` can name: a status, or `recovered` (healthy again after an unhealthy run).
CONDITIONS = (*STATUSES, RECOVERED)
SINCE_LAST_RUN = "since-last-run"

_SETTINGS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("model", "str", "the version to watch: models:/NAME@ALIAS or models:/NAME/VERSION"),
        Option("data", "str", "current data: a path or glob, or {SOURCE: spec}"),
        Option(
            "window",
            "str",
            "only data newer than this duration (1h), or since-last-run (request logs, files)",
            None,
        ),
        Option("schedule", "duration", "how often `steward monitor watch` runs it", "1h"),
        Option("detector", "str", "auto, or a detector name (`steward plugins`)", "auto"),
        Option("params", "mapping", "options of the detector named by `detector`", {}),
        Option(
            "correction",
            "str",
            "multiple-testing correction",
            "benjamini-hochberg",
            choices=CORRECTIONS,
        ),
        Option("alpha", "number", "significance level of p-value tests", 0.05),
        Option("thresholds", "mapping", "distance thresholds by detector name", {}),
        Option("min_samples", "int", "rows needed before judging", 100),
        Option("large_sample", "int", "from this size on, auto uses distances", 5000),
        Option("drift_share", "number", "share of drifted columns that makes a drift verdict", 0.3),
        Option("weights", "mapping", "importance of columns in that share", {}),
        Option(
            "labels", "str", "labels that arrived later: a path or glob, or {SOURCE: spec}", None
        ),
        Option("label_column", "str", "the labels' label column", "label"),
        Option(
            "performance_metric",
            "str",
            "realised-performance metric",
            "accuracy",
            choices=PERFORMANCE_METRICS,
        ),
        Option(
            "max_performance_drop", "number", "largest tolerated loss against the baseline", 0.05
        ),
        Option(
            "memory_budget",
            "str",
            "a request-log window bigger than this (1GiB, 200MB) is judged from sketches, "
            "streamed in chunks",
            "1GiB",
        ),
        Option("dry_run", "bool", "log what the rules would do, do nothing", False),
        Option("rules", "list", "what to do about verdicts", []),
    )
}
_RULE_KEYS = {"when", "after", "cooldown", "do"}


@dataclass(frozen=True)
class ActionCall:
    name: str
    params: Any
    where: Path_


@dataclass(frozen=True)
class Rule:
    index: int
    when: tuple[str, ...]
    after: int
    cooldown: float
    actions: tuple[ActionCall, ...]


@dataclass(frozen=True)
class Monitor:
    name: str
    model: str
    data: Any
    window: float | str | None
    schedule: float
    detector: str
    params: Mapping[str, Any]
    judge: Mapping[str, Any]
    dry_run: bool
    rules: tuple[Rule, ...]
    labels: Any = None
    performance: Mapping[str, Any] = field(default_factory=dict)
    where: Path_ = field(default=())
    #: Bytes: a request-log window estimated bigger than this is judged from sketches.
    memory_budget: int = 1 << 30

    def judge_settings(self) -> dict[str, Any]:
        return {"method": self.detector, "params": dict(self.params), **self.judge}


@dataclass(frozen=True)
class AlerterEntry:
    name: str
    use: str
    settings: Mapping[str, Any]


def _choose(config: StewardConfig, where: Path_, value: Any, valid: list[str], what: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise config.error(
            where,
            f"unknown {what} {value!r}{did_you_mean(str(value), valid)}; valid: {', '.join(sorted(valid))}",
        )
    return value


def _source(config: StewardConfig, where: Path_, value: Any, sources: list[str]) -> Any:
    """A path or glob (the files source), or ``{SOURCE: spec}`` with a registered source."""
    if isinstance(value, dict):
        if len(value) != 1:
            raise config.error(where, f"name one data source: {', '.join(sources)}")
        _choose(config, (*where, next(iter(value))), next(iter(value)), sources, "data source")
    elif not isinstance(value, str):
        raise config.error(where, "expected a path or glob, or {SOURCE: spec}")
    return value


def parse_monitor(config: StewardConfig, name: str, raw: Mapping[str, Any], pm: Any) -> Monitor:
    where: Path_ = ("monitors", name)
    for key in raw:
        if key not in _SETTINGS:
            valid = sorted(_SETTINGS)
            raise config.error(
                (*where, key),
                f"unknown monitor setting {key!r}{did_you_mean(key, valid)}; valid: {', '.join(valid)}",
            )
    own = ("data", "rules", "params", "labels")  # checked below, against the plugins
    for key in _SETTINGS:
        if key not in raw and _SETTINGS[key].required and key not in own:
            raise config.error(where, f"monitor {name!r} needs `{key}:` ({_SETTINGS[key].help})")
    values = check_options(
        config,
        where,
        {k: v for k, v in raw.items() if k not in own},
        [o for o in _SETTINGS.values() if o.name not in own],
        f"monitor {name!r}",
    )
    if values["window"] is not None and values["window"] != SINCE_LAST_RUN:
        try:
            values["window"] = parse_duration(values["window"])
        except ValueError as exc:
            raise config.error((*where, "window"), f"{exc}, or {SINCE_LAST_RUN}") from None
    if not str(values["model"]).startswith("models:/"):
        raise config.error((*where, "model"), "expected models:/NAME@ALIAS or models:/NAME/VERSION")
    if "data" not in raw:
        raise config.error(
            where, f"monitor {name!r} needs `data:` (a path or glob, or {{SOURCE: spec}})"
        )
    sources = sorted(pm.hooks.data_sources())
    data = _source(config, (*where, "data"), raw["data"], sources)
    labels = None
    if raw.get("labels") is not None:
        labels = _source(config, (*where, "labels"), raw["labels"], sources)
    detectors = pm.hooks.detectors()
    if values["detector"] != "auto":
        _choose(config, (*where, "detector"), values["detector"], ["auto", *detectors], "detector")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise config.error((*where, "params"), "expected a mapping of detector options")
    if params and values["detector"] == "auto":
        raise config.error((*where, "params"), "params apply to a named `detector:`, not auto")
    if values["detector"] != "auto":
        params = check_options(
            config,
            (*where, "params"),
            params,
            detectors[values["detector"]].options,
            f"detector {values['detector']!r}",
            plugin=pm.hooks.plugin_of("steward_detectors", values["detector"]),
        )
    try:
        budget = parse_size(values["memory_budget"])
    except ValueError as exc:
        raise config.error((*where, "memory_budget"), str(exc)) from None
    if values["schedule"] <= 0:
        raise config.error((*where, "schedule"), "expected a duration above 0")
    for key in ("thresholds", "weights"):
        for column, number in values[key].items():
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise config.error((*where, key, column), f"expected a number >= 0, got {number!r}")
    for key in ("alpha", "drift_share"):
        if not 0 < values[key] <= 1:
            raise config.error((*where, key), f"expected a number in (0, 1], got {values[key]}")
    if values["min_samples"] < 1:
        raise config.error((*where, "min_samples"), "expected at least 1")
    rules = tuple(
        _parse_rule(config, (*where, "rules", i), rule, pm, i)
        for i, rule in enumerate(raw.get("rules") or [])
    )
    judge = {
        k: values[k]
        for k in (
            "correction",
            "alpha",
            "thresholds",
            "min_samples",
            "large_sample",
            "drift_share",
            "weights",
        )
    }
    performance = {
        k: values[k] for k in ("label_column", "performance_metric", "max_performance_drop")
    }
    return Monitor(
        name=name,
        model=values["model"],
        data=data,
        window=values["window"],
        schedule=values["schedule"],
        detector=values["detector"],
        params=params,
        judge=judge,
        dry_run=values["dry_run"],
        rules=rules,
        labels=labels,
        performance=performance,
        where=where,
        memory_budget=budget,
    )


def _parse_rule(config: StewardConfig, where: Path_, raw: Any, pm: Any, index: int) -> Rule:
    if not isinstance(raw, dict):
        raise config.error(where, "expected a rule: {when: STATUS, do: [ACTION, ...]}")
    for key in raw:
        if key not in _RULE_KEYS:
            raise config.error(
                (*where, key),
                f"unknown rule key {key!r}{did_you_mean(key, sorted(_RULE_KEYS))}; valid: "
                + ", ".join(sorted(_RULE_KEYS)),
            )
    if "when" not in raw or "do" not in raw:
        raise config.error(where, "a rule needs `when:` (a status) and `do:` (actions)")
    when = raw["when"] if isinstance(raw["when"], list) else [raw["when"]]
    if not when:
        raise config.error((*where, "when"), "name at least one status")
    for i, status in enumerate(when):
        spot = (*where, "when", i) if isinstance(raw["when"], list) else (*where, "when")
        _choose(config, spot, status, list(CONDITIONS), "status")
    after = raw.get("after", 1)
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        raise config.error(
            (*where, "after"), f"expected a whole number of runs >= 1, got {after!r}"
        )
    try:
        cooldown = parse_duration(raw.get("cooldown", 0))
    except ValueError as exc:
        raise config.error((*where, "cooldown"), str(exc)) from None
    do = raw["do"] if isinstance(raw["do"], list) else [raw["do"]]
    actions = pm.hooks.monitor_actions()
    calls = []
    for i, item in enumerate(do):
        spot = (*where, "do", i) if isinstance(raw["do"], list) else (*where, "do")
        if isinstance(item, str):
            action, params = item, None
        elif isinstance(item, dict) and len(item) == 1:
            action, params = next(iter(item.items()))
        else:
            raise config.error(spot, "expected an action name or {ACTION: its settings}")
        _choose(config, spot, action, sorted(actions), "monitor action")
        no_verdict = [s for s in when if s in NO_VERDICT]
        if no_verdict and action != "alert":
            raise config.error(
                spot,
                f"a rule on {', '.join(no_verdict)} may only alert: that status says nothing "
                f"about the model, so {action!r} is not allowed",
            )
        if RECOVERED in when and action != "alert":
            raise config.error(
                spot,
                f"a rule on recovered may only alert (the model is healthy again: nothing to "
                f"undo), so {action!r} is not allowed",
            )
        if action == "alert":
            if not (
                params is None
                or isinstance(params, str)
                or (isinstance(params, list) and all(isinstance(p, str) for p in params))
            ):
                raise config.error(spot, "alert takes an alerter name or a list of them")
        else:
            # A bare `do: [NAME]` gets the declared defaults, exactly as `do: [{NAME: {}}]`.
            if params is not None and not isinstance(params, dict):
                raise config.error(spot, f"{action} takes a mapping of its settings")
            params = check_options(
                config,
                spot,
                params or {},
                actions[action].options,
                f"action {action!r}",
                plugin=pm.hooks.plugin_of("steward_monitor_actions", action),
            )
        calls.append(ActionCall(action, params, spot))
    return Rule(index, tuple(when), after, cooldown, tuple(calls))


def parse_alerters(config: StewardConfig, pm: Any) -> dict[str, AlerterEntry]:
    channels = pm.hooks.alerters()
    out = {}
    for name, raw in config.alerters.items():
        where: Path_ = ("alerters", name)
        if "use" not in raw:
            raise config.error(
                where, f"alerter {name!r} needs `use:` ({', '.join(sorted(channels))})"
            )
        use = _choose(config, (*where, "use"), raw["use"], sorted(channels), "alerter")
        settings = check_options(
            config,
            where,
            {k: v for k, v in raw.items() if k != "use"},
            channels[use].options,
            f"alerter {use!r}",
            plugin=pm.hooks.plugin_of("steward_alerters", use),
        )
        out[name] = AlerterEntry(name, use, settings)
    return out


def load_monitors(config: StewardConfig, pm: Any) -> dict[str, Monitor]:
    """Every monitor of the configuration, checked (raises :class:`ConfigError`)."""
    monitors = {name: parse_monitor(config, name, raw, pm) for name, raw in config.monitors.items()}
    alerters = parse_alerters(config, pm)
    for monitor in monitors.values():
        for rule in monitor.rules:
            for call in rule.actions:
                if call.name == "alert":
                    if not alerters:
                        raise config.error(
                            call.where, "alert needs alerters: add an `alerters:` section"
                        )
                    for target in alert_targets(call.params, alerters):
                        if target not in alerters:
                            raise config.error(
                                call.where,
                                f"unknown alerter {target!r}{did_you_mean(target, sorted(alerters))}; "
                                f"configured: {', '.join(sorted(alerters)) or 'none'}",
                            )
    return monitors


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 1 << 10, "mib": 1 << 20}
_UNITS["gib"] = 1 << 30


def parse_size(value: Any) -> int:
    """``1GiB``, ``200MB``, ``4096``: a number of bytes (at least 1)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise ValueError(f"expected a size such as 1GiB, 200MB or 4096 (bytes), got {value!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def alert_targets(params: Any, alerters: Mapping[str, AlerterEntry]) -> list[str]:
    """``alert`` (every alerter), ``{alert: ops}`` or ``{alert: [ops, mail]}``."""
    if params is None:
        return sorted(alerters)
    return [params] if isinstance(params, str) else [str(p) for p in params]


def require(monitors: Mapping[str, Monitor], name: str, config: StewardConfig) -> Monitor:
    if name not in monitors:
        valid = sorted(monitors)
        raise ConfigError(
            f"no monitor {name!r}{did_you_mean(name, valid)} in "
            f"{config.source or 'the configuration'}; monitors: {', '.join(valid) or 'none'}"
        )
    return monitors[name]
