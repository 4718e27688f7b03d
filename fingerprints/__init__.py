"""Collectors: turn exports, logs and this machine into fingerprint bundles (BUNDLE_FORMAT.md, version 1).

Every collector is a frozen dataclass of its options implementing the Collector protocol, found
by name in the registry:

    report = make_collector("logins", files=(Path("access.log.gz"),)).collect(Path("bundle"))

Writing into an existing bundle merges into it (bundleio): identical rows are kept once, and a
disagreement stops the write with both origins named.
"""

from .base import Collector, CollectReport, Problem
from .errors import CollectError, ConflictError, InputError, UnknownCollectorError
from .images import FetchLimits, ImagesCollector
from .local import LocalCollector, MachineSources
from .logins import LoginColumns, LoginsCollector
from .merge import MergeCollector
from .products import ProductColumns, ProductsCollector
from .registry import COLLECTORS, collector_class, make_collector

__all__ = [
    "COLLECTORS",
    "CollectError",
    "CollectReport",
    "Collector",
    "ConflictError",
    "FetchLimits",
    "ImagesCollector",
    "InputError",
    "LocalCollector",
    "LoginColumns",
    "LoginsCollector",
    "MachineSources",
    "MergeCollector",
    "Problem",
    "ProductColumns",
    "ProductsCollector",
    "UnknownCollectorError",
    "collector_class",
    "make_collector",
]
