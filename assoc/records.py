"""Typed records that flow through the pipeline: what a bundle holds, and what is rejected from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# A progress callback: (stage name, items done, items in all or None). The library calls it;
# the CLI decides how (or whether) to show it.
Progress = Callable[[str, int, int | None], None]


def no_progress(stage: str, done: int, total: int | None) -> None:
    """The default progress callback: shows nothing."""


@dataclass(frozen=True, slots=True)
class Store:
    store_id: str
    name: str = ""
    platform: str = ""
    country: str = ""
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class Signal:
    """One observed identifier of a store, as exported (the raw value, not yet normalised)."""

    store_id: str
    kind: str
    value: str
    seen_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Product:
    """One listing. `images` are paths relative to the bundle directory, or http(s) URLs."""

    store_id: str
    product_id: str
    title: str = ""
    description: str = ""
    price: float | None = None
    currency: str = ""
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row (or an image) left out of the scan, with where it came from and why."""

    file: str
    line: int
    reason: str
    content: str = ""


@dataclass(slots=True)
class Bundle:
    """A validated bundle: stores by id, their signals and products, and whatever was rejected."""

    root: Path
    stores: dict[str, Store]
    signals: list[Signal] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
