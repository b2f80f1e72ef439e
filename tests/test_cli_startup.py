"""`steward --help` and `steward plugins` must not import MLflow, pandas, scikit-learn or scipy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mlflow", "pandas", "sklearn", "scipy")

PROBE = """
import json, sys
from mlflow_steward.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted({m.split('.')[0] for m in sys.modules})
print("\\nPROBE" + json.dumps({"code": code, "modules": loaded}))
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["plugins"], ["plugins", "--json"], ["--version"], ["audit", "--help"]]
)
def test_light_commands_do_not_import_heavy_packages(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120
    )
    out, probe = proc.stdout.rsplit("\nPROBE", 1)
    result = json.loads(probe)
    assert result["code"] in (0, None), proc.stderr
    heavy = [m for m in HEAVY if m in result["modules"]]
    assert heavy == [], f"`steward {' '.join(args)}` imported {heavy}"
    if args == ["plugins", "--json"]:
        names = {p["name"] for p in json.loads(out)}
        assert {"builtin.require_signature", "builtin.approvals"} <= names
