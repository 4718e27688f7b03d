"""Writers of scan results: CSV tables (the contract in BUNDLE_FORMAT.md), JSON, and later graphs and HTML."""

from .tables import summarise, write_scan_outputs

__all__ = ["summarise", "write_scan_outputs"]
