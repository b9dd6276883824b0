"""Smoke tests for benchmarks/attacks.py: the harness runs, and real queries equal nominal ones."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from checkout import ROOT
from extractguard.errors import ConfigurationError

BENCH = ROOT / "benchmarks" / "attacks.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_attacks", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_attacks"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_ours_only_counts_every_query(bench: ModuleType) -> None:
    result = bench.run_benchmark(
        ["breast_cancer-mlp"], [20, 40], attacks=["knockoff", "random"], art_attacks=[], outputs=["probabilities", "label"]
    )
    rows = result["rows"]
    assert {(r["attack"], r["output"], r["budget"]) for r in rows} == {
        (a, o, b) for a in ("knockoff", "random") for o in ("probabilities", "label") for b in (20, 40)
    }
    for r in rows:
        assert r["error"] is None, r
        assert r["queries"] == r["budget"]
        assert 0.0 <= r["fidelity"] <= 1.0
    # Pool data beats uniform noise on a tabular victim with narrow natural ranges.
    knock = [r["fidelity"] for r in rows if r["attack"] == "knockoff"]
    rand = [r["fidelity"] for r in rows if r["attack"] == "random"]
    assert min(knock) > max(rand)
    assert result["summary"] == []  # no ART side, nothing to compare


def test_budgets_beyond_half_the_pool_are_dropped_and_unknown_names_rejected(bench: ModuleType) -> None:
    from extractguard.victims import build_victim

    victim = build_victim("wine-mlp")
    n = len(victim.pool())
    assert bench.ladder_for(victim, [10, n // 2, n // 2 + 1, n]) == [10, n // 2]
    assert bench.ladder_for(victim, [10, n, n + 1], max_pool_fraction=1.0) == [10, n]
    with pytest.raises(ConfigurationError, match="pool"):
        bench.ladder_for(victim, [n // 2 + 1])
    with pytest.raises(ConfigurationError, match="unknown attack"):
        bench.run_benchmark(["wine-mlp"], [10], attacks=["nope"], art_attacks=[])


def test_default_attacks_are_the_learning_ones_and_refusals_are_not_applicable(bench: ModuleType) -> None:
    from extractguard.attacks import ATTACKS

    names = bench.learning_attacks()
    assert {"random", "knockoff"} <= set(names) <= set(ATTACKS)
    # Analytic attacks rebuild one model family; they are not compared with ART's learners.
    assert not {"equation-solving", "lowd-meek", "functionally-equivalent"} & set(names)
    # No entry is a mere umbrella of another one (activethief vs activethief-entropy).
    assert not [(a, b) for a in names for b in names if a != b and issubclass(ATTACKS[b], ATTACKS[a])]
    if "transfer" not in ATTACKS:
        pytest.skip("no text-only attack registered")
    result = bench.run_benchmark(["wine-mlp"], [10, 20], attacks=["transfer", "knockoff"], art_attacks=[],
                                 outputs=["probabilities"])
    transfer = [r for r in result["rows"] if r["attack"] == "transfer"]
    assert len(transfer) == 1  # refused once for this victim, then not retried at other budgets
    assert transfer[0]["queries"] == 0 and transfer[0]["error"].startswith(bench.NOT_APPLICABLE)
    assert all(r["error"] is None for r in result["rows"] if r["attack"] == "knockoff")
    assert {r["attack"] for r in result["means"]} == {"knockoff"}


def test_summary_compares_means_and_time_to_reach(bench: ModuleType) -> None:
    Row = bench.Row
    rows = [
        Row("v", "ours", "knockoff", "label", 50, 50, 0.80, None, 2.0, 0),
        Row("v", "ours", "knockoff", "label", 50, 50, 0.90, None, 4.0, 1),
        Row("v", "ours", "knockoff", "label", 100, 100, 0.95, None, 5.0, 0),
        Row("v", "ours", "knockoff", "label", 100, 100, 0.95, None, 5.0, 1),
        Row("v", "art", "art-copycat", "label", 50, 50, 0.88, None, 1.0, 0),
        Row("v", "art", "art-copycat", "label", 50, 50, 0.88, None, 1.0, 1),
        Row("v", "art", "art-copycat", "label", 100, 100, 0.90, None, 2.0, 0),
        Row("v", "art", "art-copycat", "label", 100, 100, 0.90, None, 2.0, 1),
        Row("v", "art", "broken", "label", 100, 3, None, None, 0.1, 0, "ValueError: boom"),
    ]
    by_budget = {s["budget"]: s for s in bench.summarize(rows)}
    s50 = by_budget[50]
    assert s50["ours_fidelity"] == pytest.approx(0.85) and s50["art_fidelity"] == pytest.approx(0.88)
    assert s50["fidelity_delta"] == pytest.approx(-0.03)
    assert s50["ours_run_to_art_best"] == "knockoff@100" and s50["ours_seconds_to_art_best"] == pytest.approx(5.0)
    assert s50["art_run_to_art_best"] == "art-copycat@50"
    s100 = by_budget[100]
    assert s100["art_best"] == "art-copycat"  # the failed run is not a candidate
    assert s100["ours_seconds_to_art_best"] == pytest.approx(5.0)
    assert s100["ours_cpu_seconds_to_art_best"] is None  # these rows carry no CPU times


def test_summary_time_to_reach_on_the_cpu_clock(bench: ModuleType) -> None:
    """Wall and CPU clocks are compared separately: a run slowed by other processes' load
    (wall 9 s, CPU 3 s) is the cheapest on the CPU clock and not on the wall clock."""
    Row = bench.Row
    rows = [
        Row("v", "ours", "a", "label", 50, 50, 0.9, None, 9.0, 0, cpu_seconds=3.0),
        Row("v", "ours", "b", "label", 50, 50, 0.9, None, 6.0, 0, cpu_seconds=5.0),
        Row("v", "art", "art-copycat", "label", 50, 50, 0.9, None, 5.0, 0, cpu_seconds=4.5),
    ]
    (s,) = bench.summarize(rows)
    assert s["ours_run_to_art_best"] == "b@50" and s["ours_seconds_to_art_best"] == pytest.approx(6.0)
    assert s["ours_cpu_run_to_art_best"] == "a@50" and s["ours_cpu_seconds_to_art_best"] == pytest.approx(3.0)
    assert s["art_cpu_seconds_to_art_best"] == pytest.approx(4.5)


def test_art_knockoff_through_our_oracle(bench: ModuleType) -> None:
    pytest.importorskip("art")
    result = bench.run_benchmark(
        ["breast_cancer-mlp"], [30], attacks=["knockoff"], art_attacks=["art-knockoff", "art-copycat"],
        outputs=["probabilities", "label"],
    )
    art_rows = [r for r in result["rows"] if r["side"] == "art"]
    assert {(r["attack"], r["output"]) for r in art_rows} == {("art-knockoff", "probabilities"), ("art-copycat", "label")}
    for r in result["rows"]:
        assert r["error"] is None, r
        assert r["queries"] == r["budget"] == 30
        assert r["fidelity"] > 0.5
    assert {(s["output"], s["budget"]) for s in result["summary"]} == {("probabilities", 30), ("label", 30)}
