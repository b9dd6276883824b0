"""Softmax-bottleneck extraction: a language model's hidden size and output projection, read
out of the logprobs its API returns.

Carlini et al. (2024), "Stealing Part of a Production Language Model", and Finlayson et al.
(2024), "Logits of API-Protected LLMs Leak Proprietary Information".  A decoder ends in
``logits = W x`` with ``W`` of shape (vocab, hidden) and ``vocab >> hidden``, so every logit
vector the model can ever produce lies in the ``hidden``-dimensional column space of ``W``.
Stack the logit vectors of ``n > hidden`` different prompts into an (n, vocab) matrix: its
singular values drop by orders of magnitude after the ``hidden``-th (the numerical rank), and
its top right singular vectors span ``W``'s columns, i.e. recover ``W`` up to an
(hidden x hidden) linear transform.

Logprobs are ``logits - logsumexp(logits)``: each vector is shifted along the all-ones
direction by an unknown amount.  We centre every vector (subtract its mean over the
vocabulary), which removes that shift exactly; the price is that the projection is recovered
up to the same centring, ``W - 1 mean(W)``, because adding a constant to a column of ``W``
never changes any logprob (softmax is shift-invariant).  Errors are therefore measured against
the centred true projection.

API shapes (see :class:`extractguard.oracle.text.TextAnswerSpec`):

- ``full``: one request per prompt returns the whole logprob vector;
- ``topK+bias`` (K >= 2): the paper's reconstruction.  Bias a reference token and K-1 others
  by +100 so exactly those K fill the top-K; the difference of two returned logprobs is the
  difference of their logits (the normaliser and the equal biases cancel).  ``ceil((V-1)/(K-1))``
  requests per prompt give the whole vector up to a shift, which centring removes;
- ``top1+bias``: only the top token's logprob is returned.  One unbiased request gives the top
  token ``t`` and its logprob ``p_t``.  Biasing token ``i`` by ``B`` then returns either ``i``
  (it became the top) with logprob ``y``, whence ``p_i = y - log(e^y + e^B (1 - e^y))``, or
  still ``t`` with logprob ``y``, whence ``p_i = log(e^(p_t - y) - 1) - log(e^B - 1)``.  Both
  are exact, but lose precision when the bias is far too small (the change in ``y`` drowns in
  rounding) or far too large (the rest of the distribution vanishes), so a first pass uses
  ``B = 10`` for every token and later passes re-ask only the imprecise ones, with
  ``B = p_t - p_i + 3`` from the coarse estimate (or 30 more/less when nothing was visible),
  which makes them the top by a margin that keeps the rest visible.  About ``V`` to ``2V``
  requests per prompt (Carlini et al. 2024, Sec. 5, derive the same identities);
- no logprobs, or top-K without ``logit_bias``, gives too little and is refused in one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from extractguard.errors import BudgetExceededError, ConfigurationError
from extractguard.oracle.text import MAX_BIAS, TextOracle, TextOracleStats, TextRequest

PAPERS = (
    "Carlini et al. 2024, Stealing Part of a Production Language Model; "
    "Finlayson et al. 2024, Logits of API-Protected LLMs Leak Proprietary Information"
)


@dataclass(frozen=True)
class LogitSubspaceResult:
    """What the attack learned, and what it cost.

    ``hidden_size`` is ``None`` when no clear gap appeared within the budget (then the hidden
    size is at least ``n_prompts - margin``).  ``projection`` (vocab, hidden_size) spans the
    centred output projection's column space.
    """

    shape: str
    hidden_size: int | None
    projection: np.ndarray | None
    singular_values: np.ndarray
    gap_log10: float
    n_prompts: int
    stats: TextOracleStats

    def aligned_rms_error(self, true_projection: np.ndarray) -> tuple[float, float]:
        """RMS error of the recovered projection after the least-squares (hidden x hidden)
        alignment ``min_G ||W_hat G - W_c||``, against the centred truth ``W_c``; also returned
        relative to the RMS of ``W_c`` (so 0.01 means a 1 % error)."""
        if self.projection is None:
            raise ConfigurationError("the attack found no hidden size, so there is no projection to align")
        truth = true_projection - true_projection.mean(axis=0, keepdims=True)
        if truth.shape[0] != self.projection.shape[0]:
            raise ConfigurationError(
                f"true projection has {truth.shape[0]} rows, the recovered one {self.projection.shape[0]}"
            )
        G, *_ = np.linalg.lstsq(self.projection, truth, rcond=None)
        rms = float(np.sqrt(np.mean((self.projection @ G - truth) ** 2)))
        return rms, rms / float(np.sqrt(np.mean(truth**2)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "api_shape": self.shape,
            "hidden_size_found": self.hidden_size,
            "gap_log10": round(self.gap_log10, 2),
            "prompts": self.n_prompts,
            **self.stats.to_dict(),
        }


def numerical_rank(
    singular_values: np.ndarray,
    tail: int = 16,
    min_gap_log10: float = 2.0,
    noise_spread_log10: float = 1.0,
    min_floor_depth_log10: float = 5.0,
) -> tuple[int | None, float]:
    """The rank of a signal-plus-rounding-noise matrix, measured against its observed noise floor.

    The last ``tail`` singular values are taken as the floor; they must lie at least
    ``min_floor_depth_log10`` decades below the largest value (rounding noise of float32 logits
    sits ~7 decades down; a tail that is still signal does not).  The rank is the number of values
    more than ``min_gap_log10`` decades above the floor's top, and it is accepted only if every
    other value is within ``noise_spread_log10`` of it (a noise bulk spreads, but not by decades),
    i.e. the spectrum splits cleanly into signal and noise.  Returns ``(rank or None, drop in
    decades at the rank)``.

    Why not simply the largest drop: in a decoder whose final LayerNorm has a small bias, the
    ``h``-th direction (the bias) is weak, and the drop *inside* the signal before it was two
    decades on our victims, close to the drop into the noise (three).
    """
    log = np.log10(np.maximum(np.asarray(singular_values, dtype=np.float64), 1e-300))
    if len(log) <= tail:
        return None, 0.0
    floor_top = float(log[-tail:].max())
    if log[0] - floor_top < min_floor_depth_log10:
        return None, 0.0  # the tail is not at rounding level: no floor observed yet
    signal = log > floor_top + min_gap_log10
    noise = log <= floor_top + noise_spread_log10
    rank = int(signal.sum())
    if rank == 0 or rank > len(log) - tail or not (signal | noise).all():
        return None, 0.0
    return rank, float(log[rank - 1] - log[rank])


class LogitSubspaceAttack:
    """Query prompts in rounds until the spectrum shows a clear, confirmed gap.

    Parameters
    ----------
    prompts_per_round:
        Prompts added per round (one oracle batch).
    margin:
        This many trailing singular values must be at the noise floor, so the floor is
        observed, not assumed (see :func:`numerical_rank`).
    min_gap_log10:
        How far above the floor's top, in decades, a singular value must be to count as signal
        (float32 logits put the floor 3-4 decades below the weakest signal direction).
    max_prompts:
        Stop (and report no hidden size) after this many prompts.
    max_prompt_words:
        Prompts are random prefixes of the attacker's paragraphs, up to this many words.
    """

    name = "logit-subspace"
    papers = PAPERS

    def __init__(
        self,
        prompts_per_round: int = 32,
        margin: int = 16,
        min_gap_log10: float = 2.0,
        max_prompts: int = 1024,
        max_prompt_words: int = 12,
        bias: float = MAX_BIAS,
        seed: int = 0,
    ) -> None:
        if prompts_per_round < 1 or margin < 1 or max_prompts < 2:
            raise ConfigurationError("prompts_per_round, margin must be >= 1 and max_prompts >= 2")
        self.prompts_per_round = prompts_per_round
        self.margin = margin
        self.min_gap_log10 = min_gap_log10
        self.max_prompts = max_prompts
        self.max_prompt_words = max_prompt_words
        self.bias = bias
        self.seed = seed

    @staticmethod
    def check_shape(oracle: TextOracle) -> str:
        """The method this API shape allows ("full", "topk-bias" or "top1-bias"), or one clear
        refusal raised before any query is paid."""
        spec = oracle.spec
        if spec.logprobs == "none":
            raise ConfigurationError(
                f"logit-subspace needs logprobs, but this API ({spec}) returns text only: nothing to measure"
            )
        if spec.logprobs == "full":
            return "full"
        if not spec.logit_bias:
            raise ConfigurationError(
                f"logit-subspace needs full logprobs or top-K logprobs with logit_bias; this API ({spec}) "
                "only shows the top-K of each distribution"
            )
        return "topk-bias" if spec.top_k >= 2 else "top1-bias"

    def run(self, oracle: TextOracle, attacker_texts: Sequence[str]) -> LogitSubspaceResult:
        """Extract from ``oracle`` using prompts drawn from ``attacker_texts``."""
        method = self.check_shape(oracle)
        prompts = self._prompts(oracle, attacker_texts)
        rows: list[np.ndarray] = []
        s = np.zeros(0)
        rank, gap, basis = None, 0.0, None
        for start in range(0, len(prompts), self.prompts_per_round):
            batch = prompts[start : start + self.prompts_per_round]
            try:
                rows.extend(self.reconstruct(oracle, batch, method))
            except BudgetExceededError:
                break
            Q = np.stack(rows)
            Q = Q - Q.mean(axis=1, keepdims=True)  # remove the unknown logsumexp shift per vector
            _, s, vt = np.linalg.svd(Q, full_matrices=False)
            r, gap = numerical_rank(s, self.margin, self.min_gap_log10)
            if r is not None:
                rank, basis = r, vt[:r].T * s[:r]
                break
        return LogitSubspaceResult(str(oracle.spec), rank, basis, s, gap, len(rows), oracle.stats())

    def reconstruct(self, oracle: TextOracle, prompts: list[str], method: str | None = None) -> list[np.ndarray]:
        """The next-token logprob vector after each prompt, up to an additive constant per
        vector, by whatever means the API shape allows (refused in one line if it allows none)."""
        method = method or self.check_shape(oracle)
        return self._methods[method](self, oracle, prompts)

    # -- prompts and per-shape logit reconstruction --------------------------------------------

    def _prompts(self, oracle: TextOracle, texts: Sequence[str]) -> list[str]:
        """Distinct random word-prefixes of the attacker's texts that fit the context."""
        rng = np.random.default_rng(self.seed)
        words = [t.split() for t in texts if t.split()]
        if not words:
            raise ConfigurationError("logit-subspace needs some attacker text to build prompts from")
        seen: set[str] = set()
        out: list[str] = []
        for _ in range(20 * self.max_prompts):
            if len(out) >= self.max_prompts:
                break
            w = words[int(rng.integers(len(words)))]
            n = int(rng.integers(1, min(len(w), self.max_prompt_words) + 1))
            start = int(rng.integers(0, len(w) - n + 1))
            p = " ".join(w[start : start + n])
            if p not in seen and oracle.count_tokens(p) + 1 <= oracle.context_length:
                seen.add(p)
                out.append(p)
        return out

    def _full(self, oracle: TextOracle, prompts: list[str]) -> list[np.ndarray]:
        V = oracle.vocab_size
        answers = oracle.complete([TextRequest(p, max_tokens=1, temperature=0.0, logprobs=V) for p in prompts])
        rows = []
        for a in answers:
            assert a.top_ids is not None and a.top_logprobs is not None
            v = np.empty(V)
            v[a.top_ids[0]] = a.top_logprobs[0]
            rows.append(v)
        return rows

    def _topk_bias(self, oracle: TextOracle, prompts: list[str]) -> list[np.ndarray]:
        """Logit differences to reference token 0, K-1 new tokens per request (all K biased
        equally, so they are exactly the top-K and the bias cancels in differences)."""
        V, K = oracle.vocab_size, oracle.spec.top_k
        ref = 0
        others = np.arange(1, V)
        groups = [others[i : i + K - 1] for i in range(0, len(others), K - 1)]
        biases = [{ref: self.bias, **{int(t): self.bias for t in g}} for g in groups]
        requests = [
            TextRequest(p, max_tokens=1, temperature=0.0, logprobs=K, logit_bias=b) for p in prompts for b in biases
        ]
        answers = oracle.complete(requests)
        rows = []
        per = len(groups)
        for j in range(len(prompts)):
            v = np.zeros(V)
            for a, g in zip(answers[j * per : (j + 1) * per], groups):
                assert a.top_ids is not None and a.top_logprobs is not None
                got = dict(zip(a.top_ids[0].tolist(), a.top_logprobs[0].tolist()))
                if ref not in got or any(int(t) not in got for t in g):
                    raise ConfigurationError(
                        "logit_bias did not move the chosen tokens into the top-K (logit range above "
                        f"{self.bias:g}?); the top-K reconstruction cannot proceed"
                    )
                for t in g:
                    v[int(t)] = got[int(t)] - got[ref]
            rows.append(v)
        return rows


    def _top1_bias(self, oracle: TextOracle, prompts: list[str]) -> list[np.ndarray]:
        """Full logprob vectors from the top-1 logprob alone (see the module docstring)."""
        V = oracle.vocab_size
        base = oracle.complete([TextRequest(p, max_tokens=1, temperature=0.0, logprobs=1) for p in prompts])
        tops = []
        for a in base:
            assert a.top_ids is not None and a.top_logprobs is not None
            tops.append((int(a.top_ids[0, 0]), float(a.top_logprobs[0, 0])))
        rows = [np.full(V, np.nan) for _ in prompts]
        for j, (t, p_t) in enumerate(tops):
            rows[j][t] = p_t
        asks = [(j, i, FIRST_PASS_BIAS) for j, (t, _) in enumerate(tops) for i in range(V) if i != t]
        for _ in range(MAX_PASSES):
            answers = oracle.complete(
                [
                    TextRequest(prompts[j], max_tokens=1, temperature=0.0, logprobs=1, logit_bias={i: b})
                    for j, i, b in asks
                ]
            )
            retry = []
            for (j, i, b), a in zip(asks, answers):
                assert a.top_ids is not None and a.top_logprobs is not None
                top, y = int(a.top_ids[0, 0]), float(a.top_logprobs[0, 0])
                t, p_t = tops[j]
                if top == i:  # lifted to the top: y = p_i + b - log(1 + (e^b - 1) e^p_i)
                    if y < -PRECISE:
                        rows[j][i] = y - np.logaddexp(y, b + np.log(-np.expm1(y)))
                        continue
                    # Overshot: the rest of the distribution is (nearly) invisible; aim lower.
                    estimate = y - np.logaddexp(y, b + np.log(-np.expm1(y))) if y < 0 else None
                    retry.append((j, i, b - OVERSHOOT_STEP if estimate is None else p_t - estimate + 3.0))
                    continue
                d = p_t - y  # still below the top: d = log(1 + (e^b - 1) e^p_i)
                if d > PRECISE:
                    rows[j][i] = float(np.log(np.expm1(d)) - np.log(np.expm1(b)))
                elif d > 0:  # visible but imprecise: aim from the coarse estimate
                    retry.append((j, i, p_t - float(np.log(np.expm1(d)) - np.log(np.expm1(b))) + 3.0))
                elif b < self.bias:
                    retry.append((j, i, b + OVERSHOOT_STEP))
                else:
                    raise ConfigurationError(
                        f"a bias of {b:g} could not lift token {i} high enough to read its logprob; "
                        "the top-1 reconstruction cannot proceed"
                    )
            if not retry:
                break
            asks = [(j, i, float(np.clip(b, -self.bias, self.bias))) for j, i, b in retry]
        else:
            raise ConfigurationError(
                f"the top-1 reconstruction did not settle within {MAX_PASSES} passes of logit_bias requests"
            )
        return rows

    _methods = {"full": _full, "topk-bias": _topk_bias, "top1-bias": _top1_bias}


#: Top-1 reconstruction: first-pass bias; step when the answer shows nothing; the smallest
#: logprob change read as precise (float64 answers); passes before giving up.
FIRST_PASS_BIAS = 10.0
OVERSHOOT_STEP = 30.0
PRECISE = 1e-6
MAX_PASSES = 6


def expected_requests(vocab_size: int, top_k: int) -> int:
    """Requests per prompt for the top-K + logit-bias reconstruction."""
    return math.ceil((vocab_size - 1) / (top_k - 1))
