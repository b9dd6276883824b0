"""Victim names (``DATASET-ARCH``), parsed without importing the models that train them.

Separate from :mod:`.zoo` so that the CLI rejects a mistyped ``--victim`` before torch loads.
"""

from __future__ import annotations

from extractguard.errors import ConfigurationError

ARCHITECTURES: tuple[str, ...] = ("logreg", "tree", "mlp", "cnn", "mlp4", "mlp8")
DEFAULT_VICTIM = "mnist-cnn"


def parse_victim_name(name: str) -> tuple[str, str]:
    """``"mnist-cnn"`` -> ``("mnist", "cnn")``; dataset names may contain underscores."""
    dataset, sep, arch = name.strip().lower().rpartition("-")
    if not sep or arch not in ARCHITECTURES:
        raise ConfigurationError(
            f"victim names look like DATASET-ARCH with ARCH in {', '.join(ARCHITECTURES)}; got {name!r}"
        )
    return dataset.replace("-", "_"), arch
