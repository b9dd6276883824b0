"""`extractguard assess --target` pointed at the gateway: one row per defense in the report.

A real gateway (uvicorn on loopback) serves digits-logreg with one tier per defense; the target
config reaches each tier through its own API key.  The report must show, per tier, the stolen
copy's fidelity to the real model and what honest users lose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from extractguard.gateway import create_app, parse_config

from gateway_helpers import UvicornThread

TIERS = {
    "open": {"output": "probabilities"},
    "reverse-sigmoid": {"output": "probabilities", "defenses": [{"name": "reverse-sigmoid", "beta": 0.7, "gamma": 0.4}]},
    "noise": {"output": "probabilities", "defenses": [{"name": "gaussian-noise", "sigma": 0.3}]},
    "label-only": {"output": "label"},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, victim):  # type: ignore[no-untyped-def]
    state = tmp_path_factory.mktemp("gw")
    config = parse_config({
        "model": {"name": "digits", "victim": "digits-logreg"},
        "state_dir": str(state), "storage": "memory://", "tiers": TIERS, "seed": 0,
    })
    app = create_app(config, target=victim.target, owner_data=victim.dataset.X[victim.splits.train])
    keys = {tier: app.state.gateway.keys.create(f"acct-{tier}", tier) for tier in TIERS}
    with UvicornThread(app) as server:
        yield server, keys, victim, app.state.gateway


def test_assess_through_gateway_reports_each_defense(gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, keys, victim, gw = gateway
    pool = victim.pool()
    probe_X, probe_y = victim.probe()
    np.save(tmp_path / "attacker.npy", pool)
    np.savez(tmp_path / "probe.npz", X=probe_X, y=probe_y)
    env = dict(os.environ)
    variants = []
    for tier in TIERS:
        var = f"EG_TEST_KEY_{tier.upper().replace('-', '_')}"
        env[var] = keys[tier]
        variants.append({"name": tier, "key_env": [var], **({"output": "label"} if tier == "label-only" else {})})
    target = {
        "url": server.url, "protocol": "oip", "model": "digits",
        "schema": {"input_shape": [1, 8, 8], "n_classes": 10, "low": 0, "high": 16},
        "output": "probabilities", "transcript": "campaign.sqlite",
        "attacker_data": "attacker.npy", "probe_data": "probe.npz", "concurrency": 2,
        "authorization": {"statement": "Test gateway owned by this test suite; extraction testing allowed.",
                          "owner": "ExtractGuard tests"},
        "variants": variants,
    }
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(target))
    r = subprocess.run(
        [sys.executable, "-m", "extractguard", "assess", "--target", str(tmp_path / "target.yaml"),
         "--attack", "knockoff", "--budgets", "60,240", "--out", str(tmp_path / "report")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {v["name"]: v for v in report["variants"]}
    assert list(rows) == list(TIERS)
    assert rows["open"]["reference"] and not rows["noise"]["reference"]
    real_acc = float(np.mean(victim.target.predict(probe_X).probabilities.argmax(1) == probe_y))
    # Honest users: the open tier and the argmax-preserving reverse sigmoid give the real model's
    # labels; noise without keep_argmax changes some of them; label-only keeps every label.
    assert rows["open"]["honest_user"]["accuracy"] == pytest.approx(real_acc)
    assert rows["reverse-sigmoid"]["honest_user"]["agreement"] == 1.0
    assert rows["reverse-sigmoid"]["honest_user"]["mean_l1"] > 0.05
    assert rows["noise"]["honest_user"]["agreement"] < 1.0
    assert rows["noise"]["honest_user"]["accuracy"] < real_acc
    assert rows["label-only"]["honest_user"]["agreement"] == 1.0
    assert rows["label-only"]["output"] == "label"
    for v in rows.values():
        assert set(v["best_fidelity"]) == {"60", "240"}
        assert v["paid_queries"]["attack"]["knockoff"] == 240
    # The undefended copy is faithful; every tier's copy is scored against the real model.
    assert rows["open"]["best_fidelity"]["240"] > 0.8
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'id="variants"' in html and 'id="variants-plot"' in html
    for tier in TIERS:
        assert tier in html
        assert (tmp_path / f"campaign-{tier}.sqlite").is_file()
    assert "fid@240" in r.stdout


def test_variant_config_errors_are_one_line(tmp_path: Path) -> None:
    from extractguard.errors import ConfigurationError
    from extractguard.oracle.target_config import parse_target_config

    base = {
        "url": "http://127.0.0.1:1", "model": "m", "schema": {"input_shape": [4], "n_classes": 2},
        "probe_data": "p.npz", "authorization": {"statement": "We own this endpoint.", "owner": "us"},
    }
    with pytest.raises(ConfigurationError, match="at least two variants"):
        parse_target_config({**base, "variants": [{"name": "a", "keys": ["k"]}]})
    with pytest.raises(ConfigurationError, match="unique"):
        parse_target_config({**base, "variants": [{"name": "a", "keys": ["k"]}, {"name": "a", "keys": ["j"]}]})
    with pytest.raises(ConfigurationError, match="needs keys or key_env"):
        parse_target_config({**base, "variants": [{"name": "a", "keys": ["k"]}, {"name": "b"}]})
    with pytest.raises(ConfigurationError, match="variants.1.output"):
        parse_target_config({**base, "variants": [{"name": "a", "keys": ["k"]}, {"name": "b", "keys": ["j"], "output": "top-0"}]})
