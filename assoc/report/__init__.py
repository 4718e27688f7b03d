"""Writers of scan results: CSV tables (the contract in BUNDLE_FORMAT.md), JSON, and later graphs and HTML."""

from .graph import write_graph_exports
from .html import write_html_report
from .outdir import ScanOutput, ScanOutputError, read_scan_output
from .queue import write_review_queue
from .sarif import write_sarif
from .tables import summarise, write_scan_outputs

__all__ = ["ScanOutput", "ScanOutputError", "read_scan_output", "summarise", "write_graph_exports",
           "write_html_report", "write_review_queue", "write_sarif", "write_scan_outputs"]
