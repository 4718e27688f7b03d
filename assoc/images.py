"""Product-image near-duplicates: normalised perceptual fingerprints, radius search, pixel verification.

Two listings show the same product when one picture is a seller's edit of the other: resized,
recompressed, cropped, mirrored, colour-shifted, watermarked or framed. Look-alikes are not: the
same drawing in another colour or with another label is a different product. Three steps, each
more expensive and more exact than the one before:

1. **Fingerprint** (`fingerprint_image`, well under a millisecond of CPU). The picture is decoded
   straight to ~96 px (JPEG DCT scaling via ``Image.draft``) and normalised: a uniform frame (an
   added border) is peeled off; the background (its uniform colour, or a robust linear gradient
   fitted to the outer ring) is removed and white-balanced to white; a 3x3 median filter drops
   thin strokes (watermark and label text) before the *window* is placed: centred on the
   weighted median of the remaining "ink", half-extents equal to its 10-90% inter-quantile range
   per axis. Whitespace, crops of whitespace, borders, resizing (aspect changes included) and
   most watermarks leave the window on the same part of the product. The window is area-sampled
   to 32x32 and the fingerprint is its low-frequency DCT: luma 6x6 and two opponent-colour
   channels 4x4 (68 coefficients) in steps of 1/8 (`ImageFingerprint.levels`). Sampling, colour
   transform and DCT are linear, so the coefficients come straight from the picture through two
   small matrices (the 32x32 grid is never formed). Colour is in the
   fingerprint because a grey-level hash cannot tell a red mug from the blue one.

   A mirror image has the same coefficients with the odd horizontal frequencies negated: the
   fingerprint is stored in a canonical orientation and ``a - b`` is the smaller L1 distance of
   the two orientations (equal to the Hamming distance of the levels' unary codes).

   Why not imagehash's pHash: on benchmarks/image_recall.py, at FPR 1e-4, a 64-bit pHash of the
   raw picture finds no cropped, bordered or mirrored copy, and a 256-bit pHash that compares the
   mirror too finds no cropped or bordered one and a third of the watermarked; of the normalised
   window, a grey-level pHash collides for different products of the same kind (simple shapes on
   white) and a 256-bit one is too sensitive to the few-percent shifts a watermark or crop leaves.
   notes/images.md has the figures.

2. **Candidates** (`image_candidates`): every pair within `radius`, exactly, without comparing
   all pairs. Multi-index hashing needs a radius that is small against the code's entropy; these
   fingerprints need radius ~100 on coefficients that vary by 5-20, so instead a KD-tree (L1)
   runs over a 12-dimensional embedding whose distances never exceed the fingerprint distance
   (`_bound_embedding`), and the superset it returns is checked exactly.

3. **Verification** (`images_match`, `ImageVerifier`; milliseconds per pair). Both pictures are
   decoded at 256 px and normalised as above, without the median filter; B is mapped onto a
   160 px canvas of A through the windows, in the orientation that fits better, and aligned by
   coarse-to-fine ECC (affine, B's out-of-picture pixels masked); when no such alignment passes
   (a crop or a border changed what the windows frame), ECC starts again from ORB keypoints
   matched between the two pictures and a RANSAC similarity. After a per-channel gain about
   the paper colour (a mild colour shift), these measures decide, inside the common field of
   view: *conflict*, the share of content where both pictures have content of another colour
   (a recoloured part; an opening drops watermark strokes); *changed*, the share of the canvas
   where both have band-pass detail that neither reproduces (another label text, another shape;
   a semi-transparent watermark keeps the detail under it, a crop or an overlay adds or removes
   detail on one side only); *exclusive*, the smaller of the two shares of the canvas where one
   picture has strong detail and the other is plain (a label or part placed elsewhere leaves
   detail on each side alone; a seller's edit adds it to one side only); *fine*, the share of a
   256 px canvas where both have fine detail that does not correlate at any shift of up to one
   pixel (a model code that differs in the same place; computed only for pairs that pass the
   rest), and *fine patch*, the largest connected patch of it (one small label set in another
   text); *stretch*, how much the alignment changes B's shape (the ratio of its singular values:
   an affine fit can stretch one product's outline onto another's); and the ECC correlation.
   The score is 1 - max(measure / limit) / 2, so `MATCH_THRESHOLD` = 0.5 means every measure
   is within its limit.

`match_decision(fp_a, fp_b, path_a, path_b)` is the combination: within `DEFAULT_RADIUS` and
verified. An `ImageVerifier` keeps recently prepared pictures, so a picture in many candidate
pairs is decoded once; grouping pictures with union-find and skipping candidate pairs already in
one group saves most verifications of duplicated stock photos.

Fingerprints are cached by SHA-256 of the file bytes (plus `ALGORITHM_VERSION` and the pixel
limit) in ``cache_dir / "image-hashes.sqlite"``; a (path, size, mtime) table lets a rescan skip
reading unchanged files. `fingerprint_files` never raises for a bad file: URLs (not fetched),
missing files, non-images, corrupt or truncated files and decompression bombs (the pixel limit is
checked against the header before decoding) come back with a reason.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import sqlite3
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.spatial import cKDTree

from .errors import AssocError
from .workers import process_pool

__all__ = [
    "ALGORITHM_VERSION", "DEFAULT_RADIUS", "MATCH_THRESHOLD", "MAX_PIXELS", "HashCache", "ImageFingerprint",
    "ImageRejected", "ImageVerifier", "fingerprint_files", "fingerprint_image", "image_candidates",
    "images_match", "match_decision",
]

# Bump when anything that changes fingerprint values changes: cached fingerprints of another
# version are ignored.
ALGORITHM_VERSION = 1
# Pictures with more pixels than this (by their header) are rejected before decoding.
MAX_PIXELS = 50_000_000
# Chosen on benchmarks/image_recall.py, see notes/images.md.
DEFAULT_RADIUS = 100
MATCH_THRESHOLD = 0.5

_HASH_SIZE = 96          # working size (longest side) for fingerprints
_VERIFY_SIZE = 256       # working size for verification: label text must stay legible
_CANVAS = 160            # verification canvas (the whole of the first picture)
_GRID = 32               # window sampled to _GRID x _GRID before the DCT
_LUMA_N, _CHROMA_N = 6, 4
_N_COEF = _LUMA_N ** 2 + 2 * _CHROMA_N ** 2
_STEP = 1 / 8            # quantisation step of the DCT coefficients
_POOL_MIN = 64           # fewer files than this are fingerprinted in-process (a pool costs ~1 s to start)
_FRAME_TOL = 24          # max channel difference for "same colour" in frames and background
_INK_LO, _INK_HI = 24.0, 64.0   # difference from the background mapped to ink 0..1
_DETAIL = 60.0           # band-pass energy (7x7 mean) that counts as detail (edges, text)
# Verification limits, chosen on benchmarks/image_recall.py (notes/images.md).
_MAX_CONFLICT, _MAX_CHANGED, _MIN_CORRELATION, _MIN_OVERLAP = 0.005, 0.004, 0.8, 0.2
_MAX_EXCLUSIVE, _MAX_FINE = 0.002, 0.004
_MAX_STRETCH = 1.15      # largest change of shape of a copy (chosen on the third set: notes/images.md, session 7)
_STRONG, _PLAIN = 300.0, 40.0   # band-pass energy of strong detail, and of a plain area, on the canvas
_FINE = 256              # canvas of the fine comparison (label text at the prepared pictures' scale)
_FINE_DETAIL = 200.0     # band-pass energy (5x5 mean) that counts as fine detail
_FINE_NCC = 0.4          # fine detail that correlates less than this at every shift has changed
_MAX_FINE_PATCH = 80 / _FINE ** 2   # largest patch of changed fine detail (80 px of the fine canvas: session 8)
# Feature alignment, tried when the windows' alignment fails: _KEYPOINTS ORB keypoints on the
# 256 px picture, Lowe's ratio test, and a RANSAC similarity that at least _MIN_INLIERS matches agree with.
_KEYPOINTS, _RATIO, _MIN_INLIERS = 500, 0.8, 12
_SAME_START = 8.0         # pixels of B's picture: starts closer than this are one start

# Horizontal frequency of every coefficient (cv2.dct puts it on the column axis): a mirror image
# negates the odd ones.
_U = np.concatenate([np.tile(np.arange(_LUMA_N), _LUMA_N), np.tile(np.arange(_CHROMA_N), 2 * _CHROMA_N)])
_ODD = (_U % 2 == 1)
_MIRROR_SIGN = np.where(_ODD, -1, 1).astype(np.int32)


class ImageRejected(AssocError):
    """A picture that cannot be fingerprinted; `reason` says why (missing, not an image, too big...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ----------------------------------------------------------------------------- the value object
@dataclass(frozen=True, slots=True)
class ImageFingerprint:
    """Quantised low-frequency DCT coefficients of the normalised picture, in canonical orientation.

    ``a - b`` is mirror-invariant: min over both orientations of the L1 distance between levels.
    """

    levels: tuple[int, ...]
    SIZE: ClassVar[int] = _N_COEF

    def __post_init__(self) -> None:
        if len(self.levels) != _N_COEF:
            raise ValueError(f"an image fingerprint has {_N_COEF} levels, got {len(self.levels)}")

    def __sub__(self, other: ImageFingerprint) -> int:
        a = np.asarray(self.levels, dtype=np.int32)
        b = np.asarray(other.levels, dtype=np.int32)
        return int(min(np.abs(a - b).sum(), np.abs(a - b * _MIRROR_SIGN).sum()))

    def __str__(self) -> str:
        return np.asarray(self.levels, dtype=">i2").tobytes().hex()

    def mirrored(self) -> ImageFingerprint:
        """The fingerprint of the mirror image (odd horizontal frequencies negated)."""
        return ImageFingerprint(tuple(int(v) for v in np.asarray(self.levels) * _MIRROR_SIGN))

    @classmethod
    def from_string(cls, text: str) -> ImageFingerprint:
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise ValueError(f"not an image fingerprint (hex expected): {text[:40]!r}") from exc
        if len(raw) != 2 * _N_COEF:
            raise ValueError(f"an image fingerprint is {4 * _N_COEF} hex digits, got {len(text)}")
        return cls(tuple(int(v) for v in np.frombuffer(raw, dtype=">i2")))


def _canonical(levels: np.ndarray) -> np.ndarray:
    """The orientation whose first non-zero odd-frequency level is positive (mirror-canonical)."""
    odd = levels[_ODD]
    nonzero = np.flatnonzero(odd)
    if len(nonzero) and odd[nonzero[0]] < 0:
        return levels * _MIRROR_SIGN
    return levels


# ----------------------------------------------------------------------------- decoding
_URL_PREFIXES = ("http://", "https://", "http:/", "https:/")   # Path("http://x") keeps one slash


def _refuse_url(path: Path) -> None:
    if str(path).lower().startswith(_URL_PREFIXES):
        raise ImageRejected("URL not fetched: image URLs are skipped, download the pictures into the bundle")


def _read(path: Path) -> bytes:
    _refuse_url(path)
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageRejected("missing file") from None
    except IsADirectoryError:
        raise ImageRejected("not a file (a directory)") from None
    except OSError as exc:
        raise ImageRejected(f"unreadable file: {exc.strerror or exc}") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # transparent product cut-outs are shown on white by every marketplace
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


_JPEG_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2),
                 (1, cv2.IMREAD_COLOR))
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}   # SOFn markers (not DHT, JPG, DAC)


def _plain_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG that libjpeg can decode straight to upright RGB: grey or
    three-component, without an Exif block (which may rotate it). None for anything else,
    including a header this short reader does not follow; Pillow then reads the file."""
    if not data.startswith(b"\xff\xd8"):
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:     # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if marker == 0xE1 and data[at + 4:at + 10] == b"Exif\x00\x00":
            return None
        if marker in _JPEG_FRAMES:
            if at + 10 > len(data) or data[at + 9] not in (1, 3):
                return None
            return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
        if marker == 0xDA or length < 2:   # scan data before any frame header: not a JPEG we follow
            return None
        at += 2 + length
    return None


def _decode_plain_jpeg(data: bytes, width: int, height: int, size: int) -> np.ndarray | None:
    """RGB pixels of a plain JPEG (see _plain_jpeg_size), decoded by libjpeg at the smallest DCT
    scale that keeps the longest side >= `size`: what Pillow's draft mode picks, the same
    pixels, at a fraction of the CPU time for small pictures (no Pillow header parse, no
    Python-level load loop). None for a file that does not end with the JPEG end-of-image
    marker (truncated: Pillow decodes those to say why they are rejected) or that libjpeg
    cannot decode."""
    if not data.endswith(b"\xff\xd9"):
        return None
    flag = next(flag for factor, flag in _JPEG_REDUCED if max(width, height) >= factor * size or factor == 1)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _oversized(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(f"oversized: {width}x{height} pixels is over the limit of {max_pixels}")


def _decode(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    """Decode to RGB uint8 with the longest side resized to `size` (JPEGs decoded at reduced scale)."""
    if not data:
        raise ImageRejected("empty file")
    arr = None
    if (plain := _plain_jpeg_size(data)) is not None:
        _oversized(*plain, max_pixels)
        arr = _decode_plain_jpeg(data, *plain, size)
    if arr is None:
        arr = _decode_with_pillow(data, size, max_pixels)
    h, w = arr.shape[:2]
    if h < 8 or w < 8:
        raise ImageRejected(f"too small to compare: {w}x{h} pixels")
    scale = size / max(h, w)
    if scale != 1:
        # draft already reduced JPEGs to within 2x; area averaging is only worth its cost beyond
        interp = cv2.INTER_AREA if scale < 0.6 else cv2.INTER_LINEAR
        arr = cv2.resize(arr, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=interp)
    return np.ascontiguousarray(arr)


def _decode_with_pillow(data: bytes, size: int, max_pixels: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            _oversized(*im.size, max_pixels)
            if im.format == "JPEG":
                im.draft("RGB", (size, size))
            # EXIF orientation: show it as a viewer would (a JPEG without an Exif block has none)
            if (im.format != "JPEG" or "exif" in im.info) and im.getexif().get(0x0112, 1) != 1:
                im = ImageOps.exif_transpose(im)
            return np.asarray(_to_rgb(im))
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected("decompression bomb: the declared size is too large") from None
        except UnidentifiedImageError:
            raise ImageRejected("not an image (unrecognised format)") from None
        except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on bad input
            raise ImageRejected(f"corrupt or truncated image: {type(exc).__name__}: {exc}") from None


# ----------------------------------------------------------------------------- normalisation
@dataclass(frozen=True, slots=True)
class _Normalised:
    """A picture ready to hash or compare: background removed, with its window.

    The white-balanced picture is ``pixels * gains`` (kept apart so that the fingerprint can
    sample the window first and balance 32x32 pixels instead of the whole picture)."""

    pixels: np.ndarray    # HxWx3, uint8 (uniform background) or float32 (background gradient removed)
    gains: np.ndarray     # per-channel white balance
    ink_rows: np.ndarray  # how much "ink" (difference from the background) each row holds
    ink_cols: np.ndarray
    window: tuple[float, float, float, float]   # centre y, centre x, half height, half width
    paper: float          # the background value after white balance (255 for light backgrounds)

    @property
    def flat(self) -> np.ndarray:
        return self.pixels * self.gains


_CHANNELS = np.ones((1, 3), np.uint8)


def _channel_max(x: np.ndarray) -> np.ndarray:
    """Max over the last axis of length 3 (numpy's reduce over a short last axis is ~20x slower):
    a 1x3 dilation of the interleaved channels, read at every pixel's middle channel."""
    if x.dtype not in (np.uint8, np.int16, np.float32, np.float64):
        return np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2])
    flat = x.reshape(-1, 3 * x.shape[-2]) if x.ndim == 3 else x.reshape(1, -1)
    return cv2.dilate(flat, _CHANNELS)[:, 1::3].reshape(x.shape[:-1])


def _channel_sum(x: np.ndarray) -> np.ndarray:
    return x[..., 0] + x[..., 1] + x[..., 2]


def _run(flags: np.ndarray) -> int:
    """Length of the leading run of True."""
    return len(flags) if flags.all() else int(np.argmin(flags))


def _ring(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]]).astype(np.int16)


def _near(a: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Pixels within _FRAME_TOL of colour in every channel."""
    scalar = (*(float(c) for c in colour), 0.0)
    return _channel_max(cv2.absdiff(np.ascontiguousarray(a), scalar)) <= _FRAME_TOL


def _frame(a: np.ndarray, colour: np.ndarray) -> tuple[int, int, int, int]:
    """Inside of an added border of `colour` (the outer ring's, which is uniform): a band of one
    colour, equally wide on at least three sides (the fourth may run on into a background of
    nearly the same colour). Returns (top, bottom, left, right). Equal margins of whitespace can
    pass for a border; peeling them costs nothing."""
    h, w = a.shape[:2]
    near = _near(a, colour)
    rows, cols = np.count_nonzero(near, axis=1) / w >= 0.9, np.count_nonzero(near, axis=0) / h >= 0.9
    depth = max(2, min(h, w) // 5)
    runs = [_run(rows[:depth]), _run(rows[::-1][:depth]), _run(cols[:depth]), _run(cols[::-1][:depth])]
    width = min(runs)
    if width == 0 or width >= depth or sum(r <= width + 1 for r in runs) < 3:
        return 0, h, 0, w
    peel = width + max(2, min(h, w) // 48)       # and the anti-aliased seam
    if h - 2 * peel < 16 or w - 2 * peel < 16:
        return 0, h, 0, w
    return peel, h - peel, peel, w - peel


def _uniform_ring(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The outer ring, its median colour, and whether 90% of it is within _FRAME_TOL of that."""
    ring = _ring(a)
    half = len(ring) // 2     # the ring has an even length: the median is the mean of the middle two
    middle = np.partition(ring.T, (half - 1, half), axis=1)[:, half - 1:half + 1]
    colour = middle.sum(axis=1) / 2.0
    return ring, colour, np.count_nonzero(_channel_max(np.abs(ring - colour)) <= _FRAME_TOL) >= 0.9 * len(ring)


def _gradient(sub: np.ndarray) -> tuple[np.ndarray, bool]:
    """Linear (in y and x) background per channel fitted to the outer ring, ignoring the pixels of
    objects that touch it. Returns the HxWx3 model and whether the ring really is background."""
    h, w = sub.shape[:2]
    ys = np.concatenate([np.zeros(w), np.full(w, h - 1.0), np.arange(1, h - 1), np.arange(1, h - 1)]) / h - 0.5
    xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h - 2), np.full(h - 2, w - 1.0)]) / w - 0.5
    ring = _ring(sub).astype(np.float64)
    design = np.stack([np.ones_like(ys), ys, xs], axis=1)
    keep = _channel_max(np.abs(ring - np.median(ring, axis=0))) <= 2 * _FRAME_TOL
    if keep.mean() < 0.5:
        keep[:] = True
    for _ in range(2):
        coef = np.linalg.lstsq(design[keep], ring[keep], rcond=None)[0]
        fits = _channel_max(np.abs(design @ coef - ring)) <= _FRAME_TOL
        if fits.mean() < 0.5:
            break
        keep = fits
    yy = (np.arange(h, dtype=np.float32) / h - 0.5)[:, None, None]
    xx = (np.arange(w, dtype=np.float32) / w - 0.5)[None, :, None]
    model = coef[0].astype(np.float32) + yy * coef[1].astype(np.float32) + xx * coef[2].astype(np.float32)
    return model, bool(fits.mean() >= 0.5)


def _weighted_quantiles(mass: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    cum = np.concatenate([[0.0], np.cumsum(mass, dtype=np.float64)])
    return np.interp(np.asarray(qs) * cum[-1], cum, np.arange(len(mass) + 1, dtype=np.float64))


# difference from the background (0..255) -> ink weight (0..40), a ramp from _INK_LO to _INK_HI
_INK_LUT = np.clip(np.arange(256, dtype=np.float32) - _INK_LO, 0, _INK_HI - _INK_LO).astype(np.uint8)


def _normalise(a: np.ndarray, *, keep_detail: bool) -> _Normalised:
    """Peel a frame, flatten and white-balance the background, find the window (see module doc).

    The window is always found on the median-filtered picture so that text does not move it;
    `keep_detail` keeps the unfiltered pixels (verification needs the text)."""
    _, colour, uniform = _uniform_ring(a)
    top, bottom, left, right = _frame(a, colour) if uniform else (0, a.shape[0], 0, a.shape[1])
    sub = np.ascontiguousarray(a[top:bottom, left:right])
    smooth = cv2.medianBlur(sub, 3)
    h, w = smooth.shape[:2]
    if top:   # the background is what lies inside the frame
        _, colour, uniform = _uniform_ring(smooth)
    has_background = True
    if uniform:                 # one background colour: the common case
        paper_rgb = colour.astype(np.float32)
        diff = _INK_LUT[_channel_max(cv2.absdiff(smooth, (*(float(c) for c in colour), 0.0)))]
        pixels = sub if keep_detail else smooth
    else:                       # a gradient (studio sweep), or no background at all
        model, has_background = _gradient(smooth.astype(np.float32))
        paper_rgb = model[h // 2, w // 2]
        diff = _INK_LUT[np.clip(_channel_max(np.abs(smooth - model)), 0, 255).astype(np.uint8)]
        pixels = (sub if keep_detail else smooth) - model + paper_rgb
    gains = (255.0 / paper_rgb if paper_rgb.min() > 150 else np.ones(3)).astype(np.float32)
    paper = float(paper_rgb @ gains) / 3
    rows, cols = diff.sum(1, dtype=np.float64), diff.sum(0, dtype=np.float64)
    whole = (h / 2, w / 2, h / 2, w / 2)
    if not has_background or rows.sum() < 4 * (_INK_HI - _INK_LO):
        # a full-bleed photo (all of it is the product) or a blank picture
        return _Normalised(pixels, gains, rows, cols, whole, paper)
    y10, y50, y90 = _weighted_quantiles(rows, (0.1, 0.5, 0.9))
    x10, x50, x90 = _weighted_quantiles(cols, (0.1, 0.5, 0.9))
    return _Normalised(pixels, gains, rows, cols, (y50, x50, max(y90 - y10, 2.0), max(x90 - x10, 2.0)), paper)


def _area_weights(lo: float, hi: float, length: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, length) box-filter weights sampling [lo, hi) into n cells, and each cell's share outside."""
    edges = (lo + (hi - lo) / n * np.arange(n + 1, dtype=np.float32))[:, None]
    # covered[k, p]: how much of pixel p lies left of edge k; a cell covers the difference
    covered = np.minimum(np.maximum(edges - np.arange(length, dtype=np.float32)[None, :], 0), 1)
    cover = np.diff(covered, axis=0) * (n / (hi - lo))
    return cover, 1 - cover.sum(1)


# The first _LUMA_N rows of the orthonormal DCT-II on _GRID samples (cv2.dct's), and the
# opponent channels (luma, red - green, yellow - blue) as rows over (r, g, b).
_DCT = np.sqrt(2.0 / _GRID) * np.cos(np.pi * np.outer(np.arange(_LUMA_N), 2 * np.arange(_GRID) + 1) / (2 * _GRID))
_DCT[0] /= np.sqrt(2.0)
_OPPONENT = np.array([[0.299, 0.587, 0.114], [1.0, -1.0, 0.0], [0.5, 0.5, -1.0]])
_DCT_ONES = _DCT.sum(axis=1)


def _levels(norm: _Normalised) -> np.ndarray:
    """The fingerprint's levels: the low frequencies of the 2-D DCT of the window area-sampled to
    _GRID x _GRID (exact to sub-pixel, so mirroring commutes with it), white-balanced, with paper
    outside the picture, in opponent colours.

    Sampling, white balance, colour transform and DCT are all linear, so the coefficients are
    computed directly as (DCT @ Wy) @ pixels @ (DCT @ Wx).T per channel: the 32 x 32 grid and
    its full DCTs are never formed."""
    cy, cx, hy, hx = norm.window
    h, w = norm.pixels.shape[:2]
    wy, out_y = _area_weights(cy - hy, cy + hy, h, _GRID)
    wx, out_x = _area_weights(cx - hx, cx + hx, w, _GRID)
    left, right = _DCT @ wy, _DCT @ wx                   # (6, h), (6, w)
    rows = (left @ norm.pixels.reshape(h, w * 3)).reshape(_LUMA_N, w, 3)
    per_channel = rows.transpose(2, 0, 1) @ right.T * (norm.gains / 255.0)[:, None, None]   # (3, 6, 6)
    # paper outside the picture: the same in every channel, so in luma only
    outside = np.outer(_DCT_ONES, _DCT_ONES) - np.outer(_DCT @ (1 - out_y), _DCT @ (1 - out_x))
    coef = (_OPPONENT @ per_channel.reshape(3, -1)).reshape(per_channel.shape)
    coef[0] += outside * (norm.paper / 255.0)
    coef = np.concatenate([coef[0].ravel(), coef[1, :_CHROMA_N, :_CHROMA_N].ravel(),
                           coef[2, :_CHROMA_N, :_CHROMA_N].ravel()])
    return np.clip(np.rint(coef / _STEP), -32768, 32767).astype(np.int32)


def _fingerprint_data(data: bytes, max_pixels: int) -> ImageFingerprint:
    norm = _normalise(_decode(data, _HASH_SIZE, max_pixels), keep_detail=False)
    return ImageFingerprint(tuple(_canonical(_levels(norm)).tolist()))


def fingerprint_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> ImageFingerprint:
    """Fingerprint one picture file; raises ImageRejected(reason) if it cannot be read as one."""
    return _fingerprint_data(_read(path), max_pixels)


# ----------------------------------------------------------------------------- cache and batches
class HashCache:
    """Fingerprints by SHA-256 of the file bytes, in ``cache_dir / "image-hashes.sqlite"``.

    Content-derived rejections (not an image, corrupt, oversized) are cached too: the same bytes
    give the same answer. A second table remembers (path, size, mtime) -> digest so that an
    unchanged file is not even read again. `cache_dir=None` keeps everything in memory.
    """

    def __init__(self, cache_dir: Path | None, *, max_pixels: int = MAX_PIXELS):
        self.max_pixels = max_pixels
        self.computed = 0          # fingerprints computed (not served from the cache)
        self.hits = 0
        self._key = f"v{ALGORITHM_VERSION}/px{max_pixels}"
        self._db: sqlite3.Connection | None = None
        self._memory: dict[str, str] = {}
        self._stats: dict[tuple[str, int, int], str] = {}
        if cache_dir is not None:
            cache_dir = Path(cache_dir)
            cache_dir.mkdir(parents=True, exist_ok=True)
            # two scans sharing one cache wait for each other's writes instead of failing
            self._db = sqlite3.connect(cache_dir / "image-hashes.sqlite", timeout=60)
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS fingerprints (digest TEXT, algorithm TEXT, result TEXT,"
                " PRIMARY KEY (digest, algorithm));"
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " digest TEXT);")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # A stored result is "F:<fingerprint>" or "R:<reason>".
    def lookup(self, digest: str) -> str | None:
        if self._db is None:
            return self._memory.get(digest)
        row = self._db.execute("SELECT result FROM fingerprints WHERE digest = ? AND algorithm = ?",
                               (digest, self._key)).fetchone()
        return row[0] if row else None

    def store(self, digest: str, result: str) -> None:
        if self._db is None:
            self._memory[digest] = result
        else:
            self._db.execute("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)", (digest, self._key, result))

    def known_digest(self, path: Path, size: int, mtime_ns: int) -> str | None:
        if self._db is None:
            return self._stats.get((str(path), size, mtime_ns))
        row = self._db.execute("SELECT digest FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
                               (str(path), size, mtime_ns)).fetchone()
        return row[0] if row else None

    def remember_file(self, path: Path, size: int, mtime_ns: int, digest: str) -> None:
        if self._db is None:
            self._stats[(str(path), size, mtime_ns)] = digest
        else:
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (str(path), size, mtime_ns, digest))

    def commit(self) -> None:
        if self._db is not None:
            self._db.commit()


def _result_of(data: bytes, max_pixels: int) -> str:
    try:
        return "F:" + str(_fingerprint_data(data, max_pixels))
    except ImageRejected as exc:
        return "R:" + exc.reason


def _single_threaded() -> None:
    """Pool initializer: one worker per core, so OpenCV must not start threads of its own."""
    cv2.setNumThreads(1)


def _compute_batch(batch: list[tuple[str, str]], max_pixels: int) -> list[tuple[str, str]]:
    """Worker: (path, digest) -> (digest, result). Reads the files itself to avoid shipping bytes."""
    out = []
    for path, digest in batch:
        try:
            out.append((digest, _result_of(Path(path).read_bytes(), max_pixels)))
        except OSError as exc:
            out.append((digest, f"R:unreadable file: {exc.strerror or exc}"))
    return out


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _digest(path: Path, cache: HashCache) -> tuple[str, bytes | None]:
    """SHA-256 of the file (from the cache's file table when size and mtime are unchanged) and
    the bytes if they had to be read."""
    _refuse_url(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageRejected("missing file") from None
    except OSError as exc:
        raise ImageRejected(f"unreadable file: {exc.strerror or exc}") from None
    digest = cache.known_digest(path, st.st_size, st.st_mtime_ns)
    if digest is not None:
        return digest, None
    data = _read(path)
    digest = hashlib.sha256(data).hexdigest()
    cache.remember_file(path, st.st_size, st.st_mtime_ns, digest)
    return digest, data


def fingerprint_files(paths: Sequence[Path], cache: HashCache, *, workers: int = 1,
                      progress: Callable[[str, int, int | None], None] | None = None,
                      ) -> tuple[dict[Path, ImageFingerprint], dict[Path, str]]:
    """Fingerprint many files, each distinct content once -> (fingerprints, rejected path -> reason).

    Never raises for a bad file: it lands in the second dict with the reason. With workers > 1
    the contents not in the cache are fingerprinted by a process pool."""
    rejected: dict[Path, str] = {}
    digest_of: dict[Path, str] = {}
    results: dict[str, str] = {}        # digest -> "F:<fingerprint>" or "R:<reason>"
    todo: dict[str, Path] = {}          # digest -> a path with that content, for the pool
    total = len(paths)
    if progress:
        progress("images", 0, total)
    for done, path in enumerate(paths, 1):
        try:
            digest, data = _digest(path, cache)
        except ImageRejected as exc:
            rejected[path] = exc.reason
            continue
        digest_of[path] = digest
        if digest in results or digest in todo:
            continue
        cached = cache.lookup(digest)
        if cached is not None:
            results[digest] = cached
            cache.hits += 1
        elif workers > 1 and total >= _POOL_MIN:
            todo[digest] = path
        else:
            try:
                results[digest] = _result_of(data if data is not None else _read(path), cache.max_pixels)
            except ImageRejected as exc:       # vanished since it was looked at
                results[digest] = "R:" + exc.reason
            cache.store(digest, results[digest])
            cache.computed += 1
        if progress and done % 256 == 0:
            progress("images", done - len(todo), total)
    if todo:
        batches = list(_chunks([(str(p), d) for d, p in todo.items()], 64))
        with process_pool(workers, _single_threaded) as pool:
            for batch_out in pool.map(_compute_batch, batches, [cache.max_pixels] * len(batches)):
                for digest, result in batch_out:
                    results[digest] = result
                    cache.store(digest, result)
                cache.computed += len(batch_out)
                if progress:
                    progress("images", total - len(todo) + cache.computed, total)
    cache.commit()
    fingerprints: dict[Path, ImageFingerprint] = {}
    for path, digest in digest_of.items():
        result = results[digest]
        if result.startswith("F:"):
            fingerprints[path] = ImageFingerprint.from_string(result[2:])
        else:
            rejected[path] = result[2:]
    if progress:
        progress("images", total, total)
    return fingerprints, rejected


# ----------------------------------------------------------------------------- candidate search
def _level_matrix(fingerprints: Sequence[ImageFingerprint]) -> np.ndarray:
    if not fingerprints:
        return np.zeros((0, _N_COEF), np.int32)
    return np.array([fp.levels for fp in fingerprints], dtype=np.int32)


def _bound_embedding(levels: np.ndarray, groups: int) -> np.ndarray:
    """n x `groups` coordinates whose L1 distance never exceeds the fingerprint distance.

    Per coefficient, |a - b| (even frequency) and ||a| - |b|| (odd frequency, which a mirror
    negates) bound both orientations from below; summing disjoint groups of coefficients keeps
    the bound (|sum of d| <= sum of |d|). Groups mix high- and low-spread coefficients."""
    parts = np.concatenate([levels[:, ~_ODD], np.abs(levels[:, _ODD])], axis=1).astype(np.float64)
    order = np.argsort(-parts.std(axis=0), kind="stable")
    return np.stack([parts[:, order[g::groups]].sum(axis=1) for g in range(groups)], axis=1)


def image_candidates(fingerprints: Sequence[ImageFingerprint], *, radius: int) -> list[tuple[int, int, int]]:
    """All index pairs (i < j) with ``fingerprints[i] - fingerprints[j] <= radius``, as (i, j, distance).

    Exact, without comparing all pairs: a KD-tree (L1) over a 12-dimensional embedding whose
    distances bound the fingerprint distance from below yields a superset of the answer, which
    is then checked exactly. (Multi-index hashing needs a small radius relative to the code's
    entropy; these fingerprints need radius ~100 on coefficients of spread ~5-20, so a
    lower-bound embedding prunes better.)"""
    levels = _level_matrix(fingerprints)
    if len(levels) < 2:
        return []
    tree = cKDTree(_bound_embedding(levels, 12))
    pairs = tree.query_pairs(r=radius + 0.5, p=1, output_type="ndarray")   # +0.5: float rounding
    out: list[tuple[int, int, int]] = []
    if len(pairs) == 0:
        return out
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    for start in range(0, len(pairs), 200_000):     # bounded memory for dense inputs
        part = pairs[start:start + 200_000]
        a, b = levels[part[:, 0]], levels[part[:, 1]]
        dist = np.minimum(np.abs(a - b).sum(1), np.abs(a - b * _MIRROR_SIGN).sum(1))
        keep = dist <= radius
        out.extend(zip(part[keep, 0].tolist(), part[keep, 1].tolist(), dist[keep].tolist(), strict=True))
    return out


# ----------------------------------------------------------------------------- verification
@dataclass(frozen=True, slots=True)
class _Prepared:
    """A picture prepared for verification (compact: it may sit in an ImageVerifier's memory)."""

    flat: np.ndarray       # HxWx3 uint8, background flattened and white-balanced
    window: tuple[float, float, float, float]
    paper: float
    levels: np.ndarray     # levels as computed (not canonical), to pick the closer orientation
    # ORB keypoints and descriptors per orientation, computed when a pair first needs them
    features: dict[bool, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Comparison:
    """What verification measured on the common canvas (all shares in [0, 1])."""

    correlation: float     # ECC correlation of the aligned grey pictures
    conflict: float        # share of content pixels where both have content, of different colour
    changed: float         # share of the canvas where both have detail that does not correlate
    overlap: float         # share of the canvas inside both fields of view
    exclusive: float = 0.0  # the smaller of: share of the canvas with strong detail where the other is plain
    fine: float = 0.0       # share of the fine canvas where both have fine detail that does not correlate
    fine_patch: float = 0.0  # the largest connected patch of that changed detail, as a share of the fine canvas
    stretch: float = 1.0    # how much the alignment stretches B against A: its singular values' ratio


def _prepare(path: Path) -> _Prepared:
    norm = _normalise(_decode(_read(path), _VERIFY_SIZE, MAX_PIXELS), keep_detail=True)
    flat = np.clip(norm.flat, 0, 255).astype(np.uint8)
    return _Prepared(flat, norm.window, norm.paper, _levels(norm))


def _affine(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _window_to_picture(prep: _Prepared, mirror: bool) -> np.ndarray:
    """3x3 map from window coordinates ([-1, 1] on both axes) to picture pixel centres."""
    cy, cx, hy, hx = prep.window
    sign = -1.0 if mirror else 1.0
    return np.array([[sign * hx, 0, cx - 0.5], [0, hy, cy - 0.5], [0, 0, 1]], np.float64)


def _canvas_to_picture(prep: _Prepared, size: int) -> np.ndarray:
    """3x3 map from canvas pixel centres to picture pixel centres: the canvas is the whole picture."""
    h, w = prep.flat.shape[:2]
    return np.array([[w / size, 0, 0.5 * w / size - 0.5], [0, h / size, 0.5 * h / size - 0.5], [0, 0, 1]])


def _warp(prep: _Prepared, to_picture: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Picture and field-of-view mask on a size x size canvas, for a 3x3 canvas -> picture map.

    Outside its picture the canvas repeats the picture's edge: a cropped copy filled with paper
    would show a hard edge where the crop cut the object, detail the original does not have at
    that place (every measure reads only inside the field of view, but filters reach across)."""
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    matrix = to_picture[:2]
    img = cv2.warpAffine(prep.flat, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE
                         ).astype(np.float32)
    ones = np.ones(prep.flat.shape[:2], np.uint8)
    fov = cv2.warpAffine(ones, matrix, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return img, fov.astype(bool)


def _grey(img: np.ndarray, size: int) -> np.ndarray:
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0, (0, 0), 1.0)


def _colour_fit(src: np.ndarray, dst: np.ndarray, mask: np.ndarray, paper: float) -> np.ndarray:
    """src with each channel scaled about the paper colour to best match dst on mask (two robust
    passes). Anchoring at the paper keeps a recoloured product part from being fitted away."""
    out = np.empty_like(src)
    for c in range(3):
        x, y = src[..., c][mask] - paper, dst[..., c][mask] - paper
        keep = np.ones(len(x), bool)
        gain = 1.0
        for _ in range(2):
            xs, ys = x[keep], y[keep]
            if len(xs) < 16 or (xs ** 2).sum() < 1.0:
                break
            gain = float(np.clip((xs * ys).sum() / (xs ** 2).sum(), 0.75, 1.33))
            keep = np.abs(gain * x - y) < 40
        out[..., c] = paper + (src[..., c] - paper) * gain
    return out


def _upscale(warp: np.ndarray, factor: float) -> np.ndarray:
    """An affine map between canvases of one size, expressed for canvases `factor` times larger."""
    scale = np.array([[factor, 0, (factor - 1) / 2], [0, factor, (factor - 1) / 2], [0, 0, 1]])
    return scale @ _affine(warp) @ np.linalg.inv(scale)


def _window_start(pa: _Prepared, pb: _Prepared, mirror: bool) -> np.ndarray:
    """3x3 map from A's canvas to B's picture that puts B's window on A's (canvas -> A's picture ->
    A's window coordinates -> B's picture)."""
    to_a = _canvas_to_picture(pa, _CANVAS)
    return _window_to_picture(pb, mirror) @ np.linalg.inv(_window_to_picture(pa, False)) @ to_a


def _features(prep: _Prepared, mirror: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """ORB keypoints (picture coordinates of the unmirrored picture) and descriptors, of the
    picture or of its mirror image (ORB descriptors are not mirror-invariant)."""
    if mirror not in prep.features:
        grey = cv2.cvtColor(prep.flat, cv2.COLOR_RGB2GRAY)
        if mirror:
            grey = np.ascontiguousarray(grey[:, ::-1])
        # a detector per call (microseconds): OpenCV's are not safe to share between threads
        orb = cv2.ORB_create(nfeatures=_KEYPOINTS, edgeThreshold=15, patchSize=15)
        keypoints, descriptors = orb.detectAndCompute(grey, None)
        points = np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2)
        if mirror:
            points[:, 0] = grey.shape[1] - 1 - points[:, 0]
        prep.features[mirror] = (points, descriptors)
    return prep.features[mirror]


def _feature_start(pa: _Prepared, pb: _Prepared, mirror: bool) -> np.ndarray | None:
    """3x3 map from A's canvas to B's picture through matched ORB keypoints and a RANSAC similarity
    (mirrored when `mirror`), or None when too few keypoints agree. Unlike the window start it
    holds when a crop or a border changed what the windows frame."""
    points_a, descriptors_a = _features(pa, False)
    points_b, descriptors_b = _features(pb, mirror)
    if descriptors_a is None or descriptors_b is None or min(len(points_a), len(points_b)) < _MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(descriptors_a, descriptors_b, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
    if len(good) < _MIN_INLIERS:
        return None
    source = points_a[[m.queryIdx for m in good]]
    target = points_b[[m.trainIdx for m in good]]
    # a similarity cannot mirror: fit it to B's points mirrored back, then mirror the map
    flip = np.array([[-1.0, 0, pb.flat.shape[1] - 1], [0, 1, 0], [0, 0, 1]]) if mirror else np.eye(3)
    target = target @ flip[:2, :2].T + flip[:2, 2]
    similarity, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if similarity is None or inliers.sum() < _MIN_INLIERS:
        return None
    to_b = flip @ _affine(similarity)
    scale = np.sqrt(abs(np.linalg.det(to_b[:2, :2])))
    if not 0.5 < scale < 2.0:
        return None
    return to_b @ _canvas_to_picture(pa, _CANVAS)


def _align(pb: _Prepared, img_a: np.ndarray, to_b: np.ndarray) -> tuple[np.ndarray, float]:
    """3x3 map from A's canvas to B's picture, and the ECC correlation of the aligned pictures.

    Refines a start (`to_b`, canvas -> B's picture) by ECC (affine), coarse to fine so that a
    start moved by a watermark or a crop still converges; B's pixels outside its picture are
    masked out."""
    img_b, fov_b = _warp(pb, to_b, _CANVAS)
    warp = np.eye(3)
    correlation = 0.0
    for size in (_CANVAS // 4, _CANVAS // 2):
        if size == _CANVAS // 2:
            warp = _upscale(warp[:2], 2.0)
        grey_a, grey_b = _grey(img_a, size), _grey(img_b, size)
        mask = cv2.resize(fov_b.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
        try:
            correlation, found = cv2.findTransformECC(
                grey_a, grey_b, warp[:2].astype(np.float32), cv2.MOTION_AFFINE,
                (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-4), mask, 1)
        except cv2.error:       # did not converge: judge the alignment we have
            moved = cv2.warpAffine(grey_b, warp[:2], (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            correlation = float(np.corrcoef(grey_a.ravel(), moved.ravel())[0, 1]) if moved.std() > 0 else 0.0
            break
        if abs(found[0, 0] - 1) > 0.4 or abs(found[1, 1] - 1) > 0.4 or np.abs(found[:, 2]).max() > size / 4:
            break               # ran away: not the same layout
        warp = _affine(found.astype(np.float64))
    return to_b @ _upscale(warp[:2], _CANVAS / (_CANVAS // 2)), float(correlation)


def _measure(pa: _Prepared, pb: _Prepared, img_a: np.ndarray, fov_a: np.ndarray, to_b: np.ndarray,
             correlation: float) -> _Comparison:
    img_b, fov_b = _warp(pb, to_b, _CANVAS)
    fov = cv2.erode((fov_a & fov_b).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    overlap = float(fov.mean())
    if overlap < 0.2:
        return _Comparison(correlation, 1.0, 1.0, overlap)
    img_b = _colour_fit(img_b, img_a, fov, pa.paper)
    # conflict: both pictures have content here, of another colour (a recoloured part); the
    # opening drops thin strokes, i.e. a watermark drawn over the product
    ink_a = _channel_max(np.abs(img_a - pa.paper)) > 40
    ink_b = _channel_max(np.abs(img_b - pa.paper)) > 40
    content = (ink_a | ink_b) & fov
    differ = (_channel_max(np.abs(img_a - img_b)) > 48) & ink_a & ink_b & fov
    conflict = cv2.morphologyEx(differ.astype(np.uint8), cv2.MORPH_OPEN, np.ones((4, 4), np.uint8))
    # changed detail: both pictures have detail (edges, text) here but it does not correlate:
    # another label text, another shape. A watermark over plain areas adds detail to one side only.
    band_a = cv2.GaussianBlur(img_a, (0, 0), 0.8) - cv2.GaussianBlur(img_a, (0, 0), 2.0)
    band_b = cv2.GaussianBlur(img_b, (0, 0), 0.8) - cv2.GaussianBlur(img_b, (0, 0), 2.0)
    energy_a = cv2.boxFilter(_channel_sum(band_a * band_a), -1, (7, 7))
    energy_b = cv2.boxFilter(_channel_sum(band_b * band_b), -1, (7, 7))
    cross = cv2.boxFilter(_channel_sum(band_a * band_b), -1, (7, 7))
    both = (energy_a > _DETAIL) & (energy_b > _DETAIL) & fov
    # where B = (1 - alpha) A + watermark, A's detail survives in B with weight 1 - alpha >= 1/3:
    # only detail that neither picture reproduces (weight < 1/4 both ways) has changed
    changed = both & (cross < 0.25 * np.minimum(energy_a, energy_b))
    # exclusive detail: strong detail in one picture where the other is plain, both ways. A seller's
    # edit adds detail to one side only (a watermark, a sticker) or loses it outside the common
    # field of view (a crop); a label or a part placed elsewhere leaves detail on each side alone.
    opening = np.ones((3, 3), np.uint8)
    a_only = cv2.morphologyEx(((energy_a > _STRONG) & (energy_b < _PLAIN) & fov).astype(np.uint8),
                              cv2.MORPH_OPEN, opening)
    b_only = cv2.morphologyEx(((energy_b > _STRONG) & (energy_a < _PLAIN) & fov).astype(np.uint8),
                              cv2.MORPH_OPEN, opening)
    return _Comparison(correlation, float(conflict.sum() / max(content.sum(), 1)), float(changed.mean()),
                       overlap, float(min(a_only.mean(), b_only.mean())))


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """a moved by (dy, dx) pixels, edges repeated (a is padded by one pixel on each side)."""
    h, w = a.shape[0] - 2, a.shape[1] - 2
    return a[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def _fine_changed(pa: _Prepared, pb: _Prepared, to_b: np.ndarray) -> tuple[float, float]:
    """Where both pictures have fine detail (band-pass sigma 0.7-1.6, 5x5 windows) on a _FINE
    canvas (A's whole picture at about its prepared scale) that does not correlate (NCC < 0.4)
    at any shift of up to one pixel: label text or a model code that differs in the same place,
    which the coarser canvas blurs into look-alike blobs. The one-pixel slack absorbs what the
    alignment leaves. Returns that detail's share of the canvas, and the share of its largest
    connected patch (strokes within a 5x5 closing of each other): one small label set in another
    text is a compact patch, often too small a share of the whole canvas for the first figure's
    limit, while what a seller's edit leaves (a watermark stroke over a label, JPEG noise) is
    scattered."""
    up = np.array([[_CANVAS / _FINE, 0, 0.5 * _CANVAS / _FINE - 0.5],
                   [0, _CANVAS / _FINE, 0.5 * _CANVAS / _FINE - 0.5], [0, 0, 1]])
    img_a, fov_a = _warp(pa, _canvas_to_picture(pa, _CANVAS) @ up, _FINE)
    img_b, fov_b = _warp(pb, to_b @ up, _FINE)
    fov = cv2.erode((fov_a & fov_b).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    band_a = cv2.GaussianBlur(img_a, (0, 0), 0.7) - cv2.GaussianBlur(img_a, (0, 0), 1.6)
    band_b = cv2.GaussianBlur(img_b, (0, 0), 0.7) - cv2.GaussianBlur(img_b, (0, 0), 1.6)
    energy_a = cv2.boxFilter(_channel_sum(band_a * band_a), -1, (5, 5))
    energy_b = cv2.boxFilter(_channel_sum(band_b * band_b), -1, (5, 5))
    both = (energy_a > _FINE_DETAIL) & (energy_b > _FINE_DETAIL) & fov
    if both.sum() < _MAX_FINE_PATCH * _FINE * _FINE:   # then neither figure can reach its limit
        return 0.0, 0.0
    # the shift search only where both have detail (plus the 5x5 window's reach)
    ys, xs = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    y0, y1 = max(ys[0] - 3, 0), min(ys[-1] + 4, _FINE)
    x0, x1 = max(xs[0] - 3, 0), min(xs[-1] + 4, _FINE)
    band_a, energy_a, both = band_a[y0:y1, x0:x1], energy_a[y0:y1, x0:x1], both[y0:y1, x0:x1]
    pad_b = cv2.copyMakeBorder(band_b[y0:y1, x0:x1], 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    pad_e = cv2.copyMakeBorder(energy_b[y0:y1, x0:x1], 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    best = np.full(energy_a.shape, -1.0, np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cross = cv2.boxFilter(_channel_sum(band_a * _shifted(pad_b, dy, dx)), -1, (5, 5))
            np.maximum(best, cross / np.sqrt(np.maximum(energy_a * _shifted(pad_e, dy, dx), 1e-6)), out=best)
    changed = cv2.morphologyEx((both & (best < _FINE_NCC)).astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    count, patches = cv2.connectedComponents(cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)))
    largest = np.bincount(patches[changed.astype(bool)], minlength=count)[1:].max(initial=0)
    return float(changed.sum() / (_FINE * _FINE)), float(largest / (_FINE * _FINE))


def _verdict(cmp: _Comparison) -> float:
    """Score in [0, 1]; >= MATCH_THRESHOLD exactly when every measure is within its limit."""
    badness = max(cmp.conflict / _MAX_CONFLICT, cmp.changed / _MAX_CHANGED,
                  (1 - cmp.correlation) / (1 - _MIN_CORRELATION), _MIN_OVERLAP / max(cmp.overlap, 1e-6),
                  cmp.exclusive / _MAX_EXCLUSIVE, cmp.fine / _MAX_FINE, cmp.fine_patch / _MAX_FINE_PATCH,
                  (cmp.stretch - 1) / (_MAX_STRETCH - 1))
    return float(np.clip(1.0 - badness / 2, 0.0, 1.0))


def _stretch(a_to_b: np.ndarray) -> float:
    """Ratio of the singular values of a map's linear part: 1 for a similarity (resizing, cropping,
    mirroring), more when it changes the shape. ECC's affine fit can stretch one product's shape
    onto another's (a rounder ear cup, a squarer box); a seller's resize rarely changes the aspect
    by more than a few percent."""
    singular = np.linalg.svd(a_to_b[:2, :2], compute_uv=False)
    return float(singular[0] / max(singular[1], 1e-9))


_CORNERS = np.array([[0.0, 0.0, 1.0], [_CANVAS - 1.0, 0.0, 1.0], [0.0, _CANVAS - 1.0, 1.0],
                     [_CANVAS - 1.0, _CANVAS - 1.0, 1.0]]).T


def _same_map(to_b: np.ndarray, other: np.ndarray) -> bool:
    """Whether two canvas -> B maps put every canvas corner within _SAME_START pixels of B. From
    starts that close ECC mostly ends where it did, and each extra measurement is one more chance
    for a look-alike to pass (the keypoints agree with the windows on most pairs the windows
    already judged): notes/images.md, "Session 7"."""
    return float(np.abs((to_b - other)[:2] @ _CORNERS).max()) < _SAME_START


def _compare(pa: _Prepared, pb: _Prepared) -> tuple[float, _Comparison]:
    """Best (score, comparison) over the alignments worth trying, until one passes: the windows'
    (the nearer orientation, and the farther one for a nearly symmetric object), then the
    keypoints' in both orientations."""
    to_a = _canvas_to_picture(pa, _CANVAS)
    img_a, fov_a = _warp(pa, to_a, _CANVAS)
    straight = np.abs(pa.levels - pb.levels).sum()
    mirrored = np.abs(pa.levels - pb.levels * _MIRROR_SIGN).sum()
    order = [(False, straight), (True, mirrored)]
    order.sort(key=lambda o: o[1])
    starts = [_window_start(pa, pb, mirror) for mirror, distance in order
              if distance <= 1.5 * order[0][1] + 20]
    best: tuple[float, _Comparison] | None = None
    tried: list[np.ndarray] = []      # starts measured, and where ECC took them
    for to_b in itertools.chain(starts, (_feature_start(pa, pb, mirror) for mirror, _ in order)):
        if best is not None and best[0] >= MATCH_THRESHOLD:
            break
        if to_b is None or any(_same_map(to_b, other) for other in tried):
            continue
        tried.append(to_b)
        to_b, correlation = _align(pb, img_a, to_b)
        tried.append(to_b)
        cmp = replace(_measure(pa, pb, img_a, fov_a, to_b, correlation), stretch=_stretch(to_b @ np.linalg.inv(to_a)))
        score = _verdict(cmp)
        if score >= MATCH_THRESHOLD:    # the fine comparison costs more: only for pairs it could reject
            fine, fine_patch = _fine_changed(pa, pb, to_b)
            cmp = replace(cmp, fine=fine, fine_patch=fine_patch)
            score = _verdict(cmp)
        if best is None or score > best[0]:
            best = (score, cmp)
    assert best is not None
    return best


class ImageVerifier:
    """Scores candidate pairs like `images_match`, keeping the last `keep` prepared pictures (about
    200 kB each) so that a picture in many candidate pairs is decoded and normalised once."""

    def __init__(self, keep: int = 512):
        self.keep = keep
        self._prepared: OrderedDict[Path, _Prepared] = OrderedDict()

    def prepared(self, path: Path) -> _Prepared:
        path = Path(path)
        prep = self._prepared.get(path)
        if prep is None:
            prep = _prepare(path)
            self._prepared[path] = prep
            if len(self._prepared) > self.keep:
                self._prepared.popitem(last=False)
        else:
            self._prepared.move_to_end(path)
        return prep

    def __call__(self, path_a: Path, path_b: Path) -> float:
        return _compare(self.prepared(path_a), self.prepared(path_b))[0]


def images_match(path_a: Path, path_b: Path) -> float:
    """Verification score in [0, 1] that b is an edited copy of a (symmetric up to alignment);
    MATCH_THRESHOLD separates. Raises ImageRejected if either picture cannot be read."""
    return ImageVerifier(keep=2)(path_a, path_b)


def match_decision(fp_a: ImageFingerprint, fp_b: ImageFingerprint, path_a: Path, path_b: Path, *,
                   radius: int = DEFAULT_RADIUS, verifier: ImageVerifier | None = None) -> tuple[bool, int]:
    """(same product picture?, fingerprint distance): within `radius` and verified by pixels."""
    distance = fp_a - fp_b
    if distance > radius:
        return False, distance
    score = (verifier or ImageVerifier(keep=2))(path_a, path_b)
    return score >= MATCH_THRESHOLD, distance
