"""Built-in policy ``metric-threshold``: absolute bounds, and the champion/challenger gate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.events import ActionEvent, FactUnavailable, ModelFacts
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


def metric_value(facts: ModelFacts, metric: str, source: str) -> float | None:
    """The metric from the latest evaluation (logged model) or the source run, per ``source``."""
    if source in ("any", "evaluation"):
        value = facts.evaluation_metrics.get(metric)
        if value is not None:
            return float(value)
    if source in ("any", "run"):
        value = facts.run_metrics.get(metric)
        if value is not None:
            return float(value)
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def check(event: ActionEvent, options: Mapping[str, Any]) -> PolicyVerdict:
    facts = event.facts
    if facts is None:
        return PolicyVerdict.deny("no model version to check")
    metric, source = options["metric"], options["source"]
    value = metric_value(facts, metric, source)
    if value is None:
        raise FactUnavailable(
            f"metric {metric!r} was not logged ({source} metrics) for this "
            "version's source run or evaluation"
        )
    if value != value:  # NaN compares false with everything: refuse explicitly
        return PolicyVerdict.deny(f"{metric} is NaN")
    low, high = options["min"], options["max"]
    if low is not None and value < low:
        return PolicyVerdict.deny(f"{metric}={_fmt(value)} is below the minimum {_fmt(low)}")
    if high is not None and value > high:
        return PolicyVerdict.deny(f"{metric}={_fmt(value)} is above the maximum {_fmt(high)}")
    reason = f"{metric}={_fmt(value)}"
    if low is not None or high is not None:
        bounds = " and ".join(
            b
            for b in (
                f">= {_fmt(low)}" if low is not None else "",
                f"<= {_fmt(high)}" if high is not None else "",
            )
            if b
        )
        reason += f" meets {bounds}"
    verdict = _champion(event, facts, value, options)
    if verdict is not None:
        return (
            verdict if not verdict.allowed else PolicyVerdict.allow(f"{reason}; {verdict.reason}")
        )
    return PolicyVerdict.allow(reason)


def _champion(
    event: ActionEvent, facts: ModelFacts, value: float, options: Mapping[str, Any]
) -> PolicyVerdict | None:
    abs_margin, rel_margin = options["champion_margin"], options["champion_relative_margin"]
    if not options["beat_champion"] and abs_margin is None and rel_margin is None:
        return None
    alias = options["compare_to_alias"] or event.alias
    if not alias:
        raise FactUnavailable(
            "the champion/challenger gate needs an alias to compare with (set compare_to_alias)"
        )
    holder = facts.alias_holder(alias)
    if holder is None:
        return PolicyVerdict.allow(f"no version holds @{alias} yet: nothing to beat")
    if holder.version == facts.version:
        return PolicyVerdict.allow(f"already the holder of @{alias}")
    champion = metric_value(holder, options["metric"], options["source"])
    if champion is None:
        raise FactUnavailable(
            f"the current @{alias} (version {holder.version}) has no metric "
            f"{options['metric']!r} to compare with"
        )
    higher = options["higher_is_better"]
    gain = (value - champion) if higher else (champion - value)
    need = abs_margin or 0.0
    if rel_margin is not None:
        need = max(need, abs(champion) * rel_margin)
    metric = options["metric"]
    if gain < need or (gain == 0 and need == 0 and options["strictly_better"]):
        return PolicyVerdict.deny(
            f"{metric}={_fmt(value)} does not beat the current @{alias} (version "
            f"{holder.version}, {metric}={_fmt(champion)}) by the required margin {_fmt(need)}"
        )
    return PolicyVerdict.allow(
        f"beats @{alias} version {holder.version} ({_fmt(champion)}) by {_fmt(gain)}"
    )


def validate(options: Mapping[str, Any]) -> None:
    gate = (
        options["beat_champion"]
        or options["champion_margin"] is not None
        or options["champion_relative_margin"] is not None
    )
    if options["min"] is None and options["max"] is None and not gate:
        raise ValueError(
            "give `min`, `max`, or a champion/challenger gate "
            "(beat_champion, champion_margin, champion_relative_margin)"
        )
    for key in ("champion_margin", "champion_relative_margin"):
        if options[key] is not None and options[key] < 0:
            raise ValueError(f"{key} cannot be negative")


@hookimpl
def steward_policies() -> Iterator[Policy]:
    yield Policy(
        name="metric-threshold",
        check=check,
        description="A metric of the version's latest evaluation or source run must meet absolute "
        "bounds and, optionally, beat the version currently holding the alias.",
        options=(
            Option("metric", "str", "metric name, e.g. accuracy"),
            Option("min", "number", "lowest allowed value", None),
            Option("max", "number", "highest allowed value", None),
            Option(
                "source",
                "str",
                "where to read the metric",
                "any",
                choices=("any", "evaluation", "run"),
            ),
            Option("beat_champion", "bool", "the challenger must beat the alias holder", False),
            Option("champion_margin", "number", "absolute margin by which to beat it", None),
            Option(
                "champion_relative_margin",
                "number",
                "relative margin (0.01 = 1%) by which to beat it",
                None,
            ),
            Option("strictly_better", "bool", "a tie with the champion is not enough", False),
            Option(
                "compare_to_alias", "str", "alias to compare with (default: the target alias)", None
            ),
            Option("higher_is_better", "bool", "false for losses and error rates", True),
        ),
        validate=validate,
    )
