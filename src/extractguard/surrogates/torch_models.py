"""PyTorch students (and victims) with a scikit-learn-style interface.

One estimator, :class:`TorchClassifier`, trains on hard labels (int class per row) or soft
labels (a probability vector per row).  Soft labels use the cross-entropy to the teacher's
distribution, which equals KL(teacher || student) up to a constant: the loss of Hinton et al.
(2015) distillation and of Knockoff Nets (Orekondy 2019).  The victim zoo trains its neural
victims with the same class on true labels, so victims and surrogates share one code path.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from extractguard.errors import ConfigurationError

Arch = Literal["linear", "mlp", "cnn"]


class Standardize(nn.Module):
    """Fixed input scaling stored as buffers, so an exported module takes raw inputs."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_network(arch: Arch, input_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """The bare network (no scaling): logits for inputs shaped ``(n, *input_shape)``."""
    d = int(np.prod(input_shape))
    if arch == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(d, n_classes))
    if arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = d
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        return nn.Sequential(*layers)
    if arch == "cnn":
        convs: list[nn.Module] = []
        if len(input_shape) == 2:  # (H, W): add the channel axis
            input_shape = (1, *input_shape)
            convs.append(nn.Unflatten(1, (1, input_shape[1])))
        if len(input_shape) != 3:
            raise ConfigurationError(f"a CNN needs image inputs (C, H, W), got shape {input_shape}")
        c, h, w = input_shape
        # Strided convolutions instead of conv+pool: about half the CPU time per step on
        # 2 cores for the same fidelity, which keeps `assess` within its time budget.
        h1, w1 = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        h2, w2 = (h1 - 1) // 2 + 1, (w1 - 1) // 2 + 1
        head = hidden[0] if hidden else 128
        convs += [
            nn.Conv2d(c, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        ]
        return nn.Sequential(*convs, nn.Flatten(), nn.Linear(32 * h2 * w2, head), nn.ReLU(), nn.Linear(head, n_classes))
    raise ConfigurationError(f"unknown architecture {arch!r}; choose linear, mlp or cnn")


class TorchClassifier:
    """A small neural classifier trained with Adam and a cosine learning-rate schedule.

    The number of optimiser steps is ``epochs`` passes over the data, clipped to
    ``[min_steps, max_steps]``: tiny transcripts (50 queries) still get enough updates to fit,
    and large ones stay within a predictable time on a 2-core CPU.

    Parameters
    ----------
    arch: ``linear``, ``mlp`` or ``cnn``.
    input_shape: shape of one input row (e.g. ``(1, 28, 28)``).
    n_classes: number of classes.
    hidden: hidden widths (MLP) or the dense head width (CNN).
    epochs, min_steps, max_steps, batch_size, lr, weight_decay: training schedule.
    warm_start: when True, a second ``fit`` continues from the fitted network (keeping its input
        scaling) with a fresh Adam and a new cosine cycle: a warm restart (Loshchilov & Hutter
        2017).  Active-learning attacks use it to grow one student round by round instead of
        retraining from scratch each round.
    scale_from: rows to compute the input scaling from instead of the training rows, e.g. an
        attacker's whole unlabeled pool: it costs no queries and gives steadier statistics than
        the few rows answered so far (it matters most for per-feature scaling of tabular data).
    seed: seeds initialisation and shuffling; training is deterministic for a given seed.
    """

    def __init__(
        self,
        arch: Arch = "mlp",
        input_shape: tuple[int, ...] = (1,),
        n_classes: int = 2,
        hidden: tuple[int, ...] = (128,),
        epochs: int = 20,
        min_steps: int = 200,
        max_steps: int = 1500,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warm_start: bool = False,
        scale_from: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.arch = arch
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.hidden = tuple(hidden)
        self.epochs = epochs
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warm_start = warm_start
        self.scale_from = scale_from
        self.seed = seed

    def schedule_steps(self, n: int, min_steps: int | None = None) -> int:
        """Optimiser steps a from-scratch fit on ``n`` rows takes: ``epochs`` passes, clipped to
        ``[min_steps, max_steps]`` (``min_steps`` defaults to the estimator's own floor)."""
        per_epoch = math.ceil(n / min(self.batch_size, n))
        floor = self.min_steps if min_steps is None else min_steps
        return int(np.clip(self.epochs * per_epoch, floor, self.max_steps))

    def _scaling(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self.input_shape) >= 2:
            # Images: one scalar mean/std, since per-pixel std is zero on blank borders.
            mean = np.full(self.input_shape, X.mean(), dtype=np.float32)
            std = np.full(self.input_shape, max(float(X.std()), 1e-6), dtype=np.float32)
        else:
            mean = X.mean(axis=0).astype(np.float32).reshape(self.input_shape)
            std = np.maximum(X.std(axis=0), 1e-6).astype(np.float32).reshape(self.input_shape)
        return mean, std

    def fit(self, X: np.ndarray, y: np.ndarray, n_steps: int | None = None) -> TorchClassifier:
        """Fit on rows ``X`` (n, n_features) and labels ``y``: (n,) ints or (n, C) probabilities.

        ``n_steps`` overrides the schedule's step count for this call (a short fine-tune of a
        warm-started student, say).
        """
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.shape[0] == 0:
            raise ConfigurationError("cannot fit a surrogate on zero examples")
        if y.ndim == 1:
            targets = np.zeros((y.shape[0], self.n_classes), dtype=np.float32)
            targets[np.arange(y.shape[0]), y.astype(np.int64)] = 1.0
        else:
            targets = np.asarray(y, dtype=np.float32)
        if targets.shape != (X.shape[0], self.n_classes):
            raise ConfigurationError(f"labels of shape {y.shape} do not match {X.shape[0]} rows x {self.n_classes} classes")
        if n_steps is not None and n_steps < 1:
            raise ConfigurationError(f"n_steps must be at least 1, got {n_steps}")
        warm = self.warm_start and hasattr(self, "module_")
        self.n_fits_ = getattr(self, "n_fits_", 0) + 1 if warm else 1
        with torch.random.fork_rng(devices=[]):
            # Each warm fit gets its own stream, so a grown transcript is not shuffled like the last.
            seed = self.seed + 7919 * (self.n_fits_ - 1)
            torch.manual_seed(seed)
            if not warm:
                basis = X if self.scale_from is None else np.asarray(self.scale_from, dtype=np.float32).reshape(-1, X.shape[1])
                mean, std = self._scaling(basis)
                net = build_network(self.arch, self.input_shape, self.n_classes, self.hidden)
                self.module_ = nn.Sequential(Standardize(mean, std), net)
            gen = torch.Generator().manual_seed(seed)
            xt = torch.from_numpy(X).reshape(X.shape[0], *self.input_shape)
            tt = torch.from_numpy(targets)
            n = X.shape[0]
            bs = min(self.batch_size, n)
            steps = int(n_steps) if n_steps is not None else self.schedule_steps(n)
            opt = torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            self.module_.train()
            step = 0
            while step < steps:
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, bs):
                    if step >= steps:
                        break
                    idx = perm[start : start + bs]
                    logits = self.module_(xt[idx])
                    loss = -(tt[idx] * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
            self.module_.eval()
            self.n_steps_ = steps
            self.final_loss_ = float(loss.detach())
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits, shape (n, n_classes)."""
        xt = torch.from_numpy(np.asarray(X, dtype=np.float32)).reshape(-1, *self.input_shape)
        out = []
        with torch.no_grad():
            for start in range(0, xt.shape[0], 2048):
                out.append(self.module_(xt[start : start + 2048]).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.empty((0, self.n_classes))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.decision_function(X)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decision_function(X).argmax(axis=1)
