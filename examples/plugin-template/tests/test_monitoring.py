"""The detector, alerter and data source, called the way steward calls them."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import steward_team_kit

from mlflow_steward.plugins import Alert, MonitoringError


@pytest.fixture
def pm(steward_plugin_manager):
    return steward_plugin_manager(plugins=[steward_team_kit])


def test_mean_shift_flags_a_moved_column_only(pm):
    detector = pm.hooks.detectors()["mean-shift"]
    rng = np.random.default_rng(0)
    reference = rng.normal(size=1000)
    columns = {"steady": (reference, rng.normal(size=500)), "moved": (reference, reference + 2)}
    results = detector.measure(columns, {"limit": 0.5})
    assert results["moved"].drifted
    assert results["moved"].statistic == pytest.approx(2, rel=0.05)
    assert not results["steady"].drifted


def test_alerts_are_appended_as_json_lines(pm, tmp_path):
    alerter = pm.hooks.alerters()["jsonl-file"]
    alert = Alert("m", "fraud", "3", "drift", ("amount",), 0.5, (), None, "drift on v3", "t")
    alerter.send(alert, {"path": str(tmp_path / "alerts.jsonl")})
    alerter.send(alert, {"path": str(tmp_path / "alerts.jsonl")})
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["summary"] for line in lines] == ["drift on v3", "drift on v3"]


class _Since:
    def __init__(self, since):
        self.since, self.version, self.session = since, "1", None


def test_csv_folder_reads_newer_files_and_names_an_empty_folder(pm, tmp_path):
    source = pm.hooks.data_sources()["csv-folder"]
    pd.DataFrame({"x": [1, 2]}).to_csv(tmp_path / "a.csv", index=False)
    cutoff = time.time()
    time.sleep(0.01)
    pd.DataFrame({"x": [3]}).to_csv(tmp_path / "b.csv", index=False)
    assert source.read(str(tmp_path), _Since(None))["x"].tolist() == [1, 2, 3]
    assert source.read(str(tmp_path), _Since(cutoff))["x"].tolist() == [3]
    (tmp_path / "empty").mkdir()
    with pytest.raises(MonitoringError, match=r"no \*\.csv files"):
        source.read(str(tmp_path / "empty"), _Since(None))
    with pytest.raises(MonitoringError, match="is not a folder"):
        source.read(str(tmp_path / "missing"), _Since(None))
