"""Recall of picture near-duplicates per seller edit on pictures that fixtures/images.py did not draw.

    python benchmarks/image_recall_real.py /usr/share/icons/Adwaita/512x512 [--seed 5] [--contrast 0.15]

Every PNG or JPEG under the given folders is one original (transparency flattened on white, as
marketplaces show cut-outs). Each gets one copy per edit of fixtures/images.py (resize,
recompress, crop, watermark, mirror, colour, border, combo), and a copy counts as found when the
pipeline finds it as a scan does: its fingerprint within DEFAULT_RADIUS of the original's, then
verified (ImageVerifier). Misses are split into "far" (fingerprint beyond the radius) and
"rejected" (verification said no). Recall is also given apart for pale originals (less than
--contrast of the picture differs from white by more than 40 levels: pale objects on white,
whose outline the normalisation finds badly).

The negatives are all pairs of originals: their count is small next to the 1e-4 bar of
image_recall.py, so false matches are listed one by one, with their fingerprint distance (a set
of real pictures may hold the same picture twice: distance 0).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assoc.images import DEFAULT_RADIUS, MATCH_THRESHOLD, ImageVerifier, fingerprint_image  # noqa: E402
from fixtures.images import EDITS, edit_picture  # noqa: E402

INK_LEVELS = 40
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")


def originals(folders: list[Path], workdir: Path) -> list[tuple[Path, Path]]:
    """(source file, original JPEG written to workdir) for every picture under the folders."""
    out = []
    sources = sorted(p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES)
    for number, source in enumerate(sources):
        picture = Image.open(source).convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", picture.size, (255, 255, 255, 255)), picture).convert("RGB")
        target = workdir / f"p{number:04d}.jpg"
        flat.save(target, quality=90)
        out.append((source, target))
    return out


def contrast(path: Path) -> float:
    """Share of the picture that differs from white by more than INK_LEVELS in some channel."""
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    return float(((255 - pixels).max(axis=2) > INK_LEVELS).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--contrast", type=float, default=0.15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    verify = ImageVerifier(keep=64)
    with tempfile.TemporaryDirectory(prefix="assoc-real-") as folder:
        workdir = Path(folder)
        pictures = originals(args.folders, workdir)
        if len(pictures) < 2:
            raise SystemExit("fewer than two pictures found")
        fingerprints = {target: fingerprint_image(target) for _, target in pictures}
        found: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
        misses: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for _, target in pictures:
            group = "pale" if contrast(target) < args.contrast else "not pale"
            for edit in EDITS:
                copy, quality = edit_picture(Image.open(target).convert("RGB"), edit, rng)
                copy_path = target.with_name(f"{target.stem}-{edit}.jpg")
                copy.convert("RGB").save(copy_path, quality=quality)
                far = fingerprint_image(copy_path) - fingerprints[target] > DEFAULT_RADIUS
                ok = not far and verify(target, copy_path) >= MATCH_THRESHOLD
                found[group][edit].append(ok)
                found["all"][edit].append(ok)
                if not ok:
                    misses[edit][0 if far else 1] += 1
        print(f"{len(pictures)} pictures from {', '.join(map(str, args.folders))}; seed {args.seed}\n")
        print("| pictures | n | " + " | ".join(EDITS) + " |")
        print("|---|---|" + "---|" * len(EDITS))
        for group in ("all", "not pale", "pale"):
            if found[group]:
                n = len(found[group][EDITS[0]])
                cells = " | ".join(f"{np.mean(found[group][e]):.2f}" for e in EDITS)
                print(f"| {group} | {n} | {cells} |")
        print("| misses: far / rejected | | " + " | ".join(f"{misses[e][0]} / {misses[e][1]}" for e in EDITS) + " |")
        names = {target: source for source, target in pictures}
        pairs = list(itertools.combinations([target for _, target in pictures], 2))
        candidates = [(a, b) for a, b in pairs if fingerprints[a] - fingerprints[b] <= DEFAULT_RADIUS]
        false = [(a, b) for a, b in candidates if verify(a, b) >= MATCH_THRESHOLD]
        print(f"\nnegative pairs {len(pairs)}, within the radius {len(candidates)}, matched {len(false)}")
        for a, b in false:
            print(f"  {names[a].name} ~ {names[b].name} (distance {fingerprints[a] - fingerprints[b]})")


if __name__ == "__main__":
    main()
