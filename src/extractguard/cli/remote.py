"""``extractguard assess --target target.yaml``: a campaign against a remote model API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def assess_remote(
    target_file: Path,
    attacks: list[str] | None,
    budgets: str,
    surrogate: str,
    seed: int,
    resume: bool,
    out: Path,
    console: Console,
) -> None:
    """Load and validate the target, run the campaign with a live progress bar, write the report."""
    from extractguard.errors import ConfigurationError
    from extractguard.evaluate import write_report
    from extractguard.evaluate.campaign import PROBE_RUN, attack_run_name, campaign_budgets, run_campaign
    from extractguard.oracle.target_config import load_target_config

    config = load_target_config(target_file)
    ladder = campaign_budgets(config, budgets)
    names = attacks or (["random", "knockoff"] if config.attacker_data else ["random"])
    auth = config.authorization
    console.print(
        f"target {config.endpoint()} ({config.protocol}, {config.output}); authorised by {auth.owner}: "
        f"\"{auth.statement}\"", highlight=False,
    )
    if config.budget is not None and ladder[-1] == config.budget:
        console.print(f"budget ladder capped at the target's budget of {config.budget} queries per attack")

    progress = Progress(
        TextColumn("[bold]{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TextColumn("queries"),
        TextColumn("spend {task.fields[spend]:.4g}"), TextColumn("429s {task.fields[throttled]}"),
        TextColumn("fidelity {task.fields[fidelity]}"), TimeElapsedColumn(), console=console, transient=False,
    )
    tasks: dict[str, Any] = {}
    with progress:
        tasks[PROBE_RUN] = progress.add_task("probe (eval)", total=None, spend=0.0, throttled=0, fidelity="–")
        for n in names:
            tasks[attack_run_name(n)] = progress.add_task(n, total=ladder[-1], spend=0.0, throttled=0, fidelity="–")

        def on_query(run: str, used: int, budget: int, spend: float, throttled: int) -> None:
            if run in tasks:
                progress.update(tasks[run], completed=used, spend=spend, throttled=throttled)

        def on_point(attack: str, point: Any) -> None:
            progress.update(tasks[attack_run_name(attack)], fidelity=f"{point.fidelity:.3f} @ {point.queries}")

        def on_probe(n: int) -> None:
            progress.update(tasks[PROBE_RUN], total=n, completed=n)

        try:
            result = run_campaign(config, names, ladder, seed=seed, surrogate=surrogate, resume=resume,
                                  on_query=on_query, on_point=on_point, on_probe=on_probe)
        except KeyboardInterrupt:
            raise ConfigurationError(
                f"interrupted; answers so far are in {config.transcript_path}: run again with --resume"
            ) from None
    json_path, html_path = write_report(result, out)

    table = Table(title=f"Fidelity vs queries ({result.output} answers, {result.probe_size} held-out probe rows)")
    table.add_column("attack")
    for b in ladder:
        table.add_column(str(b), justify="right")
    table.add_column("queries used", justify="right")
    for run in result.runs:
        table.add_row(run.attack, *[f"{p.fidelity:.3f}" for p in run.points], str(run.queries))
    console.print(table)
    paid = result.target["paid_queries"]
    session = result.target["transcript"]["this_session"]
    console.print(
        f"paid queries: {sum(paid['attack'].values())} attack + {paid['evaluation']} evaluation (probe answers, not "
        f"charged to attack budgets) = {paid['total']}, spend {paid['spend']:.4g}; this session sent "
        f"{session['rows_sent']} rows, replayed {session['rows_replayed']} from the transcript, "
        f"{session['throttled']} 429s, {session['server_errors']} 5xx, {session['retries']} retries",
        highlight=False,
    )
    if result.victim_probe_accuracy is not None:
        console.print(f"endpoint accuracy on the probe set: {result.victim_probe_accuracy:.3f}")
    console.print(f"report: {html_path}  (data: {json_path})  transcript: {config.transcript_path}")
