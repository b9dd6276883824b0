"""The softmax-bottleneck attack (Carlini et al. 2024; Finlayson et al. 2024): hidden size and projection."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from extractguard.attacks.logit_subspace import LogitSubspaceAttack, numerical_rank  # noqa: E402
from extractguard.data.lm_corpus import load_pydoc_corpus  # noqa: E402
from extractguard.errors import BudgetExceededError, ConfigurationError  # noqa: E402
from extractguard.oracle.text import TextAnswerSpec, TextOracle, TextRequest, TokenBudget  # noqa: E402
from extractguard.victims.lm import TINY_LM, LMVictim, build_lm_victim  # noqa: E402
from lm_helpers import tiny  # noqa: E402


# -- the softmax-bottleneck attack ----------------------------------------------------------------


def test_numerical_rank_measures_against_the_noise_floor() -> None:
    rng = np.random.default_rng(0)
    # Rank 7, the 7th direction 100x weaker (like a small LayerNorm bias), noise 1e-7.
    scales = np.array([1, 1, 1, 1, 1, 1, 0.01])
    M = (rng.normal(size=(60, 7)) * scales) @ rng.normal(size=(7, 200)) + 1e-7 * rng.normal(size=(60, 200))
    s = np.linalg.svd(M, compute_uv=False)
    rank, gap = numerical_rank(s)
    assert rank == 7 and gap > 3
    # With the 7th direction 10^4 times weaker, the largest drop is inside the signal and would
    # say 6; the floor still says 7.
    scales[-1] = 1e-4
    M = (rng.normal(size=(60, 7)) * scales) @ rng.normal(size=(7, 200)) + 1e-7 * rng.normal(size=(60, 200))
    s_weak = np.linalg.svd(M, compute_uv=False)
    assert np.argmax(-np.diff(np.log10(s_weak))) + 1 == 6
    assert numerical_rank(s_weak)[0] == 7
    # No floor (full rank), or too few trailing values: no answer rather than a guess.
    assert numerical_rank(np.linalg.svd(rng.normal(size=(60, 200)), compute_uv=False))[0] is None
    assert numerical_rank(s[:20])[0] is None


@pytest.mark.parametrize("hidden", [16, 24])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_logprobs_give_exact_hidden_size_and_projection(hidden, seed) -> None:
    v = tiny(hidden, seed)
    oracle = v.oracle(TextAnswerSpec.parse("full"))
    result = LogitSubspaceAttack(seed=seed).run(oracle, v.corpus.attacker)
    assert result.hidden_size == hidden
    assert result.gap_log10 > 3
    rms, rel = result.aligned_rms_error(v.output_projection())
    assert rel < 1e-3
    assert result.stats.requests == result.n_prompts <= hidden + 48
    # A wrong hidden size cannot align: one fewer dimension leaves a large error.
    short = replace(result, projection=result.projection[:, :-1])
    assert short.aligned_rms_error(v.output_projection())[1] > 100 * rel


@pytest.mark.parametrize(("hidden", "seed"), [(16, 0), (24, 1)])
def test_topk_with_logit_bias_reconstructs_the_same_subspace(hidden, seed) -> None:
    v = tiny(hidden, seed)
    oracle = v.oracle(TextAnswerSpec.parse("top5+bias"))
    result = LogitSubspaceAttack(seed=seed).run(oracle, v.corpus.attacker)
    assert result.hidden_size == hidden
    assert result.aligned_rms_error(v.output_projection())[1] < 1e-3
    per_prompt = -(-(v.config.vocab_size - 1) // 4)  # ceil((V-1)/(K-1)) requests per prompt
    assert result.stats.requests == per_prompt * result.n_prompts


@pytest.mark.parametrize("shape", ["text", "text+bias", "top5", "top1"])
def test_shapes_that_give_too_little_are_refused_in_one_line(shape) -> None:
    oracle = tiny().oracle(TextAnswerSpec.parse(shape))
    with pytest.raises(ConfigurationError) as info:
        LogitSubspaceAttack().run(oracle, tiny().corpus.attacker)
    assert "\n" not in str(info.value) and "logit-subspace" in str(info.value)
    assert oracle.stats().requests == 0


def test_top1_with_logit_bias_finds_hidden_size() -> None:
    v = tiny(16, 2)
    oracle = v.oracle(TextAnswerSpec.parse("top1+bias"))
    result = LogitSubspaceAttack(seed=2).run(oracle, v.corpus.attacker)
    assert result.hidden_size == 16
    assert result.aligned_rms_error(v.output_projection())[1] < 1e-3


class LowRankLM:
    """A synthetic 'model' whose logits are W x(prompt) with a wide range (tens of nats), so the
    top-1 reconstruction needs its second pass; no torch involved."""

    vocab_size, context_length = 300, 64

    def __init__(self, hidden: int, scale: float, seed: int) -> None:
        self.W = np.random.default_rng(seed).normal(size=(self.vocab_size, hidden)) * scale
        self.hidden = hidden

    def encode(self, text):
        return [0, *text.encode()[:40]]

    def decode(self, ids):
        return ""

    def prefill(self, prompts):
        X = np.stack([np.random.default_rng(list(p)).normal(size=self.hidden) for p in prompts])
        return X @ self.W.T, None

    def extend(self, cache, tokens):  # pragma: no cover - one-token requests only
        raise NotImplementedError


@pytest.mark.parametrize("shape", ["full", "top4+bias", "top1+bias"])
def test_every_shape_reconstructs_exact_logprobs_of_a_wide_range_model(shape) -> None:
    lm = LowRankLM(hidden=8, scale=3.0, seed=0)
    prompts = ["alpha beta", "gamma", "delta epsilon zeta"]
    truth = TextOracle(lm, TextAnswerSpec.parse("full")).complete(
        [TextRequest(p, max_tokens=1, logprobs=lm.vocab_size) for p in prompts]
    )
    oracle = TextOracle(lm, TextAnswerSpec.parse(shape))
    rows = LogitSubspaceAttack().reconstruct(oracle, prompts)
    for row, a in zip(rows, truth):
        want = np.empty(lm.vocab_size)
        want[a.top_ids[0]] = a.top_logprobs[0]
        assert np.ptp(want) > 20  # the regime where a single fixed bias would not do
        got, want = row - row.mean(), want - want.mean()
        assert np.abs(got - want).max() < 1e-8
    if shape == "top1+bias":
        assert oracle.stats().requests > len(prompts) * lm.vocab_size  # the second pass ran
    texts = [f"w{i} x{7 * i} y{13 * i}" for i in range(40)]
    result = LogitSubspaceAttack(prompts_per_round=8, margin=8).run(TextOracle(lm, TextAnswerSpec.parse(shape)), texts)
    assert result.hidden_size == 8


def test_budget_too_small_reports_no_hidden_size() -> None:
    v = tiny(24, 0)
    oracle = v.oracle(TextAnswerSpec.parse("full"), TokenBudget(max_requests=40))
    result = LogitSubspaceAttack().run(oracle, v.corpus.attacker)
    assert result.hidden_size is None and result.projection is None
    assert result.stats.requests <= 40
