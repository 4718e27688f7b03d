"""Product-export collector: Shopify's CSV (continuation rows, HTML bodies), generic CSV / JSON Lines, merging."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from assoc import Settings, read_bundle, scan
from fingerprints import CollectReport, ConflictError, InputError, ProductColumns, ProductsCollector
from fingerprints.products import html_to_text

SHOPIFY_HEADER = ("Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,"
                  "Option1 Value,Variant SKU,Variant Grams,Variant Inventory Qty,Variant Price,"
                  "Variant Compare At Price,Image Src,Image Position,Image Alt Text,Variant Image,Status")
SHOPIFY_EXPORT = SHOPIFY_HEADER + "\n" + "\n".join([
    'camping-lantern,LED Camping Lantern,"<p>Bright <strong>LED</strong> lantern &amp; hook.</p>'
    '<ul><li>500 lumen</li><li>USB-C</li></ul><script>track()</script>",Acme,,Lighting,"camp, led",TRUE,'
    'Color,Red,LAN-R,300,5,19.99,24.99,https://cdn.example.com/lantern-1.jpg,1,front,,active',
    'camping-lantern,,,,,,,,,Blue,LAN-B,300,2,17.50,,https://cdn.example.com/lantern-2.jpg,2,,'
    'https://cdn.example.com/lantern-blue.jpg,',
    'camping-lantern,,,,,,,,,,,,,,,https://cdn.example.com/lantern-0.jpg,0,,,',
    'silk-scarf,Silk Scarf,"Pure silk<br>scarf, 90&times;90 cm",Acme,,Scarves,,TRUE,Title,Default Title,'
    'SC-1,50,9,35.00,,images/scarf.png,1,,,draft',
])


def _products(bundle: Path) -> dict[str, dict[str, str]]:
    with open(bundle / "products.csv", newline="", encoding="utf-8") as handle:
        return {r["product_id"]: r for r in csv.DictReader(handle)}


def _shopify(tmp_path: Path, text: str = SHOPIFY_EXPORT, **options) -> tuple[Path, Path]:
    return _shopify_report(tmp_path, text, **options)[:2]


def _shopify_report(tmp_path: Path, text: str = SHOPIFY_EXPORT, **options) -> tuple[Path, Path, CollectReport]:
    source = tmp_path / "products_export_1.csv"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "bundle"
    report = ProductsCollector(file=source, store_id="S1", currency="usd", **options).collect(out)
    return source, out, report


def test_shopify_export_continuation_rows_and_html(tmp_path):
    _, out = _shopify(tmp_path)
    products = _products(out)
    lantern = products["camping-lantern"]
    assert lantern["title"] == "LED Camping Lantern"
    assert lantern["description"] == "Bright LED lantern & hook. 500 lumen USB-C"  # no tags, no script
    assert lantern["price"] == "17.50"  # the lowest variant price
    assert lantern["currency"] == "USD"
    assert lantern["images"].split("|") == [
        "https://cdn.example.com/lantern-0.jpg", "https://cdn.example.com/lantern-1.jpg",
        "https://cdn.example.com/lantern-2.jpg", "https://cdn.example.com/lantern-blue.jpg"]
    assert products["silk-scarf"]["description"] == "Pure silk scarf, 90×90 cm"
    bundle = read_bundle(out)
    assert list(bundle.stores) == ["S1"] and len(bundle.products) == 2


def test_shopify_bad_price_and_clashing_title_are_reported_with_lines(tmp_path):
    text = SHOPIFY_EXPORT + "\nsilk-scarf,Wool Scarf,,,,,,,,,,,,12.00,,,,,,\nmug,Mug,,,,,,,,,,,,twelve,,,,,,\n"
    with pytest.raises(InputError) as caught:
        _shopify(tmp_path, text)
    source = tmp_path / "products_export_1.csv"
    assert caught.value.problems == [
        f"{source} line 6: handle 'silk-scarf' has title 'Silk Scarf' at line 5 and 'Wool Scarf' here; "
        "one Handle must be one product",
        f"{source} line 7: price 'twelve' is not a decimal number (e.g. 19.99)",
    ]
    # With --skip-invalid a product with a bad row is left out whole (not written from its good cells), and the
    # report says so: what the report calls skipped is not in the bundle.
    _, out, report = _shopify_report(tmp_path, text, skip_invalid=True)
    assert set(_products(out)) == {"camping-lantern"}
    assert report.counts["products"] == 1 and report.counts["products_left_out"] == 2
    assert report.notes == ["product 'silk-scarf' of store 'S1' left out whole: bad row(s) at line(s) 6",
                            "product 'mug' of store 'S1' left out whole: bad row(s) at line(s) 7"]


def test_shopify_variant_with_a_bad_price_leaves_the_product_out(tmp_path):
    # The bad price is on a continuation row: writing the lantern from its other rows would give it a price
    # and images its export does not say, so it is left out, like a generic row with a bad price.
    text = SHOPIFY_EXPORT.replace(",17.50,", ",17;50,")
    _, out, report = _shopify_report(tmp_path, text, skip_invalid=True)
    assert set(_products(out)) == {"silk-scarf"}
    assert [str(p) for p in report.problems] == [
        f"{tmp_path / 'products_export_1.csv'} line 3: price '17;50' is not a decimal number (e.g. 19.99)"]
    assert report.notes == ["product 'camping-lantern' of store 'S1' left out whole: bad row(s) at line(s) 3"]


def test_generic_jsonl_gzip_with_mapping(tmp_path):
    items = [
        {"sku": "A-1", "name": "Red Mug", "body": "<b>Ceramic</b> mug", "cost": "$7.5", "ccy": "eur",
         "pics": ["https://img.example.com/a.jpg", "images/a2.jpg"]},
        {"sku": "A-2", "name": "Blue Mug", "cost": 8},
    ]
    source = tmp_path / "catalog.jsonl.gz"
    source.write_bytes(gzip.compress("\n".join(json.dumps(i) for i in items).encode()))
    columns = ProductColumns(product_id="sku", title="name", description="body", price="cost", currency="ccy",
                             images="pics", explicit=frozenset({"product_id", "title", "price", "images"}))
    out = tmp_path / "bundle"
    ProductsCollector(file=source, store_id="S7", columns=columns).collect(out)
    products = _products(out)
    assert products["A-1"] == {"store_id": "S7", "product_id": "A-1", "title": "Red Mug",
                               "description": "Ceramic mug", "price": "7.5", "currency": "EUR",
                               "images": "https://img.example.com/a.jpg|images/a2.jpg"}
    assert products["A-2"]["price"] == "8"


def test_generic_csv_of_many_stores(tmp_path):
    source = tmp_path / "export.csv"
    source.write_text("shop,id,title,price\nS1,p1,Lamp,10\nS2,p1,Lamp,11\nS2,p1,Lamp again,12\n")
    columns = ProductColumns(store="shop", explicit=frozenset({"store"}))
    with pytest.raises(InputError, match=r"line 4: duplicate product_id 'p1' \(first at line 3\)"):
        ProductsCollector(file=source, columns=columns).collect(tmp_path / "bundle")
    report = ProductsCollector(file=source, columns=columns, skip_invalid=True).collect(tmp_path / "bundle")
    # Which of the two p1 rows of S2 is the product cannot be known: neither is written, and the report says so.
    assert {s for s in read_bundle(tmp_path / "bundle").stores} == {"S1"}
    assert report.counts["products"] == 1 and report.counts["products_left_out"] == 1
    assert report.notes == ["product 'p1' of store 'S2' left out whole: bad row(s) at line(s) 4"]


def test_generic_bad_cells_leave_the_product_out_and_say_so(tmp_path):
    source = tmp_path / "export.csv"
    source.write_text("id,title,price,currency\np1,Lamp,10,USD\np2,Mug,ten,USD\np3,Cup,3,dollars\n")
    report = ProductsCollector(file=source, store_id="S1", skip_invalid=True).collect(tmp_path / "bundle")
    assert set(_products(tmp_path / "bundle")) == {"p1"}
    assert report.problem_count == 2 and report.counts["products_left_out"] == 2
    assert report.notes == ["product 'p2' of store 'S1' left out whole: bad row(s) at line(s) 3",
                            "product 'p3' of store 'S1' left out whole: bad row(s) at line(s) 4"]


def test_reimport_is_idempotent_and_a_changed_product_needs_replace(tmp_path):
    source, out = _shopify(tmp_path)
    before = (out / "products.csv").read_bytes()
    ProductsCollector(file=source, store_id="S1", currency="USD").collect(out)
    assert (out / "products.csv").read_bytes() == before
    source.write_text(SHOPIFY_EXPORT.replace("35.00", "39.00"), encoding="utf-8")
    with pytest.raises(ConflictError) as caught:
        ProductsCollector(file=source, store_id="S1", currency="USD").collect(out)
    assert (f"product 'silk-scarf' of store 'S1': price '35.00' ({out}/products.csv line 3) vs '39.00' "
            f"({source} line 5)") in str(caught.value)
    assert (out / "products.csv").read_bytes() == before  # nothing written
    report = ProductsCollector(file=source, store_id="S1", currency="USD", replace=True).collect(out)
    assert report.counts["replaced"] == 1 and _products(out)["silk-scarf"]["price"] == "39.00"


def test_shopify_needs_a_store_id(tmp_path):
    source = tmp_path / "export.csv"
    source.write_text(SHOPIFY_EXPORT)
    with pytest.raises(Exception, match="pass --store-id"):
        ProductsCollector(file=source).collect(tmp_path / "bundle")


def test_two_stores_with_one_catalog_scan_as_overlapping(tmp_path):
    out = tmp_path / "bundle"
    titles = ["Solar Garden Light 4 Pack", "Stainless Steel Water Bottle 750ml", "Bamboo Cutting Board Set",
              "Wireless Earbuds Bluetooth 5.3", "Yoga Mat Non Slip 6mm", "LED Desk Lamp Dimmable"]
    for store in ("A", "B"):
        lines = ["Handle,Title,Body (HTML),Variant Price,Image Src"]
        lines += [f"item-{i},{title},<p>{title} for home</p>,{10 + i}.00," for i, title in enumerate(titles)]
        source = tmp_path / f"{store}.csv"
        source.write_text("\n".join(lines) + "\n")
        ProductsCollector(file=source, store_id=store).collect(out)
    result = scan(read_bundle(out), Settings(cache_dir=None, use_images=False))
    assert [(p.store_a, p.store_b, p.linked) for p in result.pairs] == [("A", "B", True)]
    assert result.pairs[0].catalog_overlap == 1.0


def test_html_to_text():
    assert html_to_text("<div>a<br/>b</div><style>x{}</style>&lt;c&gt;&nbsp;d") == "a b <c> d"
