"""Extraction detection: per-account streaming detectors, a combined risk, persistence.

Detectors (each ``fit(reference)`` on the owner's data, then ``update(state, observation)``):
PRADA (Juuti et al. 2019), HODA-style hardness histograms (Sadeghzadeh et al. 2021), input
typicality, output shifts and query rate.  :class:`DetectionMonitor` runs them per account and
explains which signal fired; :mod:`extractguard.detect.logs` runs the same code over request logs.
See docs/detection.md.
"""

from extractguard.detect.base import Detector, Observation, Reference, Signal
from extractguard.detect.hardness import HardnessHistogram
from extractguard.detect.monitor import DETECTORS, DetectionMonitor, Risk, build_detectors, build_monitor
from extractguard.detect.prada import PRADA
from extractguard.detect.signals import InputTypicality, OutputShift, QueryRate
from extractguard.detect.store import DetectionStore

__all__ = [
    "DETECTORS", "DetectionMonitor", "DetectionStore", "Detector", "HardnessHistogram", "InputTypicality", "Observation",
    "OutputShift", "PRADA", "QueryRate", "Reference", "Risk", "Signal", "build_detectors", "build_monitor",
]
