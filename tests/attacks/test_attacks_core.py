"""Random and Knockoff attacks: budget contract, checkpoints, fidelity rising with queries."""

from __future__ import annotations

import numpy as np
import pytest

from extractguard.attacks import ATTACKS, KnockoffNets, RandomQueries, create_attack
from extractguard.errors import ConfigurationError
from extractguard.evaluate import ProbeSet, run_assessment
from extractguard.oracle import BudgetLadder, OutputSpec


def test_registry_and_factory(victim) -> None:
    assert {"random", "knockoff"} <= set(ATTACKS)
    assert isinstance(create_attack("random"), RandomQueries)
    assert isinstance(create_attack("knockoff", pool=victim.pool()), KnockoffNets)
    with pytest.raises(ConfigurationError, match="needs attacker data"):
        create_attack("knockoff")
    with pytest.raises(ConfigurationError, match="unknown attack"):
        create_attack("magic")


def test_knockoff_spends_exactly_its_budget_and_improves(victim) -> None:
    oracle = victim.oracle(budget=400)
    probe = ProbeSet.from_target(victim.target, *victim.probe())
    attack = KnockoffNets(victim.pool(), surrogate="linear", seed=0, batch_size=64)
    attack.fit(oracle, checkpoints=[25, 400])
    assert [c.queries for c in attack.checkpoints_] == [25, 400]
    assert oracle.queries_used == 400 == attack.queries_
    low, high = (probe.score(c.surrogate)["fidelity"] for c in attack.checkpoints_)
    assert high > low and high >= 0.85


def test_knockoff_never_repeats_a_pool_row_and_stops_when_exhausted(victim) -> None:
    pool = victim.pool()[:120]
    oracle = victim.oracle(budget=500)
    attack = KnockoffNets(pool, surrogate="linear", seed=1).fit(oracle, checkpoints=[100, 500])
    assert [c.queries for c in attack.checkpoints_] == [100, 120]
    X = np.concatenate(attack._X)
    assert len(np.unique(X, axis=0)) == len(np.unique(pool, axis=0))


def test_random_queries_stay_in_bounds(victim) -> None:
    attack = RandomQueries(surrogate="linear", seed=0).fit(victim.oracle(budget=50))
    X = np.concatenate(attack._X)
    assert X.min() >= 0 and X.max() <= 16 and X.shape == (50, 64)


def test_same_seed_same_result(victim) -> None:
    probe = ProbeSet.from_target(victim.target, *victim.probe())
    f = [
        probe.score(KnockoffNets(victim.pool(), surrogate="linear", seed=7).fit(victim.oracle(budget=60)).surrogate_)
        for _ in range(2)
    ]
    assert f[0] == f[1]


def test_run_assessment_curve(victim) -> None:
    probe = ProbeSet.from_target(victim.target, *victim.probe())
    attacks = [create_attack(n, pool=victim.pool(), surrogate="linear") for n in ("random", "knockoff")]
    result = run_assessment(victim.target, attacks, BudgetLadder([30, 300]), probe, output=OutputSpec.parse("top-1"))
    assert [r.attack for r in result.runs] == ["random", "knockoff"]
    for run in result.runs:
        assert [p.budget for p in run.points] == [30, 300] and run.queries == 300
    knock = result.runs[1].points
    assert knock[-1].fidelity > knock[0].fidelity
    assert result.output == "top-1"
