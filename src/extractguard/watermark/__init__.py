"""Keyed answer watermarking (DAWN, Szyller et al. 2021): mark a keyed fraction of answers per
account, record them, and later prove that a suspect model learned them (see :mod:`extractguard.verify`)."""

from extractguard.watermark.keyed import (
    AnswerWatermark,
    WatermarkDecision,
    canonical_rows,
    derive_account_key,
    generate_master_key,
    row_digest,
)
from extractguard.watermark.record import AccountRecord, WatermarkRecord, load_or_create_master_key

__all__ = [
    "AccountRecord",
    "AnswerWatermark",
    "WatermarkDecision",
    "WatermarkRecord",
    "canonical_rows",
    "derive_account_key",
    "generate_master_key",
    "load_or_create_master_key",
    "row_digest",
]
