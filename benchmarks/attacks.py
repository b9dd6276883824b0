"""Our extraction attacks side by side with IBM ART 1.20.1 on the same victims, splits and budgets.

Run from the repository root::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/attacks.py            # default run, one seed (~10 min, 2 cores)
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/attacks.py --quick    # smoke run
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/attacks.py --attacks knockoff --no-art

What is compared, and how it is kept fair:

* Every attack in ``extractguard.attacks.ATTACKS`` (so attacks added later are picked up; pick a
  subset with ``--attacks``) against ART's ``CopycatCNN`` (Correia-Silva et al. 2018) and
  ``KnockoffNets`` (Orekondy et al. 2019) with its ``random`` and ``adaptive`` strategies.
* The victim reaches ART only through our :class:`~extractguard.oracle.Oracle`: ART's victim
  classifier is a ``BlackBoxClassifier`` whose ``predict_fn`` calls ``oracle.query``.  So ART's
  *real* query count is measured, not assumed, and label-only answers come from our oracle's
  ``label`` mode (ART's ``ClassLabels`` postprocessor mislabels batches).
* Students are the same network: ART's thieved model is our ``TorchClassifier``'s network (same
  input scaling, same layers) in an ART ``PyTorchClassifier`` with the same optimiser (Adam, same
  learning rate and weight decay), batch size, number of epochs and cosine learning-rate schedule.
  Differences in fidelity are therefore the attacks', not the students'.
* Every (attack, budget) is a separate run from scratch with a fresh oracle, on both sides, so
  each row's wall time is what an attacker would pay for that budget alone.
* Fidelity and accuracy are measured on the victim's held-out probe split, which no attack queries.

Output: a rich table and ``benchmarks/out/attacks.json`` (rows per victim x budget x output mode x
attack, plus a summary per victim x budget x output mode: our best fidelity vs ART's best, and the
wall seconds each side needed to first reach ART's best fidelity at that budget).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from extractguard import __version__
from extractguard.attacks import ATTACKS, create_attack
from extractguard.errors import ConfigurationError, ExtractGuardError
from extractguard.evaluate import ProbeSet
from extractguard.oracle import Oracle, OutputSpec
from extractguard.surrogates import TorchClassifier, make_surrogate
from extractguard.surrogates.torch_models import Standardize, build_network
from extractguard.victims import build_victim
from extractguard.victims.zoo import Victim

#: ART attacks this harness knows, with the output modes each is run in.  CopycatCNN is the
#: label-only attack of its paper; KnockoffNets-random trains on probabilities (in label mode it
#: is the same code as CopycatCNN); KnockoffNets-adaptive always trains on argmax labels but its
#: bandit reward reads whatever the oracle reveals, so it runs in every mode.
ART_ATTACKS: dict[str, tuple[str, ...]] = {
    "art-copycat": ("label",),
    "art-knockoff": ("probabilities",),
    "art-knockoff-adaptive": ("probabilities", "label"),
}
DEFAULT_VICTIMS: tuple[str, ...] = ("mnist-cnn", "digits-cnn", "breast_cancer-mlp")
DEFAULT_BUDGETS: tuple[int, ...] = (50, 100, 200, 350, 500, 700, 1000)
DEFAULT_OUTPUTS: tuple[str, ...] = ("probabilities", "label")
QUICK_VICTIMS: tuple[str, ...] = ("digits-cnn",)
QUICK_BUDGETS: tuple[int, ...] = (50, 200)
#: Error prefix of a run the attack refused before its first query (wrong kind of victim).
NOT_APPLICABLE = "n/a: "


@dataclass
class Row:
    """One (victim, budget, output mode, attack) run."""

    victim: str
    side: str  # "ours" or "art"
    attack: str
    output: str
    budget: int  # nominal queries
    queries: int  # rows the oracle really answered
    fidelity: float | None
    accuracy: float | None
    seconds: float  # wall clock, end to end
    seed: int = 0
    error: str | None = None
    #: CPU seconds of the process over the same span.  The runs are single-threaded
    #: (OMP_NUM_THREADS=1), so on an idle machine this equals the wall time; on a shared one it
    #: is the part of the wall time that other processes' load cannot inflate.
    cpu_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def applicable(self) -> bool:
        return not (self.error or "").startswith(NOT_APPLICABLE)


def art_available() -> bool:
    try:
        import art  # noqa: F401
    except ImportError:
        return False
    return True


def learning_attacks() -> list[str]:
    """Our registered attacks that learn a student from the answers to chosen queries.

    That is the pool-based ones (``needs_pool``) plus the ``random`` baseline, which is what ART's
    CopycatCNN/KnockoffNets do too.  Analytic attacks (equation solving, Lowd-Meek, functionally
    equivalent extraction) rebuild one model family exactly and are benchmarked on their own.
    """
    from extractguard.attacks.algorithmic import AlgorithmicAttack
    from extractguard.attacks.equation_solving import EquationSolving

    analytic = (AlgorithmicAttack, EquationSolving)
    learners = {name: cls for name, cls in ATTACKS.items()
                if (cls.needs_pool or name == "random") and not issubclass(cls, analytic)}
    # A class that other registered entries specialise (``activethief`` with its default
    # strategy is ``activethief-entropy``) would only repeat one of them: run the specialised
    # entries.  Name it in ``--attacks`` to run it anyway.
    return [name for name, cls in learners.items()
            if not any(other is not cls and issubclass(other, cls) for other in learners.values())]


def ladder_for(victim: Victim, budgets: Sequence[int], max_pool_fraction: float = 0.5) -> list[int]:
    """Budgets at which choosing rows from the pool means something.

    A pool-based attack chooses *which* rows to query; when the budget approaches the pool's size
    every attack queries (nearly) the same rows and the comparison measures training noise, and a
    budget above it makes pool attacks stop early (ART samples without replacement too).  So the
    ladder keeps budgets up to ``max_pool_fraction`` of the attacker's pool (default half: at
    least as many rows left unqueried as queried).
    """
    n = len(victim.pool())
    kept = sorted({int(b) for b in budgets if 0 < int(b) <= max_pool_fraction * n})
    if not kept:
        raise ConfigurationError(
            f"no budget is at most {max_pool_fraction:g} of {victim.name}'s attacker pool of {n} rows; "
            "lower the budgets or raise --max-pool-fraction"
        )
    return kept


# -- ours --------------------------------------------------------------------------------------
def run_ours(victim: Victim, attack: str, budget: int, output: str, probe: ProbeSet, seed: int = 0) -> Row:
    """One of our registered attacks, from scratch, with a fresh oracle limited to ``budget``."""
    oracle = victim.oracle(output=OutputSpec.parse(output), budget=budget)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        atk = create_attack(attack, pool=victim.pool(), seed=seed)
        atk.fit(oracle, budget=budget)
    except (ExtractGuardError, TypeError, ValueError) as exc:
        # Refused before any query (e.g. a text-only attack on an image victim): not applicable,
        # rather than a failure of the attack.
        prefix = NOT_APPLICABLE if isinstance(exc, ConfigurationError) and oracle.queries_used == 0 else ""
        return Row(victim.name, "ours", attack, output, budget, oracle.queries_used, None, None,
                   round(time.perf_counter() - t0, 3), seed, f"{prefix}{type(exc).__name__}: {exc}")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    scores = probe.score(atk.surrogate_)
    return Row(victim.name, "ours", attack, output, budget, oracle.queries_used,
               float(scores["fidelity"] or 0.0), scores["accuracy"], round(seconds, 3), seed, cpu_seconds=round(cpu, 3))


# -- ART ---------------------------------------------------------------------------------------
def _student_recipe(victim: Victim, seed: int) -> TorchClassifier:
    student = make_surrogate("auto", victim.schema, seed=seed)
    if not isinstance(student, TorchClassifier):
        raise ConfigurationError("ART's attacks need a torch student; the default surrogate is not one")
    return student


def _schedule(recipe: TorchClassifier, n: int) -> tuple[int, int]:
    """Batch size and epochs that give ART's student the same number of steps as ours on n rows."""
    bs = min(recipe.batch_size, n)
    per_epoch = math.ceil(n / bs)
    return bs, max(1, math.ceil(recipe.schedule_steps(n) / per_epoch))


def _art_student(victim: Victim, recipe: TorchClassifier, seed: int) -> Any:
    """Our student network inside an ART PyTorchClassifier, with our cosine schedule per fit."""
    import torch
    from art.estimators.classification import PyTorchClassifier
    from torch import nn

    class CosinePyTorchClassifier(PyTorchClassifier):  # type: ignore[misc]
        # ART's extraction attacks call fit() without a scheduler; ours anneals the learning
        # rate to zero over each fit, so add the same cosine schedule (stepped per epoch).
        def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int = 128, nb_epochs: int = 10, **kwargs: Any) -> None:
            if nb_epochs > 1 and kwargs.get("scheduler") is None:
                for group in self._optimizer.param_groups:
                    group["lr"] = recipe.lr
                kwargs["scheduler"] = torch.optim.lr_scheduler.CosineAnnealingLR(self._optimizer, T_max=nb_epochs)
            super().fit(x, y, batch_size=batch_size, nb_epochs=nb_epochs, **kwargs)

    torch.manual_seed(seed)
    # Input scaling from the attacker's pool (ours takes it from the queried rows: same data).
    mean, std = recipe._scaling(np.asarray(victim.pool(), dtype=np.float32))
    shape = victim.schema.input_shape
    layers: list[nn.Module] = [nn.Unflatten(1, shape)] if len(shape) > 1 else []
    model = nn.Sequential(*layers, Standardize(mean, std), build_network(recipe.arch, shape, recipe.n_classes, recipe.hidden))
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return CosinePyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), optimizer=opt, input_shape=(victim.schema.n_features,),
        nb_classes=victim.schema.n_classes, device_type="cpu",
    )


class _ArtCopy:
    """Gives a fitted ART classifier the ``predict_proba`` our probe set scores."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = np.asarray(self.classifier.predict(np.asarray(X, dtype=np.float32), batch_size=2048), dtype=np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def oracle_as_art_victim(oracle: Oracle) -> Any:
    """An ART ``BlackBoxClassifier`` whose every prediction is an ``oracle.query`` (and counts)."""
    from art.estimators.classification import BlackBoxClassifier

    n_classes = oracle.schema.n_classes

    def predict_fn(x: np.ndarray) -> np.ndarray:
        answer = oracle.query(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        if not answer.is_soft:
            onehot = np.zeros((len(answer), n_classes), dtype=np.float32)
            onehot[np.arange(len(answer)), answer.labels] = 1.0
            return onehot
        return answer.soft_labels().astype(np.float32)

    return BlackBoxClassifier(predict_fn, input_shape=(oracle.schema.n_features,), nb_classes=n_classes)


def run_art(victim: Victim, attack: str, budget: int, output: str, probe: ProbeSet, seed: int = 0) -> Row:
    """One ART extraction attack, from scratch, with our oracle as the victim.

    The oracle has no budget here on purpose: if ART asked for more rows than ``nb_stolen`` the
    difference must show in the table rather than abort the run.
    """
    from art.attacks.extraction import CopycatCNN, KnockoffNets

    if attack not in ART_ATTACKS:
        raise ConfigurationError(f"unknown ART attack {attack!r}; available: {', '.join(ART_ATTACKS)}")
    oracle = victim.oracle(output=OutputSpec.parse(output), budget=None)
    recipe = _student_recipe(victim, seed)
    pool = np.asarray(victim.pool(), dtype=np.float32)
    bs, epochs = _schedule(recipe, min(budget, len(pool)))
    soft = OutputSpec.parse(output).kind != "label"
    np.random.seed(seed)  # ART samples with NumPy's global generator
    t0, c0 = time.perf_counter(), time.process_time()
    student = _art_student(victim, recipe, seed)
    art_victim = oracle_as_art_victim(oracle)
    common = dict(batch_size_fit=bs, batch_size_query=100, nb_epochs=epochs, nb_stolen=budget)
    try:
        if attack == "art-copycat":
            atk: Any = CopycatCNN(art_victim, use_probability=soft, **common)
            copy = atk.extract(pool, thieved_classifier=student)
        elif attack == "art-knockoff":
            atk = KnockoffNets(art_victim, sampling_strategy="random", use_probability=soft, verbose=False, **common)
            copy = atk.extract(pool, thieved_classifier=student)
        else:
            # The adaptive bandit needs the pool's own labels to define its actions (in the
            # paper, the attacker dataset's classes).  Our pool shares the victim's label space,
            # so this hands ART information our attacks never get; noted in RESULTS.md.
            pool_labels = victim.dataset.y[victim.splits.pool]
            atk = KnockoffNets(art_victim, sampling_strategy="adaptive", reward="all", verbose=False, **common)
            copy = atk.extract(pool, pool_labels, thieved_classifier=student)
    except (ExtractGuardError, ValueError, RuntimeError) as exc:
        # A crash inside ART is a result too (e.g. the adaptive bandit's reward normalisation
        # divides by a zero variance on label-only answers); keep the queries it spent.
        return Row(victim.name, "art", attack, output, budget, oracle.queries_used, None, None,
                   round(time.perf_counter() - t0, 3), seed, f"{type(exc).__name__}: {exc}")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    scores = probe.score(_ArtCopy(copy))
    return Row(victim.name, "art", attack, output, budget, oracle.queries_used,
               float(scores["fidelity"] or 0.0), scores["accuracy"], round(seconds, 3), seed, cpu_seconds=round(cpu, 3))


# -- the run -----------------------------------------------------------------------------------
def _mean_rows(rows: Sequence[Row]) -> list[Row]:
    """One row per (victim, output, budget, side, attack): fidelity, accuracy and seconds averaged
    over seeds.  A configuration that failed for any seed is left out of the comparison."""
    groups: dict[tuple[str, str, int, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.victim, r.output, r.budget, r.side, r.attack), []).append(r)
    out = []
    for (victim, output, budget, side, attack), rs in groups.items():
        if not all(r.ok for r in rs):
            continue
        acc = [r.accuracy for r in rs if r.accuracy is not None]
        cpu = [r.cpu_seconds for r in rs if r.cpu_seconds is not None]
        out.append(Row(victim, side, attack, output, budget, int(round(np.mean([r.queries for r in rs]))),
                       float(np.mean([r.fidelity or 0.0 for r in rs])), float(np.mean(acc)) if acc else None,
                       round(float(np.mean([r.seconds for r in rs])), 3), -1,
                       cpu_seconds=round(float(np.mean(cpu)), 3) if len(cpu) == len(rs) else None))
    return out


def summarize(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Per victim x budget x output: best of each side, and the seconds each needed to reach ART's best.

    Fidelities and seconds are means over seeds.  "Seconds to reach" is the (mean) wall time of
    the cheapest single run (any attack, any budget of the ladder) on that side whose fidelity is
    at least ART's best at this budget, or ``None`` when that side never reaches it; the ``cpu_``
    keys do the same with CPU seconds, which a shared machine's load does not inflate.
    """
    means = _mean_rows(rows)
    out: list[dict[str, Any]] = []
    keys = sorted({(r.victim, r.output, r.budget) for r in means})
    for victim, output, budget in keys:
        same = [r for r in means if r.victim == victim and r.output == output]
        here = [r for r in same if r.budget == budget]
        ours = [r for r in here if r.side == "ours"]
        art = [r for r in here if r.side == "art"]
        if not ours or not art:
            continue
        best_ours = max(ours, key=lambda r: (r.fidelity or 0.0, -r.seconds))
        best_art = max(art, key=lambda r: (r.fidelity or 0.0, -r.seconds))
        goal = best_art.fidelity or 0.0

        def reach(side: str, cpu: bool = False) -> Row | None:
            hits = [r for r in same if r.side == side and (r.fidelity or 0.0) >= goal - 1e-9]
            if cpu:
                hits = [r for r in hits if r.cpu_seconds is not None]
            return min(hits, key=lambda r: r.cpu_seconds if cpu else r.seconds) if hits else None  # type: ignore[return-value,arg-type]

        ro, ra = reach("ours"), reach("art")
        co, ca = reach("ours", cpu=True), reach("art", cpu=True)
        out.append({
            "victim": victim, "output": output, "budget": budget,
            "ours_best": best_ours.attack, "ours_fidelity": round(best_ours.fidelity or 0.0, 4),
            "art_best": best_art.attack, "art_fidelity": round(goal, 4),
            "fidelity_delta": round((best_ours.fidelity or 0.0) - goal, 4),
            "ours_seconds_to_art_best": None if ro is None else ro.seconds,
            "ours_run_to_art_best": None if ro is None else f"{ro.attack}@{ro.budget}",
            "art_seconds_to_art_best": None if ra is None else ra.seconds,
            "art_run_to_art_best": None if ra is None else f"{ra.attack}@{ra.budget}",
            "ours_cpu_seconds_to_art_best": None if co is None else co.cpu_seconds,
            "ours_cpu_run_to_art_best": None if co is None else f"{co.attack}@{co.budget}",
            "art_cpu_seconds_to_art_best": None if ca is None else ca.cpu_seconds,
            "art_cpu_run_to_art_best": None if ca is None else f"{ca.attack}@{ca.budget}",
        })
    return out


def _warm_up(victim: Victim, seed: int) -> None:
    """One tiny untimed fit, so torch's first-call start-up is not billed to the first row."""
    student = make_surrogate("auto", victim.schema, seed=seed)
    if isinstance(student, TorchClassifier):
        student.max_steps = student.min_steps = 5
    X = np.asarray(victim.pool()[:8], dtype=np.float64)
    student.fit(X, np.arange(len(X)) % victim.schema.n_classes)
    from extractguard.attacks.active_learning import kcenter_greedy, typical_rows

    typical_rows(X, 2, seed=seed)  # first imports of scipy/scikit-learn modules, untimed
    kcenter_greedy(X, X[:1], 2)


def run_benchmark(
    victims: Sequence[str],
    budgets: Sequence[int],
    attacks: Sequence[str] | None = None,
    art_attacks: Sequence[str] | None = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    seeds: Sequence[int] = (0,),
    on_row: Callable[[Row], None] | None = None,
    max_pool_fraction: float = 0.5,
) -> dict[str, Any]:
    """The harness's core: every selected attack of both sides on every victim and budget.

    ``attacks=None`` means every attack in our registry; ``art_attacks=None`` means every ART
    attack when ART is importable and none otherwise.  Victims and splits use seed 0 for every
    run; ``seeds`` vary the attacks' sampling and the students' initialisation.
    """
    ours = learning_attacks() if attacks is None else [a.strip().lower() for a in attacks if a.strip()]
    for name in ours:
        if name not in ATTACKS:
            raise ConfigurationError(f"unknown attack {name!r}; available: {', '.join(ATTACKS)}")
    if art_attacks is None:
        art_attacks = list(ART_ATTACKS) if art_available() else []
    for name in art_attacks:
        if name not in ART_ATTACKS:
            raise ConfigurationError(f"unknown ART attack {name!r}; available: {', '.join(ART_ATTACKS)}")
    if art_attacks and not art_available():
        raise ConfigurationError("IBM ART is not installed: pip install 'extractguard[bench]' or pass --no-art")
    modes = [str(OutputSpec.parse(o)) for o in outputs]
    rows: list[Row] = []
    victims_info: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for vname in victims:
        victim = build_victim(vname, seed=0)
        probe = ProbeSet.from_target(victim.target, *victim.probe())
        ladder = ladder_for(victim, budgets, max_pool_fraction)
        _warm_up(victim, 0)
        victims_info.append({**victim.describe(), "budgets": ladder, "probe_size": len(probe)})
        refused: set[str] = set()  # our attacks that do not apply to this victim
        for output in modes:
            for budget in ladder:
                jobs: list[tuple[str, Callable[..., Row]]] = [(a, run_ours) for a in ours]
                jobs += [(a, run_art) for a in art_attacks if output in ART_ATTACKS[a]]
                for seed in seeds:
                    for name, fn in jobs:
                        if name in refused:
                            continue
                        row = fn(victim, name, budget, output, probe, seed)
                        if not row.applicable:
                            refused.add(name)
                        rows.append(row)
                        if on_row is not None:
                            on_row(row)
    return {
        "meta": {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
            "extractguard": __version__,
            "art": _art_version(),
            "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
            "seeds": list(seeds),
            "seconds": round(time.perf_counter() - t_all, 1),
            "our_attacks": ours,
            "art_attacks": list(art_attacks),
            "outputs": modes,
            "max_pool_fraction": max_pool_fraction,
        },
        "victims": victims_info,
        "rows": [asdict(r) for r in rows],
        "means": [asdict(r) for r in _mean_rows(rows)],
        "summary": summarize(rows),
    }


def _art_version() -> str | None:
    try:
        import art

        return str(art.__version__)
    except ImportError:
        return None


# -- CLI ---------------------------------------------------------------------------------------
def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 150))
    t = Table(title="Attacks vs IBM ART: every run (fidelity/accuracy on the held-out probe split)")
    for col in ("victim", "output", "budget", "seed", "side", "attack", "nominal", "real", "fidelity", "accuracy", "wall s", "cpu s"):
        t.add_column(col, justify="left" if col in ("victim", "output", "side", "attack") else "right")
    for r in result["rows"]:
        applicable = not (r["error"] or "").startswith(NOT_APPLICABLE)
        real = str(r["queries"]) if r["queries"] == r["budget"] or not applicable else f"[bold red]{r['queries']}[/]"
        fid = _fmt(r["fidelity"]) if r["error"] is None else ("[red]error[/]" if applicable else "n/a")
        t.add_row(r["victim"], r["output"], str(r["budget"]), str(r["seed"]), r["side"], r["attack"], str(r["budget"]), real,
                  fid, _fmt(r["accuracy"]), f"{r['seconds']:.1f}", _fmt(r.get("cpu_seconds"), 1))
    console.print(t)
    for r in result["rows"]:
        if r["error"]:
            console.print(f"[red]{r['victim']} {r['attack']} @ {r['budget']} ({r['output']}, seed {r['seed']}): {r['error']}[/]")
    if result["summary"]:
        s = Table(title="Summary (means over seeds): our best vs ART's best; wall and CPU seconds to reach ART's best fidelity")
        for col in ("victim", "output", "budget", "ours best", "fid", "ART best", "fid", "delta", "ours s (run)", "ART s (run)",
                    "ours cpu s (run)", "ART cpu s (run)"):
            s.add_column(col)
        for x in result["summary"]:
            delta = x["fidelity_delta"]
            colour = "green" if delta >= 0 else "red"
            ours_s = "never" if x["ours_seconds_to_art_best"] is None else f"{x['ours_seconds_to_art_best']:.1f} ({x['ours_run_to_art_best']})"
            art_s = f"{x['art_seconds_to_art_best']:.1f} ({x['art_run_to_art_best']})"  # ART reaches its own best
            oc, ac = x.get("ours_cpu_seconds_to_art_best"), x.get("art_cpu_seconds_to_art_best")
            ours_c = "never" if oc is None else f"{oc:.1f} ({x['ours_cpu_run_to_art_best']})"
            art_c = "-" if ac is None else f"{ac:.1f} ({x['art_cpu_run_to_art_best']})"
            s.add_row(x["victim"], x["output"], str(x["budget"]), x["ours_best"], _fmt(x["ours_fidelity"]),
                      x["art_best"], _fmt(x["art_fidelity"]), f"[{colour}]{delta:+.3f}[/]", ours_s, art_s, ours_c, art_c)
        console.print(s)
    console.print(f"total {result['meta']['seconds']:.0f} s")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"smoke run: {','.join(QUICK_VICTIMS)} at budgets {QUICK_BUDGETS}")
    p.add_argument("--victims", help=f"comma-separated (default {','.join(DEFAULT_VICTIMS)})")
    p.add_argument("--budgets", help=f"comma-separated nominal budgets (default {','.join(map(str, DEFAULT_BUDGETS))}; "
                   "budgets above a victim's pool size are skipped)")
    p.add_argument("--attacks", help=f"our attacks, comma-separated (default: all registered: {','.join(ATTACKS)})")
    p.add_argument("--art-attacks", help=f"ART attacks, comma-separated (default: {','.join(ART_ATTACKS)})")
    p.add_argument("--no-art", action="store_true", help="run our attacks only")
    p.add_argument("--outputs", default=",".join(DEFAULT_OUTPUTS), help="output modes, comma-separated")
    p.add_argument("--seeds", default="0", help="attack/student seeds, comma-separated; the summary averages over them")
    p.add_argument("--max-pool-fraction", type=float, default=0.5,
                   help="largest budget as a fraction of the victim's attacker pool (default 0.5; 1.0 = the whole pool)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "attacks.json"))
    args = p.parse_args(argv)
    try:
        victims = _csv(args.victims) if args.victims else list(QUICK_VICTIMS if args.quick else DEFAULT_VICTIMS)
        budgets = [int(b) for b in _csv(args.budgets)] if args.budgets else list(QUICK_BUDGETS if args.quick else DEFAULT_BUDGETS)
        art = [] if args.no_art else (_csv(args.art_attacks) if args.art_attacks else None)

        def progress(r: Row) -> None:
            status = f"fid {_fmt(r.fidelity)}" if r.ok else (f"ERROR {r.error}" if r.applicable else r.error)
            print(f"  {r.victim:18s} {r.output:13s} {r.budget:5d} s{r.seed} {r.side:4s} {r.attack:22s} real {r.queries:5d}  {status}  {r.seconds:.1f}s (cpu {r.cpu_seconds or 0:.1f}s)",
                  file=sys.stderr, flush=True)

        result = run_benchmark(victims, budgets, _csv(args.attacks) if args.attacks else None, art,
                               _csv(args.outputs), [int(x) for x in _csv(args.seeds)], on_row=progress,
                               max_pool_fraction=args.max_pool_fraction)
    except (ExtractGuardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_tables(result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
