"""The token-metered oracle for language models: a completions API, as an attacker sees one.

One request is a prompt, ``max_tokens``, a temperature and optionally ``logprobs`` (how many
top alternatives to return per generated token) and ``logit_bias`` (token id -> additive bias in
[-100, 100]), as the OpenAI completions API defines them.  What the API exposes is fixed by a
:class:`TextAnswerSpec` (text only; top-K logprobs; full logprobs; logit bias allowed or not):
asking for more is refused.

The budget counts requests and tokens, prompt and completion tokens priced separately per
1,000 like real providers (a prompt's tokens include the start token the model prepends).  A batch that could exceed the budget (prompt tokens + the
``max_tokens`` it reserves) is refused whole before it reaches the model, so a refused batch
costs nothing.  Every answer is recorded in the transcript before it is returned.

Logprobs are those of the distribution the model serves *after* ``logit_bias`` and at
temperature 1 (the temperature only changes sampling), computed in float64 from the model's
logits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from extractguard.errors import BudgetExceededError, ConfigurationError

#: The OpenAI API's limits on logit bias values and entries per request.
MAX_BIAS = 100.0
MAX_BIAS_ENTRIES = 300

LogprobsMode = Literal["none", "top", "full"]


class LanguageModel(Protocol):
    """What the oracle needs from a served LM (see ``victims.lm.TorchLanguageModel``)."""

    vocab_size: int
    context_length: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, Any]: ...

    def extend(self, cache: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]: ...


@dataclass(frozen=True)
class TextAnswerSpec:
    """The API shape: how much of each next-token distribution a caller may see.

    ``logprobs="none"`` is text only; ``"top"`` allows up to ``top_k`` alternatives per token;
    ``"full"`` allows the whole vocabulary.  ``logit_bias`` says whether requests may bias tokens.
    """

    logprobs: LogprobsMode = "full"
    top_k: int = 5
    logit_bias: bool = True

    def __post_init__(self) -> None:
        if self.logprobs not in ("none", "top", "full"):
            raise ConfigurationError(f"logprobs must be none, top or full; got {self.logprobs!r}")
        if self.logprobs == "top" and self.top_k < 1:
            raise ConfigurationError(f"top-K logprobs need K >= 1; got {self.top_k}")

    @classmethod
    def parse(cls, text: str) -> TextAnswerSpec:
        """``text``, ``top5``, ``full``, each optionally ``+bias``: e.g. ``top5+bias``."""
        raw = text.strip().lower()
        base, plus, extra = raw.partition("+")
        if plus and extra != "bias":
            raise ConfigurationError(f"LM output shapes look like text, topK or full, optionally +bias; got {text!r}")
        bias = bool(plus)
        if base == "text":
            return cls("none", 0, bias)
        if base == "full":
            return cls("full", 0, bias)
        if base.startswith("top") and base[3:].isdigit():
            return cls("top", int(base[3:]), bias)
        raise ConfigurationError(f"LM output shapes look like text, topK or full, optionally +bias; got {text!r}")

    def max_logprobs(self, vocab_size: int) -> int:
        return {"none": 0, "top": min(self.top_k, vocab_size), "full": vocab_size}[self.logprobs]

    def __str__(self) -> str:
        base = {"none": "text", "top": f"top{self.top_k}", "full": "full"}[self.logprobs]
        return base + ("+bias" if self.logit_bias else "")


@dataclass(frozen=True)
class TextRequest:
    """One completions call.  ``logprobs`` = K alternatives per generated token (0 = none)."""

    prompt: str
    max_tokens: int = 16
    temperature: float = 1.0
    logprobs: int = 0
    logit_bias: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TextCompletion:
    """The answer: generated token ids and text, and per generated token (if asked) the ids and
    logprobs of the top-``K`` alternatives, highest first (shape (n_generated, K))."""

    text: str
    tokens: tuple[int, ...]
    prompt_tokens: int
    top_ids: np.ndarray | None = None
    top_logprobs: np.ndarray | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class TokenBudget:
    """Limits and prices.  ``None`` means unlimited; prices are per 1,000 tokens."""

    max_tokens: int | None = None
    max_requests: int | None = None
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_requests"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be >= 0; got {value}")


@dataclass(frozen=True)
class TextOracleStats:
    """What an extraction has cost so far."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    spend: float
    seconds_in_model: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "spend": round(self.spend, 6),
            "seconds_in_model": round(self.seconds_in_model, 3),
        }


@dataclass
class TextTranscript:
    """Every (request, answer) pair in order, recorded before the caller sees the answer."""

    entries: list[tuple[TextRequest, TextCompletion]] = field(default_factory=list)

    def record(self, request: TextRequest, answer: TextCompletion) -> None:
        self.entries.append((request, answer))


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64, stable."""
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


class TextOracle:
    """Budgeted, transcripted access to a language model through a completions-style API."""

    def __init__(
        self,
        model: LanguageModel,
        spec: TextAnswerSpec | None = None,
        budget: TokenBudget | None = None,
        transcript: TextTranscript | None = None,
        seed: int = 0,
    ) -> None:
        self._model = model
        self.spec = spec or TextAnswerSpec()
        self.budget = budget or TokenBudget()
        self.transcript = transcript if transcript is not None else TextTranscript()
        self._rng = np.random.default_rng(seed)
        self._requests = 0
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._seconds = 0.0

    # What a caller may know about the API without querying it (as a provider's docs say).
    @property
    def vocab_size(self) -> int:
        return self._model.vocab_size

    @property
    def context_length(self) -> int:
        return self._model.context_length

    def count_tokens(self, prompt: str) -> int:
        """Prompt tokens a request would be billed (providers publish their tokenizers)."""
        return len(self._model.encode(prompt))

    def stats(self) -> TextOracleStats:
        spend = (
            self._prompt_tokens * self.budget.price_prompt_per_1k
            + self._completion_tokens * self.budget.price_completion_per_1k
        ) / 1000.0
        return TextOracleStats(self._requests, self._prompt_tokens, self._completion_tokens, spend, self._seconds)

    def complete(self, requests: Sequence[TextRequest]) -> list[TextCompletion]:
        """Answer a batch of requests, all or nothing (validation and budget are checked first)."""
        encoded = [self._validate(r) for r in requests]
        self._charge_check(requests, encoded)
        t0 = time.perf_counter()
        answers: list[TextCompletion | None] = [None] * len(requests)
        single = [i for i, r in enumerate(requests) if r.max_tokens == 1]
        multi = [i for i, r in enumerate(requests) if r.max_tokens > 1]
        if single:
            self._answer_single(requests, encoded, single, answers)
        by_length: dict[int, list[int]] = {}
        for i in multi:
            by_length.setdefault(len(encoded[i]), []).append(i)
        for group in by_length.values():
            self._answer_generate(requests, encoded, group, answers)
        for i, r in enumerate(requests):
            if answers[i] is None:  # max_tokens == 0: an echo-free, empty completion
                answers[i] = TextCompletion("", (), len(encoded[i]))
        self._seconds += time.perf_counter() - t0
        out: list[TextCompletion] = []
        for r, a in zip(requests, answers):
            assert a is not None
            self.transcript.record(r, a)
            self._requests += 1
            self._prompt_tokens += a.prompt_tokens
            self._completion_tokens += a.completion_tokens
            out.append(a)
        return out

    # -- validation and budget ---------------------------------------------------------------

    def _validate(self, r: TextRequest) -> list[int]:
        if not isinstance(r.prompt, str):
            raise ConfigurationError("a prompt must be a string")
        if r.max_tokens < 0:
            raise ConfigurationError(f"max_tokens must be >= 0; got {r.max_tokens}")
        if not (r.temperature >= 0 and np.isfinite(r.temperature)):
            raise ConfigurationError(f"temperature must be finite and >= 0; got {r.temperature}")
        allowed = self.spec.max_logprobs(self.vocab_size)
        if r.logprobs < 0 or r.logprobs > allowed:
            what = "returns no logprobs" if allowed == 0 else f"returns at most {allowed} logprobs per token"
            raise ConfigurationError(f"this API ({self.spec}) {what}; request asked for {r.logprobs}")
        if r.logit_bias:
            if not self.spec.logit_bias:
                raise ConfigurationError(f"this API ({self.spec}) does not accept logit_bias")
            if len(r.logit_bias) > MAX_BIAS_ENTRIES:
                raise ConfigurationError(f"logit_bias may name at most {MAX_BIAS_ENTRIES} tokens; got {len(r.logit_bias)}")
            for tok, b in r.logit_bias.items():
                if not (0 <= int(tok) < self.vocab_size) or not (-MAX_BIAS <= b <= MAX_BIAS):
                    raise ConfigurationError(
                        f"logit_bias entries need a token id in [0, {self.vocab_size}) and a bias in "
                        f"[-{MAX_BIAS:g}, {MAX_BIAS:g}]; got {tok}: {b}"
                    )
        ids = self._model.encode(r.prompt)
        if len(ids) + r.max_tokens > self.context_length:
            raise ConfigurationError(
                f"prompt ({len(ids)} tokens) + max_tokens ({r.max_tokens}) exceeds the context of "
                f"{self.context_length} tokens"
            )
        return ids

    def _charge_check(self, requests: Sequence[TextRequest], encoded: list[list[int]]) -> None:
        b = self.budget
        if b.max_requests is not None and self._requests + len(requests) > b.max_requests:
            raise BudgetExceededError(
                f"request budget exhausted: {self._requests} used + {len(requests)} asked > {b.max_requests}"
            )
        if b.max_tokens is not None:
            asked = sum(len(e) + r.max_tokens for r, e in zip(requests, encoded))
            used = self._prompt_tokens + self._completion_tokens
            if used + asked > b.max_tokens:
                raise BudgetExceededError(
                    f"token budget exhausted: {used} used + up to {asked} asked > {b.max_tokens}"
                )

    # -- inference ---------------------------------------------------------------------------

    def _biased(self, logits: np.ndarray, r: TextRequest) -> np.ndarray:
        if not r.logit_bias:
            return logits
        z = logits.copy()
        for tok, b in r.logit_bias.items():
            z[int(tok)] += b
        return z

    def _pick(self, z: np.ndarray, r: TextRequest) -> tuple[int, np.ndarray]:
        """Sample (or argmax at temperature 0) from biased logits ``z``; return the token and
        the log-probabilities the API reports."""
        logp = log_softmax(z[None])[0]
        if r.temperature == 0:
            return int(np.argmax(z)), logp
        p = np.exp(log_softmax(z[None] / r.temperature)[0])
        return int(self._rng.choice(len(p), p=p / p.sum())), logp

    def _top(self, logp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k >= len(logp):
            order = np.argsort(-logp, kind="stable")
        else:
            part = np.argpartition(-logp, k - 1)[:k]
            order = part[np.argsort(-logp[part], kind="stable")]
        return order, logp[order]

    def _answer_single(
        self,
        requests: Sequence[TextRequest],
        encoded: list[list[int]],
        idx: list[int],
        answers: list[TextCompletion | None],
    ) -> None:
        """One-token requests: one forward pass over the distinct prompts (a server's prefix
        cache would do the same), then each request's bias, logprobs and sample."""
        unique: dict[tuple[int, ...], int] = {}
        for i in idx:
            unique.setdefault(tuple(encoded[i]), len(unique))
        logits, _ = self._model.prefill([list(k) for k in unique])
        for i in idx:
            r = requests[i]
            z = self._biased(logits[unique[tuple(encoded[i])]], r)
            tok, logp = self._pick(z, r)
            answers[i] = self._completion(r, encoded[i], [tok], [logp])

    def _answer_generate(
        self,
        requests: Sequence[TextRequest],
        encoded: list[list[int]],
        idx: list[int],
        answers: list[TextCompletion | None],
    ) -> None:
        """Same-length prompts: one batched prefill, then one KV-cached step per new token."""
        logits, cache = self._model.prefill([encoded[i] for i in idx])
        steps = max(requests[i].max_tokens for i in idx)
        tokens: list[list[int]] = [[] for _ in idx]
        logps: list[list[np.ndarray]] = [[] for _ in idx]
        for step in range(steps):
            nxt = np.zeros(len(idx), dtype=np.int64)
            for j, i in enumerate(idx):
                r = requests[i]
                if step < r.max_tokens:
                    tok, logp = self._pick(self._biased(logits[j], r), r)
                    tokens[j].append(tok)
                    logps[j].append(logp)
                    nxt[j] = tok
            if step + 1 < steps:
                logits, cache = self._model.extend(cache, nxt)
        for j, i in enumerate(idx):
            answers[i] = self._completion(requests[i], encoded[i], tokens[j], logps[j])

    def _completion(self, r: TextRequest, prompt: list[int], toks: list[int], logps: list[np.ndarray]) -> TextCompletion:
        top_ids = top_lp = None
        if r.logprobs:
            pairs = [self._top(lp, r.logprobs) for lp in logps]
            top_ids = np.stack([p[0] for p in pairs])
            top_lp = np.stack([p[1] for p in pairs])
        return TextCompletion(self._model.decode(toks), tuple(toks), len(prompt), top_ids, top_lp)
