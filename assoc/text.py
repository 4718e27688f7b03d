"""Product text near-duplicates: normalise listing text, compare two listings, find matching pairs.

Sellers who list the same product reword its title: they reorder words, swap synonyms, add
marketing filler ("Hot Sale", "2024 New", "Free Shipping"), drop words and change case. Sellers
of *different* products of one family write titles that are nearly identical and differ only in
the model code, the colour or the size. So the normaliser splits a text into two kinds of token:

* discriminating tokens, each kind compared by its own rule (`conflicts`): model codes
  (alphanumeric: K740, L8601, XR-200 -> ``xr200``; a "Pro"/"Max" after a code is part of it),
  colours (``rose gold``; ``grey``/``gray``), size words (``S``/``Small``), measures in one unit per
  dimension (``500 ml``, ``0.5 L`` -> ``500ml``; ``64 GB``) and pack quantities (``2PCS``,
  ``Pack of 2``);
* content words (lowercased, hyphens joined, a plural ending dropped), compared by weighted cosine.

The rules for discriminating tokens, measured on the synthetic market (notes/catalog.md):

* The model codes and the colours that two titles name must be the same. A title that names a
  code or colour the other lacks is not a confirmed duplicate: in the measured data such a pair
  is nearly always a family variant (the base product has no colour, the variant has one).
* Sizes, measures and quantities conflict only when each side has one the other lacks ("500ml"
  against "750ml"): sellers often drop them, so a size on one side only is no conflict.
* Descriptions count only through their labelled facts ("Model: K20.", "Colour: Red.",
  "Size: M."), and only to reveal conflicts, because most listings have no description.

`text_similarity(a, b)` compares two texts. `TextIndex` holds a whole collection (built from
(title, description) pairs by `TextIndex.from_listings`, in worker processes if asked) and
finds the pairs whose similarity reaches a threshold without comparing all pairs: only listings
with the same title codes and colours can match, so the collection is partitioned on them;
inside a partition, candidate pairs are the pairs that share one of each other's rarest tokens,
found by one sparse matrix product; candidates are then scored exactly. `brute_force_matches`
is the slow oracle it is tested against. Token weights are inverse document frequencies over
the collection, so a shared brand or model code counts for more than a shared "portable".
"""

from __future__ import annotations

import math
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.sparse as sp

from .workers import process_pool

# ------------------------------------------------------------------------------------------ lexicons
# General e-commerce vocabulary; nothing here is specific to one market.

_STOPWORDS = frozenset("a an and the of for with to in on by from at or".split())

# Words and phrases sellers add to any title to sell it: they say nothing about which product it is.
_FILLER_PHRASES = frozenset((
    "hot sale", "hot selling", "best seller", "best selling", "top selling", "top rated", "top quality",
    "high quality", "good quality", "free shipping", "free delivery", "fast shipping", "fast delivery",
    "quick delivery", "in stock", "ready stock", "limited edition", "special edition", "factory direct",
    "factory price", "factory outlet", "brand new", "best gift", "gift idea", "great gift", "perfect gift",
    "drop shipping", "low price", "on sale", "big sale", "flash sale",
))
_FILLER_WORDS = frozenset(
    "new newest latest hot sale bestseller bestselling premium original genuine authentic official upgraded "
    "upgrade deluxe luxury luxurious fashion fashionable stylish trendy trending popular cute creative gift "
    "gifts wholesale dropshipping dropship clearance discount promo promotion cheap cheapest amazing awesome "
    "excellent".split()
)

# Colour words. Words that are more often a product or a material in titles ("cream", "wine",
# "olive") are not colours on their own, only inside a compound ("wine red", "olive green").
_COLOURS = frozenset(
    "black white red blue green yellow orange purple violet pink brown grey gray silver gold golden beige "
    "khaki navy teal turquoise cyan magenta maroon burgundy ivory coral lavender lilac mint peach tan "
    "champagne bronze copper rose charcoal aqua indigo fuchsia amber apricot multicolor multicolour "
    "colorful colourful rainbow camouflage camo".split()
)
# Words that make one compound colour with a colour after them ("dark green", "rose gold"). Nouns
# that often stand before a colour in titles ("night light", "stainless steel") are left out.
_COLOUR_MODIFIERS = frozenset(
    "dark deep pale bright sky navy neon pastel midnight dusty rose wine mint lime olive coral champagne".split()
)
_COLOUR_ALIASES = {"gray": "grey", "golden": "gold", "navyblue": "navy", "multicolour": "multicolor",
                   "colorful": "multicolor", "colourful": "multicolor", "camouflage": "camo"}

# Materials: a linen scarf and a cotton one are different products, as a red and a blue one are.
# Words that are as often a style or something else in titles ("oxford" shoes, "felt", "metal",
# "glass" for glasses) are left out; "copper" is a colour.
_MATERIALS = {
    "cotton": "cotton", "linen": "linen", "canvas": "canvas", "rubber": "rubber", "cardboard": "cardboard",
    "polyester": "polyester", "leather": "leather", "silicone": "silicone", "steel": "steel",
    "aluminium": "aluminium", "aluminum": "aluminium", "wood": "wood", "wooden": "wood", "bamboo": "bamboo",
    "ceramic": "ceramic", "plastic": "plastic", "nylon": "nylon", "wool": "wool", "woolen": "wool",
    "woollen": "wool", "fleece": "fleece", "silk": "silk", "denim": "denim", "velvet": "velvet", "suede": "suede",
    "tpu": "tpu", "acrylic": "acrylic", "resin": "resin", "foam": "foam", "mesh": "mesh", "microfiber": "microfiber",
    "microfibre": "microfiber", "spandex": "spandex", "cashmere": "cashmere", "porcelain": "porcelain",
    "brass": "brass", "titanium": "titanium",
}

# Size words on one ladder, so that "S" and "Small", "L" and "Large" agree.
_SIZE_WORDS = {
    "xxs": "xxs", "xs": "xs", "s": "s", "small": "s", "little": "s", "m": "m", "medium": "m",
    "l": "l", "large": "l", "big": "l", "xl": "xl", "xxl": "xxl", "xxxl": "xxxl", "2xl": "xxl",
    "3xl": "xxxl", "4xl": "4xl", "5xl": "5xl", "mini": "mini", "king": "king", "queen": "queen",
}
_SIZE_PHRASES = {"one size": "onesize", "free size": "onesize", "extra large": "xl", "extra small": "xs"}

# Words that are part of a model code when they follow it: "K20 Pro" is another model than "K20".
# "Mini" is a size word that sellers move around, so it is not one of them.
_MODEL_QUALIFIERS = frozenset("pro max plus ultra lite se air neo edge prime turbo elite".split())

# Units: one spelling per unit and, within the metric system, one base unit per dimension.
_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("mm", 1), "cm": ("mm", 10), "m": ("mm", 1000), "km": ("mm", 1e6),
    "in": ("in", 1), "inch": ("in", 1), "inches": ("in", 1), "ft": ("ft", 1), "feet": ("ft", 1),
    "ml": ("ml", 1), "l": ("ml", 1000), "liter": ("ml", 1000), "litre": ("ml", 1000),
    "liters": ("ml", 1000), "litres": ("ml", 1000), "cl": ("ml", 10), "dl": ("ml", 100),
    "mg": ("g", 0.001), "g": ("g", 1), "gram": ("g", 1), "grams": ("g", 1), "kg": ("g", 1000),
    "oz": ("oz", 1), "lb": ("lb", 1), "lbs": ("lb", 1),
    "w": ("w", 1), "kw": ("w", 1000), "v": ("v", 1), "mah": ("mah", 1), "ah": ("mah", 1000),
    "kb": ("gb", 1 / 1024**2), "mb": ("gb", 1 / 1024), "gb": ("gb", 1), "tb": ("gb", 1024),
    "hz": ("hz", 1), "khz": ("hz", 1e3), "mhz": ("hz", 1e6), "ghz": ("hz", 1e9),
    "psi": ("psi", 1), "bar": ("bar", 1), "db": ("db", 1),
    "p": ("p", 1), "k": ("k", 1),  # video resolution: 1080p, 4k
}
_PACK_WORDS = frozenset("pcs pc pieces piece pack packs pk sets set pairs pair count ct kit box lot bundle x".split())

# Labelled facts in descriptions ("Model: K20 Pro.", "Colour: Red.") that can reveal a conflict.
_FACT_LABELS = ("model", "model number", "model no", "colour", "color", "size", "capacity", "quantity",
                "material")
# A value runs to the end of its sentence; "6.1 inch" has a full stop inside.
_FACT_VALUE_RE = re.compile(r"[^.;\n]*(?:\.\d[^.;\n]*)*")


def _continuations(phrases: Iterable[str]) -> dict[str, list[tuple[str, ...]]]:
    """First word -> the rest of each phrase it starts, longest first."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for phrase in sorted(phrases, key=lambda p: -len(p.split())):
        first, *rest = phrase.split()
        out.setdefault(first, []).append(tuple(rest))
    return out


# Tokenising: every punctuation or symbol character but the hyphen and the full stop (which stay
# inside "XR-200", "6.1") becomes a separator token, so that phrases may tell "5 m" (five metres)
# from "5, M" (five, size M).
_SEPARATOR = "\x00"
_SEPARATORS = str.maketrans({chr(c): f" {_SEPARATOR} " for c in range(0x3000)
                             if unicodedata.category(chr(c))[0] in "PS" and chr(c) not in "-."}
                            | {"_": f" {_SEPARATOR} "})
_FILLER_NEXT = _continuations(_FILLER_PHRASES)
_SIZE_NEXT = _continuations(_SIZE_PHRASES)
# Words that may start a phrase (tokens with a digit, numbers and codes, start phrases as well),
# and words that may come second in one: a phrase is looked for only where both stand.
_STARTERS = frozenset(_FILLER_NEXT) | frozenset(_SIZE_NEXT) | _PACK_WORDS | _COLOUR_MODIFIERS
_SECONDS = (frozenset(rest[0] for nexts in (*_FILLER_NEXT.values(), *_SIZE_NEXT.values()) for rest in nexts)
            | {"of", "in"} | frozenset(_UNITS) | _PACK_WORDS | _MODEL_QUALIFIERS | _COLOURS)
_WORD_RE = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_NUM_UNIT_RE = re.compile(r"(\d+(?:\.\d+)?)([a-z]+)")
_N_IN_1_RE = re.compile(r"\d+in1")
_YEAR_RE = re.compile(r"(?:19[89]\d|20[0-4]\d)")  # "2024 New": a year in a title is marketing
_COMPOUND_COLOURS = {f"{m}{c}": _COLOUR_ALIASES.get(f"{m}{c}", f"{m}{c}") for m in _COLOUR_MODIFIERS for c in _COLOURS}

# Prefixes of the kinds of token: content word (w), model code (c), colour (o), size word (z),
# measure (u), quantity (q), bare number (n), material (m). All but words are discriminating facts.
FACT_KINDS = "cozuqnm"
# Weights of text_similarity without corpus weights: a shared model code says more than a word.
_DEFAULT_WEIGHT = {"c": 3.0}


@dataclass(frozen=True, slots=True)
class ProductText:
    """A listing's text, normalised.

    `tokens` are the title's tokens as ``kind:value``: ``w:charger`` (content word), ``c:k20pro``
    (model code), ``o:rosegold`` (colour), ``z:m`` (size word), ``u:500ml`` (measure), ``q:2``
    (quantity), ``m:linen`` (material). `facts` are the discriminating tokens of title and
    description together; the conflict rules read them. `key` is the title's codes and colours:
    only listings with the same key can match.
    """

    tokens: frozenset[str]
    facts: frozenset[str]
    key: frozenset[str]


def _stem(word: str) -> str:
    """A light plural stemmer: both sides go through it, so it needs to be consistent, not right."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _measure(number: str, unit: str) -> str | None:
    spec = _UNITS.get(unit)
    if spec is None:
        return None
    value = float(number) * spec[1]
    return f"{int(value) if value.is_integer() else round(value, 6)}{spec[0]}"


def classify(token: str) -> str | None:
    """One token (no spaces) -> ``kind:value``, or None for filler, stopwords and separators."""
    if token.isalpha():  # most tokens: a plain word
        if token in _STOPWORDS or token in _FILLER_WORDS:
            return None
        if token in _COLOURS:
            return f"o:{_COLOUR_ALIASES.get(token, token)}"
        if token in _COMPOUND_COLOURS:
            return f"o:{_COMPOUND_COLOURS[token]}"
        if token in _SIZE_WORDS:
            return f"z:{_SIZE_WORDS[token]}"
        if token in _MATERIALS:
            return f"m:{_MATERIALS[token]}"
        return f"w:{_stem(token)}"
    if not _WORD_RE.fullmatch(token):  # a separator, or odd characters in a word
        cleaned = "".join(ch for ch in token if ch.isalnum() or ch in "-.").strip("-.")
        return classify(cleaned) if cleaned and cleaned != token else None
    if token in _STOPWORDS or token in _FILLER_WORDS or _YEAR_RE.fullmatch(token):
        return None
    if _NUMBER_RE.fullmatch(token):
        # A bare number left after phrase joining: a series number ("iPhone 15"), a count, part of
        # a dimension. It conflicts with another number, but is no model code.
        return f"n:{token}"
    if _N_IN_1_RE.fullmatch(token):
        return f"q:{token}"
    joined = token.replace("-", "").replace(".", "") if ("-" in token or "." in token) else token
    m = _NUM_UNIT_RE.fullmatch(token) or _NUM_UNIT_RE.fullmatch(joined)
    if m:
        number, unit = m.groups()
        if unit in _PACK_WORDS:
            return None if float(number) == 1 else f"q:{float(number):g}"
        value = _measure(number, unit)
        if value is not None:
            return f"u:{value}"
    if joined.isalpha():  # "anti-slip", "rose-gold"
        return classify(joined)
    if joined in _SIZE_WORDS:  # "2xl"
        return f"z:{_SIZE_WORDS[joined]}"
    if any(ch.isdigit() for ch in joined):
        return f"c:{joined}"
    return f"w:{_stem(joined)}"


def _split(text: str) -> list[str]:
    """Tokens of a text: casefolded (NFKC first if need be), apostrophes dropped, and every other
    punctuation or symbol a separator token."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).replace("\u2019", "")
    return [t.strip("-.") for t in text.casefold().replace("'", "").translate(_SEPARATORS).split()]


def _next_word(toks: list[str], j: int) -> int:
    """Index of the first token at or after j that is not a separator (len(toks) if none)."""
    while j < len(toks) and (toks[j] == _SEPARATOR or not toks[j]):
        j += 1
    return j


def _follows(toks: list[str], j: int, words: tuple[str, ...]) -> int:
    """If `words` come next from j on (separators allowed between), the index after them, else -1."""
    for word in words:
        j = _next_word(toks, j)
        if j == len(toks) or toks[j] != word:
            return -1
        j += 1
    return j


def _phrase(toks: list[str], i: int, lookup: Callable[[str], str | None]) -> tuple[int, str | None] | None:
    """The phrase that starts at toks[i] as (index after it, its normalised token), or None.

    Filler ("hot sale"), size phrases ("one size"), quantities ("pack of 2", "24 in 1", "12, pcs"),
    measures ("500 ml": a space only), model codes with qualifiers ("k20 pro", "15 pro max") and
    compound colours ("dark green"; not "glow in the dark" + "green", and not "mint" + "rose gold").
    """
    tok = toks[i]
    for rest in _FILLER_NEXT.get(tok, ()):
        if (j := _follows(toks, i + 1, rest)) >= 0:
            return j, None
    for rest in _SIZE_NEXT.get(tok, ()):
        if (j := _follows(toks, i + 1, rest)) >= 0:
            return j, f"z:{_SIZE_PHRASES[' '.join((tok, *rest))]}"
    k = _next_word(toks, i + 1)
    after = toks[k] if k < len(toks) else ""
    if tok in _PACK_WORDS and after == "of":
        m = _next_word(toks, k + 1)
        if m < len(toks) and toks[m].isdigit():
            return m + 1, lookup(f"{toks[m]}pcs")
    if _NUMBER_RE.fullmatch(tok):
        if after == "in" and (j := _follows(toks, k + 1, ("1",))) >= 0:
            return j, f"q:{tok}in1"
        if i + 1 < len(toks) and toks[i + 1] in _UNITS:  # no separator between number and unit
            return i + 2, lookup(tok + toks[i + 1])
        if after in _PACK_WORDS:
            return k + 1, lookup(tok + after)
    if after in _MODEL_QUALIFIERS and any(ch.isdigit() for ch in tok):
        code = lookup(tok) or ""
        if code[:2] in ("c:", "n:"):  # "K20 Pro", and "15 Pro": a number with a qualifier is a model
            m = _next_word(toks, k + 1)
            if m < len(toks) and toks[m] in _MODEL_QUALIFIERS:
                return m + 1, f"c:{code[2:]}{after}{toks[m]}"
            return k + 1, f"c:{code[2:]}{after}"
    if tok in _COLOUR_MODIFIERS and after in _COLOURS and (i == 0 or toks[i - 1] != "the"):
        m = _next_word(toks, k + 1)
        if m == len(toks) or toks[m] not in _COLOURS:
            return k + 1, f"o:{_COMPOUND_COLOURS[tok + after]}"
    return None


class Normaliser:
    """Turns listing text into tokens. Keep one for a whole scan: it classifies each distinct raw
    token once (a scan meets the same few thousand words again and again) and numbers the
    normalised tokens, so that a scan of half a million listings handles small integers."""

    def __init__(self) -> None:
        self._ids: dict[str | None, int] = {None: -1}  # normalised token -> id; -1: dropped
        self._raw: dict[str, int] = {_SEPARATOR: -1, "": -1}  # raw token -> id of its normalised token
        self._kinds: dict[str, str | None] = {}  # raw token or joined phrase -> normalised token
        self._starters = set(_STARTERS)  # raw tokens that may start a phrase
        self.vocabulary: list[str] = []  # id -> normalised token ("kind:value")
        self._facts: set[int] = set()  # ids of discriminating tokens (every kind but words)
        self._keys: set[int] = set()  # ids of model codes and colours (a title's key)

    def _id(self, token: str | None) -> int:
        found = self._ids.get(token)
        if found is None:
            found = self._ids[token] = len(self.vocabulary)
            self.vocabulary.append(token)  # type: ignore[arg-type]
            if token[0] != "w":  # type: ignore[index]
                self._facts.add(found)
                if token[0] in "co":  # type: ignore[index]
                    self._keys.add(found)
        return found

    def _learn(self, raw: str) -> int:
        if any(ch.isdigit() for ch in raw):
            self._starters.add(raw)
        found = self._raw[raw] = self._id(self._classify(raw))
        return found

    def _classify(self, raw: str) -> str | None:
        found = self._kinds.get(raw, 0)
        if found == 0:
            found = self._kinds[raw] = classify(raw)
        return found  # type: ignore[return-value]

    def _token_ids(self, text: str) -> set[int]:
        toks = _split(text)
        known = self._raw
        try:
            ids = [known[t] for t in toks]
        except KeyError:
            ids = [known[t] if t in known else self._learn(t) for t in toks]
        starters = self._starters
        if starters.isdisjoint(toks) or _SECONDS.isdisjoint(toks):  # most titles: each token on its own
            out = set(ids)
        else:
            out = set()
            i = 0
            while i < len(toks):
                found = None
                if toks[i] in starters:
                    nxt = _next_word(toks, i + 1)
                    if nxt < len(toks) and toks[nxt] in _SECONDS:
                        found = _phrase(toks, i, self._classify)
                if found is None:
                    out.add(ids[i])
                    i += 1
                else:
                    i, token = found
                    out.add(self._id(token))
        out.discard(-1)
        return out

    def parse(self, title: str, description: str = "") -> tuple[set[int], set[int]]:
        """Token ids of (title tokens, facts of title and description)."""
        tokens = self._token_ids(title)
        facts = tokens & self._facts
        if description and ":" in description:
            for value in _fact_values(description):
                facts |= self._token_ids(value) & self._facts
        return tokens, facts

    def normalise(self, title: str, description: str = "") -> ProductText:
        tokens, facts = self.parse(title, description)
        words = self.vocabulary
        return ProductText(frozenset(words[t] for t in tokens), frozenset(words[t] for t in facts),
                           frozenset(words[t] for t in tokens & self._keys))


def _fact_values(description: str) -> list[str]:
    """The values of the labelled facts of a description: "Model: K20 Pro. Colour: Red." -> ["K20 Pro", "Red"]."""
    pieces = description.casefold().split(":")
    out = []
    for before, after in zip(pieces, pieces[1:], strict=False):
        label = before.rsplit(".", 1)[-1].split()
        if label and " ".join(label[-3:]).endswith(_FACT_LABELS):
            value = _FACT_VALUE_RE.match(after)
            if value:
                out.append(value.group())
    return out


def normalise(title: str, description: str = "") -> ProductText:
    """Normalise one listing's text (for many listings, keep one Normaliser)."""
    return Normaliser().normalise(title, description)


# ------------------------------------------------------------------------------------- comparing two


def _fact_kinds(facts: frozenset[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for fact in facts:
        out.setdefault(fact[0], set()).add(fact)
    return out


def conflicts(a: ProductText, b: ProductText) -> bool:
    """True when the discriminating tokens say that `a` and `b` are different products.

    Title codes or title colours that differ; or, title and description together, a code,
    colour, size, measure, quantity or material on each side that the other side lacks.
    """
    if a.key != b.key:
        return True
    fa, fb = _fact_kinds(a.facts), _fact_kinds(b.facts)
    for kind in FACT_KINDS:
        sa, sb = fa.get(kind), fb.get(kind)
        if sa and sb and not (sa <= sb or sb <= sa):
            return True
    return False


def _weighted_cosine(ta: set[str], tb: set[str], weights: Mapping[str, float] | None) -> float:
    def w(t: str) -> float:
        if weights is not None:
            return weights.get(t, 0.0)
        return _DEFAULT_WEIGHT.get(t[0], 1.0)

    shared = sum(w(t) ** 2 for t in ta & tb)
    norm = math.sqrt(sum(w(t) ** 2 for t in ta) * sum(w(t) ** 2 for t in tb))
    return shared / norm if norm else 0.0


def text_similarity(a: str | ProductText, b: str | ProductText, *, cutoff: float | None = None,
                    weights: Mapping[str, float] | None = None) -> float:
    """Similarity in [0, 1] of two listing texts (titles, or normalised ProductText).

    0.0 when the discriminating tokens conflict (`conflicts`); else the cosine of the two title
    token sets, each token weighted by `weights` (``kind:value`` -> weight, as `token_weights`
    gives; tokens missing from it weigh 0), or by default 1 per word and 3 per model code.
    Scores below `cutoff` are returned as 0.0.
    """
    pa = a if isinstance(a, ProductText) else normalise(a)
    pb = b if isinstance(b, ProductText) else normalise(b)
    if conflicts(pa, pb):
        return 0.0
    score = min(1.0, _weighted_cosine(pa.tokens, pb.tokens, weights))
    return 0.0 if cutoff is not None and score < cutoff else score


def token_weights(texts: Sequence[ProductText]) -> dict[str, float]:
    """Inverse document frequency of every title token of a collection: log(1 + n / df)."""
    df = Counter(t for text in texts for t in text.tokens)
    return {t: float(_idf(len(texts), c)) for t, c in df.items()}


def _idf(n: int, df: int | np.ndarray) -> float | np.ndarray:
    return np.log1p(n / df)


# ----------------------------------------------------------------------------- matching a collection


@dataclass(frozen=True, slots=True)
class TextMatches:
    """Pairs (left[k], right[k]) of a collection, left < right, with text_similarity score[k]."""

    left: np.ndarray
    right: np.ndarray
    score: np.ndarray
    candidates: int  # pairs scored exactly


def brute_force_matches(texts: Sequence[ProductText], *, threshold: float) -> TextMatches:
    """Every pair with text_similarity >= threshold, by comparing all pairs: the oracle for tests."""
    weights = token_weights(texts)
    found = [(i, j, s) for i, j in combinations(range(len(texts)), 2)
             if (s := text_similarity(texts[i], texts[j], weights=weights)) >= threshold]
    left, right, score = (np.array(x) for x in zip(*found, strict=True)) if found else (np.array([], int),) * 3
    return TextMatches(left.astype(np.int64), right.astype(np.int64), score.astype(np.float64),
                       len(texts) * (len(texts) - 1) // 2)


def rowwise_dot(m: sp.csr_matrix, left: np.ndarray, right: np.ndarray, *, budget: int = 20_000_000) -> np.ndarray:
    """m[left[k]] . m[right[k]] for every k, taken in slices of about `budget` stored entries (a
    listing that matches thousands of others has a long row, and memory grows with the rows read)."""
    out = np.empty(len(left), dtype=np.float64)
    for a, b in _slices(m, left, right, budget):
        out[a:b] = np.asarray(m[left[a:b]].multiply(m[right[a:b]]).sum(axis=1)).ravel()
    return out


def _slices(m: sp.csr_matrix, left: np.ndarray, right: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) slices of the pairs whose rows hold about `budget` entries each."""
    lengths = np.diff(m.indptr)
    cost = np.cumsum(lengths[left] + lengths[right] + 1)
    stops = np.searchsorted(cost, np.arange(budget, int(cost[-1]) + budget, budget), side="right") if len(cost) else []
    bounds = sorted({0, len(left), *(int(s) for s in stops)})
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


class _Flat:
    """Token id sets of many listings, flattened: the index arrays of a listings x tokens matrix."""

    def __init__(self) -> None:
        self.items = array("q")
        self.counts = array("q")

    def add(self, items: Iterable[int], count: int) -> None:
        self.items.extend(items)
        self.counts.append(count)

    def extend(self, other: _Flat, ids: np.ndarray) -> None:
        """Append another's listings, its token ids mapped through `ids`."""
        self.items.frombytes(ids[np.frombuffer(other.items, dtype=np.int64)].tobytes())
        self.counts.extend(other.counts)

    def matrix(self, columns: int, order: np.ndarray) -> sp.csr_matrix:
        """Binary listings x tokens matrix, token id t in column order[t]."""
        cols = order[np.frombuffer(self.items, dtype=np.int64)] if len(self.items) else np.array([], np.int64)
        indptr = np.r_[0, np.cumsum(np.frombuffer(self.counts, dtype=np.int64))] if len(self.counts) else np.zeros(1)
        m = sp.csr_matrix((np.ones(len(cols)), cols, indptr), shape=(len(self.counts), columns))
        m.sum_duplicates()
        return m


@dataclass(frozen=True, slots=True)
class _Part:
    """Some listings normalised by one Normaliser: their token ids and its vocabulary."""

    tokens: _Flat
    facts: _Flat
    vocabulary: list[str]


def _normalise_part(listings: Sequence[tuple[str, str]]) -> _Part:
    """Normalise listings with a fresh Normaliser (a worker process's task)."""
    normaliser = Normaliser()
    tokens, facts = _Flat(), _Flat()
    for title, description in listings:
        t, f = normaliser.parse(title, description)
        tokens.add(t, len(t))
        facts.add(f, len(f))
    return _Part(tokens, facts, normaliser.vocabulary)


def _partition(x: sp.csr_matrix, is_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(partition id of each row: rows with the same key columns share one; whether the key is not empty)."""
    keys = sp.csr_matrix(x[:, np.flatnonzero(is_key)])
    counts = np.diff(keys.indptr)
    width = int(counts.max()) if len(counts) else 0
    padded = np.full((keys.shape[0], max(width, 1)), -1, dtype=np.int64)
    rows = np.repeat(np.arange(keys.shape[0]), counts)
    padded[rows, np.arange(len(rows)) - np.repeat(keys.indptr[:-1], counts)] = keys.indices  # sorted per row
    _, partition = np.unique(padded, axis=0, return_inverse=True)
    return partition.ravel().astype(np.int64), counts > 0


class TextIndex:
    """The normalised texts of a collection, ready to be matched: IDF weights, sparse token vectors.

    Build it from ProductText values, or straight from (title, description) pairs with
    `from_listings`, which keeps no per-listing objects (a scan has half a million listings)
    and can spread the work over processes. Tokens are numbered in sorted order, so that the
    index does not depend on how the work was split.
    """

    def __init__(self, texts: Iterable[ProductText]) -> None:
        ids: dict[str, int] = {}
        tokens, facts = _Flat(), _Flat()
        for text in texts:
            tokens.add((ids.setdefault(t, len(ids)) for t in text.tokens), len(text.tokens))
            facts.add((ids.setdefault(t, len(ids)) for t in text.facts), len(text.facts))
        self._build([_Part(tokens, facts, list(ids))])

    @classmethod
    def from_listings(cls, listings: Sequence[tuple[str, str]], *, workers: int = 1, chunk: int = 50_000,
                      progress: Callable[[int], None] | None = None) -> TextIndex:
        """Normalise (title, description) pairs and index them, `chunk` at a time in `workers` processes."""
        chunks = [listings[s:s + chunk] for s in range(0, len(listings), chunk)]
        parts = []
        if workers > 1 and len(chunks) > 1:
            with process_pool(workers) as pool:
                for part in pool.map(_normalise_part, chunks):
                    parts.append(part)
                    if progress is not None:
                        progress(sum(len(p.tokens.counts) for p in parts))
        else:
            for some in chunks:
                parts.append(_normalise_part(some))
                if progress is not None:
                    progress(sum(len(p.tokens.counts) for p in parts))
        index = cls.__new__(cls)
        index._build(parts)
        return index

    def _build(self, parts: list[_Part]) -> None:
        ids: dict[str, int] = {}
        tokens, facts = _Flat(), _Flat()
        for part in parts:
            local = np.fromiter((ids.setdefault(t, len(ids)) for t in part.vocabulary), dtype=np.int64,
                                count=len(part.vocabulary))
            tokens.extend(part.tokens, local)
            facts.extend(part.facts, local)
        names = list(ids)  # in id order
        by_name = np.argsort(np.array(names, dtype=object), kind="stable")
        self.vocabulary = [names[i] for i in by_name]
        order = np.empty(len(names), dtype=np.int64)  # id -> column of the sorted vocabulary
        order[by_name] = np.arange(len(names))
        self.size = n = len(tokens.counts)
        width = len(self.vocabulary)
        kinds = np.array([t[0] for t in self.vocabulary], dtype="U1")
        x = tokens.matrix(width, order)
        # The partition of a listing: its title's model codes and colours (the key).
        self.partition, self._keyed = _partition(x, (kinds == "c") | (kinds == "o"))
        df = np.diff(sp.csc_matrix(x).indptr)
        self.weights = _idf(n, np.maximum(df, 1))
        self.untitled = np.diff(x.indptr) == 0  # no title tokens: the text cannot say what it is
        x = sp.csr_matrix(x @ sp.diags(self.weights))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        self._vectors = sp.csr_matrix(sp.diags(1.0 / norms) @ x)
        self._is_key_token = (kinds != "c") & (kinds != "o")
        # Facts sit to the right of the token weights in one matrix, so that one elementwise
        # product of two rows gives a pair's dot product and its shared facts of every kind.
        facts_matrix = facts.matrix(width, order)
        kind_of = np.full(width, -1, dtype=np.int64)
        for k, kind in enumerate(FACT_KINDS):
            kind_of[kinds == kind] = k
        self._fact_kind = kind_of
        rows = np.repeat(np.arange(n), np.diff(facts_matrix.indptr))
        self._fact_counts = np.zeros((n, len(FACT_KINDS)), dtype=np.int64)
        np.add.at(self._fact_counts, (rows, kind_of[facts_matrix.indices]), 1)
        self._both = sp.csr_matrix(sp.hstack([self._vectors, facts_matrix], format="csr"))

    def similarity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """text_similarity (with this collection's IDF weights) of the pairs (left[k], right[k])."""
        return self.compare(left, right)[0]

    def compare(self, left: np.ndarray, right: np.ndarray, *,
                budget: int = 10_000_000) -> tuple[np.ndarray, np.ndarray]:
        """(similarity, fact conflict) of the pairs (left[k], right[k]): text_similarity, and
        whether for some kind of fact each side has one that the other lacks. A fact conflict is
        the weaker test (the title keys may differ): an image match must pass it."""
        width = len(self.vocabulary)
        kinds = len(FACT_KINDS)
        score = np.zeros(len(left))
        conflict = np.zeros(len(left), dtype=bool)
        for start, stop in _slices(self._both, left, right, budget):
            a, b = left[start:stop], right[start:stop]
            product = sp.coo_matrix(self._both[a].multiply(self._both[b]))
            is_word = product.col < width
            score[start:stop] = np.bincount(product.row[is_word], product.data[is_word], minlength=len(a))
            fact = ~is_word
            shared = np.bincount(product.row[fact] * kinds + self._fact_kind[product.col[fact] - width],
                                 minlength=len(a) * kinds).reshape(len(a), kinds)
            # each side has a fact of this kind that the other lacks
            lacks = (shared < self._fact_counts[a]) & (shared < self._fact_counts[b])
            conflict[start:stop] = lacks.any(axis=1)
        score = np.minimum(score, 1.0)
        score[conflict | (self.partition[left] != self.partition[right])] = 0.0
        return score, conflict

    def mixed_facts(self, labels: np.ndarray) -> np.ndarray:
        """For each label (0..max), whether its listings hold two different facts of one kind, so
        that some two of them may conflict (a group of one product never does)."""
        groups = int(labels.max()) + 1 if len(labels) else 0
        facts = self._both[:, len(self.vocabulary):]
        member = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(groups, len(labels)))
        held = sp.coo_matrix(member @ facts)  # groups x facts: which facts each group holds
        distinct = np.zeros((groups, len(FACT_KINDS)), dtype=np.int64)
        np.add.at(distinct, (held.row, self._fact_kind[held.col]), 1)
        return (distinct >= 2).any(axis=1)

    def conflicts(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """`conflicts` for many pairs at once."""
        return (self.partition[left] != self.partition[right]) | self.compare(left, right)[1]

    def matches(self, *, threshold: float, rare_tokens: int | None = 5, max_df: int = 1000,
                rare_df: int = 30, progress: Callable[[int], None] | None = None) -> TextMatches:
        """Every pair with similarity >= threshold (left < right).

        Candidate search: inside each partition (same title codes and colours), each listing's
        `rare_tokens` rarest tokens, among those held by at most `max_df` listings of the
        partition, are its keys, and so is the partition itself when the title names a code or
        colour. A pair is a candidate when it shares two keys, or one key held by at most
        `rare_df` listings (a brand, a rare word, a rare model code). On 555,380 synthetic
        listings that scores 10.9M candidates, a thirtieth of the pairs that share any token,
        and keeps 99.5% of the same-product pairs that reach 0.55 (notes/catalog.md).
        ``rare_tokens=None`` makes every shared token a key: exact, and slow on big inputs.
        `progress` hears how many listings have been searched, after each slice of them.
        """
        n = self.size
        x = self._vectors
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(x.indptr))
        cols = x.indices.astype(np.int64)
        # Keys are (partition, token) pairs: one sparse product then finds pairs inside partitions
        # only. Title codes and colours are the partition itself, so they are no keys of their own.
        # The partition itself is one more key of the listings whose titles name a code or colour:
        # a small partition (a rare model code) is one product or a few.
        is_key = self._is_key_token[cols]
        keyed = np.flatnonzero(self._keyed)
        width = len(self.vocabulary) + 1
        krows = np.r_[rows[is_key], keyed]
        kcols = np.r_[cols[is_key], np.full(len(keyed), width - 1)]
        keys, key_id, key_df = np.unique(self.partition[krows] * width + kcols, return_inverse=True,
                                         return_counts=True)
        kdf = key_df[key_id]
        if rare_tokens is None:
            chosen = np.flatnonzero(kdf >= 2)
            value = np.ones(len(chosen))
            need = 1.0
        else:
            usable = np.flatnonzero((kdf >= 2) & (kdf <= max_df))  # a key held by one listing finds nothing
            order = usable[np.lexsort((kcols[usable], kdf[usable], krows[usable]))]  # per listing, rarest first
            ranked = krows[order]
            starts = np.r_[0, np.flatnonzero(np.diff(ranked)) + 1]
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            chosen = order[rank < rare_tokens]
            # A rare key counts double: one shared brand says as much as two shared common words.
            value = np.where(kdf[chosen] <= rare_df, 2.0, 1.0)
            need = 2.0
        k = sp.csr_matrix((value, (krows[chosen], key_id[chosen])), shape=(n, len(keys)))
        kt = sp.csr_matrix(k.T)
        # Candidates are found and scored a slice of rows at a time, so that only the matches
        # are ever held (half a million listings make ten million candidates).
        lefts, rights, scores = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        candidates = 0
        step = 20_000
        for s in range(0, n, step):
            c = sp.coo_matrix(k[s:s + step] @ kt)
            keep = (c.row + s < c.col) & (c.data >= need)
            left, right = c.row[keep].astype(np.int64) + s, c.col[keep].astype(np.int64)
            candidates += len(left)
            score = np.minimum(rowwise_dot(x, left, right), 1.0)
            keep = score >= threshold
            left, right, score = left[keep], right[keep], score[keep]
            keep = ~self.conflicts(left, right)
            lefts.append(left[keep])
            rights.append(right[keep])
            scores.append(score[keep])
            if progress is not None:
                progress(min(s + step, n))
        return TextMatches(np.concatenate(lefts), np.concatenate(rights), np.concatenate(scores), candidates)
