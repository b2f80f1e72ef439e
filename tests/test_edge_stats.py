"""Statistics from edge devices (issue 16 point 4): sketches per (version, window) kept by
``EdgeStatistics``, spooled under a size cap, uploaded once per window to a folder or to S3
(moto's threaded server over HTTP), read back merged by ``read_uploads`` and judged for drift.

Time is a test clock given to ``EdgeStatistics``: windows close when the test moves it on."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.edge.stats import (
    RETRY_SECONDS,
    EdgeStatistics,
    read_devices,
    read_uploads,
)
from mlflow_steward.deployment.onprem.ports import free_port
from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring.sketches import (
    FORMAT as SKETCH_FORMAT,
)
from mlflow_steward.monitoring.sketches import (
    judge_sketches,
    ks_distance,
    rank_error,
    sketch_chunks,
    sketch_reference,
)
from mlflow_steward.monitoring.verdict import column_kind, judge

WINDOW = 300
#: A window boundary: the first window of every test starts here.
T0 = 1_800_000_000 - 1_800_000_000 % WINDOW


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


def inputs(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Requests' inputs: two numeric columns (one with missing values), a categorical one."""
    age = rng.normal(40, 10, n) + shift * 10
    age[rng.random(n) < 0.05] = np.nan
    kinds = ["card", "cash", "transfer"]
    weights = [0.2, 0.2, 0.6] if shift else [0.5, 0.3, 0.2]
    return pd.DataFrame(
        {
            "amount": rng.gamma(4.0, 25.0, n),
            "age": age,
            "kind": rng.choice(kinds, n, p=weights),
        }
    )


def feed(stats: EdgeStatistics, data: pd.DataFrame, version: str, clock: Clock, step: float = 0.1):
    """Observe ``data`` one single-row frame per prediction, ``step`` seconds apart."""
    for i in range(len(data)):
        stats.observe(data.iloc[[i]].reset_index(drop=True), version)
        clock.now += step


def device(tmp_path: Path, name: str, clock: Clock, uploads: str | None, **kw) -> EdgeStatistics:
    return EdgeStatistics(
        tmp_path / name,
        device_id=name,
        group=kw.pop("group", "east"),
        uploads=uploads,
        clock=clock,
        **kw,
    )


def spooled(stats: EdgeStatistics) -> list[str]:
    return sorted(p.relative_to(stats.spool).as_posix() for p in stats.spool.rglob("*.json"))


def uploaded(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# -- sketches ----------------------------------------------------------------------------------


def test_single_row_observations_sketch_as_the_rows_in_one_go(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    stats = device(tmp_path, "dev-1", clock, str(uploads))
    data = inputs(np.random.default_rng(1), 3000)
    feed(stats, data, "fraud/3", clock, step=0.05)  # 150 s: one window
    stats.close()
    stats.tick()

    got = read_uploads(str(uploads), "fraud", "3")
    whole = sketch_chunks([data], {c: column_kind(data[c]) for c in data.columns})
    assert (got.rows, got.windows, got.devices, got.dropped) == (3000, 1, ["dev-1"], 0)
    assert got.notes == []
    for name, exact in whole.items():
        sketch = got.sketches[name]
        assert (sketch.kind, sketch.count, sketch.nulls) == (exact.kind, exact.count, exact.nulls)
        assert sketch.total == pytest.approx(exact.total)
    assert got.sketches["age"].nulls > 100
    assert got.sketches["kind"].frequencies() == whole["kind"].frequencies()
    bound = 2 * rank_error()
    for name in ("amount", "age"):
        assert ks_distance(got.sketches[name], whole[name]) <= bound
        values = np.sort(data[name].dropna().to_numpy())
        for rank in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
            q = got.sketches[name].sketch.get_quantile(rank)
            assert abs(np.searchsorted(values, q, side="right") / len(values) - rank) <= bound


def test_threads_observing_while_the_loop_ticks_lose_no_row(tmp_path):
    clock = Clock()
    stats = device(tmp_path, "dev-1", clock, None)
    frame = inputs(np.random.default_rng(2), 1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            stats.tick()

    ticker = threading.Thread(target=loop)
    ticker.start()
    workers = [
        threading.Thread(target=lambda: [stats.observe(frame, "fraud/3") for _ in range(2000)])
        for _ in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    stop.set()
    ticker.join()
    stats.close()
    (path,) = stats.spool.rglob("*.json")
    assert json.loads(path.read_text())["rows"] == 8000


# -- windows and the spool ---------------------------------------------------------------------


def test_windows_close_when_their_time_ends_one_spool_file_per_version_and_window(tmp_path):
    clock = Clock()
    stats = device(tmp_path, "dev-1", clock, None)
    rng = np.random.default_rng(3)
    feed(stats, inputs(rng, 100), "fraud/3", clock, step=1)
    feed(stats, inputs(rng, 50), "fraud/4", clock, step=1)
    stats.tick()
    assert spooled(stats) == []  # 150 s into a 300 s window: still open
    clock.now = T0 + WINDOW + 10  # the first window ended; the second is open
    stats.observe(inputs(rng, 5), "fraud/4")
    stats.tick()
    stamp = "20270115T080000Z"
    assert [p.rsplit("--", 1)[0] for p in spooled(stats)] == [
        f"fraud/3/{stamp}--dev-1",
        f"fraud/4/{stamp}--dev-1",
    ]
    first = json.loads(next(stats.spool.glob("fraud/3/*.json")).read_text())
    assert (first["rows"], first["start"], first["end"], first["group"]) == (
        100,
        T0,
        T0 + WINDOW,
        "east",
    )
    assert set(first["sketches"]["columns"]) == {"amount", "age", "kind"}
    stats.close()  # the open window is spooled too
    assert len(spooled(stats)) == 3


def test_the_spool_cap_drops_the_oldest_windows_and_the_count_is_uploaded(tmp_path):
    clock = Clock()
    rng = np.random.default_rng(4)
    uploads = tmp_path / "uploads"  # not there yet: nothing can be uploaded
    probe = device(tmp_path, "probe", clock, None)
    feed(probe, inputs(rng, 200), "fraud/3", clock, step=1)
    probe.close()
    size = next(probe.spool.rglob("*.json")).stat().st_size

    clock.now = T0
    stats = device(tmp_path, "dev-1", clock, str(uploads), spool_cap_bytes=int(size * 2.5))
    for _ in range(5):  # five windows of 200 rows
        feed(stats, inputs(rng, 200), "fraud/3", clock, step=1)
        clock.now += WINDOW - 200
        stats.tick()
    kept = spooled(stats)
    assert len(kept) == 2
    assert [p.split("/")[2][:16] for p in kept] == ["20270115T081500Z", "20270115T082000Z"]
    state = stats.state()
    assert (state["spooled"], state["dropped"]) == (2, 3)
    assert "uploads folder" in state["last_error"]

    uploads.mkdir()
    clock.now += RETRY_SECONDS[1]
    stats.tick()
    got = read_uploads(str(uploads), "fraud", "3")
    assert (got.windows, got.rows, got.dropped) == (2, 400, 3)
    assert "3 windows were dropped by devices' spool caps before upload" in got.notes
    assert spooled(stats) == []
    # windows dropped before `since` do not count in a later period
    assert read_uploads(str(uploads), "fraud", "3", since=T0 + 3 * WINDOW).dropped == 0


# -- uploads -----------------------------------------------------------------------------------


def test_a_folder_gone_for_a_while_gets_every_window_once(tmp_path):
    clock = Clock()
    rng = np.random.default_rng(5)
    uploads = tmp_path / "share"
    stats = device(tmp_path, "dev-1", clock, str(uploads))
    for _ in range(4):
        feed(stats, inputs(rng, 100), "fraud/3", clock, step=1)
        clock.now += WINDOW - 100
        stats.tick()  # raises nothing: the share is not mounted
    assert len(spooled(stats)) == 4
    assert stats.state()["failures"] >= 1

    uploads.mkdir()
    stats.tick()  # still waiting before trying again
    assert len(spooled(stats)) == 4
    clock.now += RETRY_SECONDS[1]
    stats.tick()
    assert spooled(stats) == []
    names = uploaded(uploads)
    assert len(names) == 4
    assert all(n.startswith("stats/fraud/3/2027") and n.endswith(".json") for n in names)
    written = (stats.home / "state.json").stat().st_mtime_ns
    clock.now += 10
    stats.tick()  # nothing to send: nothing written, on the device or the share
    assert uploaded(uploads) == names
    assert (stats.home / "state.json").stat().st_mtime_ns == written
    got = read_uploads(f"file://{uploads}", "fraud", "3")
    assert (got.windows, got.rows) == (4, 400)
    assert stats.state()["last_error"] is None


def test_a_crash_between_upload_and_spool_delete_uploads_the_same_name_again(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    stats = device(tmp_path, "dev-1", clock, str(uploads))
    feed(stats, inputs(np.random.default_rng(6), 120), "fraud/3", clock, step=1)
    stats.close()
    (spool_file,) = stats.spool.rglob("*.json")
    kept = tmp_path / "kept.json"
    shutil.copy(spool_file, kept)
    stats.tick()
    assert not spool_file.exists()
    # the process died after the upload and before the delete: the spool file is still there
    shutil.copy(kept, spool_file)
    restarted = device(tmp_path, "dev-1", clock, str(uploads))
    restarted.tick()
    assert len(uploaded(uploads)) == 1
    got = read_uploads(str(uploads), "fraud", "3")
    assert (got.windows, got.rows) == (1, 120)


def test_a_restart_inside_a_window_writes_a_second_part_of_it(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    rng = np.random.default_rng(7)
    first = device(tmp_path, "dev-1", clock, str(uploads))
    feed(first, inputs(rng, 30), "fraud/3", clock)
    first.close()
    second = device(tmp_path, "dev-1", clock, str(uploads))
    feed(second, inputs(rng, 20), "fraud/3", clock)
    clock.now += WINDOW
    second.tick()
    assert len(uploaded(uploads)) == 2
    got = read_uploads(str(uploads), "fraud", "3")
    assert (got.windows, got.rows) == (1, 50)


@pytest.fixture(scope="module")
def moto_port():
    """A port for moto's threaded S3 server; tests start and stop it (the buckets live in the
    test process, so a restarted server on the same port has them again)."""
    return free_port()


@pytest.fixture
def s3(moto_port, monkeypatch):
    import boto3

    from tests.moto_s3 import moto_server, s3_environment

    for key, value in s3_environment(f"http://127.0.0.1:{moto_port}").items():
        monkeypatch.setenv(key, value)

    class Moto:
        running: contextlib.ExitStack | None = None
        started = False

        def start(self) -> None:
            self.running = contextlib.ExitStack()
            # empty the first time; a restart keeps what the test stored
            self.running.enter_context(moto_server(moto_port, reset=not self.started))
            self.started = True

        def stop(self) -> None:
            if self.running is not None:
                self.running.close()
                self.running = None

    moto = Moto()
    moto.start()
    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}").create_bucket(
        Bucket="fleet-stats"
    )
    try:
        yield moto
    finally:
        moto.stop()


def test_s3_down_for_a_while_then_back_gets_every_window_once(tmp_path, s3):
    import boto3

    clock = Clock()
    rng = np.random.default_rng(8)
    uri = "s3://fleet-stats/site-42"
    stats = device(tmp_path, "dev-1", clock, uri)
    feed(stats, inputs(rng, 100), "fraud/3", clock, step=1)
    clock.now += WINDOW
    stats.tick()
    stats.report({"version": "3", "health": "healthy"})
    assert spooled(stats) == []

    s3.stop()
    for _ in range(3):
        feed(stats, inputs(rng, 100), "fraud/3", clock, step=1)
        clock.now += WINDOW - 100
        stats.tick()
    assert len(spooled(stats)) == 3
    state = stats.state()
    assert "Could not connect" in state["last_error"]
    assert state["failures"] >= 1

    s3.start()
    clock.now += RETRY_SECONDS[1]
    stats.tick()
    assert spooled(stats) == []
    client = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="fleet-stats")["Contents"]]
    assert sorted(k.split("/")[1] for k in keys) == ["devices"] + ["stats"] * 4
    got = read_uploads(uri, "fraud", "3")
    assert (got.windows, got.rows, got.devices) == (4, 400, ["dev-1"])
    (report,) = read_devices(uri)
    assert (report["device"], report["version"], report["health"]) == ("dev-1", "3", "healthy")
    assert report["last_contact"] == clock.now  # sent again with the windows, a heartbeat late


# -- drift from the merged sketches ------------------------------------------------------------


def test_a_shifted_device_is_flagged_from_its_sketches_as_the_exact_judge_does(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    rng = np.random.default_rng(9)
    baseline = inputs(rng, 4000)
    calm_rows = inputs(rng, 1500)
    shifted_rows = inputs(rng, 1500, shift=1.0)
    calm = device(tmp_path, "dev-1", clock, str(uploads), group="east")
    shifted = device(tmp_path, "dev-2", clock, str(uploads), group="west")
    for start in range(0, 1500, 500):
        feed(calm, calm_rows.iloc[start : start + 500], "fraud/3", clock, step=0)
        feed(shifted, shifted_rows.iloc[start : start + 500], "fraud/3", clock, step=0)
        clock.now += WINDOW
        calm.tick()
        shifted.tick()

    reference = sketch_reference(baseline)
    west = read_uploads(str(uploads), "fraud", "3", group="west")
    assert (west.devices, west.windows, west.rows) == (["dev-2"], 3, 1500)
    from_sketches = judge_sketches(reference, west.sketches)
    exact = judge(baseline, shifted_rows)
    assert from_sketches.status == exact.status == "drift"
    assert sorted(from_sketches.drifted) == sorted(exact.drifted) == ["age", "kind"]

    east = read_uploads(str(uploads), "fraud", "3", group="east")
    assert (
        judge_sketches(reference, east.sketches).drifted == judge(baseline, calm_rows).drifted == []
    )
    both = read_uploads(str(uploads), "fraud", "3")
    assert (both.devices, both.windows, both.rows) == (["dev-1", "dev-2"], 6, 3000)
    assert read_uploads(str(uploads), "fraud", "3", since=T0 + 2 * WINDOW).rows == 1000


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_counted_and_noted_never_raised(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    stats = device(tmp_path, "dev-1", clock, str(uploads))
    rng = np.random.default_rng(10)
    feed(stats, inputs(rng, 150), "fraud/3", clock, step=0)
    stats.observe([[1.0, 2.0, "card"]], "fraud/3")  # not a frame
    stats.observe(inputs(rng, 2).drop(columns=["kind"]).assign(extra=1), "fraud/3")
    stats.observe(pd.DataFrame({"amount": ["lots"], "age": [3.0], "kind": ["card"]}), "fraud/3")
    stats.observe(inputs(rng, 1), "3")  # a version without a model name
    stats.observe(inputs(rng, 1), "3")
    stats.observe(inputs(rng, 1), None)  # type: ignore[arg-type]
    stats.report("healthy")  # type: ignore[arg-type]
    clock.now += WINDOW
    stats.tick()

    got = read_uploads(str(uploads), "fraud", "3")
    assert got.rows == 151
    assert got.sketches["amount"].nulls == 1
    assert got.notes == [
        "dev-1: observe() got a list, not a pandas DataFrame",
        "dev-1: rows not counted: their columns differ from the version's first input "
        "(missing kind; extra extra) (2 times)",
        "dev-1: column amount: values that are not numbers counted as missing",
        "dev-1: 3 rows not counted in the window from 20270115T080000Z",
    ]
    assert stats.state()["problems"] == {
        "observe() got version '3' but no model name is known: pass 'NAME/3' or "
        "EdgeStatistics(model=...) (calls not counted)": 2,
        "observe() got version None: expected a string such as 'NAME/3' (calls not counted)": 1,
        "report() got a str, not a dict": 1,
    }


def test_a_bare_version_is_filed_under_the_installed_bundle_or_the_given_model(tmp_path):
    clock = Clock()
    state = tmp_path / "agent"
    (state / "current" / "bundle").mkdir(parents=True)
    (state / "current" / "bundle" / "manifest.json").write_text(
        json.dumps({"model": "fraud", "version": "3"})
    )
    stats = EdgeStatistics(state, device_id="dev-1", group=None, uploads=None, clock=clock)
    stats.observe(inputs(np.random.default_rng(11), 3), "3")
    named = EdgeStatistics(tmp_path / "b", device_id="dev-2", model="churn", clock=clock)
    named.observe(inputs(np.random.default_rng(11), 3), "7")
    stats.close()
    named.close()
    assert [p.split("/")[:2] for p in spooled(stats)] == [["fraud", "3"]]
    assert [p.split("/")[:2] for p in spooled(named)] == [["churn", "7"]]


def test_unreadable_uploads_are_left_out_with_a_note(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    stats = device(tmp_path, "dev-1", clock, str(uploads))
    feed(stats, inputs(np.random.default_rng(12), 120), "fraud/3", clock, step=0)
    stats.close()
    stats.tick()
    (good,) = (uploads / "stats" / "fraud" / "3").glob("*.json")
    folder = good.parent
    (folder / "20270115T080000Z--dev-9--0000000a.json").write_text("{not json")
    newer = json.loads(good.read_text())
    newer["format"] = 99
    (folder / "20270115T080000Z--dev-8--0000000b.json").write_text(json.dumps(newer))
    newer_sketch = json.loads(good.read_text())
    newer_sketch["sketches"]["format"] = SKETCH_FORMAT + 1
    (folder / "20270115T080000Z--dev-7--0000000c.json").write_text(json.dumps(newer_sketch))
    (uploads / "devices").mkdir()
    (uploads / "devices" / "dev-5.json").write_text("[]")

    got = read_uploads(str(uploads), "fraud", "3")
    assert (got.rows, got.devices) == (120, ["dev-1"])
    assert [n.replace(f"{folder}/", "") for n in got.notes] == [
        "20270115T080000Z--dev-7--0000000c.json left out: its sketch document has sketch "
        "format 2, "
        "newer than this mlflow-steward reads (1): upgrade mlflow-steward",
        "20270115T080000Z--dev-8--0000000b.json left out: format 99, newer than this "
        "mlflow-steward reads (1): upgrade mlflow-steward",
        "20270115T080000Z--dev-9--0000000a.json left out: not a steward statistics file "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
    ]
    later = read_uploads(str(uploads), "fraud", "3", since=T0 + 86400)  # a day on: not read
    assert (later.rows, later.notes) == (
        0,
        ["no statistics uploaded for fraud v3 in the period asked"],
    )
    (broken,) = read_devices(str(uploads))
    assert broken == {"device": "dev-5", "group": None, "error": "not a device report"}
    with pytest.raises(MonitoringError, match="does not exist"):
        read_uploads(str(tmp_path / "nowhere"), "fraud", "3")
    with pytest.raises(MonitoringError, match="scheme http:// is not supported"):
        read_uploads("http://example.invalid/x", "fraud", "3")


def test_bad_settings_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="device id 'a/b'"):
        EdgeStatistics(tmp_path, device_id="a/b")
    with pytest.raises(ValueError, match=r"window_seconds 0\.5"):
        EdgeStatistics(tmp_path, device_id="d", window_seconds=0.5)
    with pytest.raises(ValueError, match="window_seconds 90000: a whole number of seconds from 1"):
        EdgeStatistics(tmp_path, device_id="d", window_seconds=90000)
    with pytest.raises(ValueError, match="expected s3://bucket/prefix"):
        EdgeStatistics(tmp_path, device_id="d", uploads="s3://")


# -- fleet status ------------------------------------------------------------------------------


def test_steward_edge_status_lists_devices_by_group(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name, group, version, health in [
        ("dev-2", "west", "4", "unhealthy"),
        ("dev-1", "east", "3", "healthy"),
        ("dev-3", None, "3", "healthy"),
    ]:
        stats = device(tmp_path, name, clock, str(uploads), group=group)
        stats.report({"model": "fraud", "version": version, "health": health})
    clock.now += 30
    result = CliRunner().invoke(cli, ["edge", "status", "--uploads", str(uploads), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(d["group"], d["device"], d["version"], d["health"]) for d in listed] == [
        (None, "dev-3", "3", "healthy"),
        ("east", "dev-1", "3", "healthy"),
        ("west", "dev-2", "4", "unhealthy"),
    ]
    text = CliRunner().invoke(cli, ["edge", "status", "--uploads", str(uploads)])
    assert text.exit_code == 0, text.output
    assert text.output.splitlines()[:2] == [
        "(no group): 1 device",
        "  dev-3  fraud v3  healthy  last contact 2027-01-15 08:00:00 UTC",
    ]
    empty = CliRunner().invoke(cli, ["edge", "status", "--uploads", str(tmp_path / "nothing")])
    assert empty.exit_code == 1
    assert "does not exist" in empty.output


def test_a_column_missing_for_a_whole_first_window_merges_with_its_numeric_windows(tmp_path):
    clock = Clock()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    rng = np.random.default_rng(13)
    stats = device(tmp_path, "dev-1", clock, str(uploads))
    first = inputs(rng, 40)
    first["age"] = None  # decoded from JSON nulls: no number seen yet
    feed(stats, first, "fraud/3", clock, step=0)
    clock.now += WINDOW
    stats.tick()
    feed(stats, inputs(rng, 60), "fraud/3", clock, step=0)
    clock.now += WINDOW
    stats.tick()
    got = read_uploads(str(uploads), "fraud", "3")
    age = got.sketches["age"]
    assert (got.windows, age.kind, age.count + age.nulls) == (2, "numeric", 100)
    assert age.nulls >= 40
    assert got.notes == []
