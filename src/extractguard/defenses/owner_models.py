"""The small networks some defenses train from the owner's model and data.

MAD needs a stand-in for the attacker's student (to know which way its gradient points) and
adaptive misinformation needs a model that is confidently wrong.  Both are small torch networks
of the family an attacker would pick for the schema (CNN for images, MLP otherwise), trained
for a fixed number of steps so fitting a defense takes seconds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from extractguard.errors import ConfigurationError
from extractguard.oracle.targets import Target
from extractguard.surrogates.torch_models import Standardize, TorchClassifier, build_network


def owner_rows(defense: str, target: Target, X: np.ndarray | None) -> np.ndarray:
    """Validate the owner's data for fitting ``defense``; it is required, not optional."""
    if X is None:
        raise ConfigurationError(
            f"defense {defense!r} is fitted from the owner's data: pass rows to fit(target, X)"
        )
    rows = target.schema.validate(X, what=f"{defense} fitting data")
    if rows.shape[0] < 2:
        raise ConfigurationError(f"defense {defense!r} needs at least 2 rows of owner data, got {rows.shape[0]}")
    return rows


def arch_for(target: Target) -> str:
    return "cnn" if target.schema.is_image else "mlp"


def fit_student(target: Target, X: np.ndarray, steps: int, seed: int) -> TorchClassifier:
    """A student distilled from the target's probabilities on ``X`` (soft-label cross-entropy)."""
    schema = target.schema
    clf = TorchClassifier(
        arch_for(target),  # type: ignore[arg-type]
        schema.input_shape,
        schema.n_classes,
        hidden=(64,),
        epochs=1,
        min_steps=steps,
        max_steps=steps,
        seed=seed,
    )
    return clf.fit(X, target.predict(X).probabilities)


class WrongModel:
    """A network trained to put as little probability as possible on the target's label.

    Kariyappa & Qureshi (2020) train their misinformation function with the loss
    ``-log(1 - p_y(x))``: minimised when the correct class gets probability 0, without pushing
    any particular wrong class, so its answers look like plausible, confident mistakes.
    TorchClassifier only knows cross-entropy, hence this short loop.
    """

    def __init__(self, steps: int = 300, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> None:
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def fit(self, target: Target, X: np.ndarray) -> WrongModel:
        schema = target.schema
        labels = target.predict(X).probabilities.argmax(axis=1)
        Xf = np.asarray(X, dtype=np.float32)
        if schema.is_image:
            mean = np.full(schema.input_shape, Xf.mean(), dtype=np.float32)
            std = np.full(schema.input_shape, max(float(Xf.std()), 1e-6), dtype=np.float32)
        else:
            mean = Xf.mean(axis=0).reshape(schema.input_shape)
            std = np.maximum(Xf.std(axis=0), 1e-6).astype(np.float32).reshape(schema.input_shape)
        self.input_shape = schema.input_shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = build_network(arch_for(target), schema.input_shape, schema.n_classes, (64,))  # type: ignore[arg-type]
            self.module_ = nn.Sequential(Standardize(mean, std), net)
            gen = torch.Generator().manual_seed(self.seed)
            xt = torch.from_numpy(Xf).reshape(-1, *schema.input_shape)
            yt = torch.from_numpy(labels.astype(np.int64))
            opt = torch.optim.Adam(self.module_.parameters(), lr=self.lr)
            n = xt.shape[0]
            bs = min(self.batch_size, n)
            self.module_.train()
            for _ in range(self.steps):
                idx = torch.randint(0, n, (bs,), generator=gen)
                logp = torch.log_softmax(self.module_(xt[idx]), dim=1)
                p_true = logp.gather(1, yt[idx, None]).exp().squeeze(1)
                loss = -torch.log1p(-p_true.clamp(max=1 - 1e-6)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            self.module_.eval()
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.asarray(X, dtype=np.float32)).reshape(-1, *self.input_shape)
        with torch.no_grad():
            return torch.softmax(self.module_(xt), dim=1).numpy().astype(np.float64)
