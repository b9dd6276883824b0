"""One answer pipeline: the gateway (over HTTP) and a matrix cell (an Oracle over the same pipeline)
give byte-identical answers and identical decisions for the same account, inputs and times.

Each tier has detection that escalates flag -> throttle -> challenge -> suspend on the account's
pace, and defenses and a watermark where the output mode allows them.  The gateway runs on an
injected clock at the same pace as the cell's simulated clock.  Requests the gateway refuses
before its pipeline (a missing proof of work, a suspended account) never reach either pipeline;
the batch that triggers the suspension reaches both: the gateway withholds it, the cell (which
measures the copy without enforcement too) still computes it, and its decision says it was withheld.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from extractguard.detect.policy import POW_HEADER, solve
from extractguard.evaluate.cell_pipeline import build_cell_pipeline, master_key
from extractguard.evaluate.matrix_config import DefenseVariant
from extractguard.evaluate.matrix_data import Prepared
from extractguard.gateway import create_app, parse_config
from extractguard.oracle import OutputSpec, PacedClock
from extractguard.oracle.oip import encode_response
from extractguard.serving import Decision, ServingPipeline
from gateway_helpers import CountingTarget, infer_body

MODEL = "digits"
URL = f"/v2/models/{MODEL}/infer"
SEED = 3
PACE = 10.0  # rows per second: 20-row batches every 2 s, 600 rows a minute against an alarm at 100
DETECTION = {"detectors": ["rate", "prada"], "baseline_rows_per_hour": 600,
             "responses": {"flag": 1.0, "throttle": 1.5, "challenge": 2.5, "suspend": 4.0},
             "throttle_limit": "100000/minute", "challenge_bits": 4}
TIERS: dict[str, dict[str, Any]] = {
    "guarded": {"output": "top-3", "defenses": [{"name": "reverse_sigmoid", "beta": 0.3, "gamma": 1.5},
                                                {"name": "gaussian_noise", "sigma": 0.02}],
                "watermark": {"fraction": 0.1}, "detection": DETECTION},
    "soft": {"output": "rounded:3", "defenses": [{"name": "temperature", "temperature": 2.0}],
             "watermark": {"fraction": 0.1, "mark": "soft"}, "detection": DETECTION},
    "logits": {"output": "logits", "detection": DETECTION},  # the model's own logits pass through
}


@pytest.fixture(scope="module")
def victim():  # type: ignore[no-untyped-def]
    from extractguard.victims import build_victim

    return build_victim("digits-logreg", seed=0)


def comparable(d: Decision, computed: bool) -> dict[str, Any]:
    """The decision, without the watermark marks of an answer only the non-enforcing cell computed."""
    out = d.to_dict()
    if not computed:
        for k in ("marked", "control", "recorded"):
            out.pop(k)
    return out


@pytest.mark.parametrize("tier", list(TIERS))
def test_gateway_and_matrix_cell_answer_and_decide_identically(tmp_path: Path, victim, tier: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "watermark.key").write_text(master_key(SEED).hex())  # the cell's simulation key, served by the gateway
    cfg = parse_config({"model": {"name": MODEL, "victim": "digits-logreg"}, "state_dir": str(tmp_path / "gw"),
                        "watermark_key": str(tmp_path / "watermark.key"), "storage": "memory://",
                        "tiers": {tier: TIERS[tier]}, "max_rows_per_request": 100, "max_body_bytes": 1 << 20, "seed": SEED})
    pool = victim.pool()
    prep = Prepared(victim.target, {}, pool, *victim.probe(), owner_data=victim.dataset.X[victim.splits.train],
                    reference_X=victim.probe()[0], honest_X=pool[:1], honest_y=None)
    cell = build_cell_pipeline(prep, DefenseVariant.model_validate(TIERS[tier]), "mallory", SEED, tmp_path, PACE, tier=tier)
    cell_decisions: list[Decision] = []
    timeline_observe = cell.serving.on_decision
    assert timeline_observe is not None

    def on_cell_decision(d: Decision) -> None:
        cell_decisions.append(d)
        timeline_observe(d)

    cell.serving.on_decision = on_cell_decision
    oracle = cell.oracle()

    with TestClient(create_app(cfg, clock=PacedClock(PACE))) as client:
        gw = client.app.state.gateway
        served_by: ServingPipeline = gw.tiers[tier]
        gw_decisions: list[Decision] = []
        served_by.on_decision = gw_decisions.append
        key = gw.keys.create("mallory", tier)
        statuses, compared, withheld_X = [], 0, pool[:0]
        for i in range(0, 25 * 20, 20):
            X = pool[i:i + 20]
            r = client.post(URL, json=infer_body(X), headers={"X-API-Key": key})
            if r.status_code == 428:  # challenged: solve the proof of work and resend the same batch
                token = solve(r.json()["challenge"]["nonce"], r.json()["challenge"]["bits"])
                r = client.post(URL, json=infer_body(X), headers={"X-API-Key": key, POW_HEADER: token})
            statuses.append(r.status_code)
            if len(gw_decisions) == compared:  # refused before the pipeline (suspended): the cell is not asked either
                assert r.status_code == 403
                continue
            answer = oracle.query(X)
            gd, cd = gw_decisions[-1], cell_decisions[-1]
            compared += 1
            assert len(gw_decisions) == len(cell_decisions) == compared
            if r.status_code == 200:
                expected = json.dumps(encode_response(answer, MODEL), separators=(",", ":")).encode()
                assert r.content == expected  # byte for byte
                assert comparable(gd, True) == comparable(cd, True)
            else:  # the batch that triggered the suspension: withheld by the gateway, computed by the cell only
                withheld_X = X
                assert r.status_code == 403 and "suspended" in r.json()["error"]
                assert gd.withheld is not None and cd.withheld == gd.withheld and gd.marks is None
                assert comparable(gd, False) == comparable(cd, False)

        escalations = [d.escalation.action for d in gw_decisions if d.escalation is not None]
        assert escalations == [e.action for d in cell_decisions if (e := d.escalation) is not None]
        assert [a for a in escalations if a != "flag"] == ["throttle", "challenge", "suspend"]
        assert {d.action for d in gw_decisions} >= {"none", "throttle", "challenge"}
        assert statuses.count(403) >= 2 and statuses[statuses.index(403):] == [403] * (len(statuses) - statuses.index(403))
        assert gw_decisions[-1].escalation is not None and gw_decisions[-1].escalation.action == "suspend"
        assert [d.at for d in gw_decisions] == [20 * (k + 1) / PACE for k in range(compared)]  # the same simulated times
        if TIERS[tier].get("watermark"):  # both records hold the same marks of the rows the gateway served
            assert gw.watermarks is not None and cell.record is not None
            g, c = gw.watermarks.load("mallory"), cell.record.load("mallory")
            unserved = {x.tobytes() for x in np.asarray(withheld_X, dtype=np.float64)}  # the cell also marked the batch the gateway withheld
            keep = np.array([x.tobytes() not in unserved for x in c.marked_X])
            assert len(g.marked_X) + len(g.control_X) > 0 and not (keep.all() and len(c.control_X) == len(g.control_X))
            np.testing.assert_array_equal(g.marked_X, c.marked_X[keep])
            np.testing.assert_array_equal(g.marked_served, c.marked_served[keep])
            np.testing.assert_array_equal(g.control_X, c.control_X[[x.tobytes() not in unserved for x in c.control_X]])
    sus = cell.served_before_suspension
    assert sus is not None and sus == 20 * (compared - 1)  # the matrix's enforced copy stops where the gateway did


def test_a_plain_target_is_a_one_stage_pipeline(victim) -> None:  # type: ignore[no-untyped-def]
    """Oracle(target, output=...) answers through the output stage alone: the same bytes as a tier with nothing else."""
    from extractguard.oracle import Oracle

    X = victim.pool()[:7]
    plain = Oracle(victim.target, output=OutputSpec("logits")).query(X)
    tier = Oracle(ServingPipeline(victim.target, OutputSpec("logits"))).query(X)
    assert json.dumps(encode_response(plain, MODEL)) == json.dumps(encode_response(tier, MODEL))
    with pytest.raises(Exception, match="differs from the pipeline's own output mode"):
        Oracle(ServingPipeline(victim.target, OutputSpec("label")), output=OutputSpec("top_k", k=2))


def test_an_enforcing_pipeline_withholds_a_suspended_accounts_answers(victim) -> None:  # type: ignore[no-untyped-def]
    """Behind an Oracle, a withheld answer is an error the attack sees (as the gateway's 403), uncharged."""
    from extractguard.detect.policy import DetectionConfig
    from extractguard.oracle import AnswerWithheldError, Oracle
    from extractguard.serving import Detection

    dc = DetectionConfig.model_validate(DETECTION)
    detection = Detection.build({"t": dc}, victim.target, {"t": victim.probe()[0]})
    model = CountingTarget(victim.target)
    pipe = ServingPipeline(model, OutputSpec("label"), tier="t", detection=detection)
    oracle = Oracle(pipe, account="mallory", clock=PacedClock(PACE))
    pool = victim.pool()
    with pytest.raises(AnswerWithheldError, match="suspended"):
        for i in range(0, 600, 20):
            oracle.query(pool[i:i + 20])
    assert detection.action("mallory") == "suspend"
    used, asked = oracle.queries_used, model.rows
    with pytest.raises(AnswerWithheldError):
        oracle.query(pool[:3])
    assert oracle.queries_used == used and used < 600
    assert model.rows == asked  # a suspended account's rows never reach the model
