"""ExtractGuard: measure, prevent, detect and prove model extraction against models you own."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
