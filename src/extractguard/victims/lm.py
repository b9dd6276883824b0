"""Small causal transformer language models we own, trained locally and cached like the zoo.

These are the victims of language-model extraction (issue 18): a GPT-style decoder (Radford et
al. 2019: pre-LayerNorm blocks, learned positions, a final LayerNorm, then an *untied* output
projection ``W`` of shape (vocab, hidden)).  The last layer is what the softmax-bottleneck attack
(Carlini et al. 2024; Finlayson et al. 2024) reads out of the API, so the projection has no bias
and the vocabulary is larger than the hidden size: every logit vector then lies in the
``hidden``-dimensional column space of ``W``.

Everything is seeded: the BPE tokenizer (Sennrich et al. 2016, via the ``tokenizers`` library,
deterministic for a fixed corpus), the initial weights and the order of training windows.
Trained victims are cached under ``$EXTRACTGUARD_CACHE/lm/`` keyed by config, seed and
``LM_VERSION``, with their held-out perplexity and training time in ``meta.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from extractguard.data import default_cache_dir
from extractguard.data.lm_corpus import TextCorpus, load_lm_corpus
from extractguard.errors import ConfigurationError

if TYPE_CHECKING:  # torch and tokenizers load only when a victim is built
    import torch
    from tokenizers import Tokenizer

    from extractguard.oracle.text import TextAnswerSpec, TextOracle, TokenBudget

#: Bump when the recipe changes, so stale cached weights are not reused.
LM_VERSION = 2
#: Separates documents in training and starts every prompt (GPT-2's convention).
BOS = "<|endoftext|>"


@dataclass(frozen=True)
class LMConfig:
    """Architecture and training recipe of one LM victim."""

    corpus: str = "pydoc"
    vocab_size: int = 2048
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    context: int = 64
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100
    #: Validation loss is checked this often; the best checkpoint is kept (early stopping).
    eval_every: int = 100

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ConfigurationError(f"hidden size {self.hidden} is not divisible by {self.heads} heads")
        if self.vocab_size <= self.hidden:
            raise ConfigurationError(
                f"vocabulary ({self.vocab_size}) must be larger than the hidden size ({self.hidden})"
            )


#: The LM victims, by name.  Both train in ~1-3 minutes on 2 CPU cores (see benchmarks/RESULTS.md).
LM_VICTIMS: dict[str, LMConfig] = {
    "pydoc-lm64": LMConfig(hidden=64, heads=4),
    "pydoc-lm128": LMConfig(hidden=128, heads=4),
}
#: A victim that trains in about a second, for tests.
TINY_LM = LMConfig(
    vocab_size=400, hidden=16, layers=1, heads=2, context=32, steps=40, batch_size=16, warmup=5, eval_every=20
)


def _build_module(config: LMConfig) -> torch.nn.Module:
    """The decoder network (defined here so torch loads only when a victim is built)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(config.hidden)
            self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
            self.proj = nn.Linear(config.hidden, config.hidden)
            self.ln2 = nn.LayerNorm(config.hidden)
            self.mlp = nn.Sequential(
                nn.Linear(config.hidden, 4 * config.hidden), nn.GELU(), nn.Linear(4 * config.hidden, config.hidden)
            )

        def forward(
            self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
        ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            b, t, d = x.shape
            h = config.heads
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
            if past is not None:  # one new token attends to everything cached: no mask needed
                k = torch.cat([past[0], k], dim=2)
                v = torch.cat([past[1], v], dim=2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
            x = x + self.mlp(self.ln2(x))
            return x, (k, v)

    class DecoderLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(config.vocab_size, config.hidden)
            self.pos = nn.Embedding(config.context, config.hidden)
            self.blocks = nn.ModuleList(Block() for _ in range(config.layers))
            self.ln_f = nn.LayerNorm(config.hidden)
            self.head = nn.Linear(config.hidden, config.vocab_size, bias=False)

        def forward(
            self, idx: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
            start = 0 if past is None else past[0][0].shape[2]
            positions = torch.arange(start, start + idx.shape[1])
            x = self.tok(idx) + self.pos(positions)
            cache = []
            for i, block in enumerate(self.blocks):
                x, kv = block(x, None if past is None else past[i])
                cache.append(kv)
            return self.head(self.ln_f(x)), cache

    return DecoderLM()


def train_tokenizer(texts: tuple[str, ...] | list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE (as GPT-2) with ``BOS`` as token 0; deterministic for a fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def token_stream(tokenizer: Tokenizer, texts: tuple[str, ...] | list[str]) -> np.ndarray:
    """All texts as one id stream, each preceded by ``BOS``."""
    bos = tokenizer.token_to_id(BOS)
    ids: list[int] = []
    for enc in tokenizer.encode_batch(list(texts)):
        ids.append(bos)
        ids.extend(enc.ids)
    return np.asarray(ids, dtype=np.int64)


def perplexity(module: torch.nn.Module, stream: np.ndarray, context: int) -> float:
    """exp(mean next-token cross-entropy) over non-overlapping windows of ``context`` tokens."""
    return math.exp(mean_loss(module, stream, context))


def mean_loss(module: torch.nn.Module, stream: np.ndarray, context: int) -> float:
    """Mean next-token cross-entropy (nats) over non-overlapping windows of ``context`` tokens."""
    import torch
    from torch.nn import functional as F

    n = (len(stream) - 1) // context
    if n < 1:
        raise ConfigurationError("held-out text is shorter than one context window")
    x = torch.as_tensor(stream[: n * context].reshape(n, context))
    y = torch.as_tensor(stream[1 : n * context + 1].reshape(n, context))
    total = 0.0
    module.eval()
    with torch.no_grad():
        for i in range(0, n, 64):
            logits, _ = module(x[i : i + 64])
            flat = logits.reshape(-1, logits.shape[-1])
            total += F.cross_entropy(flat, y[i : i + 64].reshape(-1), reduction="sum").item()
    return total / (n * context)


def train_lm(
    config: LMConfig, stream: np.ndarray, seed: int, validation: np.ndarray
) -> tuple[torch.nn.Module, int]:
    """AdamW on random windows of the training stream, linear warm-up then cosine decay; the
    checkpoint with the lowest validation loss is kept (the corpus is small: ~100k tokens, so
    the wider model overfits well before the last step).  Returns it and its step."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(seed)
    module = _build_module(config)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        frac = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    module.train()
    span = config.context + 1
    best_loss, best_step, best_state = math.inf, 0, None
    for step in range(1, config.steps + 1):
        starts = rng.integers(0, len(stream) - span, size=config.batch_size)
        batch = torch.as_tensor(np.stack([stream[s : s + span] for s in starts]))
        logits, _ = module(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % config.eval_every == 0 or step == config.steps:
            loss_now = mean_loss(module, validation, config.context)
            module.train()
            if loss_now < best_loss:
                best_loss, best_step = loss_now, step
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return module, best_step


class TorchLanguageModel:
    """Serves a trained decoder to :class:`extractguard.oracle.text.TextOracle`.

    Batched: :meth:`prefill` runs one forward pass over a right-padded batch of prompts (causal
    attention makes padding after a prompt harmless) and :meth:`extend` adds one token per
    sequence using the KV cache, so generating ``m`` tokens costs ``m`` cheap passes, not ``m``
    passes over the whole prefix.
    """

    def __init__(self, module: torch.nn.Module, tokenizer: Tokenizer, context: int) -> None:
        self.module = module
        self.tokenizer = tokenizer
        self.context_length = context
        self.vocab_size = tokenizer.get_vocab_size()
        self.bos = tokenizer.token_to_id(BOS)

    def encode(self, text: str) -> list[int]:
        return [self.bos, *self.tokenizer.encode(text).ids]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def prefill(self, prompts: list[list[int]]) -> tuple[np.ndarray, Any]:
        """Next-token logits after each prompt, float64 (n, vocab); the cache is usable only
        when all prompts have the same length (the oracle groups them so)."""
        import torch

        lengths = [len(p) for p in prompts]
        width = max(lengths)
        batch = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            batch[i, : len(p)] = torch.as_tensor(p)
        with torch.no_grad():
            logits, cache = self.module(batch)
        last = logits[torch.arange(len(prompts)), torch.as_tensor(lengths) - 1]
        return last.double().numpy(), cache if len(set(lengths)) == 1 else None

    def extend(self, cache: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]:
        """Feed one token per sequence; next-token logits (n, vocab) and the grown cache."""
        import torch

        with torch.no_grad():
            logits, cache = self.module(torch.as_tensor(tokens, dtype=torch.long).reshape(-1, 1), cache)
        return logits[:, -1].double().numpy(), cache


@dataclass
class LMVictim:
    """A trained LM victim.  ``output_projection`` is the owner's ground truth for evaluation;
    an attack only ever holds the :class:`TextOracle` from :meth:`oracle`."""

    name: str
    config: LMConfig
    seed: int
    corpus: TextCorpus
    tokenizer: Tokenizer
    module: torch.nn.Module
    heldout_perplexity: float
    train_seconds: float
    best_step: int

    @property
    def hidden_size(self) -> int:
        return self.config.hidden

    def language_model(self) -> TorchLanguageModel:
        return TorchLanguageModel(self.module, self.tokenizer, self.config.context)

    def output_projection(self) -> np.ndarray:
        """The true ``W`` (vocab, hidden), float64."""
        return self.module.head.weight.detach().double().numpy().copy()  # type: ignore[union-attr]

    def oracle(
        self, spec: TextAnswerSpec | None = None, budget: TokenBudget | None = None, seed: int = 0
    ) -> TextOracle:
        """Fresh token-metered query access to this victim."""
        from extractguard.oracle.text import TextAnswerSpec, TextOracle, TokenBudget

        return TextOracle(self.language_model(), spec or TextAnswerSpec(), budget or TokenBudget(), seed=seed)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "corpus": self.corpus.source,
            "seed": self.seed,
            "config": asdict(self.config),
            "parameters": sum(p.numel() for p in self.module.parameters()),
            "heldout_perplexity": round(self.heldout_perplexity, 3),
            "train_seconds": round(self.train_seconds, 1),
            "best_step": self.best_step,
        }


def list_lm_victims() -> list[str]:
    return sorted(LM_VICTIMS)


def build_lm_victim(
    name: str,
    seed: int = 0,
    cache_dir: Path | None | bool = True,
    config: LMConfig | None = None,
) -> LMVictim:
    """Train (or load from cache) the LM victim ``name``, or a custom ``config`` under that name.

    ``cache_dir=True`` uses :func:`default_cache_dir`; ``False``/``None`` disables caching.
    """
    import torch
    from tokenizers import Tokenizer

    if config is None:
        try:
            config = LM_VICTIMS[name]
        except KeyError:
            raise ConfigurationError(f"unknown LM victim {name!r}; known: {', '.join(list_lm_victims())}") from None
    corpus = load_lm_corpus(config.corpus)
    cache = default_cache_dir() if cache_dir is True else (cache_dir or None)
    key = "-".join(f"{v}" for v in asdict(config).values())
    path = None if cache is None else Path(cache) / "lm" / f"{name}-seed{seed}-v{LM_VERSION}-{hash_key(key):x}"
    if path is not None and (path / "meta.json").is_file():
        try:
            meta = json.loads((path / "meta.json").read_text())
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            module = _build_module(config)
            module.load_state_dict(torch.load(path / "model.pt", weights_only=True))
            module.eval()
            ppl, seconds, best = meta["heldout_perplexity"], meta["train_seconds"], meta["best_step"]
            return LMVictim(name, config, seed, corpus, tokenizer, module, ppl, seconds, best)
        except Exception:  # noqa: BLE001 - corrupt or stale cache (tokenizers raises bare Exception): retrain
            pass
    t0 = time.process_time(), time.perf_counter()
    tokenizer = train_tokenizer(corpus.train, config.vocab_size)
    if tokenizer.get_vocab_size() != config.vocab_size:  # a small corpus may not fill the vocabulary
        config = replace(config, vocab_size=tokenizer.get_vocab_size())
    validation = token_stream(tokenizer, corpus.validation)
    module, best = train_lm(config, token_stream(tokenizer, corpus.train), seed, validation)
    wall = time.perf_counter() - t0[1]
    ppl = perplexity(module, token_stream(tokenizer, corpus.heldout), config.context)
    victim = LMVictim(name, config, seed, corpus, tokenizer, module, ppl, wall, best)
    if path is not None:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(tmp / "tokenizer.json"))
        torch.save(module.state_dict(), tmp / "model.pt")
        meta = {"heldout_perplexity": ppl, "train_seconds": wall, "train_cpu_seconds": time.process_time() - t0[0]}
        (tmp / "meta.json").write_text(json.dumps({**victim.describe(), **meta}, indent=1))
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    return victim


def hash_key(text: str) -> int:
    """A stable (not per-process salted) short hash of a config, for cache file names."""
    import hashlib

    return int(hashlib.sha1(text.encode()).hexdigest()[:10], 16)
