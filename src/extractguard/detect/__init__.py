"""Extraction detection: per-account streaming detectors, a combined risk, persistence.

Detectors (each ``fit(reference)`` on the owner's data, then ``update(state, observation)``):
PRADA (Juuti et al. 2019), HODA-style hardness histograms (Sadeghzadeh et al. 2021), input
typicality, output shifts and query rate.  :class:`DetectionMonitor` runs them per account and
explains which signal fired; :mod:`extractguard.detect.logs` runs the same code over request logs.
See docs/detection.md.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "Detector": "base", "Observation": "base", "Reference": "base", "Signal": "base",
    "HardnessHistogram": "hardness", "PRADA": "prada", "InputTypicality": "signals", "OutputShift": "signals",
    "QueryRate": "signals", "DetectionStore": "store", "DETECTORS": "monitor", "DetectionMonitor": "monitor",
    "Risk": "monitor", "build_detectors": "monitor", "build_monitor": "monitor",
}


def __getattr__(name: str) -> Any:
    """Import lazily (PEP 562): the gateway's config reads ``detect.policy`` without paying for
    scipy and scikit-learn in admin commands."""
    if name in _WHERE:
        return getattr(import_module(f"extractguard.detect.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
