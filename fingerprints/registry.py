"""The registry of collectors: name -> class. Adding a source is adding a module and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .base import Collector
from .errors import UnknownCollectorError
from .images import ImagesCollector
from .local import LocalCollector
from .logins import LoginsCollector
from .merge import MergeCollector
from .products import ProductsCollector

# Read-only, so no caller can change what another one finds.
COLLECTORS: Mapping[str, type[Collector]] = MappingProxyType({
    cls.name: cls for cls in (LoginsCollector, ProductsCollector, ImagesCollector, LocalCollector, MergeCollector)
})


def collector_class(name: str) -> type[Collector]:
    """The collector registered as `name`; UnknownCollectorError listing the known names otherwise."""
    try:
        return COLLECTORS[name]
    except KeyError:
        raise UnknownCollectorError(name, sorted(COLLECTORS)) from None


def make_collector(name: str, **options: Any) -> Collector:
    """The collector `name`, configured with `options` (its dataclass fields)."""
    return collector_class(name)(**options)
