"""One registry for attacks, defenses and detectors: kebab-case names, old spellings with a warning."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from extractguard.attacks import ATTACKS, create_attack
from extractguard.defenses import DEFENSES, build_chain
from extractguard.detect import DETECTORS
from extractguard.errors import ConfigurationError
from extractguard.registry import DeprecatedNameWarning, Entry, Registry

from checkout import SRC


@pytest.mark.parametrize("registry", [ATTACKS, DEFENSES, DETECTORS], ids=lambda r: r.kind)
def test_entries_describe_the_objects_they_load(registry: Registry) -> None:
    # Listings print the entry, reports print the class: they must not drift apart.
    for entry in registry.entries():
        cls = registry[entry.name]
        assert cls.name == entry.name, entry
        if registry is ATTACKS:
            assert (cls.paper, cls.needs_pool) == (entry.paper, entry.needs_data), entry.name
        assert entry.summary, entry.name


def test_every_name_is_kebab_case_and_a_registry_refuses_others() -> None:
    for registry in (ATTACKS, DEFENSES, DETECTORS):
        assert all(n == n.lower() and "_" not in n for n in registry)
    with pytest.raises(ValueError, match="not kebab-case"):
        Registry("thing", [Entry("reverse_sigmoid", "x:y")])
    with pytest.raises(ValueError, match="registered twice"):
        Registry("thing", [Entry("a-b", "x:y"), Entry("a-b", "x:z")])


def test_old_spellings_resolve_with_one_deprecation_warning_naming_the_new_one() -> None:
    with pytest.warns(DeprecatedNameWarning, match="defense name 'reverse_sigmoid' is deprecated; write 'reverse-sigmoid'"):
        chain = build_chain([{"name": "reverse_sigmoid", "beta": 0.7}])
    assert [d.name for d in chain.defenses] == ["reverse-sigmoid"]
    with pytest.warns(DeprecationWarning, match="write 'knockoff-adaptive'"):
        assert ATTACKS.canonical("knockoff_adaptive") == "knockoff-adaptive"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # canonical spellings (any case) never warn
        assert DEFENSES.canonical("Gaussian-Noise") == "gaussian-noise"
        assert create_attack("random", seed=0).name == "random"
    assert "gaussian_noise" in DEFENSES and "gaussian-noise" in DEFENSES and "jpeg" not in DEFENSES
    assert list(DEFENSES) == ["temperature", "gaussian-noise", "reverse-sigmoid", "mad", "adaptive-misinformation"]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown defense 'jpeg'; available: temperature, gaussian-noise"):
        DEFENSES.canonical("jpeg")
    with pytest.raises(KeyError):
        ATTACKS["magic"]


def test_configs_keep_the_canonical_spelling() -> None:
    from extractguard.detect.policy import DetectionConfig
    from extractguard.gateway.config import parse_config

    with pytest.warns(DeprecatedNameWarning):
        cfg = parse_config({"model": {"name": "m", "victim": "digits-logreg"},
                            "tiers": {"free": {"defenses": [{"name": "gaussian_noise", "sigma": 0.1}]}}})
    assert cfg.tiers["free"].defenses == [{"name": "gaussian-noise", "sigma": 0.1}]
    assert DetectionConfig(detectors=["PRADA", "outputs"]).detectors == ["prada", "outputs"]


def test_listing_and_validating_names_import_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from extractguard.attacks import ATTACKS\nfrom extractguard.defenses import DEFENSES\n"
        "from extractguard.detect import DETECTORS\n"
        "[r.canonical(n) for r in (ATTACKS, DEFENSES, DETECTORS) for n in r]\n"
        "[e.paper for e in ATTACKS.entries()]\n"
        "print([m for m in ('torch', 'sklearn', 'scipy', 'matplotlib', 'numpy') if m in sys.modules])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_cli_prints_one_warning_line_per_old_name(tmp_path: Path) -> None:
    (tmp_path / "assess.yaml").write_text(
        "target: {victim: digits-logreg}\nattacks: [random, KNOCKOFF_ADAPTIVE]\nbudgets: [50]\n"
        "defenses:\n  rs: {defenses: [{name: reverse_sigmoid, beta: 0.7}]}\n"
        "  noise: {defenses: [{name: gaussian_noise, sigma: 0.1}]}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    # An unparseable gate rule stops the run right after the config is read.
    r = subprocess.run([sys.executable, "-m", "extractguard", "assess", "--config", "assess.yaml", "--fail-if", "nonsense"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and lines[-1].startswith("error:"), r.stderr
    warned = [ln for ln in lines if ln.startswith("warning:")]
    assert warned == [
        "warning: attack name 'KNOCKOFF_ADAPTIVE' is deprecated; write 'knockoff-adaptive'",
        "warning: defense name 'reverse_sigmoid' is deprecated; write 'reverse-sigmoid'",
        "warning: defense name 'gaussian_noise' is deprecated; write 'gaussian-noise'",
    ], r.stderr


def test_listing_commands_print_the_registries(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "250"}
    for command, registry in (("defenses", DEFENSES), ("detectors", DETECTORS)):
        r = subprocess.run([sys.executable, "-m", "extractguard", command], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        for entry in registry.entries():
            assert entry.name in r.stdout and entry.summary in r.stdout


def test_gate_rules_take_old_attack_spellings_and_judge_the_grid_attack() -> None:
    from extractguard.evaluate.gate import parse_rules

    with pytest.warns(DeprecatedNameWarning, match="knockoff-adaptive"):
        [rule] = parse_rules(["fidelity > 0.9 at 100 for attack=knockoff_adaptive"], [100], ["knockoff-adaptive"], ["open"])
    assert rule.scope == {"attack": "knockoff-adaptive"}
    with pytest.raises(ConfigurationError, match="not in the grid"):
        parse_rules(["fidelity > 0.9 for attack=nonsense"], [100], ["knockoff-adaptive"], ["open"])
