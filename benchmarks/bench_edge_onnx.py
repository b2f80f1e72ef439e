"""ONNX Runtime against the pyfunc model, single-row latency, in the same run: a 100-tree
RandomForestClassifier saved as an MLflow model, converted with steward's edge ONNX conversion
(``deployment/edge/onnx.py``), each answering one row at a time.

Three layers, each timed for both runtimes, alternated by slices:

- ``predict``: the model's own ``predict`` on a one-row DataFrame (what the agent calls);
- ``score``: the agent's scoring path (``ModelServer.score``: MLflow's request decoding, the
  prediction, the JSON answer) on a one-row ``dataframe_split`` body;
- ``http``: ``POST /invocations`` to the agent's HTTP server on 127.0.0.1 (keep-alive).

Each repetition's latency is the median of its calls; the result is the median over the
repetitions, and the ratio pyfunc / ONNX Runtime. Issue 16 measured 11 us against 3,079 us;
the bar here: ONNX Runtime's ``predict`` at least 10x faster than the pyfunc model's (exit 1
otherwise).

    .venv/bin/python benchmarks/bench_edge_onnx.py --calls 300 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks._common  # noqa: F401  (telemetry off)

COLUMNS = [f"x{i}" for i in range(8)]
BAR = 10.0


def _models(folder: Path) -> tuple[Any, Any]:
    """(pyfunc model, ONNX Runtime model) of one 100-tree random forest."""
    import mlflow.pyfunc
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    from mlflow_steward.deployment.edge import onnx

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, len(COLUMNS))), columns=COLUMNS)
    y = ((X["x0"] + X["x1"] * X["x2"]) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0).fit(X, y)
    model_dir = folder / "model"
    mlflow.sklearn.save_model(
        forest,
        model_dir,
        signature=infer_signature(X, forest.predict(X)),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    path = folder / "model.onnx"
    original, _opset = onnx.convert(model_dir, path)
    check = onnx.parity(original, path, X, COLUMNS, 1e-5)
    print(
        f"parity on {check['rows']} rows: label agreement {check['label_agreement']}, "
        f"max abs diff {check['max_abs_diff']:.3g}"
    )
    return mlflow.pyfunc.load_model(str(model_dir)), onnx.OnnxModel(path, model_dir)


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Median seconds of ``calls`` calls of ``fn``."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per slice")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP layer")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import requests

    from mlflow_steward.deployment.edge.serve import ModelServer, Serving

    with tempfile.TemporaryDirectory(prefix="bench-edge-onnx-") as tmp:
        pyfunc, ort_model = _models(Path(tmp))
        row = pd.DataFrame(np.random.default_rng(1).normal(size=(1, len(COLUMNS))), columns=COLUMNS)
        body = json.dumps({"dataframe_split": row.to_dict(orient="split", index=False)}).encode()
        servers = {}
        for label, model in (("pyfunc", pyfunc), ("onnxruntime", ort_model)):
            server = ModelServer(lambda: {})
            server.swap(Serving(model, "forest", "1", 1))
            servers[label] = server
        assert list(pyfunc.predict(row)) == list(ort_model.predict(row))
        layers: dict[str, dict[str, Callable[[], object]]] = {
            "predict": {
                "pyfunc": lambda: pyfunc.predict(row),
                "onnxruntime": lambda: ort_model.predict(row),
            },
            "score": {
                label: (lambda s=server: s.score(body, "application/json"))
                for label, server in servers.items()
            },
        }
        sessions = []
        try:
            if not args.no_http:
                layers["http"] = {}
                for label, server in servers.items():
                    server.start("127.0.0.1", 0)
                    session = requests.Session()
                    sessions.append(session)
                    url = f"http://127.0.0.1:{server.port}/invocations"
                    layers["http"][label] = lambda u=url, s=session: s.post(
                        u, data=body, headers={"Content-Type": "application/json"}, timeout=30
                    ).raise_for_status()
            results: dict[str, dict[str, list[float]]] = {
                layer: {"pyfunc": [], "onnxruntime": []} for layer in layers
            }
            for fns in layers.values():  # warm up
                for fn in fns.values():
                    _per_call(fn, 20)
            for _ in range(args.repeats):
                for layer, fns in layers.items():
                    for label, fn in fns.items():
                        results[layer][label].append(_per_call(fn, args.calls))
        finally:
            for session in sessions:
                session.close()
            for server in servers.values():
                server.stop()
    print(f"{args.calls} single-row calls x {args.repeats} repetitions, medians")
    print(f"{'layer':<8} {'pyfunc':>12} {'onnxruntime':>12} {'ratio':>8}")
    ratios = {}
    for layer, by in results.items():
        slow = statistics.median(by["pyfunc"])
        fast = statistics.median(by["onnxruntime"])
        ratios[layer] = slow / fast
        print(f"{layer:<8} {slow * 1e6:>10.0f}us {fast * 1e6:>10.0f}us {slow / fast:>7.1f}x")
    met = ratios["predict"] >= BAR
    print(f"bar: predict at least {BAR:g}x faster with ONNX Runtime: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
