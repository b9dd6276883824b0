"""Errors a user can cause and fix.

Everything raised as an :class:`ExtractGuardError` is a user mistake or an unmet precondition
(bad file, wrong width, exhausted budget).  The CLI prints its message on one line and exits
with code 2 instead of showing a traceback; anything else is a bug in ExtractGuard.
"""

from __future__ import annotations

from pathlib import Path


class ExtractGuardError(Exception):
    """Base class for errors whose message is meant for the user."""


class InputValidationError(ExtractGuardError, ValueError):
    """A batch of inputs does not fit the target's input schema (shape, NaN/inf, bounds)."""


class BudgetExceededError(ExtractGuardError):
    """A query batch would spend more rows than the oracle's budget allows.

    Raised before anything is sent, so a refused batch costs nothing.
    """


class ModelLoadError(ExtractGuardError):
    """A model file is missing, unreadable, or of a format we cannot serve."""


class DataLoadError(ExtractGuardError):
    """A data file is missing, unreadable, or does not fit the model."""


class ConfigurationError(ExtractGuardError):
    """Parameters that cannot work together (unknown attack, empty budget ladder, ...)."""


class RemoteTargetError(ExtractGuardError):
    """A remote model API refused, failed or answered something we cannot use."""


class AuthorizationError(ExtractGuardError):
    """A remote target lacks the owner's written permission to be tested, or it has lapsed."""


def check_readable_file(path: Path, what: str, error: type[ExtractGuardError]) -> None:
    """Raise ``error`` naming ``what`` if ``path`` is missing, a directory, unreadable or empty."""
    if not path.exists():
        raise error(f"{what} file not found: {path}")
    if path.is_dir():
        raise error(f"{what} path is a directory, not a file: {path}")
    try:
        with path.open("rb") as fh:
            empty = not fh.read(1)
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if empty:
        raise error(f"{what} file is empty: {path}")


def read_yaml(path: Path | str, what: str) -> object:
    """Parse the YAML file at ``path``; any failure is one :class:`ConfigurationError` naming ``what``.

    Every configuration file (gateway, target, assessment) is read through here, so a missing,
    unreadable, non-UTF-8 or malformed file gives the same kind of one-line message.
    """
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{what} {p.name} is not valid YAML: not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{what} {p.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
