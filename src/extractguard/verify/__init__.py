"""Ownership verification: watermark and fingerprint tests with p-values, and signed evidence.

See docs/verify.md.  :func:`verify_suspect` runs the tests; :mod:`.evidence` signs and checks
bundles; :class:`Fingerprint` covers models that were never watermarked.
"""

from extractguard.verify.evidence import (
    build_bundle,
    check_bundle,
    check_bundle_file,
    generate_signing_key,
    load_public_key_hex,
    load_signing_key,
    sign_bundle,
    write_bundle,
)
from extractguard.verify.fingerprint import Fingerprint, boundary_points
from extractguard.verify.ownership import (
    TestResult,
    Verdict,
    binomial_tail,
    clopper_pearson_upper,
    fingerprint_test,
    verify_suspect,
    watermark_test,
)
from extractguard.verify.references import REFERENCE_FAMILIES, train_reference, train_references

__all__ = [
    "Fingerprint",
    "REFERENCE_FAMILIES",
    "TestResult",
    "Verdict",
    "binomial_tail",
    "boundary_points",
    "build_bundle",
    "check_bundle",
    "check_bundle_file",
    "clopper_pearson_upper",
    "fingerprint_test",
    "generate_signing_key",
    "load_public_key_hex",
    "load_signing_key",
    "sign_bundle",
    "train_reference",
    "train_references",
    "verify_suspect",
    "watermark_test",
    "write_bundle",
]
