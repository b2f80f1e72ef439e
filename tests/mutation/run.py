"""Mutation testing of the governance core (issue 19, point 2): mutmut 3 over the modules in
scope, with a fast in-process test selection, then a per-module report.

Run through tox (``tox -e mutation``) or directly::

    python tests/mutation/run.py [--phase after] [--max-children 2] [--report-only]

mutmut reads its settings from ``[tool.mutmut]`` in pyproject.toml; so that the project's own
pyproject.toml stays as it is, the run happens in a scratch copy of ``src/``, ``tests/`` and
``pyproject.toml`` (``$STEWARD_MUTATION_DIR``, default ``<tmp>/steward-mutation``) whose
pyproject.toml gets the section appended. The results land in ``tests/mutation/<phase>.json``
and ``tests/mutation/<phase>.txt`` (per module: total, killed, survived, and each survivor).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PKG = "src/mlflow_steward"

#: Report name -> the source files mutated for it.
MODULES: dict[str, list[str]] = {
    "policy engine": [f"{PKG}/governance/engine.py"],
    "built-in policies": [f"{PKG}/governance/policies/*.py"],
    "audit log": [f"{PKG}/records/audit.py"],
    "recovery": [f"{PKG}/records/pending_writes.py", f"{PKG}/governance/recovery.py"],
    "approvals": [f"{PKG}/records/approvals.py"],
    "alias history": [f"{PKG}/records/history.py"],
    "monitor rules": [f"{PKG}/monitoring/rules.py", f"{PKG}/monitoring/actions.py"],
}

#: Mutants checked per module: a deterministic sample (every k-th mutant of the module, by name),
#: since a full run (2,778 mutants) takes hours on a shared 2-core machine. ``--full`` checks all.
SAMPLE = {"built-in policies": 60}
SAMPLE_DEFAULT = 40

#: The fast, in-process tests (no server, no subprocess scoring) that the "before" run used.
BASE_TESTS = [
    "tests/test_engine.py",
    "tests/test_policies.py",
    "tests/test_db.py",
    "tests/test_config.py",
    "tests/test_digest.py",
]
#: The tests written to kill survivors (issue 19): added for the "after" run.
NEW_TESTS = [
    "tests/test_audit_truncate.py",
    "tests/test_config_edges.py",
    "tests/test_engine_edges.py",
    "tests/test_monitor_rules_units.py",
    "tests/test_policies_edges.py",
    "tests/test_records_edges.py",
    "tests/test_recovery_units.py",
    "tests/test_requirements_edges.py",
    "tests/test_threshold_approvals_edges.py",
]
#: Statuses that count as killed (the mutant made the selection fail, time out or crash).
KILLED = ("killed", "timeout", "segfault", "suspicious", "caught by type check")

#: Survivors judged equivalent (no test can tell them from the original), with the reason:
#: ``tests/mutation/equivalent.txt``, one ``<mutant name>  <reason>`` per line.
EQUIVALENT_FILE = HERE / "equivalent.txt"


def equivalents() -> dict[str, str]:
    out: dict[str, str] = {}
    if EQUIVALENT_FILE.exists():
        for line in EQUIVALENT_FILE.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, reason = line.strip().partition(" ")
                out[name] = reason.strip()
    return out


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare(work: Path, tests: list[str]) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(
        ROOT / "src", work / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    shutil.copytree(
        ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "mutation")
    )
    only = [f for files in MODULES.values() for f in files]
    section = f"""
[tool.mutmut]
source_paths = ["src"]
only_mutate = {toml_list(only)}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
pytest_add_cli_args_test_selection = {toml_list(tests)}
use_git_change_detection = false
"""
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + section)


def module_of(mutant: str) -> str | None:
    """``mlflow_steward.records.audit.x_verify__mutmut_3`` -> "audit log"."""
    dotted = mutant.split(".x")[0] if ".x" in mutant else mutant
    for name, patterns in MODULES.items():
        for pattern in patterns:
            mod_pattern = pattern.removeprefix("src/").removesuffix(".py").replace("/", ".")
            if fnmatch.fnmatch(dotted, mod_pattern) or dotted.startswith(mod_pattern + "."):
                return name
    return None


def results(work: Path, mutmut: str) -> dict[str, str]:
    out = subprocess.run(
        [mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+__mutmut_\d+): (.+)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def report(
    phase: str,
    status: dict[str, str],
    work: Path,
    mutmut: str,
    seconds: float | None,
    *,
    full: bool,
    everything: dict[str, str],
) -> None:
    equiv = equivalents()
    per: dict[str, Counter[str]] = {name: Counter() for name in MODULES}
    survivors: dict[str, list[str]] = {name: [] for name in MODULES}
    for mutant, st in sorted(status.items()):
        mod = module_of(mutant)
        if mod is None:
            continue
        if st in ("survived", "no tests") and mutant in equiv:
            st = "equivalent"
        elif st == "no tests":
            st = "survived"  # nothing ran it: a mutant no test notices
        elif st in KILLED[1:]:
            st = "killed"  # the mutant broke the run: noticed
        per[mod][st] += 1
        if st == "survived":
            survivors[mod].append(mutant)
    totals = Counter(module_of(m) for m in everything)
    lines = [
        f"mutation run: {phase} ({'every mutant' if full else 'a sample: every k-th mutant of each module'})",
        "",
    ]
    if seconds is not None:
        lines.append(f"wall time: {seconds / 60:.1f} min")
    lines.append("tests: " + " ".join(TESTS_USED))
    if phase == "after":
        lines.append(
            "(the mutants the before run killed with the base tests count as killed; these tests "
            "ran against its survivors)"
        )
    if phase == "check":
        lines.append(
            "(a second sample; what these tests left alive then ran against the base tests)"
        )
    lines.append("")
    lines.append(
        f"{'module':<20} {'mutants':>8} {'sampled':>8} {'killed':>7} {'survived':>9} "
        f"{'equiv':>6} {'score':>7}   (score: killed / (killed + survived); 'no tests' counts "
        "as survived)"
    )
    data = {}
    for name, c in per.items():
        total = sum(c.values())
        non_equiv = c["killed"] + c["survived"]  # checked and not equivalent
        score = c["killed"] / non_equiv if non_equiv else 1.0
        data[name] = {
            "total": total,
            "killed": c["killed"],
            "survived": c["survived"],
            "equivalent": c["equivalent"],
            "not checked": c["not checked"],
            "score": round(score, 4),
            "survivors": survivors[name],
        }
        data[name]["mutants"] = totals[name]
        lines.append(
            f"{name:<20} {totals[name]:>8} {total:>8} {c['killed']:>7} {c['survived']:>9} "
            f"{c['equivalent']:>6} {score:>7.1%}"
            + (f"   ({c['not checked']} not checked yet)" if c["not checked"] else "")
        )
    tot = Counter()
    for c in per.values():
        tot.update(c)
    non_equiv = tot["killed"] + tot["survived"]
    lines.append(
        f"{'all':<20} {sum(totals[n] for n in MODULES):>8} {sum(tot.values()):>8} {tot['killed']:>7} "
        f"{tot['survived']:>9} {tot['equivalent']:>6} {tot['killed'] / max(non_equiv, 1):>7.1%}"
    )
    lines.append("")
    lines.append("survivors (mutmut show <name> in the scratch copy prints the diff):")
    for name, names in survivors.items():
        for m in names:
            lines.append(f"  {name}: {m}")
    (HERE / f"{phase}.txt").write_text("\n".join(lines) + "\n")
    (HERE / f"{phase}.json").write_text(
        json.dumps(
            {"phase": phase, "modules": data, "status": dict(sorted(status.items()))}, indent=1
        )
        + "\n"
    )
    print("\n".join(lines[: 7 + len(MODULES) + 1]))


TESTS_USED: list[str] = []


def sample(names: list[str], module: str) -> list[str]:
    """Every k-th of a module's mutants (sorted by name), about ``SAMPLE[module]`` of them."""
    target = SAMPLE.get(module, SAMPLE_DEFAULT)
    names = sorted(names)
    step = max(1, -(-len(names) // target))
    return names[step // 2 :: step] if OTHER_SAMPLE else names[::step]


#: ``--phase check``: the mutants half-way between the sampled ones (none of which the tests
#: were written against), to see whether the after score holds beyond the sample.
OTHER_SAMPLE = False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", default="after", choices=["before", "after", "check"])
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="every mutant, not the sample")
    ap.add_argument("--report-only", action="store_true", help="re-read the last run's results")
    ap.add_argument("--resume", action="store_true", help="keep the scratch copy and its results")
    ap.add_argument(
        "--killers", action="store_true", help="after: name the test that kills each survivor"
    )
    args = ap.parse_args()
    base = Path(
        os.environ.get("STEWARD_MUTATION_DIR", Path(tempfile.gettempdir()) / "steward-mutation")
    )
    work = base / args.phase
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"
    # After: the mutants the base selection killed stay killed (see carried()); the ones it let
    # survive did pass every base test, so only the new tests can kill them: the scratch copy
    # runs the new tests alone, which takes minutes instead of hours.
    # Check: another sample, run against the new tests; what they leave alive then runs against
    # the base tests in the before copy (killed by either: killed).
    TESTS_USED[:] = BASE_TESTS if args.phase == "before" else NEW_TESTS
    global OTHER_SAMPLE
    OTHER_SAMPLE = args.phase == "check"
    seconds = None
    if not args.report_only:
        started = time.monotonic()
        if not (args.resume and (work / "mutants").is_dir()):
            prepare(work, TESTS_USED)
        status = results(work, mutmut)
        if not status:
            # Generates the mutants and maps tests to functions (one run of the selection), then
            # stops: no mutant matches the name.
            subprocess.run(
                [mutmut, "run", "--max-children", "1", "__list_only__"],
                cwd=work,
                check=False,
                capture_output=True,
            )
            status = results(work, mutmut)
        chosen = chosen_mutants(status, args.full)
        todo = [m for m in chosen if status[m] == "not checked" and m not in carried(args.phase)]
        print(f"{len(chosen)} mutants chosen, {len(todo)} to run", flush=True)
        for i in range(0, len(todo), 200):  # a command line of reasonable length
            subprocess.run(
                [mutmut, "run", "--max-children", str(args.max_children), *todo[i : i + 200]],
                cwd=work,
                check=False,
            )
        if args.phase == "check":
            status = results(work, mutmut)
            alive = [m for m in chosen if status[m] in ("survived", "no tests")]
            print(f"{len(alive)} left alive by the new tests: against the base tests", flush=True)
            if alive and (base / "before" / "mutants").is_dir():
                subprocess.run(
                    [mutmut, "run", "--max-children", str(args.max_children), *alive],
                    cwd=base / "before",
                    check=False,
                )
        seconds = time.monotonic() - started
    status = results(work, mutmut)
    chosen = set(chosen_mutants(status, args.full))
    picked = {m: carried(args.phase).get(m, st) for m, st in status.items() if m in chosen}
    if args.phase == "check" and (base / "before" / "mutants").is_dir():
        by_base = results(base / "before", mutmut)
        picked = {m: "killed" if by_base.get(m) in KILLED else st for m, st in picked.items()}
    report(args.phase, picked, work, mutmut, seconds, full=args.full, everything=status)
    if args.killers and args.phase == "after":
        killers(work, args.max_children)
    return 0


def killers(work: Path, jobs: int) -> None:
    """survivors.txt: each mutant the before run let survive, with the first new test that fails
    on it (pytest -x over the tests mutmut found covering it, fastest first), or the reason it
    is equivalent, or that it still survives."""
    import concurrent.futures

    before = json.loads((HERE / "before.json").read_text())["status"]
    after = json.loads((HERE / "after.json").read_text())["status"]
    equiv = equivalents()
    stats = json.loads((work / "mutants" / "mutmut-stats.json").read_text())
    covering, durations = stats["tests_by_mangled_function_name"], stats["duration_by_test"]

    def first_failure(mutant: str) -> str:
        tests = sorted(
            covering.get(mutant.rsplit("__mutmut_", 1)[0], []), key=lambda t: durations.get(t, 0)
        )
        if not tests:
            return "no new test covers it"
        env = {**os.environ, "MUTANT_UNDER_TEST": mutant, "PYTHONPATH": "src"}
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-x",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:randomly",
                *tests,
            ],
            cwd=work / "mutants",
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        found = re.search(r"^(?:FAILED|ERROR) (\S+)", run.stdout, re.MULTILINE)
        return (
            f"killed by {found.group(1)}"
            if found
            else f"no failure found (pytest exit {run.returncode})"
        )

    lines = ["# Each mutant that survived the before run (sampled), and what became of it.", ""]
    todo = [
        m
        for m, st in sorted(before.items())
        if st not in KILLED and st != "not checked" and after.get(m) in KILLED
    ]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        found = dict(zip(todo, pool.map(first_failure, todo), strict=True))
    for m, st in sorted(before.items()):
        if st in KILLED or st == "not checked":
            continue
        if m in equiv:
            lines.append(f"{m}  equivalent: {equiv[m]}")
        elif m in found:
            lines.append(f"{m}  {found[m]}")
        else:
            lines.append(f"{m}  still survives ({after.get(m, 'not in the after run')})")
    (HERE / "survivors.txt").write_text("\n".join(lines) + "\n")


def carried(phase: str) -> dict[str, str]:
    """After: the mutants the "before" run killed stay killed (the selection only grew), so only
    its survivors run again."""
    before = HERE / "before.json"
    if phase != "after" or not before.exists():
        return {}
    statuses = json.loads(before.read_text()).get("status", {})
    return {m: "killed" for m, st in statuses.items() if st in KILLED}


def chosen_mutants(status: dict[str, str], full: bool) -> list[str]:
    by_module: dict[str, list[str]] = {name: [] for name in MODULES}
    for m in status:
        mod = module_of(m)
        if mod is not None:
            by_module[mod].append(m)
    if full:
        return sorted(m for names in by_module.values() for m in names)
    return sorted(m for mod, names in by_module.items() for m in sample(names, mod))


if __name__ == "__main__":
    sys.exit(main())
