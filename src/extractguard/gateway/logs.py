"""Structured JSON logs for a SIEM: one object per line, never an API key.

Callers are identified by account and the public key id (the secret part of a key never reaches
a log).  ``extra={"fields": {...}}`` carries the event's structured fields.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER_NAME = "extractguard.gateway"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "message": ..., **fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


# A library stays silent until the application configures logging (stdlib convention).
get_logger().addHandler(logging.NullHandler())


def configure_json_logging(level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Send gateway logs as JSON lines to ``stream`` (default stderr); returns the handler."""
    logger = get_logger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for h in list(logger.handlers):
        if isinstance(h.formatter, JsonFormatter):
            logger.removeHandler(h)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
