"""The ``extractguard`` command.  Thin: each command maps to one library call.

User mistakes (bad files, wrong widths, unknown names) end with a one-line ``error:`` message
and exit code 2, never a traceback.  Commands check their arguments and files before they import
torch, scikit-learn, scipy or matplotlib, so a mistake is answered at once (benchmarks/startup.py).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from extractguard import __version__
from extractguard.errors import ConfigurationError, DataLoadError, ExtractGuardError, ModelLoadError, check_readable_file
from extractguard.registry import DeprecatedNameWarning

app = typer.Typer(
    name="extractguard",
    help="Measure, prevent, detect and prove model extraction against models you own.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn :class:`ExtractGuardError` into one ``error:`` line on stderr and exit code 2, and
    an old spelling of a name (:class:`DeprecatedNameWarning`) into one ``warning:`` line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            shown = warnings.showwarning

            def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
                if issubclass(category, DeprecatedNameWarning):
                    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
                else:
                    shown(message, category, *rest, **kw)

            warnings.showwarning = show
            warnings.simplefilter("default", DeprecatedNameWarning)
            try:
                return fn(*args, **kwargs)
            except ExtractGuardError as exc:
                # escape: messages quote user input and pip extras like 'extractguard[text]', not markup
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        raise ConfigurationError(f"--input-shape must be integers like 1,28,28; got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise ConfigurationError(f"--input-shape must be positive integers; got {text!r}")
    return shape


@app.command()
@user_errors
def assess(
    victim: Annotated[str, typer.Option(help="Built-in victim DATASET-ARCH (see `extractguard victims`).")] = "mnist-cnn",
    model: Annotated[Optional[Path], typer.Option(help="Your model file: scikit-learn .pkl/.joblib, .onnx or TorchScript .pt.")] = None,
    attacker_data: Annotated[Optional[Path], typer.Option(help="Attacker's natural inputs (.csv/.npy/.npz) for --model.")] = None,
    probe_data: Annotated[Optional[Path], typer.Option(help="Held-out probe rows (with labels if known); default: 20% of --attacker-data, never queried.")] = None,
    input_shape: Annotated[Optional[str], typer.Option(help="Shape of one input, e.g. 1,28,28 (default: from the model or the data).")] = None,
    n_classes: Annotated[Optional[int], typer.Option(help="Number of classes, if the model file does not say.")] = None,
    low: Annotated[Optional[float], typer.Option(help="Lowest valid feature value (default: per-feature minimum of the data).")] = None,
    high: Annotated[Optional[float], typer.Option(help="Highest valid feature value (default: per-feature maximum of the data).")] = None,
    attack: Annotated[Optional[list[str]], typer.Option("--attack", "-a", help="Attack to run; repeat for several (default: random and knockoff).")] = None,
    budgets: Annotated[str, typer.Option(help="Comma-separated query budgets.")] = "50,100,200,500,1000,2000",
    output: Annotated[str, typer.Option(help="What the target reveals: probabilities, logits, rounded:N, top-K or label.")] = "probabilities",
    surrogate: Annotated[str, typer.Option(help="Student family: auto, select (cross-validated on the transcript), cnn, mlp, linear, tree, forest.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for splits, attacks and surrogates.")] = 0,
    price: Annotated[float, typer.Option(help="Price per query, for cost accounting.")] = 0.0,
    out: Annotated[Path, typer.Option(help="Directory for report.json and report.html.")] = Path("extractguard-report"),
    target: Annotated[Optional[Path], typer.Option("--target", help="Remote model API described by a target.yaml (see docs/remote.md).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="With --target: continue the campaign in the target's transcript, replaying paid answers.")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="Assessment matrix: attacks x defenses x budgets from an assess.yaml (docs/assess.md).")] = None,
    fail_if: Annotated[Optional[list[str]], typer.Option("--fail-if", help="With --config: exit 1 if a cell crosses this threshold, e.g. 'fidelity > 0.8 at 1000' (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --config and a remote target: discard the transcripts of an earlier run in --out and pay again.")] = False,
) -> None:
    """Run extraction attacks at a ladder of budgets and report fidelity vs queries."""
    if config is not None:
        from extractguard.cli.matrix import assess_matrix

        if target is not None or model is not None or attacker_data is not None or probe_data is not None or attack:
            raise ConfigurationError("--config takes the target, attacks, budgets and defenses from assess.yaml; drop the other options")
        return assess_matrix(config, fail_if or [], out, console, err_console, force=force)
    if fail_if:
        raise ConfigurationError("--fail-if gates an assessment matrix: use it with --config assess.yaml (docs/assess.md)")
    if force:
        raise ConfigurationError("--force discards a remote assessment matrix's transcripts: use it with --config assess.yaml")

    from extractguard.oracle.budget import BudgetLadder

    ladder = BudgetLadder.parse(budgets)  # the one parse of --budgets, for a local or a remote target
    if target is not None:
        from extractguard.cli.remote import assess_remote

        if model is not None or attacker_data is not None or probe_data is not None:
            raise ConfigurationError("--target takes its model, attacker data and probe data from target.yaml; drop --model/--attacker-data/--probe-data")
        if output != "probabilities" or price != 0.0:
            raise ConfigurationError("with --target, the output mode and price come from target.yaml (output:, price_per_query:)")

        return assess_remote(target, attack, ladder, surrogate, seed, resume, out, console)
    if resume:
        raise ConfigurationError("--resume only applies to remote campaigns (--target target.yaml)")

    # Every check that needs no model comes first, importing nothing heavy (numpy at most).
    from extractguard.attacks import ATTACKS
    from extractguard.oracle.answer import OutputSpec
    from extractguard.surrogates import check_surrogate
    from extractguard.victims.names import parse_victim_name

    spec = OutputSpec.parse(output)
    names = [ATTACKS.canonical(n) for n in attack or ["random", "knockoff"]]
    check_surrogate(surrogate)
    if price < 0:
        raise ConfigurationError("--price must be >= 0")
    shape = _parse_shape(input_shape)
    if model is None:
        parse_victim_name(victim)
    else:
        if attacker_data is None:
            raise ConfigurationError("--model needs --attacker-data: the natural inputs an attacker would hold")
        check_readable_file(model, "model", ModelLoadError)
        check_readable_file(attacker_data, "attacker data", DataLoadError)
        if probe_data is not None:
            check_readable_file(probe_data, "probe data", DataLoadError)

    import numpy as np

    from extractguard.attacks import create_attack
    from extractguard.data.files import load_table
    from extractguard.evaluate import ProbeSet, run_assessment, write_report

    if model is not None:
        from extractguard.oracle.loading import build_target, load_model_file

        assert attacker_data is not None  # checked above
        with console.status(f"loading {model.name}"):
            loaded = load_model_file(model)
            pool_X, _ = load_table(attacker_data, what="attacker data")
            target = build_target(loaded, pool_X, shape, n_classes, low, high)
            pool_X = target.schema.validate(pool_X, what="attacker data")
            if probe_data is not None:
                probe_X, probe_y = load_table(probe_data, what="probe data")
            else:
                if len(pool_X) < 10:
                    raise ConfigurationError("attacker data needs at least 10 rows to hold out a probe set")
                order = np.random.default_rng(seed).permutation(len(pool_X))
                cut = max(1, len(pool_X) // 5)
                probe_X, probe_y = pool_X[order[:cut]], None
                pool_X = pool_X[order[cut:]]
            probe = ProbeSet.from_target(target, probe_X, probe_y)
        info = {"model_file": str(model), "format": loaded.kind, "schema": target.schema.to_dict(),
                "attacker_rows": int(len(pool_X)), "probe_source": str(probe_data) if probe_data else "20% of attacker data"}
    else:
        from extractguard.victims import build_victim

        with console.status(f"preparing victim {victim} (first run trains and caches it)"):
            v = build_victim(victim, seed=seed)
        target = v.target
        pool_X = v.pool()
        probe = ProbeSet.from_target(target, *v.probe())
        info = v.describe()

    attacks = [create_attack(n, pool=pool_X, surrogate=surrogate, seed=seed) for n in names]
    progress = Progress(
        TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("budgets"),
        TimeElapsedColumn(), console=console, transient=False,
    )
    tasks: dict[str, int] = {}
    with progress:
        for a in attacks:
            tasks[a.name] = progress.add_task(a.name, total=len(ladder))

        def on_progress(name: str, done: int, total: int) -> None:
            progress.update(tasks[name], completed=done)

        result = run_assessment(target, attacks, ladder, probe, output=spec, price_per_query=price,
                                target_info=info, seed=seed, progress=on_progress)
    json_path, html_path = write_report(result, out)

    table = Table(title=f"Fidelity vs queries ({spec} answers, {len(probe)} held-out probe rows)")
    table.add_column("attack")
    for b in ladder:
        table.add_column(str(b), justify="right")
    table.add_column("queries used", justify="right")
    for run in result.runs:
        # Align by budget: analytic attacks report no copy at budgets below their real query count.
        by_budget = {p.budget: f"{p.fidelity:.3f}" for p in run.points}
        table.add_row(run.attack, *[by_budget.get(b, "-") for b in ladder], str(run.queries))
    console.print(table)
    if result.victim_probe_accuracy is not None:
        console.print(f"victim accuracy on the probe set: {result.victim_probe_accuracy:.3f}")
    console.print(f"report: {html_path}  (data: {json_path})  in {result.seconds:.0f} s")


@app.command("attacks")
@user_errors
def list_attacks() -> None:
    """List the extraction attacks and the papers they come from."""
    from extractguard.attacks import ATTACKS

    table = Table(title="Extraction attacks")
    table.add_column("name")
    table.add_column("needs attacker data")
    table.add_column("paper")
    for entry in ATTACKS.entries():  # the registry's metadata: no attack module is imported
        table.add_row(entry.name, "yes" if entry.needs_data else "no", entry.paper)
    console.print(table)


def _list_registry(title: str, registry: Any, data_column: str) -> None:
    table = Table(title=title)
    for col in ("name", "what it does", data_column, "paper"):
        table.add_column(col)
    for entry in registry.entries():
        table.add_row(entry.name, entry.summary, "yes" if entry.needs_data else "no", entry.paper)
    console.print(table)


@app.command("defenses")
@user_errors
def list_defenses() -> None:
    """List the output defenses (the names of a tier's defenses: chain)."""
    from extractguard.defenses import DEFENSES

    _list_registry("Output defenses", DEFENSES, "fitted on owner data")


@app.command("detectors")
@user_errors
def list_detectors() -> None:
    """List the extraction detectors (the names of a tier's detection: detectors)."""
    from extractguard.detect import DETECTORS

    _list_registry("Extraction detectors", DETECTORS, "needs reference data")


@app.command("victims")
@user_errors
def list_victims_cmd() -> None:
    """List the built-in victims (DATASET-ARCH)."""
    from extractguard.data import load_dataset
    from extractguard.errors import DataLoadError
    from extractguard.victims import list_victims

    table = Table(title="Built-in victims")
    table.add_column("victim")
    table.add_column("data source")
    sources: dict[str, str] = {}
    for name in list_victims():
        ds = name.rpartition("-")[0]
        if ds not in sources:
            try:
                sources[ds] = load_dataset(ds).source
            except DataLoadError as exc:
                # An optional dataset (e.g. the text one) is still a victim; say what it needs.
                sources[ds] = escape(f"not installed: {exc}")
        table.add_row(name, sources[ds])
    console.print(table)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"extractguard {__version__}")


from extractguard.cli.gateway import register as _register_gateway  # noqa: E402

_register_gateway(app)  # serve, keys, audit

from extractguard.cli.verify import register as _register_verify  # noqa: E402

_register_verify(app)  # verify, fingerprint

from extractguard.cli.detect import register as _register_detect  # noqa: E402

_register_detect(app)  # detect, sanctions


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``extractguard`` script."""
    app(args=argv)
