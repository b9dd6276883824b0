"""``extractguard assess --target target.yaml``: a campaign against a remote model API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from extractguard.oracle.budget import BudgetLadder


def assess_remote(
    target_file: Path,
    attacks: list[str] | None,
    budgets: BudgetLadder,
    surrogate: str,
    seed: int,
    resume: bool,
    out: Path,
    console: Console,
) -> None:
    """Load and validate the target, run the campaign with a live progress bar, write the report."""
    from extractguard.attacks import ATTACKS
    from extractguard.errors import ConfigurationError
    from extractguard.oracle.target_config import load_target_config
    from extractguard.surrogates import check_surrogate

    check_surrogate(surrogate)
    names = [ATTACKS.canonical(n) for n in attacks] if attacks else None
    config = load_target_config(target_file)
    names = names or (["random", "knockoff"] if config.attacker_data else ["random"])

    # Arguments and files are valid: now load the campaign code (torch, scikit-learn, matplotlib).
    from extractguard.evaluate import write_report
    from extractguard.evaluate.campaign import PROBE_RUN, attack_run_name, campaign_budgets, run_campaign
    from extractguard.evaluate.comparison import run_variant_comparison

    ladder = campaign_budgets(config, budgets)
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
    prefix = [""]  # names the variant being run, when the target has variants

    def shown() -> Progress:
        # Started on the first answer, so that refusals found before anything is sent (existing
        # transcript, changed settings, unreadable data) print as one clean line, no bar above.
        if not tasks:
            if not progress.live.is_started:
                progress.start()
            p = prefix[0]
            tasks[PROBE_RUN] = progress.add_task(f"{p}probe (eval)", total=None, spend=0.0, throttled=0, fidelity="–")
            for n in names:
                tasks[attack_run_name(n)] = progress.add_task(
                    f"{p}{n}", total=ladder[-1], spend=0.0, throttled=0, fidelity="–"
                )
        return progress

    def on_query(run: str, used: int, budget: int, spend: float, throttled: int) -> None:
        shown()
        if run in tasks:
            progress.update(tasks[run], completed=used, spend=spend, throttled=throttled)

    def on_point(attack: str, point: Any) -> None:
        shown().update(tasks[attack_run_name(attack)], fidelity=f"{point.fidelity:.3f} @ {point.queries}")

    def on_probe(n: int) -> None:
        shown().update(tasks[PROBE_RUN], total=n, completed=n)

    def on_variant(i: int, variant: Any, sub: Any) -> None:
        role = "reference" if i == 0 else "compared"
        progress.console.print(f"variant {variant.name} ({role}, {sub.output}); transcript {sub.transcript_path}")
        prefix[0] = f"{variant.name}: "
        tasks.clear()  # the next answer adds this variant's bars

    try:
        if config.variants:
            result = run_variant_comparison(
                config, names, ladder, seed=seed, surrogate=surrogate, resume=resume, on_variant=on_variant,
                on_query=on_query, on_point=on_point, on_probe=on_probe,
            )
        else:
            result = run_campaign(config, names, ladder, seed=seed, surrogate=surrogate, resume=resume,
                                  on_query=on_query, on_point=on_point, on_probe=on_probe)
    except KeyboardInterrupt:
        raise ConfigurationError(
            f"interrupted; answers so far are in {config.transcript_path}: run again with --resume"
        ) from None
    finally:
        if progress.live.is_started:  # stopping a never-started bar would print an empty line
            progress.stop()
    json_path, html_path = write_report(result, out)

    table = Table(title=f"Fidelity vs queries ({result.output} answers, {result.probe_size} held-out probe rows)")
    table.add_column("attack")
    for b in ladder:
        table.add_column(str(b), justify="right")
    table.add_column("queries used", justify="right")
    for run in result.runs:
        table.add_row(run.attack, *[f"{p.fidelity:.3f}" for p in run.points], str(run.queries))
    console.print(table)
    if result.variants:
        console.print(f"(tables above and below: the reference variant {result.variants[0].name!r})")
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
    if result.variants:
        vt = Table(title="Per variant: stolen fidelity (to the reference) vs honest-user cost")
        for col in ("variant", "output", "honest acc", "agree w/ model"):
            vt.add_column(col, justify="left" if col in ("variant", "output") else "right")
        for b in ladder:
            vt.add_column(f"fid@{b}", justify="right")
        for v in result.variants:
            hu = v.honest_user
            acc = "–" if hu.accuracy is None else f"{hu.accuracy:.3f}"
            agree = f"{1.0 if hu.agreement is None else hu.agreement:.3f}"
            vt.add_row(v.name + (" *" if v.reference else ""), v.output, acc, agree,
                       *[f"{v.best_fidelity.get(str(b), float('nan')):.3f}" for b in ladder])
        console.print(vt)
        console.print("* reference variant: its answers stand for the real model")
        paid_all = sum((v.paid_queries or {}).get("total", 0) for v in result.variants)
        console.print(f"paid queries over all {len(result.variants)} variants: {paid_all}")
        transcripts = ", ".join(str(v.transcript) for v in result.variants)
        console.print(f"report: {html_path}  (data: {json_path})  transcripts: {transcripts}")
    else:
        console.print(f"report: {html_path}  (data: {json_path})  transcript: {config.transcript_path}")
