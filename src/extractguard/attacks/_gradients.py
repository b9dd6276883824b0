"""Input gradients of a fitted student, shared by the gradient-guided strategies.

Jacobian augmentation (Papernot et al. 2017) and DFAL (Ducoffe & Precioso 2018) both need
d(student output)/d(input).  Only torch students have them; scikit-learn trees do not, so those
strategies fall back to a small differentiable helper student (see the callers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def torch_module(surrogate: Any) -> nn.Module | None:
    """The fitted torch module behind a surrogate (also through ``surrogate="select"``), else None."""
    inner = getattr(surrogate, "model_", surrogate)  # SelectedSurrogate wraps the winner
    module = getattr(inner, "module_", None)
    return module if isinstance(module, nn.Module) else None


def _as_input(module_owner: Any, X: np.ndarray) -> torch.Tensor:
    inner = getattr(module_owner, "model_", module_owner)
    shape = tuple(getattr(inner, "input_shape", (X.shape[1],)))
    return torch.from_numpy(np.asarray(X, dtype=np.float32)).reshape(-1, *shape)


def class_gradients(surrogate: Any, X: np.ndarray, classes: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Gradient of the student's probability of ``classes[i]`` at ``X[i]``, shape (n, n_features).

    Papernot et al. (2017) take the Jacobian of the substitute's output for the oracle's label;
    the probability (not the logit) is what their F_y denotes.
    """
    module = torch_module(surrogate)
    if module is None:
        raise TypeError("the surrogate has no torch module")
    out = np.empty(X.shape, dtype=np.float64)
    for s in range(0, X.shape[0], chunk):
        x = _as_input(surrogate, X[s : s + chunk]).requires_grad_(True)
        prob = torch.softmax(module(x), dim=1)
        idx = torch.from_numpy(np.asarray(classes[s : s + chunk], dtype=np.int64))
        prob.gather(1, idx[:, None]).sum().backward()
        assert x.grad is not None
        out[s : s + chunk] = x.grad.reshape(x.shape[0], -1).numpy()
    return out


def deepfool_distances(
    surrogate: Any, X: np.ndarray, low: np.ndarray, high: np.ndarray, max_iter: int = 20, overshoot: float = 0.02, chunk: int = 512
) -> np.ndarray:
    """L2 size of the DeepFool perturbation (Moosavi-Dezfooli et al. 2016) that flips each row.

    DFAL (Ducoffe & Precioso 2018) uses it as the margin: rows close to the student's decision
    boundary are the informative ones.  Rows that never flip within ``max_iter`` get ``inf``.
    Steps are clipped to the schema bounds, so a boundary outside the domain counts as far.
    """
    module = torch_module(surrogate)
    if module is None:
        raise TypeError("the surrogate has no torch module")
    dist = np.full(X.shape[0], np.inf)
    lo = torch.from_numpy(np.asarray(low, dtype=np.float32))
    hi = torch.from_numpy(np.asarray(high, dtype=np.float32))
    for s in range(0, X.shape[0], chunk):
        x0 = torch.from_numpy(np.asarray(X[s : s + chunk], dtype=np.float32))
        n = x0.shape[0]
        with torch.no_grad():
            start = module(_as_input(surrogate, x0.numpy())).argmax(dim=1)
        x = x0.clone()
        active = torch.ones(n, dtype=torch.bool)
        for _ in range(max_iter):
            if not bool(active.any()):
                break
            xa = _as_input(surrogate, x[active].numpy()).requires_grad_(True)
            logits = module(xa)
            c = logits.shape[1]
            grads = []
            for k in range(c):  # one backward per class: rows are independent in eval mode
                g = torch.autograd.grad(logits[:, k].sum(), xa, retain_graph=k < c - 1)[0]
                grads.append(g.reshape(g.shape[0], -1))
            J = torch.stack(grads, dim=1).detach()  # (m, C, d)
            z = logits.detach()
            k0 = start[active]
            w = J - J[torch.arange(J.shape[0]), k0][:, None, :]
            f = z - z.gather(1, k0[:, None])
            norm = w.norm(dim=2).clamp_min(1e-12)
            ratio = f.abs() / norm
            ratio[torch.arange(J.shape[0]), k0] = float("inf")
            lbest = ratio.argmin(dim=1)
            wl = w[torch.arange(J.shape[0]), lbest]
            step = ((ratio[torch.arange(J.shape[0]), lbest] + 1e-4) / norm[torch.arange(J.shape[0]), lbest])[:, None] * wl
            xa_new = torch.minimum(torch.maximum(x[active] + (1 + overshoot) * step, lo), hi)
            x[active] = xa_new
            with torch.no_grad():
                now = module(_as_input(surrogate, xa_new.numpy())).argmax(dim=1)
            flipped = now != k0
            ids = torch.nonzero(active).squeeze(1)
            done = ids[flipped]
            dist[s + done.numpy()] = (x[done] - x0[done]).norm(dim=1).numpy()
            active[done] = False
    return dist
