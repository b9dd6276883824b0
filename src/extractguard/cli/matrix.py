"""``extractguard assess --config assess.yaml [--fail-if RULE ...]``: the assessment matrix and CI gate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "never" if math.isinf(v) else f"{v:.{digits}f}"
    return str(v)


def assess_matrix(config_path: Path, fail_if: list[str], out: Path, console: Console, err_console: Console,
                  force: bool = False) -> None:
    """Validate config and gate rules, run the grid with a progress bar, write the report, apply the gate."""
    from extractguard.errors import ConfigurationError
    from extractguard.evaluate.gate import evaluate_rules, parse_rules
    from extractguard.evaluate.matrix import load_matrix_config, run_matrix
    from extractguard.evaluate.report import write_matrix_report

    cfg = load_matrix_config(config_path)
    rules = parse_rules(fail_if, cfg.budgets, cfg.attacks, list(cfg.defenses))
    if cfg.target.remote is not None:  # before anything is printed: a re-run must not pay twice silently
        from extractguard.evaluate.matrix_remote import claim_transcripts

        claim_transcripts(cfg, out, force)
    elif force:
        raise ConfigurationError("--force discards a remote matrix's transcripts; this target is not remote")
    n_cells = len(cfg.attacks) * len(cfg.defenses)
    target = cfg.target.victim or str(cfg.target.model or cfg.target.remote)
    console.print(f"assessment matrix: {len(cfg.attacks)} attacks x {len(cfg.defenses)} defenses = {n_cells} cells on "
                  f"{target}, budgets {', '.join(map(str, cfg.budgets))}, {cfg.jobs} job(s)", highlight=False)
    if cfg.target.remote is not None:
        console.print(f"remote target: cells run one at a time over HTTP (paid queries); transcripts in {out / 'transcripts'}",
                      highlight=False)
    progress = Progress(TextColumn("[bold]cells"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
                        TimeElapsedColumn(), console=console, transient=False)
    with progress:
        task = progress.add_task("cells", total=n_cells, last="")

        def on_cell(cell: Any) -> None:
            top = cell.points[-1].fidelity if cell.points else None
            line = f"{cell.attack} x {cell.defense}: fidelity {_fmt(top)} in {cell.cost.cell_wall_seconds:.0f} s"
            progress.update(task, advance=1, last=line)
            if not console.is_terminal:  # CI logs: one line per finished cell instead of a live bar
                progress.console.print(f"cell {line}", highlight=False)

        report = run_matrix(cfg, on_cell=on_cell, workdir=out, force=force)
    json_path, html_path = write_matrix_report(report, out)

    top = cfg.budgets[-1]
    table = Table(title=f"Stolen fidelity at {top} queries (enforced: if the suspension stops the attacker) and detection")
    for col in ("attack", "defense", f"fid@{top}", "enforced", "flagged at", "suspended at", "watermark p", "spend", "cpu s"):
        table.add_column(col, justify="left" if col in ("attack", "defense") else "right")
    for c in report.cells:
        last = c.points[-1] if c.points else None
        fid = None if last is None else last.fidelity
        det = c.detection
        flagged = "off" if not det.enabled else _fmt(det.first_flag) if det.first_flag else "not detected"
        sus = c.enforced.suspended_at
        enforced = _fmt(fid) if sus is None else (_fmt(c.enforced.fidelity) if c.enforced.fidelity is not None else "no copy")
        wp = None if last is None else last.watermark_p
        table.add_row(c.attack, c.defense, _fmt(fid), enforced, flagged,
                      "-" if sus is None else str(sus), "-" if wp is None else f"{wp:.2g}", _fmt(c.cost.spend, 2),
                      _fmt(c.cost.cpu_seconds, 1))
    console.print(table)
    ft = Table(title=f"Security / utility per defense (best attack at {top} queries)")
    for col in ("defense", "stolen fidelity", "enforced", "honest agreement", "honest accuracy", "honest flagged", "pareto"):
        ft.add_column(col, justify="left" if col == "defense" else "right")
    for p in report.frontier:
        h = report.defenses[p.defense].honest
        ft.add_row(p.defense, _fmt(p.fidelity), _fmt(p.fidelity_enforced), _fmt(h.agreement), _fmt(h.accuracy),
                   "-" if h.flagged is None else ("yes" if h.flagged else "no"), "*" if p.pareto else "")
    console.print(ft)
    console.print(f"report: {html_path}  (data: {json_path})  in {report.seconds:.0f} s")

    if rules:
        failures = evaluate_rules(rules, report)
        if failures:
            err_console.print(f"[bold red]gate failed:[/] {len(failures)} cell(s) crossed a --fail-if threshold", highlight=False)
            for f in failures:
                err_console.print(f"  FAIL {escape(f.describe())}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        console.print(f"gate passed: {len(rules)} rule(s), no cell crossed a threshold")
