"""Columnar request logs: the gateway's RequestLog writes the model's input columns as columns
(Parquet typed from the signature, or JSONL), monitoring reads a window with one scan filtered on
version, status and time, and logs written by 0.1.0 (tests/fixtures/reqlog-0.1.0, written by
0.1.0's RequestLog) keep reading, with a note."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.onprem import reqlog
from mlflow_steward.deployment.onprem.reqlog import (
    COLUMNS,
    RequestLog,
    read_request_log,
    read_rows,
    read_signature,
)
from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring.data import read_request_logs
from tests.monitoring_helpers import COLUMNS as FEATURES
from tests.monitoring_helpers import log_served, train

LEGACY = Path(__file__).parent / "fixtures" / "reqlog-0.1.0"
SIGNATURE = {"amount": "double", "age": "long", "city": "string"}


def _serve(log: RequestLog, i: int, version: str = "1", rows: int = 2, **payload) -> None:
    frame = pd.DataFrame({"amount": [1.0 * i] * rows, "age": [i] * rows, "city": ["x"] * rows})
    body = payload or {"dataframe_split": frame.to_dict(orient="split", index=False)}
    log.add(
        request_id=f"r{i}",
        version=version,
        status=200,
        latency_ms=1.0,
        content_type="application/json",
        request=json.dumps(body).encode(),
        response=json.dumps({"predictions": list(range(rows))}).encode(),
    )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_input_columns_are_columns_typed_by_the_signature(tmp_path, fmt):
    log = RequestLog(tmp_path, deployment="fraud", fmt=fmt, rotate_rows=8, flush_seconds=0.05)
    log.set_signature("1", SIGNATURE)
    for i in range(5):
        _serve(log, i)
    _serve(log, 9, version="2")
    # Every layout MLflow's scoring server takes becomes the same columns.
    _serve(log, 10, inputs={"amount": [3.5], "age": [4], "city": ["y"]}, rows=1)
    _serve(log, 11, dataframe_records=[{"amount": 2, "age": 5, "city": "z"}], rows=1)
    log.close()
    files = sorted(tmp_path.glob(f"requests-*.rows.{fmt}"))
    assert len(files) == 2  # 8 rows, then the other 6
    if fmt == "parquet":
        schema = pq.read_schema(files[0])
        assert schema.field("amount").type == pa.float64()
        assert schema.field("age").type == pa.int64()
        assert schema.field("city").type == pa.string()
        assert schema.field("__ts__").type == pa.timestamp("us", tz="UTC")
    window = read_rows(tmp_path, version="1")
    frame = window.frame
    assert window.notes == []
    assert list(frame.columns) == ["amount", "age", "city", "__prediction__", "__request_id__"]
    assert len(frame) == 12  # 5 requests of 2 rows and 2 of 1 row; v2's 2 rows left out
    assert frame["__request_id__"].tolist()[:4] == ["r0", "r0", "r1", "r1"]
    assert frame["__prediction__"].tolist()[:2] == [0, 1]
    assert frame["amount"].dtype == np.float64  # the integer 2 in a double column stays one
    assert frame.loc[frame["__request_id__"] == "r11", "amount"].tolist() == [2.0]
    assert set(frame["city"]) == {"x", "y", "z"}
    assert len(read_rows(tmp_path, version="2").frame) == 2


def test_a_window_is_filtered_on_time_and_old_segments_are_skipped(tmp_path):
    # Flushed by hand: two requests (4 rows) fill a segment.
    log = RequestLog(tmp_path, deployment="fraud", fmt="parquet", rotate_rows=4, flush_seconds=60)
    _serve(log, 0)
    _serve(log, 1)
    log.flush()  # the first segment, full and written
    _serve(log, 2)
    log.flush()  # the second segment is open
    time.sleep(0.05)
    cut = time.time()
    time.sleep(0.05)
    for i in range(4, 7):
        _serve(log, i)
    log.close()
    first, _, _ = sorted(tmp_path.glob("*.parquet"))
    assert len(read_rows(tmp_path).frame) == 12
    # The first segment was closed before the second was opened, before the window began: it
    # is not even opened.
    first.write_bytes(b"not parquet")
    frame = read_rows(tmp_path, version="1", since=cut).frame
    assert sorted(set(frame["__request_id__"])) == ["r4", "r5", "r6"]
    with pytest.raises(MonitoringError, match="cannot read the request log"):
        read_request_logs(tmp_path, "1")
    assert read_rows(tmp_path, since=time.time() + 60).frame is None


def test_failed_unreadable_and_unsampled_requests_are_metadata_not_rows(tmp_path):
    log = RequestLog(tmp_path, deployment="fraud", fmt="parquet", flush_seconds=0.05)
    _serve(log, 1)
    log.add(
        request_id="failed",
        version="1",
        status=400,
        latency_ms=1.0,
        content_type=None,
        request=b'{"dataframe_split": {"columns": ["amount"], "data": [[1]]}}',
        response=b'{"error_code": "BAD_REQUEST"}',
    )
    log.add(
        request_id="text",
        version="1",
        status=200,
        latency_ms=1.0,
        content_type="text/csv",
        request=b"amount,age\n1,2\n",
        response=b"[1]",
    )
    # A column named like the log's own metadata would be mistaken for it: kept as text.
    _serve(log, 2, dataframe_records=[{"__version__": "9"}], rows=1)
    log.close()
    frame = read_rows(tmp_path).frame
    assert sorted(set(frame["__request_id__"])) == ["r1"]
    records = {r["request_id"]: r for r in read_request_log(tmp_path)}
    assert records["failed"]["request"].startswith('{"dataframe_split"')
    assert records["failed"]["response"] == '{"error_code": "BAD_REQUEST"}'
    assert records["text"]["request"] == "amount,age\n1,2\n"
    assert json.loads(records["r2"]["request"]) == {"dataframe_records": [{"__version__": "9"}]}
    assert json.loads(records["r1"]["request"]) == {
        "dataframe_split": {"columns": ["amount", "age", "city"], "data": [[1.0, 1, "x"]] * 2}
    }
    assert all(list(r) == list(COLUMNS) for r in records.values())

    unsampled = tmp_path / "meta-only"
    log = RequestLog(unsampled, deployment="fraud", payload_sample=0.0, flush_seconds=0.05)
    _serve(log, 1)
    log.close()
    assert read_rows(unsampled).frame is None
    with pytest.raises(MonitoringError, match=r"no request with a logged payload .*1 rows skipped"):
        read_request_logs(unsampled, "1")


def test_a_0_1_0_log_reads_as_before_with_a_note(tmp_path):
    window = read_rows(LEGACY, version="1")
    assert len(window.frame) == 400  # 20 requests of 10 rows in each of its two segments
    assert list(window.frame.columns) == [*FEATURES, "__prediction__", "__request_id__"]
    assert "0.1.0 per-request format" in window.notes[0]
    assert len(read_rows(LEGACY, version="2").frame) == 20
    assert len(read_request_log(LEGACY)) == 44
    # New segments beside old ones (a gateway upgraded in place): both read, one frame.
    shutil.copytree(LEGACY, tmp_path / "mixed")
    log = RequestLog(tmp_path / "mixed", deployment="fraud", fmt="parquet")
    log_served(log, "new", pd.DataFrame({c: [0.5] * 3 for c in FEATURES}), [1, 0, 1])
    log.close()
    mixed = read_request_logs(tmp_path / "mixed", "1")
    assert len(mixed) == 403
    assert "0.1.0 per-request format" in mixed.attrs["steward.notes"][0]


def test_the_signature_is_read_from_the_mlmodel_file(tmp_path):
    (tmp_path / "MLmodel").write_text(
        "signature:\n  inputs: '"
        + json.dumps([{"type": "double", "name": "a"}, {"type": "string", "name": "b"}])
        + "'\n  outputs: null\n"
    )
    assert read_signature(tmp_path) == {"a": "double", "b": "string"}
    tensor = tmp_path / "tensor"
    tensor.mkdir()
    (tensor / "MLmodel").write_text(
        'signature:\n  inputs: \'[{"type": "tensor", "tensor-spec": {}}]\'\n'
    )
    assert read_signature(tensor) is None
    assert read_signature(tmp_path / "missing") is None


def _check(workspace, data: Path) -> dict:
    result = CliRunner().invoke(
        cli,
        # --drift-share: one of the four columns (three features, prediction) is enough
        [
            "monitor",
            "check",
            "models:/fraud/1",
            "--data",
            str(data),
            "--no-log",
            "--json",
            "--drift-share",
            "0.25",
        ],
    )
    return json.loads(result.output[result.output.index("{") :])


def test_monitor_check_on_old_and_new_logs_and_bad_input(workspace, tmp_path):
    train(workspace.db_uri)
    old = _check(workspace, LEGACY)
    assert old["status"] == "healthy"
    assert any("0.1.0 per-request format" in q for q in old["quality"])

    # A table without the model's columns: invalid, nothing judged.
    log = RequestLog(tmp_path / "other", deployment="fraud", fmt="parquet")
    for i in range(150):
        log_served(log, f"r{i}", pd.DataFrame({"colour": ["red"], "size": [i]}), [1])
    log.close()
    other = _check(workspace, tmp_path / "other")
    assert other["status"] == "invalid"
    assert "missing columns amount, age, score" in " ".join(other["quality"])

    new = tmp_path / "new"
    log = RequestLog(new, deployment="fraud", fmt="parquet")
    rng = np.random.default_rng(5)
    for i in range(300):
        part = pd.DataFrame(rng.normal(size=(1, 3)), columns=FEATURES)
        part["age"] += 2.0
        log_served(log, f"r{i}", part, [int(part["amount"].iloc[0] > 0)])
    log.close()
    shifted = _check(workspace, new)
    assert shifted["status"] == "drift"
    assert shifted["drifted"] == ["age"]
    assert not any("0.1.0" in q for q in shifted["quality"])


# -- the writer decodes a batch column by column, as it decodes each request on its own ---------

_S = ["amount", "age", "city"]


def _split(*rows, columns=_S) -> dict:
    return {"dataframe_split": {"columns": columns, "data": [list(r) for r in rows]}}


#: (version, status, request body, response body): every layout MLflow's scoring server takes,
#: runs of the same columns broken by another version, other columns and bodies that are not
#: tables, and values that change a column's type.
MIXED: list[tuple[str, int, bytes, bytes]] = [
    *[("1", 200, _split((1.5 * i, i, "x")), b'{"predictions": [0]}') for i in range(4)],
    ("1", 200, _split((1, 2, "y"), (2.5, 3, None), (True, 4, "z")), b'{"predictions": [1, 0, 1]}'),
    ("2", 200, _split((9.5, 9, "v2")), b'{"predictions": [1]}'),  # another signature
    ("1", 200, _split((3.5, 5, "x")), b"[1]"),  # predictions as a bare list
    ("1", 200, {"dataframe_records": [{"amount": 2, "age": 5, "city": "r"}]}, b"{}"),
    ("1", 200, {"dataframe_records": [{"age": 6}, {"city": "s", "extra": [1, 2]}]}, b"{}"),
    ("1", 200, {"inputs": {"amount": [4.0, 5.0], "age": [1, 2], "city": ["i", "j"]}}, b"[0, 1]"),
    ("1", 200, {"instances": [[6.0, 7, "k"]]}, b'{"predictions": [{"p": 0.5}]}'),  # named by sig
    ("1", 200, {"dataframe_split": {"data": [[7.0, 8, "n"]]}}, b'{"predictions": [2]}'),
    ("1", 200, _split((1.0, {"nested": 1}, "o")), b'{"predictions": [0, 1]}'),  # wrong length
    ("1", 200, _split((1.0, 2.0), columns=["amount", "amount"]), b"[0]"),  # one column twice
    ("1", 200, _split((1.0,), columns=["__version__"]), b"[0]"),  # a metadata column's name
    ("1", 200, b'{"dataframe_split": {"columns": ["amount"], "data": [[1.0]', b"[0]"),  # cut off
    ("1", 200, b"[" * 100_000, b"[0]"),  # too deep for Python's decoder
    ("1", 200, b"amount\n1.0\n", b"[0]"),  # CSV
    ("1", 200, _split((1.0, 1, "p")), b"not json"),
    ("1", 400, _split((1.0, 1, "q")), b'{"error_code": "BAD_REQUEST"}'),
    ("1", 200, _split((2.0, 1, "x"), (3.0, 2, "x")), b'{"predictions": [1, 1]}'),
    ("1", 200, _split(("text", 1, "x")), b"[0]"),  # a string in a double column: all text
    *[("1", 200, _split((0.5 * i, i, "t")), b"[1]") for i in range(5)],
]


def _write(folder: Path, requests, *, fmt: str = "parquet", rotate_rows: int = 1_000) -> None:
    log = RequestLog(folder, deployment="fraud", fmt=fmt, rotate_rows=rotate_rows, flush_seconds=60)
    log.set_signature("1", SIGNATURE)
    log.set_signature("2", {"amount": "float", "age": "long", "city": "string"})
    for i, (version, status, body, response) in enumerate(requests):
        log.add(
            request_id=f"r{i}",
            version=version,
            status=status,
            latency_ms=0.1 * i,
            content_type="application/json",
            request=body if isinstance(body, bytes) else json.dumps(body).encode(),
            response=response,
        )
    log.close()  # one batch: the flush thread waits a minute


def _segments(folder: Path, fmt: str) -> list:
    files = sorted(folder.glob(f"requests-*.rows.{fmt}"))
    if fmt == "jsonl":
        return [[json.loads(line) for line in f.read_text().splitlines()] for f in files]
    return [pq.read_table(f) for f in files]


def _without_ts(segment, fmt: str):
    if fmt == "jsonl":
        return [{k: v for k, v in row.items() if k != "__ts__"} for row in segment]
    return segment.drop_columns(["__ts__"])


@pytest.mark.parametrize(
    ("fmt", "rotate_rows"), [("parquet", 1_000), ("parquet", 7), ("jsonl", 1_000), ("jsonl", 7)]
)
def test_a_batch_is_written_as_each_request_decoded_on_its_own_would_be(
    tmp_path, monkeypatch, fmt, rotate_rows
):
    """The writer decodes runs of requests with the same columns together; the segments it
    writes (columns, types, values, nulls, request ids, order, rotation) are those of decoding
    every request on its own, for a batch that mixes layouts, versions and bad bodies."""
    _write(tmp_path / "batched", MIXED, fmt=fmt, rotate_rows=rotate_rows)
    with monkeypatch.context() as patch:
        patch.setattr(reqlog, "_bulk", lambda *args: None)  # every request on its own
        _write(tmp_path / "each", MIXED, fmt=fmt, rotate_rows=rotate_rows)
    batched, each = _segments(tmp_path / "batched", fmt), _segments(tmp_path / "each", fmt)
    assert len(batched) == len(each) == (1 if rotate_rows == 1_000 else 5)  # 33 rows
    for ours, theirs in zip(batched, each, strict=True):
        if fmt == "parquet":
            assert ours.schema == theirs.schema
            assert ours["__ts__"].null_count == 0
        assert _without_ts(ours, fmt) == _without_ts(theirs, fmt)
    if fmt == "parquet" and rotate_rows == 1_000:
        (table,) = batched
        ids = table["__request_id__"].to_pylist()
        assert ids[:8] == ["r0", "r1", "r2", "r3", "r4", "r4", "r4", "r5"]
        assert table.schema.field("amount").type == pa.string()  # the "text" sent for a double
        assert table.schema.field("age").type == pa.string()  # {"nested": 1} became text
        rows = {(r["__request_id__"], r["__row__"]): r for r in table.to_pylist()}
        assert rows[("r4", 1)]["city"] is None
        assert rows[("r4", 2)]["amount"] == "True"
        assert rows[("r13", 0)]["amount"] == "2.0"  # one column twice: the last value
        assert rows[("r14", None)]["__request__"].startswith('{"dataframe_split"')
        assert rows[("r16", None)]["__request__"] == "[" * 100_000  # too deep: kept as text
        assert rows[("r19", None)]["__status__"] == 400


def test_runs_of_uniform_requests_are_typed_by_the_signature(tmp_path, monkeypatch):
    """The common case, batched: 1-row and 3-row requests of doubles (some sent as integers)
    are written as float64 with their predictions, identical to the per-request path."""
    uniform = [
        ("1", 200, _split((i, i, "c"), *([(0.5, 1, "d")] * (i % 3))), b'{"predictions": [1]}')
        for i in range(50)
    ]
    _write(tmp_path / "batched", uniform)
    with monkeypatch.context() as patch:
        patch.setattr(reqlog, "_bulk", lambda *args: None)
        _write(tmp_path / "each", uniform)
    (ours,), (theirs,) = _segments(tmp_path / "batched", "parquet"), _segments(
        tmp_path / "each", "parquet"
    )
    assert ours.drop_columns(["__ts__"]) == theirs.drop_columns(["__ts__"])
    assert ours.schema.field("amount").type == pa.float64()
    assert ours["amount"].to_pylist()[:2] == [0.0, 1.0]
    assert ours["__prediction__"].null_count == ours.num_rows - sum(
        1 for i in range(50) if i % 3 == 0
    )
