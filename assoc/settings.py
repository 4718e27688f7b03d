"""Scan settings: one frozen dataclass, defaults < config file < flags, validated once."""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingsError


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "assoc"


@dataclass(frozen=True)
class Settings:
    """Everything a scan can be told. See README.md for what each knob means and its default."""

    # Pair probability at or above which two stores are linked.
    link_threshold: float = 0.5
    # Catalog overlap at or above which two stores are associated (the marketplace rule).
    catalog_threshold: float = 0.30
    # Pairs below this overlap are not worth reporting for their catalog alone.
    catalog_report_floor: float = 0.10
    # Pairs below this probability (and below the catalog floor) are left out of pairs.csv.
    report_floor: float = 0.05
    # A value shared by more than this many stores counts for nothing and is reported as a hub.
    hub_cap: int = 25
    # Skip invalid rows (writing them to rejected.csv) instead of stopping.
    skip_invalid: bool = False
    # Catalog comparison parts.
    use_text: bool = True
    use_images: bool = True
    # Where image hashes (by file content digest) and the last catalog comparisons are cached; None: nowhere.
    cache_dir: Path | None = dataclasses.field(default_factory=default_cache_dir)

    def validate(self) -> Settings:
        problems = []
        for name in ("link_threshold", "catalog_threshold", "catalog_report_floor", "report_floor"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be a number in [0, 1], got {value!r}")
        if not isinstance(self.hub_cap, int) or self.hub_cap < 2:
            problems.append(f"hub_cap must be a whole number >= 2, got {self.hub_cap!r}")
        if problems:
            raise SettingsError("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
        return self

    @property
    def compares_catalog(self) -> bool:
        """With text and images both off a scan reads the products but compares identifiers only."""
        return self.use_text or self.use_images

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data = dict(data)
        if data.get("cache_dir") is not None:
            data["cache_dir"] = Path(data["cache_dir"])
        return cls(**data).validate()

    @classmethod
    def from_file(cls, path: Path) -> Settings:
        """Read settings from a TOML or JSON file (keys as in to_dict)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{path}: cannot read settings: {exc}") from exc
        return cls.from_dict(data.get("assoc", data))
