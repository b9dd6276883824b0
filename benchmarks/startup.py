"""CPU cost of starting the ``extractguard`` command: help, listings and mistakes must be instant.

A user who mistypes an option should get the one-line error at once, not after torch,
scikit-learn, scipy and matplotlib have loaded.  This measures, for each command below, the CPU
seconds (user + system, of the child process) over several runs and reports the median; then it
runs the usage error once under ``python -X importtime`` and lists the ten heaviest top-level
imports.

    python benchmarks/startup.py                      # this checkout (src/ next to benchmarks/)
    python benchmarks/startup.py --src /tmp/wt-before/src --label before --out benchmarks/out/startup-before.json
    python benchmarks/startup.py --compare benchmarks/out/startup-before.json

Every command runs in a fresh temporary directory, with ``PYTHONPATH`` set to ``--src``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: (label, arguments) of each measured command.  The two error cases name files that do not exist.
COMMANDS: list[tuple[str, list[str]]] = [
    ("--help", ["--help"]),
    ("assess --help", ["assess", "--help"]),
    ("usage error: --model without --attacker-data", ["assess", "--model", "m.onnx"]),
    ("missing file: --model missing.onnx", ["assess", "--model", "missing.onnx", "--attacker-data", "missing.npy"]),
    ("attacks", ["attacks"]),
    ("victims", ["victims"]),
]
USAGE_ERROR = COMMANDS[2][1]
HEAVY = ("torch", "sklearn", "scipy", "matplotlib")


def run_once(python: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """CPU seconds (user + system) of one ``python -m extractguard ARGS`` and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([python, "-m", "extractguard", *args], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, proc.returncode


def import_top(python: str, args: list[str], env: dict[str, str], cwd: Path, n: int = 10) -> dict[str, object]:
    """The ``n`` heaviest top-level imports (cumulative microseconds) of one run under -X importtime."""
    proc = subprocess.run([python, "-X", "importtime", "-m", "extractguard", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    rows: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and m.group(3) == " ":  # depth 0: imported by the program itself, not by another module
            rows.append((int(m.group(2)), m.group(4)))
    rows.sort(reverse=True)
    loaded = re.findall(r"\|\s*(\S+)$", proc.stderr, flags=re.M)
    return {
        "command": " ".join(args),
        "total_import_seconds": round(sum(us for us, _ in rows) / 1e6, 3),
        "top": [{"module": mod, "cumulative_seconds": round(us / 1e6, 3)} for us, mod in rows[:n]],
        "heavy_loaded": [h for h in HEAVY if h in loaded],
    }


def measure(src: Path, python: str, repeats: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        run_once(python, ["--help"], env, cwd)  # warm the file cache and __pycache__ first
        for label, args in COMMANDS:
            runs = [run_once(python, args, env, cwd) for _ in range(repeats)]
            cpus = [c for c, _ in runs]
            results.append({"command": label, "args": args, "exit_code": runs[0][1],
                            "cpu_seconds_median": round(statistics.median(cpus), 3),
                            "cpu_seconds_all": [round(c, 3) for c in cpus]})
            print(f"  {label}: {statistics.median(cpus):.2f} s", file=sys.stderr)
        importtime = import_top(python, USAGE_ERROR, env, cwd)
    return {"src": str(src), "python": platform.python_version(), "repeats": repeats,
            "commands": results, "importtime_usage_error": importtime}


def print_report(report: dict[str, object], before: dict[str, object] | None) -> None:
    print(f"\nCPU seconds (user+sys), median of {report['repeats']} runs, src={report['src']}\n")
    old = {c["command"]: c for c in before["commands"]} if before else {}  # type: ignore[index]
    head = "| command | exit | CPU s |" + (" before | speed-up |" if before else "")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for c in report["commands"]:  # type: ignore[union-attr]
        row = f"| `{c['command']}` | {c['exit_code']} | {c['cpu_seconds_median']:.2f} |"
        if before:
            b = old.get(c["command"])
            if b:
                row += f" {b['cpu_seconds_median']:.2f} | {b['cpu_seconds_median'] / max(c['cpu_seconds_median'], 1e-3):.1f}x |"
            else:
                row += " - | - |"
        print(row)
    imp = report["importtime_usage_error"]
    print(f"\n-X importtime of `extractguard {imp['command']}` (usage error): "  # type: ignore[index]
          f"{imp['total_import_seconds']:.2f} s of imports; heavy libraries loaded: "  # type: ignore[index]
          f"{', '.join(imp['heavy_loaded']) or 'none'}\n")  # type: ignore[index]
    print("| top-level import | cumulative s |")
    print("|---|---|")
    for t in imp["top"]:  # type: ignore[index]
        print(f"| `{t['module']}` | {t['cumulative_seconds']:.3f} |")
    if before:
        bimp = before["importtime_usage_error"]
        print(f"\nbefore: {bimp['total_import_seconds']:.2f} s of imports, heavy libraries loaded: "  # type: ignore[index]
              f"{', '.join(bimp['heavy_loaded']) or 'none'}; heaviest: "  # type: ignore[index]
              + ", ".join(f"`{t['module']}` {t['cumulative_seconds']:.2f}" for t in bimp["top"][:5]))  # type: ignore[index]


def main() -> None:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=here.parent / "src", help="directory put on PYTHONPATH (the checkout's src/)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--label", default="after")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default: benchmarks/out/startup-LABEL.json)")
    ap.add_argument("--compare", type=Path, default=None, help="an earlier JSON (e.g. of main before the change) to compare with")
    args = ap.parse_args()
    report = measure(args.src.resolve(), args.python, args.repeats)
    report["label"] = args.label
    before = json.loads(args.compare.read_text()) if args.compare else None
    if before:
        report["before"] = before
    out = args.out or here / "out" / f"startup-{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print_report(report, before)
    print(f"\n(data: {out})")


if __name__ == "__main__":
    main()
