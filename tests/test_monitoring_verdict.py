"""Per-column drift, data quality and the combined verdict, on data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sstats
from scipy.spatial.distance import jensenshannon

from mlflow_steward.monitoring import stats
from mlflow_steward.monitoring.verdict import (
    DRIFT,
    HEALTHY,
    INSUFFICIENT,
    INVALID,
    adjust,
    judge,
)


def _frame(rng, n, *, shift=0.0, colors=("red", "green", "blue"), p=None):
    return pd.DataFrame(
        {
            "amount": rng.normal(100 + shift, 10, n),
            "age": rng.normal(40, 5, n),
            "color": rng.choice(list(colors), n, p=p),
        }
    )


def test_unshifted_data_is_healthy_and_a_shifted_column_is_named():
    rng = np.random.default_rng(0)
    reference = _frame(rng, 2000)
    healthy = judge(reference, _frame(rng, 1000))
    assert healthy.status == HEALTHY
    assert healthy.drifted == []
    drifted = judge(reference, _frame(rng, 1000, shift=5.0))
    assert drifted.status == DRIFT
    assert drifted.drifted == ["amount"]
    amount = next(f for f in drifted.columns if f.column == "amount")
    assert amount.method == "ks (exact)"
    assert amount.p_value < 0.05
    assert (amount.n_reference, amount.n_current) == (2000, 1000)
    assert drifted.settings["correction"] == "benjamini-hochberg"
    assert drifted.share == pytest.approx(1 / 3)


def test_large_samples_use_distances_with_thresholds():
    rng = np.random.default_rng(1)
    reference = _frame(rng, 20_000)
    # A shift of 0.02 std: a p-value test at this size would call it drift; a distance does not.
    verdict = judge(reference, _frame(rng, 20_000, shift=0.2))
    methods = {f.column: f.method for f in verdict.columns}
    assert methods == {
        "amount": "wasserstein (in reference std)",
        "age": "wasserstein (in reference std)",
        "color": "jensen-shannon",
    }
    assert verdict.status == HEALTHY
    moved = judge(reference, _frame(rng, 20_000, p=[0.6, 0.2, 0.2]))
    assert moved.drifted == ["color"]
    color = next(f for f in moved.columns if f.column == "color")
    assert color.threshold == 0.1
    assert color.statistic > 0.1


def test_categorical_shift_by_chi_square_on_small_samples():
    rng = np.random.default_rng(2)
    verdict = judge(_frame(rng, 600), _frame(rng, 400, p=[0.1, 0.1, 0.8]), drift_share=0.3)
    color = next(f for f in verdict.columns if f.column == "color")
    assert color.method == "chi-square"
    assert color.drifted
    assert verdict.status == DRIFT


def test_corrections_for_testing_many_columns():
    p = [0.01, 0.02, 0.04, 0.5]
    assert adjust(p, "bonferroni") == pytest.approx([0.04, 0.08, 0.16, 1.0])
    assert adjust(p, "benjamini-hochberg") == pytest.approx(
        sstats.false_discovery_control(p, method="bh").tolist()
    )
    assert adjust(p, "none") == p
    with pytest.raises(ValueError, match="correction 'holm'"):
        adjust(p, "holm")


def test_importance_weights_change_the_share():
    rng = np.random.default_rng(3)
    reference = _frame(rng, 2000)
    current = _frame(rng, 1000, shift=5.0)
    light = judge(reference, current, weights={"amount": 0.1, "age": 1, "color": 1})
    assert light.drifted == ["amount"]
    assert light.status == HEALTHY
    assert light.share == pytest.approx(0.1 / 2.1)


def test_bad_batches_are_findings_and_never_drift():
    rng = np.random.default_rng(4)
    reference = _frame(rng, 1000)
    few = judge(reference, _frame(rng, 20), min_samples=100)
    assert few.status == INSUFFICIENT
    assert few.columns == []
    assert "20 rows in the current batch, fewer than the minimum of 100" in few.quality[0]
    empty = judge(reference, reference.iloc[:0])
    assert empty.status == INSUFFICIENT
    missing = judge(reference, _frame(rng, 500).drop(columns=["age"]))
    assert missing.status == INVALID
    assert "missing columns age" in missing.quality[0]
    extra = judge(reference, _frame(rng, 500).assign(zip_code="x"))
    assert extra.status == HEALTHY
    assert "extra columns not in the reference (ignored): zip_code" in extra.quality[0]
    wrong = judge(reference, _frame(rng, 500).assign(amount="a lot"))
    assert wrong.status == INVALID
    assert "column amount is numeric (float64) in the reference but holds" in wrong.quality[-1]
    nan_column = judge(reference, _frame(rng, 500).assign(age=np.nan))
    assert nan_column.status == INVALID  # a feed that lost a feature: no verdict, no action
    age = next(f for f in nan_column.columns if f.column == "age")
    assert age.note == "all values missing: not judged"
    assert not age.drifted
    assert "column age: 500 of 500 values missing" in nan_column.quality
    unseen = judge(reference, _frame(rng, 500, colors=("red", "purple")))
    assert any("categories not in the reference: purple" in q for q in unseen.quality)
    wide = _frame(rng, 500)
    wide.loc[:9, "amount"] = 1e6
    found = [q for q in judge(reference, wide).quality if "outside the reference range" in q]
    assert len(found) == 1
    assert found[0].startswith("column amount: ")
    assert int(found[0].split()[2]) >= 10  # the ten planted values, and any natural ones


def test_distances_match_their_definitions():
    ref, cur = np.array([50, 30, 20]), np.array([30, 30, 40])
    p, q = ref / 100, cur / 100
    assert stats.psi(ref, cur) == pytest.approx(np.sum((q - p) * np.log(q / p)))
    assert stats.jensen_shannon(ref, cur) == pytest.approx(jensenshannon(p, q, base=2))
    assert stats.linf(ref, cur) == pytest.approx(0.2)
    chi, pv = stats.chi_square(ref, cur)
    expected = sstats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert (chi, pv) == pytest.approx((expected.statistic, expected.pvalue))
    edges = stats.numeric_bins(np.arange(100.0), bins=4)
    assert edges.tolist() == pytest.approx([24.75, 49.5, 74.25])
    assert stats.histogram(np.array([0.0, 30.0, 99.0]), edges).tolist() == [1, 1, 0, 1]
    categories, rc, cc = stats.category_counts(np.array(["a", "b", "a"]), np.array(["c", "a"]))
    assert (categories, rc.tolist(), cc.tolist()) == (["a", "b", "c"], [2, 1, 0], [1, 0, 1])


def test_infinite_values_are_left_out_and_reported():
    rng = np.random.default_rng(5)
    reference = _frame(rng, 2000)
    reference.loc[0, "amount"] = np.inf
    verdict = judge(reference, _frame(rng, 1000, shift=5.0))
    assert verdict.drifted == ["amount"]
    assert "column amount: 1 infinite values in the reference (left out)" in verdict.quality


def test_a_forced_method_applies_to_columns_of_its_kind():
    rng = np.random.default_rng(6)
    verdict = judge(_frame(rng, 2000), _frame(rng, 1000), method="wasserstein")
    methods = {f.column: f.method for f in verdict.columns}
    assert methods["amount"] == "wasserstein (in reference std)"
    assert methods["color"] == "chi-square"  # the automatic choice for a categorical column


def test_categories_written_another_way_are_invalid_not_drift():
    rng = np.random.default_rng(5)
    reference = pd.DataFrame(
        {"code": rng.choice(["1", "2", "3"], 1000), "flag": rng.random(1000) > 0.5}
    )
    current = pd.DataFrame(
        {"code": rng.choice([1.0, 2.0, 3.0], 500), "flag": rng.random(500) > 0.5}
    )
    verdict = judge(reference, current)
    assert verdict.status == "invalid"
    assert "schema mismatch: column code is categorical (" in verdict.quality[-1]
    assert "holds float64 values now" in verdict.quality[-1]
    as_ints = judge(reference.drop(columns="code"), current.drop(columns="code").astype(int))
    assert as_ints.status == "invalid"
    assert (
        "column flag is categorical (bool) in the reference but holds int64" in as_ints.quality[-1]
    )


def test_each_joint_test_is_one_test_with_its_own_p_value():
    from mlflow_steward.plugins.types import Detector, DetectorResult

    def grouped(columns, params):  # two joint tests: {a, b} healthy, {shifted} drifted
        return {
            c: DetectorResult(
                0.1 if c != "shifted" else 0.9, p_value=0.9 if c != "shifted" else 1e-9, joint=True
            )
            for c in columns
        }

    detector = Detector("grouped", ("numeric",), grouped, "two joint tests")
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "shifted"])
    verdict = judge(
        frame, frame, method="grouped", detectors={"grouped": detector}, drift_share=0.3
    )
    p = {c.column: c.p_value for c in verdict.columns}
    assert p["a"] == p["b"] == 0.9
    assert p["shifted"] == pytest.approx(2e-9)  # BH over two tests, not three
    assert verdict.drifted == ["shifted"]
