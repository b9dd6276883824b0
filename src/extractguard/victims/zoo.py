"""A small, reproducible zoo of victim models built from a seed and cached on disk.

A victim is a model *we* own, trained on the ``train`` split of a bundled dataset.  The
attacker's natural data comes from the disjoint ``pool`` split, and fidelity is measured on the
held-out ``test`` split that no attack ever queries.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.data import Dataset, Splits, default_cache_dir, load_dataset, split_dataset
from extractguard.errors import ConfigurationError
from extractguard.oracle import Oracle, OutputSpec, SklearnTarget, Target, TorchTarget
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates.torch_models import Standardize, TorchClassifier, build_network
from extractguard.victims.names import ARCHITECTURES, DEFAULT_VICTIM, parse_victim_name  # noqa: F401  (re-exported)

#: Architectures for text datasets (TF-IDF features in front of the classifier).
TEXT_ARCHITECTURES: tuple[str, ...] = ("logreg", "mlp")
TEXT_DATASETS: tuple[str, ...] = ("reviews",)
#: Text victims: attacker pool and probe sizes (texts); the victim trains on the rest.  Fixed
#: counts rather than fractions because every pool and probe text costs a sentence-encoder pass.
TEXT_POOL_SIZE, TEXT_PROBE_SIZE = 800, 400
#: Bump when training recipes change, so stale cached weights are not reused.
ZOO_VERSION = 1

_TORCH_RECIPES: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": (64,), "epochs": 60, "min_steps": 600, "max_steps": 3000},
    "cnn": {"hidden": (128,), "epochs": 30, "min_steps": 600, "max_steps": 2000},
    # Narrow one-hidden-layer ReLU nets served in float64: the victims of functionally
    # equivalent extraction (Jagielski et al. 2020), which needs exact piecewise-linear logits.
    "mlp4": {"hidden": (4,), "epochs": 60, "min_steps": 600, "max_steps": 3000},
    "mlp8": {"hidden": (8,), "epochs": 60, "min_steps": 600, "max_steps": 3000},
}
_FLOAT64_ARCHS = ("mlp4", "mlp8")


@dataclass
class Victim:
    """A trained model with its data splits.  ``target`` is the owner's handle on the model."""

    name: str
    dataset: Dataset
    arch: str
    seed: int
    splits: Splits
    model: Any
    target: Target
    train_accuracy: float
    test_accuracy: float

    @property
    def schema(self) -> InputSchema:
        return self.target.schema

    def pool(self) -> np.ndarray:
        """Natural inputs the attacker may use (labels withheld)."""
        return self.dataset.X[self.splits.pool]

    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out rows and their true labels, for measuring fidelity and accuracy."""
        return self.dataset.X[self.splits.test], self.dataset.y[self.splits.test]

    def oracle(
        self, output: OutputSpec = OutputSpec(), budget: int | None = None, price_per_query: float = 0.0
    ) -> Oracle:
        """Fresh budgeted query access to this victim."""
        return Oracle(self.target, output=output, budget=budget, price_per_query=price_per_query)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset.name,
            "data_source": self.dataset.source,
            "architecture": self.arch,
            "seed": self.seed,
            "splits": self.splits.sizes(),
            "train_accuracy": round(self.train_accuracy, 4),
            "test_accuracy": round(self.test_accuracy, 4),
            "schema": self.schema.to_dict(),
        }


def _torch_victim(
    arch: str, dataset: Dataset, splits: Splits, seed: int, cache_dir: Path | None
) -> TorchClassifier:
    import torch

    recipe = _TORCH_RECIPES[arch]
    net_arch = "mlp" if arch.startswith("mlp") else arch
    clf = TorchClassifier(net_arch, dataset.input_shape, dataset.n_classes, seed=seed, **recipe)  # type: ignore[arg-type]
    path = None
    if cache_dir is not None:
        path = cache_dir / "victims" / f"{dataset.name}-{arch}-seed{seed}-v{ZOO_VERSION}.pt"
        if path.is_file():
            try:
                state = torch.load(path, weights_only=True)
                net = build_network(net_arch, dataset.input_shape, dataset.n_classes, recipe["hidden"])  # type: ignore[arg-type]
                ones = np.ones(dataset.input_shape, np.float32)
                clf.module_ = torch.nn.Sequential(Standardize(ones * 0, ones), net)
                clf.module_.load_state_dict(state)
                clf.module_.eval()
                return clf
            except (RuntimeError, OSError, KeyError, ValueError, EOFError, pickle.UnpicklingError):
                pass  # corrupt or stale cache: retrain below and overwrite it
    clf.fit(dataset.X[splits.train], dataset.y[splits.train])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(clf.module_.state_dict(), tmp)
        os.replace(tmp, path)
    return clf


def _sklearn_victim(arch: str, dataset: Dataset, splits: Splits, seed: int) -> Any:
    # scikit-learn victims retrain in well under a second, so they are not cached.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    if arch == "logreg":
        model: Any = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    else:
        model = DecisionTreeClassifier(max_depth=10, min_samples_leaf=2, random_state=seed)
    return model.fit(dataset.X[splits.train], dataset.y[splits.train])


def _text_victim(arch: str, dataset: Dataset, splits: Splits, seed: int) -> Any:
    """TF-IDF features (word 1-2 grams) feeding a classifier: the classic text pipeline
    (e.g. Wang & Manning 2012 for sentiment), served as one scikit-learn ``Pipeline`` that takes
    raw strings, so :class:`SklearnTarget` answers text queries unchanged."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    if arch not in TEXT_ARCHITECTURES:
        raise ConfigurationError(
            f"{dataset.name} is a text dataset; its victims are {', '.join(TEXT_ARCHITECTURES)} on TF-IDF features"
        )
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    if arch == "logreg":
        clf: Any = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
    else:
        # Mini-batches of 500 and 10 epochs: ~0.76 probe accuracy like the logistic victim, in
        # seconds rather than minutes on ~26k TF-IDF features.
        clf = MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, batch_size=500, max_iter=10, random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the MLP's fixed epoch budget is deliberate
        return make_pipeline(tfidf, clf).fit(dataset.X[splits.train], dataset.y[splits.train])


def _text_splits(dataset: Dataset, seed: int) -> Splits:
    """Stratified, seeded split with exactly TEXT_POOL_SIZE pool and TEXT_PROBE_SIZE probe texts
    (``split_dataset`` takes fractions, which round to off-by-one counts)."""
    from sklearn.model_selection import train_test_split

    n = len(dataset.y)
    if n <= TEXT_POOL_SIZE + TEXT_PROBE_SIZE:
        raise ConfigurationError(f"{dataset.name} has {n} texts; a text victim needs more than {TEXT_POOL_SIZE + TEXT_PROBE_SIZE}")
    rest, test = train_test_split(np.arange(n), test_size=TEXT_PROBE_SIZE, stratify=dataset.y, random_state=seed)
    train, pool = train_test_split(rest, test_size=TEXT_POOL_SIZE, stratify=dataset.y[rest], random_state=seed + 1)
    return Splits(np.sort(train), np.sort(pool), np.sort(test))


def build_victim(
    name: str = DEFAULT_VICTIM, seed: int = 0, cache_dir: Path | str | None = "default"
) -> Victim:
    """Train (or load from cache) the victim ``DATASET-ARCH`` for ``seed``.

    ``cache_dir="default"`` uses :func:`~extractguard.data.default_cache_dir`; ``None`` disables
    caching.  The same name and seed always give the same splits and, for cached torch models,
    the same weights.
    """
    ds_name, arch = parse_victim_name(name)
    dataset = load_dataset(ds_name)
    if dataset.kind == "text":
        splits = _text_splits(dataset, seed)
        model_t = _text_victim(arch, dataset, splits, seed)
        target_t = SklearnTarget(model_t, dataset.schema())
        accs = [
            float(np.mean(target_t.predict(dataset.X[idx]).probabilities.argmax(1) == dataset.y[idx]))
            for idx in (splits.train, splits.test)
        ]
        return Victim(f"{dataset.name}-{arch}", dataset, arch, seed, splits, model_t, target_t, *accs)
    if arch == "cnn" and len(dataset.input_shape) < 2:
        raise ConfigurationError(f"a CNN victim needs an image dataset; {dataset.name} is tabular")
    splits = split_dataset(dataset, seed=seed)
    cache = default_cache_dir() if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    schema = dataset.schema()
    target: Target
    if arch in _TORCH_RECIPES:
        model: Any = _torch_victim(arch, dataset, splits, seed, cache)
        if arch in _FLOAT64_ARCHS:
            model.module_.double()
        target = TorchTarget(model.module_, schema, outputs="logits")
    else:
        model = _sklearn_victim(arch, dataset, splits, seed)
        target = SklearnTarget(model, schema)
    train_acc = float(np.mean(target.predict(dataset.X[splits.train]).probabilities.argmax(1) == dataset.y[splits.train]))
    test_acc = float(np.mean(target.predict(dataset.X[splits.test]).probabilities.argmax(1) == dataset.y[splits.test]))
    return Victim(f"{dataset.name}-{arch}", dataset, arch, seed, splits, model, target, train_acc, test_acc)


def list_victims() -> list[str]:
    """Every valid ``DATASET-ARCH`` combination."""
    from extractguard.data import DATASETS

    names = []
    for ds in DATASETS:
        for arch in ARCHITECTURES:
            if arch == "cnn" and ds not in ("mnist", "digits"):
                continue
            if ds in TEXT_DATASETS and arch not in TEXT_ARCHITECTURES:
                continue
            names.append(f"{ds}-{arch}")
    return names
