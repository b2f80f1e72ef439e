"""Configuration files the YAML property (tests/test_properties.py) found ending in a traceback
or an error without a line: each now fails with a ConfigError naming the file, the key and the
line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_steward.config import load_config
from mlflow_steward.errors import ConfigError
from mlflow_steward.plugins.options import parse_duration


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("42\n", 1, "<top level>", "expected a mapping"),
        ("\n\n- use: require-signature\n", 3, "<top level>", "expected a mapping"),
        ("policies: !!python/object:os.system x\n", 1, "policies", "not valid here"),
        ("policies:\n  - use: x\n    with: !custom x\n", 3, "policies[0].with", "not valid here"),
        ("policies: &a [*a]\n", 1, "policies[0]", "a cycle"),
        ("policy_timeout: .nan\n", 1, "policy_timeout", "not a finite duration"),
        ("policy_timeout: .inf\n", 1, "policy_timeout", "not a finite duration"),
        ("policy_timeout: 1" + "0" * 400 + "\n", 1, "policy_timeout", "not a finite duration"),
        ("policy_timeout: " + "9" * 400 + "s\n", 1, "policy_timeout", "not a finite duration"),
        (
            "policies:\n  - use: require-signature\n    timeout: .nan\n",
            3,
            "policies[0].timeout",
            "not a finite duration",
        ),
        ("{[a]: 1}\n", 1, "<top level>", "keys must be strings"),
        ("policy_timeout: " + "1" * 5000 + "\n", 1, "policy_timeout", "Exceeds the limit"),
        (
            "\npolicies: [{use: x, with: {n: " + "9" * 5000 + "}}]\n",
            2,
            "policies[0].with.n",
            "not valid here",
        ),
        ("a: 1\n\x08\n", 2, None, "not valid YAML: unacceptable character"),
    ],
)
def test_bad_documents_name_file_key_and_line(tmp_path: Path, text, line, key, message):
    path = tmp_path / "steward.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.path, error.line, error.key) == (str(path), line, key)
    assert message in str(error)
    assert str(error).startswith(f"{path}:{line}: ")


def test_aliases_of_aliases_cannot_expand_a_small_file_without_bound(tmp_path: Path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "steward.yaml"
    path.write_text("monitors:\n" + "".join(f"  {line}\n" for line in lines))
    with pytest.raises(ConfigError, match=r"expands to more than 100,000 values") as caught:
        load_config(path)
    assert caught.value.path == str(path)
    assert caught.value.line is not None


def test_a_file_that_is_not_utf8_names_the_line_of_the_bad_byte(tmp_path: Path):
    path = tmp_path / "steward.yaml"
    path.write_bytes(b"policies:\n  - use: r\xe9quire\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.path, caught.value.line) == (str(path), 2)
    assert "not valid UTF-8 text: byte 0xe9 at offset 20" in str(caught.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, "1" + "0" * 400 + "s"])
def test_a_duration_must_be_finite(value):
    with pytest.raises(ValueError, match="not a finite duration"):
        parse_duration(value)


def test_finite_durations_still_parse():
    assert parse_duration(0) == 0.0
    assert parse_duration("1.5m") == 90.0
    assert parse_duration(10**6) == 1e6


@pytest.mark.parametrize(
    ("raw", "expected"), [("1e-4", 1e-4), ("2E3", 2000.0), ("0.5", 0.5), ("3", 3)]
)
def test_a_number_option_from_the_command_line_reads_exponents(raw, expected):
    # YAML 1.1 reads 1e-4 (no dot) as text: `-C parity_tolerance=1e-4` was refused.
    from mlflow_steward.plugins.options import Option, coerce, from_text

    option = Option("tolerance", "number", "a tolerance", 1.0)
    assert coerce(option, from_text(option, raw)) == expected
    with pytest.raises(ValueError, match="expected a number, got 'abc'"):
        coerce(option, from_text(option, "abc"))
