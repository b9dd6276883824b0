"""Extraction detection: per-account streaming detectors, a combined risk, persistence.

Detectors (each ``fit(reference)`` on the owner's data, then ``update(state, observation)``):
PRADA (Juuti et al. 2019), HODA-style hardness histograms (Sadeghzadeh et al. 2021), input
typicality, output shifts and query rate.  :class:`DetectionMonitor` runs them per account and
explains which signal fired; :mod:`extractguard.detect.logs` runs the same code over request logs.
See docs/detection.md.
"""

from typing import Any

from extractguard.registry import Entry, Registry, lazy_exports

#: Every detector by its configuration name (``detectors:`` of a tier's ``detection:`` block, and
#: ``extractguard detect --detectors``).  ``needs_data``: calibrated on the owner's reference rows.
DETECTORS: Registry[Any] = Registry("detector", [
    Entry("prada", "extractguard.detect.prada:PRADA",
          "normality of minimum distances between an account's queries", "Juuti et al. 2019, PRADA"),
    Entry("inputs", "extractguard.detect.signals:InputTypicality",
          "share of an account's rows outside the owner's data", "operational baseline", needs_data=True),
    Entry("outputs", "extractguard.detect.signals:OutputShift",
          "shift of the answers' label mix, entropy and confidence", "operational baseline", needs_data=True),
    Entry("hardness", "extractguard.detect.hardness:HardnessHistogram",
          "distance between an account's hardness histogram and the owner's",
          "Sadeghzadeh et al. 2021, HODA", needs_data=True),
    Entry("rate", "extractguard.detect.signals:QueryRate",
          "rows per minute and per hour against the tier's expected rate", "operational baseline"),
])

_WHERE = {
    "Detector": "base", "Observation": "base", "Reference": "base", "Signal": "base",
    "HardnessHistogram": "hardness", "PRADA": "prada", "InputTypicality": "signals", "OutputShift": "signals",
    "QueryRate": "signals", "DetectionStore": "store", "DetectionMonitor": "monitor",
    "Risk": "monitor", "build_detectors": "monitor", "build_monitor": "monitor",
}


# Import lazily (PEP 562): the gateway's config reads ``detect.policy`` without paying for
# scipy and scikit-learn in admin commands.
__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = ["DETECTORS", *sorted(_WHERE)]
