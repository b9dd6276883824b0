"""Mutation testing of the modules where a silent bug means a false accusation, a lost audit record
or an over-admitted attacker (issue 23), with cosmic-ray (``pip install -e .[mutation]``).

Each module is mutated one small change at a time (a comparison flipped, a constant changed, a
statement removed, ...) and only *its own* test files are run against each mutant: a mutant the
tests do not notice ("survived") is either a missing test or an equivalent change, and
benchmarks/RESULTS.md records which.  Not part of ``.ci/run``: it takes minutes per module.

The mutations are applied to a copy of ``src/`` and ``tests/`` in a scratch directory, never to
the working tree, so an interrupted run leaves no mutated file behind.  Everything runs under
``nice -n 15`` with one thread per process.

    python benchmarks/mutation.py                         # every module below (long: see RESULTS.md)
    python benchmarks/mutation.py gateway/audit.py        # one module
    python benchmarks/mutation.py --list                  # the modules and their test files
    python benchmarks/mutation.py gateway/audit.py --report-only --workdir DIR   # re-read a finished session
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Module (under src/extractguard/) -> the test files that own it.  Fast, module-level test files
#: where they exist; slow end-to-end files only where nothing smaller covers the module.
MODULES: dict[str, tuple[str, ...]] = {
    "gateway/audit.py": ("tests/gateway/test_audit.py",),
    "verify/ownership.py": ("tests/verify/test_ownership.py", "tests/verify/test_evidence.py"),
    "verify/evidence.py": ("tests/verify/test_evidence.py",),
    "verify/fingerprint.py": ("tests/verify/test_verify.py",),
    "verify/references.py": ("tests/verify/test_verify.py",),
    "gateway/keys.py": ("tests/gateway/test_keys.py", "tests/gateway/test_gateway.py"),
    "gateway/limiter.py": ("tests/gateway/test_limiter.py", "tests/gateway/test_gateway_limits.py",
                           "tests/gateway/test_gateway_reliability.py::test_redis_limits_check_and_charge_atomically_across_replicas"),
    "oracle/oracle.py": ("tests/oracle/test_oracle.py", "tests/serving/test_serving.py"),
    "watermark/keyed.py": ("tests/watermark/test_watermark.py",),
    "watermark/record.py": ("tests/watermark/test_watermark.py",),
    # The policy's own tests, not the detectors' (whose calibration makes each run 3x slower).
    "detect/policy.py": ("tests/detect/test_policy.py",
                         "tests/detect/test_detect.py::test_policy_escalates_by_level",
                         "tests/detect/test_detect.py::test_proof_of_work_is_bound_to_account_single_use_and_hard",
                         "tests/gateway/test_detect_gateway.py::test_detection_config_errors_are_one_line",
                         "tests/gateway/test_detect_gateway.py::test_example_detection_config_loads",
                         "tests/gateway/test_detect_gateway.py::test_a_sanction_survives_falling_risk",
                         "tests/gateway/test_detect_gateway.py::test_responses_escalate_flag_challenge_suspend_and_survive_restart",
                         "tests/gateway/test_detect_gateway.py::test_throttle_is_a_tight_limit_in_rows"),
}

COSMIC_RAY = Path(sys.executable).with_name("cosmic-ray")


def _config(work: Path, module: str, tests: tuple[str, ...], timeout: float) -> Path:
    """A cosmic-ray session config: mutate ``module`` in the scratch copy, run its own tests (stop at the first failure)."""
    # No plugin autoload: the listed test files need none, and it saves ~2 s of CPU per mutant.
    env = (f"env PYTHONPATH={work / 'src'}:{work / 'tests'} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1")
    command = f"{env} {sys.executable} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"
    cfg = work / f"{module.replace('/', '_')}.toml"
    cfg.write_text(
        "[cosmic-ray]\n"
        f'module-path = "src/extractguard/{module}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )
    return cfg


def _prepare(work: Path) -> None:
    """A scratch copy of the sources and tests: the working tree is never mutated."""
    for name in ("src", "tests", "examples"):  # some tests load the shipped example configs
        if not (work / name).exists():
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where a function's argument and return annotations are, if the module never evaluates them.

    Under ``from __future__ import annotations`` (PEP 563) these are strings nobody reads at run
    time, so a mutant inside one (``float | None`` -> ``float // None``) is equivalent by
    construction.  The same holds for a module-level variable's annotation (``X: dict[str, float
    | str] = ...``).  Class-level annotations are kept: pydantic and dataclasses read those.
    """
    import ast

    tree = ast.parse(path.read_text())
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
                 for n in tree.body)
    if not future:
        return []
    spans = [((n.annotation.lineno, n.annotation.col_offset),
              (n.annotation.end_lineno or n.annotation.lineno, n.annotation.end_col_offset or 0))
             for n in tree.body if isinstance(n, ast.AnnAssign)]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            notes = [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if x is not None]
            for ann in (*notes, node.returns):
                if ann is not None:
                    spans.append(((ann.lineno, ann.col_offset), (ann.end_lineno or ann.lineno, ann.end_col_offset or 0)))
    return spans


def skip_annotations(session: Path, module_file: Path) -> int:
    """Mark the pending mutants inside never-evaluated annotations as skipped; returns how many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = _annotation_spans(module_file)
    skipped = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            start = tuple(item.mutations[0].start_pos)
            if any(lo <= start < hi for lo, hi in spans):
                skipped.append(item.job_id)
        for job in skipped:
            db.set_result(job, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                          output="inside a function annotation, never evaluated (PEP 563): equivalent"))
    return len(skipped)


def _nice(cmd: list[str]) -> list[str]:
    return ["nice", "-n", "15", *cmd]


def summarise(session: Path, module_file: Path) -> dict[str, object]:
    """Counts and the surviving mutants of a (possibly unfinished) session, read from its database
    (``cosmic-ray dump`` cannot print skipped items)."""
    import sqlite3

    spans = _annotation_spans(module_file)
    counts = {"generated": 0, "annotation": 0, "killed": 0, "survived": 0, "incompetent": 0, "pending": 0}
    survivors: list[dict[str, object]] = []
    with sqlite3.connect(session) as c:
        rows = c.execute(
            "SELECT m.start_pos_row, m.start_pos_col, m.operator_name, m.occurrence, m.definition_name, "
            "r.worker_outcome, r.test_outcome, r.diff FROM mutation_specs m LEFT JOIN work_results r ON r.job_id = m.job_id"
        ).fetchall()
    for line, col, operator, occurrence, function, worker, test, diff in rows:
        counts["generated"] += 1
        if any(lo <= (line, col) < hi for lo, hi in spans):
            counts["annotation"] += 1
        elif worker is None:
            counts["pending"] += 1
        elif test == "SURVIVED":
            counts["survived"] += 1
            survivors.append({"line": line, "operator": operator, "occurrence": occurrence, "function": function,
                              "diff": diff or ""})
        elif test == "KILLED":
            counts["killed"] += 1
        else:  # the mutant did not even import, or the worker failed: nothing was tested
            counts["incompetent"] += 1
    return {**counts, "survivors": sorted(survivors, key=lambda s: s["line"])}


def forget_survivors(session: Path) -> int:
    """Drop the survivors' results so that ``exec`` runs them again (after tests were added)."""
    import sqlite3

    with sqlite3.connect(session) as c:
        return c.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'").rowcount


def run_module(module: str, work: Path, timeout: float, report_only: bool, retest: bool = False) -> dict[str, object]:
    tests = MODULES[module]
    cfg = _config(work, module, tests, timeout)
    session = cfg.with_suffix(".sqlite")
    if retest and session.exists():
        print(f"{module}: testing {forget_survivors(session)} survivors again", file=sys.stderr)
    if not report_only:
        if not session.exists():
            subprocess.run(_nice([str(COSMIC_RAY), "init", str(cfg), str(session)]), cwd=work, check=True)
        skip_annotations(session, work / "src" / "extractguard" / module)
        base = subprocess.run(_nice([str(COSMIC_RAY), "baseline", str(cfg)]), cwd=work)
        if base.returncode != 0:
            raise SystemExit(f"{module}: its tests fail without any mutation; fix them first")
        t0 = time.perf_counter()
        subprocess.run(_nice([str(COSMIC_RAY), "exec", str(cfg), str(session)]), cwd=work, check=True)
        print(f"{module}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return summarise(session, work / "src" / "extractguard" / module)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="modules under src/extractguard/ (default: all of them)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch directory (kept, so a session can be resumed)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a mutant's test run counts as killed")
    ap.add_argument("--report-only", action="store_true", help="summarise existing sessions in --workdir, run nothing")
    ap.add_argument("--retest-survivors", action="store_true",
                    help="refresh the tests in --workdir and run the surviving mutants again (after adding tests)")
    ap.add_argument("--list", action="store_true", help="print the modules and their test files")
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = ap.parse_args(argv)
    if args.list:
        for m, t in MODULES.items():
            print(f"{m}: {' '.join(t)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; see --list", file=sys.stderr)
        return 2
    if not COSMIC_RAY.exists():
        print("cosmic-ray is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="eg-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    if args.retest_survivors and (work / "tests").exists():
        shutil.rmtree(work / "tests")
    if not args.report_only:
        _prepare(work)
    results = {m: run_module(m, work, args.timeout, args.report_only, args.retest_survivors) for m in (args.modules or list(MODULES))}
    print("| module | test files | generated | in annotations (equivalent) | killed | survived | incompetent | not run |")
    print("|---|---|---|---|---|---|---|---|")
    for m, r in results.items():
        print(f"| `{m}` | {', '.join(MODULES[m])} | {r['generated']} | {r['annotation']} | {r['killed']} | {r['survived']} "
              f"| {r['incompetent']} | {r['pending']} |")
    for m, r in results.items():
        for s in r["survivors"]:  # type: ignore[union-attr]
            print(f"\nSURVIVED {m}:{s['line']} {s['operator']} (occurrence {s['occurrence']}, in {s['function']})\n{s['diff']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
