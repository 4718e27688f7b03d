"""Merge bundles: identical rows once, every other row kept, disagreements stopped with their files and lines.

The rules are bundleio's (a store's metadata may be filled in but not contradicted; a product
may appear in two bundles only as the same listing). Inputs may be CSV directories or stores.jsonl
files; the output is a CSV bundle, and an existing one is merged into, not replaced. Pictures the
products name by a path inside their bundle are copied along: to the same path when it is free or
holds the same bytes, and otherwise under images/merged/<content hash>, with the cell rewritten.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import ClassVar

from assoc.errors import OutputError
from assoc.records import Progress, no_progress

from .base import CollectReport
from .bundleio import BundleRows, Row, read_bundle_rows, write_into
from .errors import CollectError
from .images import is_url

MERGED_IMAGES = "images/merged"


@dataclass(frozen=True)
class MergeCollector:
    """Several bundles -> one."""

    name: ClassVar[str] = "merge"
    summary: ClassVar[str] = "merge bundles, de-duplicating rows and stopping on disagreements"

    bundles: tuple[Path, ...]

    def collect(self, out: Path, *, progress: Progress = no_progress) -> CollectReport:
        """Merge every input bundle into `out`. Raises ConflictError (writing nothing) on a disagreement."""
        if not self.bundles:
            raise CollectError("no bundles to merge; name one or more bundle directories")
        report = CollectReport(self.name, out)
        combined = BundleRows()
        for number, path in enumerate(self.bundles, start=1):
            if path.resolve() == out.resolve():
                raise CollectError(f"{path} is also --out; the output is merged into anyway, so leave it out")
            progress("read bundles", number, len(self.bundles))
            rows = read_bundle_rows(path)
            if not rows.stores:
                raise CollectError(f"{path}: no stores; give bundle directories (with stores.csv or stores.jsonl)")
            combined.update(rows)
        combined.raise_conflicts()  # before any picture is copied
        copies = _plan_pictures(combined, out, report)
        for source, target in copies.items():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    shutil.copyfile(source, target)
            except OSError as exc:
                raise OutputError(f"{target}: cannot copy the picture {source}: {exc.strerror or exc}") from exc
        merged = write_into(out, combined)
        report.counts = {"bundles": len(self.bundles), "stores": len(combined.stores),
                         "signals": len(combined.signals), "products": len(combined.products),
                         "pictures_copied": len(copies), "bundle_stores": len(merged.stores),
                         "bundle_signals": len(merged.signals), "bundle_products": len(merged.products)}
        return report


def _plan_pictures(rows: BundleRows, out: Path, report: CollectReport) -> dict[Path, Path]:
    """Source picture -> target path in `out`; product cells pointing at relocated pictures are rewritten."""
    copies: dict[Path, Path] = {}
    taken: dict[Path, str] = {}  # target -> content hash, across inputs
    for key, row in list(rows.products.items()):
        if row.root is None:
            continue
        root = row.root
        images = [p.strip() for p in row.cells.get("images", "").split("|") if p.strip()]
        changed = False
        for i, image in enumerate(images):
            if is_url(image):
                continue
            relative = PurePosixPath(image.replace("\\", "/"))
            source = root / relative
            if relative.is_absolute() or ".." in relative.parts or not source.is_file():
                report.notes.append(f"{row.origin}: picture {image!r} is not a file inside its bundle; "
                                    "the cell is kept as it is")
                continue
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
            target = out / relative
            existing = taken.get(target) or (_digest(target) if target.is_file() else None)
            if existing is not None and existing != digest:
                target = out / MERGED_IMAGES / (digest[:40] + relative.suffix.lower())
                images[i] = f"{MERGED_IMAGES}/{target.name}"
                changed = True
            taken[target] = digest
            if source.resolve() != target.resolve():
                copies[source] = target
        if changed:
            rows.products[key] = Row(dict(row.cells, images="|".join(images)), row.origin, row.root)
    return copies


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
