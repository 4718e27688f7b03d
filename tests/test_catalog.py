"""assoc.catalog: overlap arithmetic, grouping without chaining, and compare_catalogs end to end."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from assoc.catalog import common_store_count, compare_catalogs, group_listings
from assoc.records import Product
from assoc.settings import Settings

TEXT_ONLY = Settings(use_images=False, cache_dir=None)


def listing(store: str, product: str, title: str, images: tuple[str, ...] = (), description: str = "") -> Product:
    return Product(store_id=store, product_id=product, title=title, description=description, images=images)


def catalog(store: str, *codes: str) -> list[Product]:
    """One listing per code; codes differ, so listings with different codes never match."""
    return [listing(store, f"{store}-{k}", f"Widget {code} Zenbrook") for k, code in enumerate(codes)]


def groups(result, *keys: tuple[str, str]) -> set[int]:
    return {result.group_of[key] for key in keys}


# ------------------------------------------------------------------------------- overlap arithmetic


def test_overlap_counts_distinct_groups_of_the_smaller_catalog():
    products = (catalog("A", "K101", "K102", "K103", "K104", "K101")  # K101 listed twice: counts once
                + catalog("B", "K101", "K102", "K201", "K202", "K203", "K204", "K205", "K206")
                + catalog("C", "K301", "K302"))
    result = compare_catalogs(products, Path("."), TEXT_ONLY)
    assert set(result.overlaps) == {("A", "B")}  # C shares nothing
    pair = result.overlaps["A", "B"]
    assert (pair.store_a, pair.store_b) == ("A", "B")
    assert pair.shared_groups == 2
    assert pair.overlap == pytest.approx(2 / 4)
    assert pair.share_a == pytest.approx(2 / 4)
    assert pair.share_b == pytest.approx(2 / 8)
    assert pair.common_groups == 0
    assert result.group_of["A", "A-0"] == result.group_of["A", "A-4"] == result.group_of["B", "B-0"]
    assert result.group_stores[result.group_of["A", "A-0"]] == 2
    matched = {(m.product_a, m.product_b) for m in result.matches}
    assert matched in ({("A-0", "B-0"), ("A-1", "B-1")}, {("A-4", "B-0"), ("A-1", "B-1")})


def test_pairs_below_the_report_floor_are_left_out():
    products = (catalog("A", *[f"K{k}" for k in range(100, 120)])
                + catalog("B", "K100", *[f"K{k}" for k in range(200, 219)]))
    assert compare_catalogs(products, Path("."), TEXT_ONLY).overlaps == {}  # 1/20 < 0.10
    low_floor = Settings(use_images=False, cache_dir=None, catalog_report_floor=0.05)
    assert compare_catalogs(products, Path("."), low_floor).overlaps["A", "B"].overlap == pytest.approx(0.05)


def test_stock_listed_by_many_stores_counts_and_is_reported_as_common():
    products = []
    stores = [f"S{k:02d}" for k in range(12)]
    for k, store in enumerate(stores):
        # every store resells one stock product; stores pair up on one own product each
        products += catalog(store, "K999", f"K{500 + k // 2}", f"K{600 + k}", f"K{700 + k}")
    result = compare_catalogs(products, Path("."), TEXT_ONLY)
    stock = result.group_of["S00", "S00-0"]
    assert result.group_stores[stock] == 12
    partners = result.overlaps["S00", "S01"]
    assert (partners.shared_groups, partners.common_groups) == (2, 1)
    assert partners.overlap == pytest.approx(2 / 4)
    strangers = result.overlaps["S00", "S02"]  # the stock product alone: still counted
    assert (strangers.shared_groups, strangers.common_groups) == (1, 1)
    assert strangers.overlap == pytest.approx(1 / 4)
    assert result.stats["common_groups"] == 1


def test_common_threshold_is_relative_to_the_data():
    assert common_store_count(np.array([1, 1, 2, 2, 2, 3])) == 6
    assert common_store_count(np.array([1, 4, 4, 4, 9])) == 12
    assert common_store_count(np.array([1, 1, 1])) == 6  # nothing shared: the floor of 5 and twice 3
    assert common_store_count(np.array([], dtype=int)) == 6


# ----------------------------------------------------------------------------------------- grouping


def clique(nodes: list[int]) -> list[tuple[int, int]]:
    return list(combinations(nodes, 2))


def test_a_bridge_does_not_merge_two_groups():
    a, b, bridge = list(range(6)), list(range(6, 12)), 12
    pairs = clique(a) + clique(b) + [(x, bridge) for x in a + b]
    left, right = (np.array(x) for x in zip(*pairs, strict=True))
    labels = group_listings(13, left, right)
    assert len(set(labels[a])) == 1
    assert len(set(labels[b])) == 1
    assert labels[0] != labels[6]


def test_a_chain_of_single_links_is_cut():
    left, right = np.arange(7), np.arange(1, 8)  # 0-1-2-...-7: every link alone
    labels = group_listings(8, left, right)
    assert len(set(labels)) > 2


def test_a_clique_and_an_isolated_pair_stay_whole():
    left, right = (np.array(x) for x in zip(*(clique([0, 1, 2, 3, 4]) + [(5, 6)]), strict=True))
    labels = group_listings(8, left, right)
    assert labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 2]  # numbered by first listing


def test_family_variants_stay_in_their_own_groups():
    titles = {
        "k20-black": ["Quegli Dash Cam K20 Black", "Hot Sale Quegli Portable Dash Cam K20 Black",
                      "DASH CAM K20 BLACK QUEGLI"],
        "k20-red": ["Quegli Dash Cam K20 Red", "Quegli Portable Dash Cam K20 Red Free Shipping"],
        "k21-black": ["Quegli Dash Cam K21 Black", "quegli dash cam k21 black 2024 new"],
        "k20-black-64": ["Quegli Dash Cam K20 Black 64GB", "Quegli Dash Cam K20 Black 64 GB Premium"],
        "k20-black-128": ["Quegli Dash Cam K20 Black 128GB"],
    }
    products = [listing(f"S{k}", name, title) for name, group in titles.items() for k, title in enumerate(group)]
    result = compare_catalogs(products, Path("."), TEXT_ONLY)
    for name, group in titles.items():
        assert len(groups(result, *[(f"S{k}", name) for k in range(len(group))])) == 1, name
    first = {name: result.group_of["S0", name] for name in titles}
    # a listing that states no capacity may join either capacity, but 64GB and 128GB stay apart
    assert len({first[name] for name in titles if name != "k20-black"}) == 4


def test_generic_listing_does_not_chain_two_products():
    red = [f"Zorblax Steel Folding Camping Lantern Red {extra}" for extra in ("", "Hot Sale", "Premium", "New")]
    other = [f"Quimbo Plastic Rechargeable Camping Lantern Red {extra}" for extra in ("", "Hot Sale", "Premium", "New")]
    products = ([listing(f"A{k}", "p", t) for k, t in enumerate(red)]
                + [listing(f"B{k}", "p", t) for k, t in enumerate(other)]
                + [listing("G", "p", "Camping Lantern Red")])
    result = compare_catalogs(products, Path("."), TEXT_ONLY)
    assert len(groups(result, *[(f"A{k}", "p") for k in range(4)])) == 1
    assert len(groups(result, *[(f"B{k}", "p") for k in range(4)])) == 1
    assert result.group_of["A0", "p"] != result.group_of["B0", "p"]


# ----------------------------------------------------------------------------------- end to end


def picture(path: Path, colour: tuple[int, int, int], *, mirror: bool = False, size: int = 160) -> str:
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((size * 0.2, size * 0.3, size * 0.55, size * 0.8), fill=colour)
    draw.ellipse((size * 0.5, size * 0.15, size * 0.85, size * 0.5), fill=(40, 40, 40))
    draw.polygon([(size * 0.1, size * 0.9), (size * 0.4, size * 0.85), (size * 0.2, size * 0.6)], fill=(200, 160, 20))
    if mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=92)
    return path.name


def test_compare_catalogs_end_to_end(tmp_path):
    images = tmp_path / "images"
    picture(images / "a1.jpg", (30, 80, 200))
    picture(images / "b1.jpg", (30, 80, 200), mirror=True, size=200)  # a seller's copy
    picture(images / "d1.jpg", (30, 80, 200), size=120)  # another copy
    picture(images / "c1.jpg", (200, 30, 40))  # the same drawing in red: another product
    products = [
        listing("A", "a1", "Vintage Canvas Tote Bag Large", ("images/a1.jpg",)),
        listing("A", "a2", "Portable Dash Cam K740 Black", ("https://example.com/x.jpg",)),
        listing("A", "a3", "Leather Wallet X88 Brown", ("images/missing.jpg",)),
        listing("B", "b1", "Canvas Shopping Bag For Women", ("images/b1.jpg",)),  # reworded: the picture decides
        listing("B", "b2", "Hot Sale DASH CAM K740 Black Portable"),
        listing("C", "c1", "Vintage Canvas Tote Bag Large", ("images/c1.jpg",)),
        listing("C", "c2", "Dash Cam K741 Black"),  # another model
        listing("D", "d1", "", ("images/d1.jpg",)),  # no title: the picture alone
        listing("D", "d2", "Garden Hose Reel"),
    ]
    with_images = compare_catalogs(products, tmp_path, Settings(cache_dir=None))
    assert with_images.group_of["A", "a1"] == with_images.group_of["B", "b1"] == with_images.group_of["D", "d1"]
    assert with_images.group_of["A", "a2"] == with_images.group_of["B", "b2"]
    assert with_images.group_of["C", "c2"] != with_images.group_of["A", "a2"]
    assert with_images.overlaps["A", "B"].shared_groups == 2
    assert with_images.overlaps["A", "B"].overlap == pytest.approx(2 / 2)
    assert with_images.overlaps["A", "D"].overlap == pytest.approx(1 / 2)
    assert with_images.stats["image_urls_skipped"] == 1
    assert with_images.stats["image_matches"] >= 2
    assert [(r.file, r.line) for r in with_images.rejected] == [("products.csv", 0)]
    assert "missing.jpg" in with_images.rejected[0].reason and "missing" in with_images.rejected[0].reason
    by_pair = {(m.product_a, m.product_b): m for m in with_images.matches}
    assert by_pair["a2", "b2"].text_similarity > 0.5
    assert by_pair["a2", "b2"].image_distance is None  # no pictures on both sides
    assert by_pair["a1", "b1"].image_distance is not None
    assert 0.0 < by_pair["a1", "b1"].text_similarity < 0.55  # the text alone would not match

    text_only = compare_catalogs(products, tmp_path, TEXT_ONLY)
    assert text_only.group_of["A", "a1"] != text_only.group_of["B", "b1"]
    assert text_only.group_of["A", "a1"] == text_only.group_of["C", "c1"]  # the text cannot see the colour
    assert text_only.overlaps["A", "B"].shared_groups == 1
    assert text_only.rejected == []

    images_only = compare_catalogs(products, tmp_path, Settings(use_text=False, cache_dir=None))
    assert images_only.group_of["A", "a1"] == images_only.group_of["B", "b1"] == images_only.group_of["D", "d1"]
    assert images_only.group_of["A", "a1"] != images_only.group_of["C", "c1"]
    assert all(m.text_similarity is None for m in images_only.matches)


def test_empty_and_single_store_inputs():
    empty = compare_catalogs([], Path("."), TEXT_ONLY)
    assert (empty.overlaps, empty.matches, empty.group_of) == ({}, [], {})
    alone = compare_catalogs(catalog("A", "K1", "K1", "K2"), Path("."), TEXT_ONLY)
    assert alone.overlaps == {}
    assert len(set(alone.group_of.values())) == 2
