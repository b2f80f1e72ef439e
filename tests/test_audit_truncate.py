"""``records.audit.truncate``: a value cut to its limit keeps a prefix and a marker counting the
characters dropped; when not even the marker fits, the marker's start (still counting all)."""

from __future__ import annotations

import re

import pytest

from mlflow_steward.records.audit import truncate


@pytest.mark.parametrize("limit", [0, 1, 5, 12, 13, 20, 256])
@pytest.mark.parametrize("length", [0, 1, 5, 12, 13, 20, 300, 5000])
def test_truncate_keeps_a_prefix_and_says_how_much_was_cut(limit, length):
    value = "".join(chr(ord("a") + i % 26) for i in range(length))
    out = truncate(value, limit)
    assert len(out) <= max(limit, 0)
    if length <= limit:
        assert out == value
        return
    m = re.search(r"…\[\+(\d+) chars\]$", out)
    if m is None:  # not even the marker fits: the marker's start, cut to the limit
        assert out == f"…[+{length} chars]"[:limit]
        assert len(out) == limit
        return
    kept = out[: m.start()]
    assert value.startswith(kept)
    assert int(m.group(1)) == length - len(kept)
    # as much of the value as fits beside the marker
    assert len(out) >= limit - 1


def test_truncate_boundary_exact_length():
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) != "abcd"
    assert truncate("x" * 30, 20) == "x" * 8 + "…[+22 chars]"


def test_a_limit_below_the_marker_still_counts_every_character_dropped():
    assert truncate("x" * 12, 5) == "…[+12"
    assert truncate("x" * 12, 0) == ""
