"""assoc: an account association risk scanner.

Pipeline: collect -> normalise -> index -> compare -> score -> cluster -> report.
"""

from .bundle import read_bundle
from .errors import AssocError, BundleError, OutputError, SettingsError
from .scan import PairResult, ScanResult, scan
from .settings import Settings

__all__ = [
    "AssocError",
    "BundleError",
    "OutputError",
    "PairResult",
    "ScanResult",
    "Settings",
    "SettingsError",
    "read_bundle",
    "scan",
]
