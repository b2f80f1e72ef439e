"""What runs on Spark's executors: each partition's Arrow batches sketched per column, and two
partial sketches of a column merged. Only numpy, pyarrow and datasketches are used here (the
module is shipped to the executors by value: they need those three, not steward), and a
partition's result is one row per column: its kind, counts, sums and the sketch's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

NUMERIC = "numeric"
#: One row per column and partition, then per column (merged).
SCHEMA = (
    "column string, kind string, count long, nulls long, total double, squares double, "
    "sketch binary"
)


def new_sketch(kind: str, k: int, lg_max: int) -> Any:
    import datasketches as ds

    if kind == NUMERIC:
        return ds.kll_doubles_sketch(k)
    return ds.frequent_strings_sketch(lg_max)


def load_sketch(kind: str, raw: bytes) -> Any:
    import datasketches as ds

    if kind == NUMERIC:
        return ds.kll_doubles_sketch.deserialize(bytes(raw))
    return ds.frequent_strings_sketch.deserialize(bytes(raw))


def _as_text(column: Any) -> list[str]:
    """A categorical column's values as steward's in-process path writes them (pandas'
    ``astype(str)``: booleans are ``True``/``False``), nulls left out."""
    import pyarrow as pa

    present = column.drop_null()
    if pa.types.is_boolean(present.type):
        return ["True" if v else "False" for v in present.to_pylist()]
    if pa.types.is_string(present.type) or pa.types.is_large_string(present.type):
        return present.to_pylist()
    return [str(v) for v in present.to_pylist()]


def sketch_partition(
    batches: Iterator[Any], kinds: Mapping[str, str], k: int, lg_max: int
) -> Iterator[Any]:
    """``mapInArrow``'s function: every batch of one partition into one sketch per column."""
    import numpy as np
    import pyarrow as pa

    state = {name: [new_sketch(kind, k, lg_max), 0, 0, 0.0, 0.0] for name, kind in kinds.items()}
    for batch in batches:
        for name, kind in kinds.items():
            column = batch.column(name)
            entry = state[name]
            if kind == NUMERIC:
                values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
                present = values[~np.isnan(values)]  # nulls arrive as NaN, NaN counts as null
                entry[2] += int(values.size - present.size)
                if present.size:
                    entry[0].update(present)
                    entry[3] += float(present.sum())
                    entry[4] += float(np.square(present).sum())
                entry[1] += int(present.size)
                continue
            entry[2] += column.null_count
            texts = _as_text(column)
            entry[1] += len(texts)
            if texts:
                counted = pa.array(texts, pa.string()).value_counts()
                for value, n in zip(
                    counted.field("values").to_pylist(),
                    counted.field("counts").to_pylist(),
                    strict=True,
                ):
                    entry[0].update(value, int(n))
    rows = [
        {
            "column": name,
            "kind": kinds[name],
            "count": count,
            "nulls": nulls,
            "total": total,
            "squares": squares,
            "sketch": sketch.serialize(),
        }
        for name, (sketch, count, nulls, total, squares) in state.items()
    ]
    yield pa.RecordBatch.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("column", pa.string()),
                ("kind", pa.string()),
                ("count", pa.int64()),
                ("nulls", pa.int64()),
                ("total", pa.float64()),
                ("squares", pa.float64()),
                ("sketch", pa.binary()),
            ]
        ),
    )


def merge(a: tuple, b: tuple) -> tuple:
    """Two partial results of one column, ``(kind, count, nulls, total, squares, bytes)``,
    merged into one (``reduceByKey``: on the executors, then between them)."""
    kind = a[0]
    sketch = load_sketch(kind, a[5])
    sketch.merge(load_sketch(kind, b[5]))
    return (kind, a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4], sketch.serialize())
