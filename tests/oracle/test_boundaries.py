"""Parse once at the boundary, count once in the oracle.

Text (``--output top-3``, ``--budgets 50,200``, ``output:`` and ``budgets:`` in YAML) becomes an
:class:`OutputSpec` or a :class:`BudgetLadder` where it enters, with one clear error line when it
is wrong; inside, the :class:`Oracle` is the only counter of queries, and no attack spends past it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from extractguard.attacks import ATTACKS, create_attack
from extractguard.attacks.algorithmic import OutOfQueries
from extractguard.errors import BudgetExceededError, ConfigurationError
from extractguard.evaluate.matrix_config import parse_matrix_config
from extractguard.gateway.config import AnswerPolicy, load_config
from extractguard.oracle import BudgetLadder, Oracle, OutputSpec
from extractguard.oracle.target_config import parse_target_config
from extractguard.victims import build_victim
from checkout import SRC

AUTH = {"statement": "We own this model and authorise extraction tests.", "owner": "EG tests"}


def target_dict(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "url": "http://127.0.0.1:9/v2", "model": "m", "keys": ["k"],
        "schema": {"input_shape": [4], "n_classes": 3}, "probe_data": "p.npz", "authorization": AUTH,
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def iris() -> Any:
    return build_victim("iris-logreg", seed=0)


# -- OutputSpec: text in, typed object inside, canonical text out ------------------------------
def test_target_config_output_is_typed_and_dumps_canonical_text() -> None:
    cfg = parse_target_config(target_dict(output="top3", variants=[
        {"name": "open", "keys": ["a"]}, {"name": "hard", "keys": ["b"], "output": "labels"}]))
    assert cfg.output == OutputSpec("top_k", k=3)
    assert cfg.variants[1].output == OutputSpec("label") and cfg.variants[0].output is None
    assert cfg.for_variant(cfg.variants[1]).output == OutputSpec("label")
    assert cfg.for_variant(cfg.variants[0]).output == OutputSpec("top_k", k=3)
    assert cfg.describe()["output"] == "top-3"
    dumped = cfg.model_dump(mode="json", by_alias=True)
    assert dumped["output"] == "top-3" and dumped["variants"][1]["output"] == "label"
    assert parse_target_config(dumped).output == cfg.output  # the dump reads back to the same spec


@pytest.mark.parametrize("bad", ["everything", "top-0", 7])
def test_target_config_rejects_a_bad_output_in_one_line_naming_the_field(bad: Any) -> None:
    with pytest.raises(ConfigurationError) as err:
        parse_target_config(target_dict(output=bad), source="target config t.yaml")
    msg = str(err.value)
    assert msg.startswith("target config t.yaml: output: ") and "\n" not in msg
    with pytest.raises(ConfigurationError, match=r"variants\.1\.output: unknown output mode"):
        parse_target_config(target_dict(variants=[{"name": "a", "keys": ["a"]},
                                                  {"name": "b", "keys": ["b"], "output": "everything"}]))


def test_gateway_tier_output_is_typed_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    good = tmp_path / "gw.yaml"
    good.write_text(yaml.safe_dump({"model": {"victim": "iris-logreg"},
                                    "tiers": {"free": {"output": "top-1"}, "pro": {"output": "rounded"}}}))
    cfg = load_config(good)
    assert cfg.tiers["free"].output == OutputSpec("top_k", k=1)
    assert cfg.tiers["pro"].output == OutputSpec("rounded", decimals=2)
    assert cfg.tiers["pro"].model_dump(mode="json")["output"] == "rounded:2"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"model": {"victim": "iris-logreg"}, "tiers": {"free": {"output": "most"}}}))
    with pytest.raises(ConfigurationError) as err:
        load_config(bad)
    assert "tiers.free.output" in str(err.value) and "unknown output mode 'most'" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("output", ["label", "labels", "top-1", "top1"])
def test_soft_watermark_refuses_every_spelling_of_a_label_only_output(output: str) -> None:
    with pytest.raises(ValueError, match="would hide it"):
        AnswerPolicy.model_validate({"output": output, "watermark": {"mark": "soft"}})
    assert AnswerPolicy.model_validate({"output": "top-2", "watermark": {"mark": "soft"}}).output.k == 2


def test_oracle_takes_a_spec_not_text(iris: Any) -> None:
    with pytest.raises(TypeError, match="OutputSpec.parse"):
        Oracle(iris.target, output="top-3")  # type: ignore[arg-type]
    assert Oracle(iris.target).output == OutputSpec("probabilities")


# -- BudgetLadder ------------------------------------------------------------------------------
def test_budget_ladder_is_validated_once() -> None:
    ladder = BudgetLadder.parse(" 500, 50,100,50")
    assert list(ladder) == [50, 100, 500] and ladder.top == 500 and len(ladder) == 3 and str(ladder) == "50,100,500"
    assert ladder == BudgetLadder([100, 500, 50]) and ladder[-1] == 500 and 100 in ladder
    assert list(ladder.capped(300)) == [50, 100, 300] and ladder.capped(None) is ladder
    assert ladder.capped(500) is ladder and list(ladder.capped(20)) == [20]
    for text, message in [("50,lots", "whole numbers"), ("0,10", "positive"), ("-5", "positive"), ("", "whole numbers")]:
        with pytest.raises(ConfigurationError, match=message):
            BudgetLadder.parse(text)
    with pytest.raises(ConfigurationError, match="at least one budget"):
        BudgetLadder([])


def test_matrix_config_budgets_become_a_ladder_and_bad_ones_are_one_line() -> None:
    base = {"target": {"victim": "iris-logreg"}, "attacks": ["random"],
            "defenses": {"open": {"output": "top3"}}}
    cfg = parse_matrix_config({**base, "budgets": [200, 50, 50]}, "assess.yaml")
    assert cfg.budgets == BudgetLadder([50, 200]) and cfg.defenses["open"].output == OutputSpec("top_k", k=3)
    dumped = cfg.model_dump(mode="json")
    assert dumped["budgets"] == [50, 200] and dumped["defenses"]["open"]["output"] == "top-3"
    assert type(cfg).model_validate_json(cfg.model_dump_json()) == cfg  # what worker processes receive
    for budgets, message in [([0, 10], "budgets must be positive"), ([], "at least one budget"),
                             (["x"], "whole numbers"), ("50,100", "list of whole numbers")]:
        with pytest.raises(ConfigurationError) as err:
            parse_matrix_config({**base, "budgets": budgets}, "assess.yaml")
        assert str(err.value).startswith("assess.yaml: budgets: ") and message in str(err.value), str(err.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    src = SRC
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "extractguard", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_rejects_bad_budgets_and_outputs_with_one_error_line(tmp_path: Path) -> None:
    target = tmp_path / "t.yaml"
    target.write_text(yaml.safe_dump(target_dict(probe_data=str(tmp_path / "p.npz"))))
    bad_output = tmp_path / "bad-output.yaml"
    bad_output.write_text(yaml.safe_dump(target_dict(output="everything")))
    for args, message in [
        (["assess", "--budgets", "0,10"], "budgets must be positive, got 0"),
        (["assess", "--budgets", ","], "budgets must be whole numbers"),
        (["assess", "--output", "top-0"], "top-k needs k >= 1"),
        (["assess", "--target", str(target), "--budgets", "50,x"], "budgets must be whole numbers, got 'x'"),
        (["assess", "--target", str(bad_output)], "output: unknown output mode 'everything'"),
    ]:
        r = run_cli(*args, cwd=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, (args, r.stderr)
        assert lines[0].startswith("error:") and message in lines[0], (args, lines)
        assert "Traceback" not in r.stdout + r.stderr


# -- one counter: the oracle -------------------------------------------------------------------
def test_charge_is_the_only_counter_and_refuses_to_cross_the_budget(iris: Any) -> None:
    oracle = Oracle(iris.target, budget=10)
    oracle.query(iris.pool()[:4])
    assert (oracle.queries_used, oracle.calls, oracle.remaining) == (4, 1, 6)
    with pytest.raises(BudgetExceededError):
        oracle.charge(7)
    with pytest.raises(BudgetExceededError):
        oracle.charge(-1)
    assert (oracle.queries_used, oracle.calls) == (4, 1)  # a refused charge counts nothing
    oracle.charge(6, seconds=0.5)
    assert oracle.stats().queries == 10 and oracle.stats().calls == 2 and oracle.remaining == 0
    with pytest.raises(BudgetExceededError):
        oracle.admit(iris.pool()[:1])


CHEAP = ["activethief", "equation-solving", "jbda", "knockoff", "path-finding", "random"]
ANALYTIC = {"equation-solving", "path-finding"}  # they rebuild the model; no student to choose


@pytest.mark.parametrize("name", CHEAP)
def test_attacks_spend_exactly_what_the_oracle_counts_and_never_more(iris: Any, name: str) -> None:
    """An oracle already part-used: the attack's default budget is what is left, and its own
    report of queries is the oracle's count since it started, never a count of its own."""
    oracle = Oracle(iris.target, budget=90)
    oracle.query(iris.pool()[:10])  # someone else's 10 queries on the same oracle
    kw = {} if name in ANALYTIC else {"surrogate": "linear"}
    attack = create_attack(name, pool=iris.pool(), seed=0, **kw)
    try:
        attack.fit(oracle, checkpoints=[30, 80])
    except OutOfQueries:  # an algorithm that needs more than 80 queries here stops before the 81st
        assert oracle.queries_used - 10 <= 80
        return
    assert oracle.queries_used <= 90 and attack.queries_ == oracle.queries_used - 10 > 0
    assert attack.checkpoints_ and all(cp.queries <= cp.budget <= 80 for cp in attack.checkpoints_)


def test_an_algorithm_stopped_by_its_budget_reports_the_oracles_count() -> None:
    victim = build_victim("breast_cancer-logreg", seed=0)
    oracle = Oracle(victim.target, output=OutputSpec("label"))  # unlimited: the attack's own budget stops it
    oracle.query(victim.pool()[:5])
    with pytest.raises(OutOfQueries) as err:
        create_attack("lowd-meek", seed=0).fit(oracle, budget=40)
    used = oracle.queries_used - 5
    assert used <= 40 and f"stopped after {used})" in str(err.value)


def test_a_batch_that_would_cross_the_budget_is_refused_whole_and_costs_nothing(iris: Any) -> None:
    calls: list[int] = []
    target = iris.target

    class Counting:
        schema = target.schema

        def predict(self, X: np.ndarray) -> Any:
            calls.append(len(X))
            return target.predict(X)

    oracle = Oracle(Counting(), budget=25)  # type: ignore[arg-type]
    create_attack("random", surrogate="linear", seed=0).fit(oracle, budget=20)
    with pytest.raises(BudgetExceededError):
        oracle.query(iris.pool()[:6])
    assert sum(calls) == oracle.queries_used == 20 and oracle.remaining == 5
