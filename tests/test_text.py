"""assoc.text: the normaliser, the similarity rules, and the candidate search against brute force."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assoc.text import (
    Normaliser,
    TextIndex,
    brute_force_matches,
    conflicts,
    normalise,
    text_similarity,
    token_weights,
)

THRESHOLD = 0.55  # the catalog's text threshold; similar listings below must clear it


def tokens(title: str, description: str = "") -> frozenset[str]:
    return normalise(title, description).tokens


# ------------------------------------------------------------------------------------ normaliser


@pytest.mark.parametrize("variants", [
    ("Water Bottle 500 ml", "water bottle 500ML", "WATER BOTTLE 0.5 L", "Water Bottle 0.5l"),
    ("Phone 64GB", "phone 64 gb", "Phone 64 GB"),
    ("Cable 1m", "Cable 100 cm", "cable 1000mm"),
    ("Socks 2PCS", "Socks 2 pcs", "Socks Pack of 2", "socks pack, of 2", "Socks 2 x"),
    ("Dash Cam K740", "dash cam k740", "DASH CAM K-740", "Ｄａｓｈ Ｃａｍ Ｋ７４０"),
    ("Mug Grey", "Mug Gray", "mug GREY"),
])
def test_spellings_of_one_thing_normalise_alike(variants):
    assert len({tokens(v) for v in variants}) == 1, [tokens(v) for v in variants]


@pytest.mark.parametrize("title", [
    "Hot Sale New Dash Cam K740 Free Shipping",
    "2024 New Dash Cam K740 High Quality",
    "Dash Cam K740 Best Seller 1PC",
    "Dash Cam K740 In Stock Factory Direct Limited Edition",
])
def test_marketing_filler_is_dropped(title):
    assert tokens(title) == tokens("Dash Cam K740")


def test_discriminating_tokens_are_kept_by_kind():
    got = tokens("XR-200 Pro Dash Cam Rose Gold 64GB XL 3PCS 4K for Truck")
    assert {"c:xr200pro", "o:rosegold", "u:64gb", "z:xl", "q:3", "u:4k", "w:dash", "w:cam", "w:truck"} == got
    assert {"m:leather", "m:wood", "w:case"} == tokens("Leather Wooden Case")


@pytest.mark.parametrize("title, expected", [
    ("Glow in the Dark Green Kite", "o:green"),  # "the dark" is no shade
    ("Dark Green Kite", "o:darkgreen"),
    ("Kite Wine - Red", "o:winered"),  # separators between the words of a colour
    ("Stainless Steel Night Light Silver", "o:silver"),  # nouns before a colour are no shade
])
def test_colour_compounds(title, expected):
    assert [t for t in tokens(title) if t.startswith("o:")] == [expected]


def test_model_qualifiers_belong_to_the_code():
    assert "c:k20pro" in tokens("K20 Pro Phone Case")
    assert "c:k20pro" in tokens("K20 | PRO phone case")
    assert "c:15promax" in tokens("iPhone 15 Pro Max case")
    assert "c:k20" in tokens("K20 Phone Case for Pro Users")  # a word later on is no qualifier


def test_plurals_and_hyphens():
    assert tokens("Anti-Slip Toys") == tokens("antislip toy")
    assert tokens("Water-Proof Boxes") == tokens("waterproof box")


def test_description_facts_only_reveal_conflicts():
    plain = normalise("Steering Wheel Cover")
    described = normalise("Steering Wheel Cover", "Soft cover. Model: K618. Colour: Brown. Size: 12V.")
    assert plain.tokens == described.tokens  # descriptions add no words to compare
    assert {"c:k618", "o:brown", "u:12v"} <= described.facts
    assert described.key == plain.key  # only title codes and colours partition


SHARED = Normaliser()  # a normaliser that has seen many texts must answer as a fresh one


@given(st.text(max_size=60), st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_normalising_is_stable_and_total(title, other):
    SHARED.normalise(other)
    a = SHARED.normalise(title)
    assert a == normalise(title)
    assert all(t[:2] in {"w:", "c:", "o:", "z:", "u:", "q:", "n:", "m:"} and len(t) > 2 for t in a.tokens)
    assert a.key == {t for t in a.tokens if t[:2] in ("c:", "o:")}
    assert {t for t in a.tokens if t[0] != "w"} <= a.facts


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
@settings(max_examples=200, deadline=None)
def test_case_does_not_matter(title):
    assert normalise(title.upper()) == normalise(title.lower())


# ------------------------------------------------------------------------------------ similarity

BASE = "Quegli Portable PU Leather Dash Cam L8601 Max for Truck Black 500ml"


@pytest.mark.parametrize("variant", [
    "Quegli Portable PU Leather Dash Cam L8602 Max for Truck Black 500ml",  # model number
    "Quegli Portable PU Leather Dash Cam L8601 Pro for Truck Black 500ml",  # model qualifier
    "Quegli Portable PU Leather Dash Cam L8601 for Truck Black 500ml",  # qualifier missing
    "Quegli Portable PU Leather Dash Cam L8601S Max for Truck Black 500ml",  # letter suffix
    "Quegli Portable PU Leather Dash Cam L8601 Max for Truck Wine Red 500ml",  # colour
    "Quegli Portable PU Leather Dash Cam L8601 Max for Truck Dark Green 500ml",
    "Quegli Portable PU Leather Dash Cam L8601 Max for Truck Black 750ml",  # capacity
    "Quegli Portable PU Leather Dash Cam L8601 Max for Truck Black 1L",
    "Quegli Portable PU Leather Dash Cam L8601 Max for Truck 500ml",  # colour on one side only
    "Quegli Portable PU Leather Dash Cam for Truck Black 500ml",  # code on one side only
])
def test_family_variants_do_not_match(variant):
    assert text_similarity(BASE, variant) == 0.0
    assert conflicts(normalise(BASE), normalise(variant))


@pytest.mark.parametrize("a, b", [
    ("Breathable T-Shirt Blue S", "Breathable T-Shirt Blue XL"),  # size words
    ("Breathable T-Shirt Blue Small", "Breathable T-Shirt Blue Large"),
    ("Phone K20 Black 64GB", "Phone K20 Black 128 GB"),
    ("Blocks 100 Pcs Red", "Blocks 500 Pcs Red"),
])
def test_sizes_and_capacities_conflict(a, b):
    assert text_similarity(a, b) == 0.0


@pytest.mark.parametrize("a, b", [
    ("Stretchy Quick Dry Linen Scarf Pink", "Stretchy Quick Dry Cotton Scarf Pink"),
    ("Reflective Rubber Pet Bed Blue L", "Reflective Cardboard Pet Bed Blue L"),
    ("Wooden Cutting Board Large", "Bamboo Cutting Board Large"),
    ("Kitchen Spatula Black", "Kitchen Spatula Black"),  # the same title; the description names the material
])
def test_materials_conflict(a, b):
    da, db = ("Material: Silicone.", "Material: Stainless Steel.") if a == b else ("", "")
    assert conflicts(normalise(a, da), normalise(b, db))
    assert text_similarity(normalise(a, da), normalise(b, db)) == 0.0


def test_a_material_on_one_side_only_is_unknown_not_different():
    assert text_similarity("Stretchy Quick Dry Linen Scarf Pink", "Stretchy Quick Dry Scarf Pink") >= THRESHOLD
    assert text_similarity("Aluminum Water Bottle 500ml", "Aluminium Water Bottle 500ml") == pytest.approx(1.0)


@pytest.mark.parametrize("variant", [
    "Truck Dash Cam L8601 Max Quegli PU Leather Portable Black 500ml",  # reordered
    "Hot Sale Quegli Portable PU Leather Dash Cam L8601 Max for Truck Black 500ml Free Shipping",  # marketing
    "Quegli Dash Cam L8601 Max for Truck Black 500ml",  # words removed
    "QUEGLI PORTABLE PU LEATHER DASH CAM L8601 MAX FOR TRUCK BLACK 500ML",  # case
    "Quegli Portable PU Leather Dash Cam L8601 Max for Truck Black",  # size dropped
    "quegli portable pu leather dash-cam l-8601 max | for truck black 0.5 L",  # spelling
    "Quegli Compact PU Leather Dash Cam L8601 Max for Truck Black 500ml",  # a synonym
])
def test_reworded_listings_match(variant):
    assert text_similarity(BASE, variant) >= THRESHOLD


def test_description_conflict():
    a = normalise("Steering Wheel Cover Brown", "Model: K618.")
    b = normalise("Steering Wheel Cover Brown", "Model: K619.")
    c = normalise("Steering Wheel Cover Brown")
    assert text_similarity(a, b) == 0.0
    assert text_similarity(a, c) == pytest.approx(1.0)


def test_cutoff_and_weights():
    a, b = "Portable Dash Cam K740 Black", "Dash Cam K740 Black"
    score = text_similarity(a, b)
    assert 0.0 < score < 1.0
    assert text_similarity(a, b, cutoff=score + 0.01) == 0.0
    assert text_similarity(a, b, cutoff=score - 0.01) == score
    # with "portable" weighing nothing, the one difference disappears
    weights = {t: 1.0 for t in tokens(a)} | {"w:portable": 0.0}
    assert text_similarity(a, b, weights=weights) == pytest.approx(1.0)


@given(st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_similarity_is_symmetric_and_bounded(a, b):
    s = text_similarity(a, b)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(text_similarity(b, a))


# ------------------------------------------------------------------------------ candidate search

WORDS = ("portable wireless leather steel cotton dash cam phone case bottle mug lamp gloves mat "
         "travel kids car office home compact magnetic").split()
COLOURS = ("Black", "Red", "Blue", "Rose Gold", "")
CODES = ("K20", "K21", "XR-200", "A7", "")
EXTRAS = ("", "", "500ml", "2PCS", "XL", "Hot Sale")


def random_titles(seed: int, n: int) -> list[str]:
    """Titles drawn from a small vocabulary: many near duplicates, variants and strangers."""
    rng = random.Random(seed)
    bases = [" ".join(rng.sample(WORDS, rng.randint(2, 6))) + " " + rng.choice(CODES) + " " + rng.choice(COLOURS)
             for _ in range(n // 4)]
    titles = []
    for _ in range(n):
        words = rng.choice(bases).split()
        if len(words) > 2 and rng.random() < 0.5:
            words.pop(rng.randrange(len(words)))  # a word removed (maybe the code or colour: a variant)
        rng.shuffle(words)
        titles.append(" ".join(words) + " " + rng.choice(EXTRAS))
    return titles


def pairs_of(found) -> dict[tuple[int, int], float]:
    return {(int(i), int(j)): float(s) for i, j, s in zip(found.left, found.right, found.score, strict=True)}


@pytest.mark.parametrize("seed", range(6))
def test_exact_search_equals_brute_force(seed):
    texts = [normalise(t) for t in random_titles(seed, 120)]
    oracle = pairs_of(brute_force_matches(texts, threshold=THRESHOLD))
    found = pairs_of(TextIndex(texts).matches(threshold=THRESHOLD, rare_tokens=None))
    assert oracle, "the random titles should contain duplicates"
    assert found.keys() == oracle.keys()
    assert all(found[p] == pytest.approx(oracle[p]) for p in found)


@pytest.mark.parametrize("seed", range(6))
def test_fast_search_is_a_subset_with_high_recall(seed):
    texts = [normalise(t) for t in random_titles(100 + seed, 200)]
    oracle = pairs_of(brute_force_matches(texts, threshold=THRESHOLD))
    found = pairs_of(TextIndex(texts).matches(threshold=THRESHOLD))
    assert found.keys() <= oracle.keys()
    assert all(found[p] == pytest.approx(oracle[p]) for p in found)
    assert len(found) >= 0.9 * len(oracle)


def test_index_similarity_equals_pairwise_similarity():
    titles = random_titles(7, 80)
    texts = [normalise(t) for t in titles]
    weights = token_weights(texts)
    index = TextIndex(texts)
    left, right = np.triu_indices(len(texts), 1)
    batch = index.similarity(left, right)
    single = [text_similarity(texts[i], texts[j], weights=weights) for i, j in zip(left, right, strict=True)]
    assert batch == pytest.approx(single)


def test_index_from_listings_equals_index_of_texts():
    titles = random_titles(8, 60)
    listings = [(t, "Model: K20." if k % 3 == 0 else "") for k, t in enumerate(titles)]
    a = pairs_of(TextIndex([normalise(t, d) for t, d in listings]).matches(threshold=THRESHOLD))
    b = pairs_of(TextIndex.from_listings(listings).matches(threshold=THRESHOLD))
    assert a.keys() == b.keys()
    assert [a[p] for p in a] == pytest.approx([b[p] for p in a])


def test_index_does_not_depend_on_how_the_work_is_split():
    listings = [(t, "Colour: Red." if k % 5 == 0 else "") for k, t in enumerate(random_titles(9, 150))]
    one = TextIndex.from_listings(listings)
    split = TextIndex.from_listings(listings, workers=2, chunk=40)
    assert one.vocabulary == split.vocabulary
    a, b = one.matches(threshold=THRESHOLD), split.matches(threshold=THRESHOLD)
    assert pairs_of(a) == pairs_of(b)  # bit for bit: tokens are numbered in sorted order
