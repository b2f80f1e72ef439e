"""Configuration parsing: errors name the file, the key and the line, and list valid choices."""

from __future__ import annotations

import textwrap

import pytest

from mlflow_steward.config import load_config, parse_config, parse_duration
from mlflow_steward.errors import ConfigError
from mlflow_steward.governance.engine import resolve_policies
from mlflow_steward.plugins.manager import create_plugin_manager
from tests.conftest import EXAMPLE_CONFIG


@pytest.fixture
def pm():
    return create_plugin_manager(autoload=False)


def _resolve(text: str, pm, path: str = "steward.yaml"):
    return resolve_policies(parse_config(textwrap.dedent(text), path=path), pm)


def test_issue_example_parses_with_defaults(pm):
    resolved = _resolve(EXAMPLE_CONFIG, pm)
    assert [e.use for e, _, _ in resolved] == [
        "require-signature",
        "required-tags",
        "metric-threshold",
    ]
    _, _, options = resolved[2]
    assert options["metric"] == "accuracy"
    assert options["min"] == 0.8
    assert options["max"] is None
    assert resolved[1][0].when.aliases == ("production",)


def test_unknown_top_level_key_names_file_line_and_choices(pm):
    with pytest.raises(ConfigError) as err:
        parse_config("policies: []\npolicy_timeot: 3\n", path="conf/steward.yaml")
    msg = str(err.value)
    assert msg.startswith("conf/steward.yaml:2: policy_timeot: unknown top-level key")
    assert "did you mean 'policy_timeout'" in msg
    assert "policies" in msg
    assert "registry_uri" in msg


def test_unknown_policy_lists_valid_ones(pm):
    with pytest.raises(ConfigError) as err:
        _resolve(
            """\
            policies:
              - use: require-signature
              - use: metric-treshold
                with: {metric: accuracy, min: 0.8}
            """,
            pm,
        )
    msg = str(err.value)
    assert "steward.yaml:3: policies[1].use: unknown policy 'metric-treshold'" in msg
    assert "did you mean 'metric-threshold'" in msg
    for name in ("approvals", "freeze-window", "required-tags", "allowed-requirements"):
        assert name in msg


def test_unknown_option_and_bad_value_point_at_their_lines(pm):
    with pytest.raises(ConfigError) as err:
        _resolve(
            """\
            policies:
              - use: metric-threshold
                with:
                  metric: accuracy
                  minimum: 0.8
            """,
            pm,
        )
    assert (
        "steward.yaml:5: policies[0].with.minimum: policy 'metric-threshold' has no option"
        in str(err.value)
    )
    assert "'min'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        _resolve(
            """\
            policies:
              - use: metric-threshold
                with: {metric: accuracy, min: high}
            """,
            pm,
        )
    assert "steward.yaml:3: policies[0].with.min: expected a number, got 'high'" in str(err.value)


def test_missing_required_option_and_invalid_combination(pm):
    with pytest.raises(
        ConfigError,
        match=r"steward.yaml:3: policies\[0\].with: .*needs option "
        r"'metric'",
    ):
        _resolve(
            """\
            policies:
              - use: metric-threshold
                with: {min: 0.8}
            """,
            pm,
        )
    with pytest.raises(ConfigError, match="give `min`, `max`, or a champion/challenger gate"):
        _resolve(
            """\
            policies:
              - use: metric-threshold
                with: {metric: accuracy}
            """,
            pm,
        )


def test_bad_when_action_and_choice_values(pm):
    with pytest.raises(ConfigError) as err:
        _resolve(
            """\
            policies:
              - use: required-tags
                when: {action: set_aliases}
                with: {tags: [owner]}
            """,
            pm,
        )
    assert "steward.yaml:3: policies[0].when.action: unknown action 'set_aliases'" in str(err.value)
    assert "set_alias" in str(err.value)
    with pytest.raises(ConfigError, match="'everywhere' is not one of version, model, either"):
        _resolve(
            """\
            policies:
              - use: required-tags
                with: {tags: [owner], scope: everywhere}
            """,
            pm,
        )


def test_duplicate_keys_and_entries_are_errors(pm):
    with pytest.raises(ConfigError, match=r"steward.yaml:3: policies\[0\].use: duplicate key"):
        parse_config("policies:\n  - use: a\n    use: b\n", path="steward.yaml")
    with pytest.raises(ConfigError, match="'require-signature' is used by two entries"):
        parse_config("policies:\n  - use: require-signature\n  - use: require-signature\n")


def test_invalid_yaml_reports_line():
    with pytest.raises(ConfigError, match=r"^x.yaml:2: not valid YAML"):
        parse_config("policies:\n  - use: [unclosed\n", path="x.yaml")


def test_freeze_window_validation(pm):
    with pytest.raises(ConfigError, match="unknown timezone 'Mars/Base'"):
        _resolve(
            """\
            policies:
              - use: freeze-window
                with: {timezone: Mars/Base, windows: [{days: [fri]}]}
            """,
            pm,
        )
    with pytest.raises(ConfigError, match="window 1: start must be before end"):
        _resolve(
            """\
            policies:
              - use: freeze-window
                with: {windows: [{start: "2027-01-05T00:00", end: "2026-12-20T00:00"}]}
            """,
            pm,
        )


def test_discovery_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config().source is None
    (tmp_path / "steward.yaml").write_text("policies: [require-signature]\n")
    assert load_config().source.endswith("steward.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("policy_timeout: 3s\n")
    monkeypatch.setenv("MLFLOW_STEWARD_CONFIG", str(other))
    assert load_config().policy_timeout == 3.0
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("policy_timeout: 2m\n")
    assert load_config(explicit).policy_timeout == 120.0
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the configuration file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("250ms", 0.25)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
