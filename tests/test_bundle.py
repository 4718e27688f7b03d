"""Tests for assoc.bundle: reading and validating a bundle in its CSV and JSONL forms.

Most tests call the library (read_bundle); the CLI tests at the end check only the wiring:
exit code 2, the message, and OUTDIR/rejected.csv under --skip-invalid.
"""

from __future__ import annotations

import csv
import importlib
import io
import sys
import types
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _bundle_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    try:
        from assoc import bundle, errors, records
    except ImportError:  # guard until catalog/normalise land
        # assoc/__init__ imports the whole pipeline (scan -> index -> normalise), so while a stage
        # is missing even `from assoc.bundle import ...` fails. bundle.py needs only errors and
        # records: load the three under a private package name, leaving sys.modules["assoc"] alone.
        name = "_assoc_bundle_only"
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(Path(__file__).resolve().parents[1] / "assoc")]
            sys.modules[name] = package
        bundle = importlib.import_module(f"{name}.bundle")
        errors = importlib.import_module(f"{name}.errors")
        records = importlib.import_module(f"{name}.records")
    return bundle, errors, records


_bundle, _errors, _records = _bundle_modules()
read_bundle = _bundle.read_bundle
parse_timestamp = _bundle.parse_timestamp
BundleError = _errors.BundleError
Product = _records.Product
Signal = _records.Signal
Store = _records.Store

STORES_CSV = "store_id,name\nS1,One\nS2,Two\n"


def problems_of(path: Path, *, skip_invalid: bool = False) -> list[str]:
    with pytest.raises(BundleError) as info:
        read_bundle(path, skip_invalid=skip_invalid)
    return info.value.problems


def contents(bundle) -> tuple[dict, Counter, Counter]:
    """What a bundle holds, independent of the order rows were read in."""
    return bundle.stores, Counter(bundle.signals), Counter(bundle.products)


def rejected(bundle) -> list[tuple[str, int, str]]:
    return [(r.file, r.line, r.reason) for r in bundle.rejected]


# ------------------------------------------------------------------------- both forms, valid input

RICH_STORES = [
    {"store_id": "S1", "name": "Acme, Inc.", "platform": "amazon", "country": "de",
     "created_at": "2023-01-02"},
    {"store_id": "S2", "name": 'The "Best" Shop', "platform": "wish", "country": None,
     "created_at": "2023-02-03T04:05:06+08:00"},
    {"store_id": "S3", "name": None, "platform": None, "country": None, "created_at": None},
]
RICH_SIGNALS = [
    {"store_id": "S1", "kind": "IP", "value": "203.0.113.7", "seen_at": "2024-05-01T10:00:00Z"},
    {"store_id": "S1", "kind": "address", "value": "Rm 1203, Bldg 5\n88 Keyuan Rd", "seen_at": None},
    {"store_id": "S2", "kind": "email", "value": "Shop.Owner+ali@Gmail.com",
     "seen_at": "2024-05-01T12:00:00+02:00"},
    {"store_id": "S2", "kind": "phone", "value": " +86 138 0013 8000 ", "seen_at": "2024-05-01T10:00:00"},
    {"store_id": "S3", "kind": "vendor_code", "value": "X|Y", "seen_at": None},
]
RICH_PRODUCTS = [
    {"store_id": "S1", "product_id": "P1", "title": "Mug, 350 ml", "description": 'line one\n"quoted"\nthree',
     "price": "12.50", "currency": "eur", "images": ["images/p1.jpg", "https://example.com/p1b.png"]},
    {"store_id": "S1", "product_id": "P2", "title": "Plate", "description": None, "price": None,
     "currency": None, "images": []},
    {"store_id": "S2", "product_id": "P1", "title": "Mug", "description": "", "price": 9,
     "currency": "USD", "images": ["a.jpg"]},
]


def test_csv_and_jsonl_forms_give_identical_bundles(make_bundle):
    paths = make_bundle(RICH_STORES, RICH_SIGNALS, RICH_PRODUCTS)
    from_csv = read_bundle(paths.csv_dir)
    from_jsonl = read_bundle(paths.jsonl)
    assert contents(from_csv) == contents(from_jsonl)
    assert from_csv.rejected == from_jsonl.rejected == []
    assert len(from_csv.stores) == 3 and len(from_csv.signals) == 5 and len(from_csv.products) == 3


def test_values_are_read_as_documented(make_bundle):
    bundle = read_bundle(make_bundle(RICH_STORES, RICH_SIGNALS, RICH_PRODUCTS).csv_dir)
    assert bundle.stores["S1"] == Store("S1", "Acme, Inc.", "amazon", "DE", "2023-01-02")
    assert bundle.stores["S2"].name == 'The "Best" Shop'
    assert bundle.stores["S3"] == Store("S3")  # empty cells mean unknown
    signals = {(s.store_id, s.kind): s for s in bundle.signals}
    assert signals["S1", "ip"].seen_at == datetime(2024, 5, 1, 10, tzinfo=UTC)  # kind lower-cased
    assert signals["S1", "address"] == Signal("S1", "address", "Rm 1203, Bldg 5\n88 Keyuan Rd", None)
    assert signals["S2", "phone"].value == "+86 138 0013 8000"
    # Z, an offset and a naive time (taken as UTC) all name the same instant.
    assert signals["S2", "email"].seen_at == signals["S2", "phone"].seen_at == signals["S1", "ip"].seen_at
    assert signals["S3", "vendor_code"].value == "X|Y"  # other kinds accepted as they are
    products = {(p.store_id, p.product_id): p for p in bundle.products}
    assert products["S1", "P1"] == Product("S1", "P1", "Mug, 350 ml", 'line one\n"quoted"\nthree', 12.5,
                                           "EUR", ("images/p1.jpg", "https://example.com/p1b.png"))
    assert products["S1", "P2"] == Product("S1", "P2", "Plate")  # empty cells: no description, price, ...
    assert products["S2", "P1"].price == 9.0 and products["S2", "P1"].images == ("a.jpg",)


def test_bundle_root_is_the_directory_in_both_forms(make_bundle):
    paths = make_bundle([{"store_id": "S1"}])
    assert read_bundle(paths.csv_dir).root == paths.csv_dir
    assert read_bundle(paths.jsonl).root == paths.jsonl.parent
    assert read_bundle(paths.jsonl.parent).root == paths.jsonl.parent  # a directory holding stores.jsonl
    assert read_bundle(str(paths.csv_dir)).stores.keys() == {"S1"}  # str paths too


def test_crlf_line_ends_read_like_lf(make_bundle):
    lf = make_bundle(RICH_STORES, RICH_SIGNALS, RICH_PRODUCTS)
    crlf = make_bundle(RICH_STORES, RICH_SIGNALS, RICH_PRODUCTS, line_end="\r\n")
    assert b"\r\n" in (crlf.csv_dir / "stores.csv").read_bytes()
    assert b"\r\n" in crlf.jsonl.read_bytes()
    assert contents(read_bundle(crlf.csv_dir)) == contents(read_bundle(lf.csv_dir))
    assert contents(read_bundle(crlf.jsonl)) == contents(read_bundle(lf.jsonl))


def test_crlf_line_numbers(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": "store_id,name\r\nS1,a\r\nS2,b\r\n",
        "signals.csv": 'store_id,kind,value\r\nS1,address,"x\r\ny"\r\nS9,ip,1.2.3.4\r\n',
    })
    bundle = read_bundle(root, skip_invalid=True)
    assert bundle.signals == [Signal("S1", "address", "x\r\ny")]
    assert rejected(bundle) == [("signals.csv", 4, "unknown store_id 'S9'; every store_id must appear in "
                                                     "stores.csv")]


def test_bom_is_tolerated(write_bundle_files):
    bom = "\ufeff"
    root = write_bundle_files({
        "stores.csv": bom + "store_id,name\nS1,One\n",
        "signals.csv": bom + "store_id,kind,value\nS1,ip,1.2.3.4\n",
        "products.csv": bom + '"store_id","product_id"\nS1,P1\n',
    })
    bundle = read_bundle(root)
    assert bundle.stores == {"S1": Store("S1", "One")}
    assert bundle.signals == [Signal("S1", "ip", "1.2.3.4")]
    assert bundle.products == [Product("S1", "P1")]
    jsonl_root = write_bundle_files({"stores.jsonl": bom + '{"store_id": "S1", "name": "One"}\n'})
    assert read_bundle(jsonl_root).stores == {"S1": Store("S1", "One")}


def test_column_order_does_not_matter_and_unknown_columns_are_ignored(write_bundle_files):
    plain = write_bundle_files({
        "stores.csv": "store_id,name,country\nS1,One,cn\n",
        "signals.csv": "store_id,kind,value,seen_at\nS1,ip,1.2.3.4,2024-01-01T00:00:00Z\n",
        "products.csv": "store_id,product_id,price\nS1,P1,3.5\n",
    })
    shuffled = write_bundle_files({
        "stores.csv": "country,internal_note,name,store_id\ncn,ignore me,One,S1\n",
        "signals.csv": "seen_at,value,extra,kind,store_id\n2024-01-01T00:00:00Z,1.2.3.4,?,ip,S1\n",
        "products.csv": "price,product_id,store_id,rating\n3.5,P1,S1,5\n",
    })
    assert contents(read_bundle(shuffled)) == contents(read_bundle(plain))
    assert read_bundle(shuffled).products == [Product("S1", "P1", price=3.5)]


def test_header_names_are_trimmed(write_bundle_files):
    root = write_bundle_files({"stores.csv": " store_id , name \nS1,One\n"})
    assert read_bundle(root).stores == {"S1": Store("S1", "One")}


def test_rfc4180_quoting(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": 'store_id,name\n"S1","Smith, Jones & Co"\nS2,"He said ""hi"""\nS3,"two\nlines"\n',
    })
    stores = read_bundle(root).stores
    assert stores["S1"].name == "Smith, Jones & Co"
    assert stores["S2"].name == 'He said "hi"'
    assert stores["S3"].name == "two\nlines"


def test_multiline_fields_keep_later_line_numbers_right(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": 'store_id,name\nS1,"first\nsecond\nthird"\nS2,ok\nS1,dup\n',  # S1,dup is on line 6
        # A quoted field with an empty line inside: S1,P1,again is on line 6, not line 5.
        "products.csv": 'store_id,product_id,description\nS1,P1,"a\n\nb"\nS2,P1,x\nS1,P1,again\n',
    })
    assert problems_of(root) == [
        "stores.csv line 6: duplicate store_id 'S1' (first at line 2); store ids must be unique",
        "products.csv line 6: duplicate product_id 'P1' in store 'S1' (first at line 2)",
    ]


def test_blank_lines_are_skipped_but_counted(write_bundle_files):
    root = write_bundle_files({"stores.csv": "store_id\n\nS1\n\n\nS1\n"})
    assert problems_of(root) == [
        "stores.csv line 6: duplicate store_id 'S1' (first at line 3); store ids must be unique"]


def test_images_are_pipe_separated(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": "store_id\nS1\n",
        "products.csv": "store_id,product_id,images\nS1,P1, a.jpg | img/b.png ||https://x.test/c.jpg|\nS1,P2,\n",
    })
    products = {p.product_id: p for p in read_bundle(root).products}
    assert products["P1"].images == ("a.jpg", "img/b.png", "https://x.test/c.jpg")
    assert products["P2"].images == ()


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T10:00:00+00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T18:00:00+08:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T05:30:00-04:30", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),  # naive: taken as UTC
    ("2024-05-01 10:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T10:00:00.250Z", datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)),
    ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    (" 2024-05-01T10:00:00Z ", datetime(2024, 5, 1, 10, tzinfo=UTC)),
])
def test_parse_timestamp_accepts_iso8601(text, expected):
    value = parse_timestamp(text)
    assert value == expected
    assert value.tzinfo is UTC


@pytest.mark.parametrize("text", [
    "yesterday", "2024-13-01", "2024-05-01T25:00:00", "01/05/2024", "1714557600", "",
    "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC: was an OverflowError crash
    "9999-12-31T23:59:59-01:00",  # after datetime.max once in UTC
])
def test_parse_timestamp_rejects_other_text_with_valueerror(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize("price, expected", [
    ("19.99", 19.99), ("-1", -1.0), ("0", 0.0), (".5", 0.5), ("7.", 7.0), ("1e3", 1000.0), (" 42 ", 42.0),
])
def test_good_prices(write_bundle_files, price, expected):
    root = write_bundle_files({"stores.csv": "store_id\nS1\n", "products.csv": f"store_id,product_id,price\n"
                                                                               f"S1,P1,{price}\n"})
    assert read_bundle(root).products[0].price == expected


@pytest.mark.parametrize("price", ["abc", "1,99", "$5", "12 EUR", "nan", "inf", "-Infinity", "1_000", "0x10"])
def test_bad_price_rejects_the_row(write_bundle_files, price):
    root = write_bundle_files({"stores.csv": "store_id\nS1\n",
                               "products.csv": f'store_id,product_id,price\nS1,P0,1\nS1,P1,"{price}"\n'})
    assert problems_of(root) == [f"products.csv line 3: price {price!r} is not a decimal number (e.g. 19.99)"]


def test_jsonl_price_may_be_a_json_number(write_bundle_files):
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1", "products": [{"product_id": "P1", '
                                               '"price": 1.5}, {"product_id": "P2", "price": "2.25"}, '
                                               '{"product_id": "P3", "price": null}]}\n'})
    assert [p.price for p in read_bundle(root).products] == [1.5, 2.25, None]


def test_jsonl_huge_price_overflowing_to_infinity_is_rejected(write_bundle_files):
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1", "products": [{"product_id": "P1", '
                                               '"price": 1e400}]}\n'})
    assert problems_of(root) == ["stores.jsonl line 1: products[1]: price 'inf' is not a decimal number "
                                 "(e.g. 19.99)"]


def test_jsonl_keeps_unicode_line_separators_inside_strings(write_bundle_files):
    # str.splitlines() would cut these lines at U+2028 / U+0085, which JSON allows unescaped.
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1", "name": "a\u2028b"}\n'
                                               '{"store_id": "S2", "products": [{"product_id": "P", '
                                               '"title": "x\x85y"}]}\n'
                                               '{"store_id": "S2"}\n'})
    assert problems_of(root) == ["stores.jsonl line 3: duplicate store_id 'S2' (first at line 2); store ids "
                                 "must be unique"]
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1", "name": "a\u2028b"}\n'})
    assert read_bundle(root).stores["S1"].name == "a\u2028b"


def test_jsonl_blank_lines_are_skipped_but_counted(write_bundle_files):
    root = write_bundle_files({"stores.jsonl": '\n{"store_id": "S1"}\n\n   \n{"store_id": "S1"}\n'})
    assert problems_of(root) == ["stores.jsonl line 5: duplicate store_id 'S1' (first at line 2); store ids "
                                 "must be unique"]


def test_header_only_files_give_an_empty_bundle(write_bundle_files):
    root = write_bundle_files({"stores.csv": "store_id\n", "signals.csv": "store_id,kind,value\n"})
    bundle = read_bundle(root)
    assert (bundle.stores, bundle.signals, bundle.products, bundle.rejected) == ({}, [], [], [])


# Text that stresses both forms: commas, quotes, `|`, CR/LF, NUL, U+2028, U+0085 and non-ASCII.
_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
_key = _text.filter(lambda s: s.strip() != "")
_timestamp = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1),
                          timezones=st.none() | st.just(UTC) | st.builds(
                              timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))))
_price = st.none() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)


@st.composite
def _bundles(draw):
    store_ids = draw(st.lists(_key, max_size=4, unique_by=str.strip))
    stores = [{"store_id": sid, "name": draw(_text), "platform": draw(_text), "country": draw(_text)}
              for sid in store_ids]
    signals, products = [], []
    for sid in store_ids:
        for _ in range(draw(st.integers(0, 3))):
            signals.append({"store_id": sid, "kind": draw(_key), "value": draw(_key),
                            "seen_at": draw(st.none() | _timestamp.map(datetime.isoformat))})
        for product_id in draw(st.lists(_key, max_size=3, unique_by=str.strip)):
            products.append({"store_id": sid, "product_id": product_id, "title": draw(_text),
                             "description": draw(_text), "price": draw(_price), "currency": draw(_text),
                             "images": draw(st.lists(_text, max_size=3))})
    return stores, signals, products


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_bundles())
def test_property_csv_and_jsonl_agree(make_bundle, data):
    stores, signals, products = data
    paths = make_bundle(stores, signals, products)
    from_csv = read_bundle(paths.csv_dir)
    from_jsonl = read_bundle(paths.jsonl)
    assert from_csv.rejected == from_jsonl.rejected == []
    assert contents(from_csv) == contents(from_jsonl)
    assert len(from_csv.stores) == len(stores)
    assert len(from_csv.signals) == len(signals) and len(from_csv.products) == len(products)


def test_both_forms_reject_the_same_rows_for_the_same_reasons(make_bundle):
    stores = [{"store_id": "S1", "created_at": "2024-01-01"}, {"store_id": "S2", "created_at": "not a date"}]
    signals = [{"store_id": "S1", "kind": "ip", "value": "", "seen_at": None},
               {"store_id": "S1", "kind": "", "value": "x", "seen_at": None},
               {"store_id": "S1", "kind": "ip", "value": "1.2.3.4", "seen_at": "soon"},
               {"store_id": "S1", "kind": "ip", "value": "1.2.3.5", "seen_at": None}]
    products = [{"store_id": "S1", "product_id": "P1", "price": "cheap"},
                {"store_id": "S1", "product_id": "", "price": None},
                {"store_id": "S1", "product_id": "P2", "price": None},
                {"store_id": "S1", "product_id": "P2", "price": None}]
    paths = make_bundle(stores, signals, products)
    from_csv = read_bundle(paths.csv_dir, skip_invalid=True)
    from_jsonl = read_bundle(paths.jsonl, skip_invalid=True)
    assert contents(from_csv) == contents(from_jsonl)
    assert from_csv.signals == [Signal("S1", "ip", "1.2.3.5")]
    assert [p.product_id for p in from_csv.products] == ["P2"]

    def reason_kinds(bundle):
        # The reason without the JSONL item prefix and the "(first at line N)" detail, which differ by form.
        return sorted(r.reason.split(": ", 1)[-1].split(" (first at line")[0] for r in bundle.rejected)

    assert len(from_csv.rejected) == len(from_jsonl.rejected) == 7
    assert reason_kinds(from_csv) == reason_kinds(from_jsonl)


# ---------------------------------------------------------------------- every problem, file and line


def test_unknown_store_in_signals_and_products_names_file_and_line(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": STORES_CSV,
        "signals.csv": "store_id,kind,value\nS1,ip,1.2.3.4\nS9,ip,1.2.3.4\n",
        "products.csv": "store_id,product_id\nS2,P1\nS2,P2\nS8,P1\n",
    })
    assert problems_of(root) == [
        "signals.csv line 3: unknown store_id 'S9'; every store_id must appear in stores.csv",
        "products.csv line 4: unknown store_id 'S8'; every store_id must appear in stores.csv",
    ]


@pytest.mark.parametrize("files, expected", [
    ({"stores.csv": "store_id,name\nS1,a\n,b\n"},
     "stores.csv line 3: empty store_id; every store needs an id"),
    ({"stores.csv": "store_id,name\nS1,a\n  ,b\n"},
     "stores.csv line 3: empty store_id; every store needs an id"),
    ({"stores.csv": "store_id,name\nS1,a\nS2,b\n S1 ,c\n"},
     "stores.csv line 4: duplicate store_id 'S1' (first at line 2); store ids must be unique"),
    ({"stores.csv": "store_id,created_at\nS1,2024-01-01\nS2,01.02.2024\n"},
     "stores.csv line 3: created_at '01.02.2024' is not an ISO 8601 date or timestamp"),
    ({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\nS1,ip,1\n,ip,2\n"},
     "signals.csv line 3: empty store_id"),
    ({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\nS1,ip,1\nS1,,2\n"},
     "signals.csv line 3: empty kind; say what the value is (ip, mac, phone, ...)"),
    ({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\nS1,ip,1\nS1,email, \n"},
     "signals.csv line 3: empty value for kind 'email'; leave unknown signals out"),
    ({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value,seen_at\nS1,ip,1,\nS1,ip,2,2024-02-30\n"},
     "signals.csv line 3: seen_at '2024-02-30' is not an ISO 8601 timestamp (e.g. 2024-05-01T10:00:00Z)"),
    ({"stores.csv": STORES_CSV, "products.csv": "store_id,product_id\nS1,P1\nS1,\n"},
     "products.csv line 3: empty product_id; every listing needs an id"),
    ({"stores.csv": STORES_CSV, "products.csv": "store_id,product_id\nS1,P1\nS2,P1\nS1,P1\n"},
     "products.csv line 4: duplicate product_id 'P1' in store 'S1' (first at line 2)"),
    ({"stores.csv": STORES_CSV, "products.csv": "store_id,product_id,price\nS1,P1,1\nS1,P2,1.5.0\n"},
     "products.csv line 3: price '1.5.0' is not a decimal number (e.g. 19.99)"),
    ({"stores.csv": "store_id,name\nS1,a\nS2,b,c\n"},
     "stores.csv line 3: malformed row: 3 fields where the header has 2"),
    ({"stores.csv": "store_id,name\nS1,a\nS2\n"},
     "stores.csv line 3: malformed row: 1 fields where the header has 2"),
    ({"stores.csv": 'store_id,name\nS1,a\nS2,"b"c\n'},
     "stores.csv line 3: malformed CSV: ',' expected after '\"'"),
])
def test_each_bad_row_is_named_with_file_line_and_reason(write_bundle_files, files, expected):
    root = write_bundle_files(files)
    assert problems_of(root) == [expected]
    # skip_invalid keeps the good rows and sets the bad one aside with the same file, line and reason.
    bundle = read_bundle(root, skip_invalid=True)
    file, rest = expected.split(" line ", 1)
    line, reason = rest.split(": ", 1)
    assert rejected(bundle) == [(file, int(line), reason)]
    assert "S1" in bundle.stores
    kept = len(bundle.stores) + len(bundle.signals) + len(bundle.products)
    rows = sum(text.count("\n") - 1 for text in files.values())  # one row per line in these files
    assert kept + len(bundle.rejected) == rows  # nothing dropped silently


def test_unclosed_quote_is_one_rejected_row_that_shows_what_it_swallowed(write_bundle_files):
    root = write_bundle_files({"stores.csv": 'store_id,name\nS1,ok\nS2,"never closed\nS3,x\nS4,y\n'})
    bundle = read_bundle(root, skip_invalid=True)
    assert list(bundle.stores) == ["S1"]
    [row] = bundle.rejected
    assert (row.file, row.line) == ("stores.csv", 3)
    assert row.reason.startswith("malformed CSV: unexpected end of data")
    assert "runs to line 5" in row.reason
    assert row.content == 'S2,"never closed\nS3,x\nS4,y'  # the swallowed rows are visible, not lost


def test_all_problems_are_collected_across_files(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": "store_id,created_at\nS1,\nS1,\n,2024-01-01\nS2,bad\n",
        "signals.csv": "store_id,kind,value\nS9,ip,1\nS1,,1\n",
        "products.csv": "store_id,product_id,price\nS1,P1,x\nS1,P2,1,extra\n",
    })
    with pytest.raises(BundleError) as info:
        read_bundle(root)
    assert [p.split(":")[0] for p in info.value.problems] == [
        "stores.csv line 3", "stores.csv line 4", "stores.csv line 5",
        "signals.csv line 2", "signals.csv line 3", "products.csv line 2", "products.csv line 3",
    ]
    assert info.value.total == 7
    assert str(info.value).startswith("the bundle has 7 problem(s):\n")


def test_a_row_of_only_empty_cells_counts_as_a_blank_line(write_bundle_files):
    # Documented choice of the reader: such a row carries nothing, so skipping it loses nothing.
    root = write_bundle_files({"stores.csv": "store_id,name\nS1,a\n,\n , \nS2,b\n"})
    bundle = read_bundle(root)
    assert list(bundle.stores) == ["S1", "S2"] and bundle.rejected == []


def test_thirty_bad_rows_show_twenty_and_a_count(write_bundle_files):
    rows = "".join(f"S9,ip,10.0.0.{i}\n" for i in range(30))
    root = write_bundle_files({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\n" + rows})
    with pytest.raises(BundleError) as info:
        read_bundle(root)
    error = info.value
    assert error.total == 30
    assert len(error.problems) == 30
    assert error.problems[0].startswith("signals.csv line 2: unknown store_id 'S9'")
    assert error.problems[-1].startswith("signals.csv line 31: unknown store_id 'S9'")
    message = str(error)
    assert message.count("\n  - ") == 20
    assert "signals.csv line 21:" in message and "signals.csv line 22:" not in message
    assert message.rstrip().splitlines()[-2] == "  ... and 10 more"
    assert "--skip-invalid" in message


def test_twenty_problems_show_all_and_no_count(write_bundle_files):
    rows = "".join(f"S9,ip,10.0.0.{i}\n" for i in range(20))
    root = write_bundle_files({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\n" + rows})
    with pytest.raises(BundleError) as info:
        read_bundle(root)
    assert info.value.total == 20
    assert str(info.value).count("\n  - ") == 20
    assert "more" not in str(info.value)


def test_skip_invalid_returns_the_good_rows_and_the_rejected_ones(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": "store_id,name\nS1,One\nS1,Again\nS2,Two\n",
        "signals.csv": "store_id,kind,value\nS1,ip,1.2.3.4\nS9,ip,1.2.3.4\nS2,email,a@b.c\nS2,phone,\n",
        "products.csv": "store_id,product_id,price\nS1,P1,9.99\nS1,P1,8\nS2,P1,x\n",
    })
    bundle = read_bundle(root, skip_invalid=True)
    assert bundle.stores == {"S1": Store("S1", "One"), "S2": Store("S2", "Two")}
    assert bundle.signals == [Signal("S1", "ip", "1.2.3.4"), Signal("S2", "email", "a@b.c")]
    assert bundle.products == [Product("S1", "P1", price=9.99)]
    assert [(r.file, r.line, r.reason, r.content) for r in bundle.rejected] == [
        ("stores.csv", 3, "duplicate store_id 'S1' (first at line 2); store ids must be unique", "S1,Again"),
        ("signals.csv", 3, "unknown store_id 'S9'; every store_id must appear in stores.csv",
         "S9,ip,1.2.3.4"),
        ("signals.csv", 5, "empty value for kind 'phone'; leave unknown signals out", "S2,phone,"),
        ("products.csv", 3, "duplicate product_id 'P1' in store 'S1' (first at line 2)", "S1,P1,8"),
        ("products.csv", 4, "price 'x' is not a decimal number (e.g. 19.99)", "S2,P1,x"),
    ]


def test_children_of_a_rejected_store_point_at_the_store_row(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": "store_id,created_at\nS1,2024-01-01\nS2,someday\n",
        "signals.csv": "store_id,kind,value\nS2,ip,1.2.3.4\n",
        "products.csv": "store_id,product_id\nS2,P1\n",
    })
    follow_up = "line 2: store_id 'S2' belongs to a store rejected at stores.csv line 3; fix that row first"
    assert problems_of(root) == [
        "stores.csv line 3: created_at 'someday' is not an ISO 8601 date or timestamp",
        f"signals.csv {follow_up}",
        f"products.csv {follow_up}",
    ]


def test_a_store_rejected_then_repeated_is_still_a_duplicate(write_bundle_files):
    root = write_bundle_files({"stores.csv": "store_id,created_at\nS1,someday\nS1,2024-01-01\n"})
    assert problems_of(root) == [
        "stores.csv line 2: created_at 'someday' is not an ISO 8601 date or timestamp",
        "stores.csv line 3: duplicate store_id 'S1' (first at line 2); store ids must be unique",
    ]


# ------------------------------------------------------------------------------------- bad encoding


def test_bad_utf8_in_one_row_rejects_only_that_row(write_bundle_files):
    root = write_bundle_files({
        "stores.csv": STORES_CSV,
        "signals.csv": b"store_id,kind,value\nS1,person_name,Zhang Wei\nS2,person_name,Jos\xe9 \xff\n"
                       b"S2,ip,1.2.3.4\n",
    })
    assert problems_of(root) == [
        "signals.csv line 3: bad encoding: the row is not valid UTF-8; re-export the file as UTF-8"]
    bundle = read_bundle(root, skip_invalid=True)
    assert bundle.signals == [Signal("S1", "person_name", "Zhang Wei"), Signal("S2", "ip", "1.2.3.4")]
    [row] = bundle.rejected
    assert (row.file, row.line) == ("signals.csv", 3)
    assert row.content == "S2,person_name,Jos\ufffd \ufffd"


def test_rejected_content_is_always_encodable(write_bundle_files):
    # A wrong field count is found before the bad bytes; the content used to keep lone surrogates,
    # which crash csv writing of rejected.csv (UTF-8) and printing.
    root = write_bundle_files({"stores.csv": b"store_id,name\nS1,ok\nS2,\xff\xfe,extra\n"})
    bundle = read_bundle(root, skip_invalid=True)
    [row] = bundle.rejected
    assert row.reason == "malformed row: 3 fields where the header has 2"
    assert row.content == "S2,\ufffd\ufffd,extra"
    for text in (row.reason, row.content):
        text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate


def test_bad_utf8_in_the_header_is_fatal(write_bundle_files):
    root = write_bundle_files({"stores.csv": b"store_\xffid,name\nS1,a\n"})
    problems = problems_of(root, skip_invalid=True)
    assert problems == [
        "stores.csv line 1: bad encoding: the header is not valid UTF-8; re-export the file as UTF-8"]
    "\n".join(problems).encode("utf-8")


def test_a_utf16_export_is_reported_not_crashed_on(write_bundle_files):
    root = write_bundle_files({"stores.csv": "store_id,name\nS1,a\n".encode("utf-16")})
    assert problems_of(root) == [
        "stores.csv line 1: bad encoding: the header is not valid UTF-8; re-export the file as UTF-8"]


def test_bad_utf8_in_one_jsonl_line_rejects_only_that_line(write_bundle_files):
    root = write_bundle_files({"stores.jsonl": b'{"store_id": "S1"}\n{"store_id": "S2", "name": "\xff"}\n'
                                               b'{"store_id": "S3"}\n'})
    bundle = read_bundle(root, skip_invalid=True)
    assert list(bundle.stores) == ["S1", "S3"]
    assert rejected(bundle) == [
        ("stores.jsonl", 2, "bad encoding: the line is not valid UTF-8; re-export the file as UTF-8")]
    assert bundle.rejected[0].content == '{"store_id": "S2", "name": "\ufffd"}'


# ---------------------------------------------------------------------------- problems with a file


@pytest.mark.parametrize("files, expected", [
    ({"stores.csv": "id,name\nS1,a\n"},
     "stores.csv line 1: missing required column(s) store_id; the header is id,name"),
    ({"stores.csv": STORES_CSV, "signals.csv": "store_id,value\nS1,1.2.3.4\n"},
     "signals.csv line 1: missing required column(s) kind; the header is store_id,value"),
    ({"stores.csv": STORES_CSV, "signals.csv": "store,type\nS1,ip\n"},
     "signals.csv line 1: missing required column(s) store_id, kind, value; the header is store,type"),
    ({"stores.csv": STORES_CSV, "products.csv": "store_id,title\nS1,Mug\n"},
     "products.csv line 1: missing required column(s) product_id; the header is store_id,title"),
    ({"stores.csv": ""},
     "stores.csv: the file is empty; it needs a header row with store_id"),
    ({"stores.csv": STORES_CSV, "signals.csv": ""},
     "signals.csv: the file is empty; it needs a header row with store_id, kind, value"),
    ({"stores.csv": "store_id,name,name\nS1,a,b\n"},
     "stores.csv line 1: column(s) name appear more than once in the header; keep one of each"),
    ({"stores.csv": STORES_CSV, "signals.csv": 'store_id,"kind\n'},
     "signals.csv line 1: unreadable header: unexpected end of data"),
])
def test_file_problems_are_fatal_even_with_skip_invalid(write_bundle_files, files, expected):
    root = write_bundle_files(files)
    assert problems_of(root) == [expected]
    assert problems_of(root, skip_invalid=True) == [expected]


def test_unreadable_stores_file_does_not_flood_with_unknown_stores(write_bundle_files):
    rows = "".join(f"S1,ip,10.0.0.{i}\n" for i in range(25))
    root = write_bundle_files({"stores.csv": "id\nS1\n", "signals.csv": "store_id,kind,value\n" + rows,
                               "products.csv": "store_id,title\nS1,x\n"})
    # Both files' own problems are reported; the signals are not 25 "unknown store" follow-ups.
    assert problems_of(root, skip_invalid=True) == [
        "stores.csv line 1: missing required column(s) store_id; the header is id",
        "products.csv line 1: missing required column(s) product_id; the header is store_id,title",
    ]


def test_row_problems_are_listed_after_file_problems(write_bundle_files):
    root = write_bundle_files({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\nS9,ip,1\n",
                               "products.csv": "store_id\nS1\n"})
    with pytest.raises(BundleError) as info:
        read_bundle(root, skip_invalid=True)
    assert info.value.problems == [
        "products.csv line 1: missing required column(s) product_id; the header is store_id",
        "signals.csv line 2: unknown store_id 'S9'; every store_id must appear in stores.csv",
    ]


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    assert problems_of(missing) == [f"{missing}: not found; give a bundle directory or a stores.jsonl file"]


def test_empty_directory(tmp_path):
    assert problems_of(tmp_path) == [
        f"{tmp_path}: no stores.csv or stores.jsonl; a bundle directory needs one of them"]


def test_directory_with_only_signals(write_bundle_files):
    root = write_bundle_files({"signals.csv": "store_id,kind,value\n"})
    assert problems_of(root, skip_invalid=True) == [
        f"{root}: no stores.csv or stores.jsonl; a bundle directory needs one of them"]


def test_a_file_that_is_not_jsonl(write_bundle_files):
    root = write_bundle_files({"stores.csv": STORES_CSV})
    assert problems_of(root / "stores.csv") == [
        f"{root / 'stores.csv'}: is neither a bundle directory nor a .jsonl file; give the directory that "
        "holds stores.csv, or a stores.jsonl file"]


def test_both_forms_present_is_an_error(write_bundle_files):
    root = write_bundle_files({"stores.csv": STORES_CSV, "stores.jsonl": '{"store_id": "S1"}\n'})
    assert problems_of(root, skip_invalid=True) == [
        f"{root}: has both stores.csv and stores.jsonl; keep one form of the bundle"]


@pytest.mark.parametrize("extra", ["signals.csv", "products.csv"])
def test_csv_files_beside_stores_jsonl_are_not_ignored_silently(write_bundle_files, extra):
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1"}\n', extra: "store_id\n"})
    [problem] = problems_of(root, skip_invalid=True)
    assert problem.startswith(f"{root}: has stores.jsonl and {extra}; ")
    # Pointing at the stores.jsonl file itself is explicit: the CSV files beside it are not part of it.
    assert read_bundle(root / "stores.jsonl").stores.keys() == {"S1"}


def test_error_messages_start_with_a_count_and_end_with_the_fix(write_bundle_files):
    root = write_bundle_files({"stores.csv": STORES_CSV,
                               "signals.csv": "store_id,kind,value\nS1,ip,1\nS9,ip,2\n"})
    with pytest.raises(BundleError) as info:
        read_bundle(root)
    assert str(info.value).splitlines() == [
        "the bundle has 1 problem(s):",
        "  - signals.csv line 3: unknown store_id 'S9'; every store_id must appear in stores.csv",
        "Fix them, or pass --skip-invalid to skip the bad rows (they are written to OUTDIR/rejected.csv).",
    ]


# ------------------------------------------------------------------------------ JSONL-only problems


@pytest.mark.parametrize("line, expected", [
    ('{"store_id": "S2",', "stores.jsonl line 2: malformed JSON: Expecting property name enclosed in double "
                           "quotes at column 19"),
    ('["S2"]', "stores.jsonl line 2: malformed row: each line must be a JSON object (one store)"),
    ('{"name": "no id"}', "stores.jsonl line 2: empty store_id; every store needs an id"),
    ('{"store_id": null}', "stores.jsonl line 2: empty store_id; every store needs an id"),
    ('{"store_id": "S2", "signals": "ip=1.2.3.4"}',
     "stores.jsonl line 2: malformed row: 'signals' must be a list"),
    ('{"store_id": "S2", "products": [42]}',
     "stores.jsonl line 2: malformed row: products[1] must be an object"),
    ('{"store_id": "S2", "signals": [{"kind": "ip", "value": "1"}, {"kind": "ip", "value": ""}]}',
     "stores.jsonl line 2: signals[2]: empty value for kind 'ip'; leave unknown signals out"),
    ('{"store_id": "S2", "signals": [{"store_id": "S1", "kind": "ip", "value": "1"}]}',
     "stores.jsonl line 2: signals[1] names store_id 'S1' inside store 'S2'; "
     "nest items under their own store"),
    ('{"store_id": "S2", "products": [{"product_id": "P1"}, {"product_id": "P1"}]}',
     "stores.jsonl line 2: products[2]: duplicate product_id 'P1' in store 'S2' (first at line 2)"),
    ('{"store_id": "S2", "signals": [{"kind": "ip", "value": "1", "seen_at": "noon"}]}',
     "stores.jsonl line 2: signals[1]: seen_at 'noon' is not an ISO 8601 timestamp "
     "(e.g. 2024-05-01T10:00:00Z)"),
])
def test_jsonl_problems_name_the_line(write_bundle_files, line, expected):
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1"}\n' + line + '\n{"store_id": "S3"}\n'})
    assert problems_of(root) == [expected]
    bundle = read_bundle(root, skip_invalid=True)
    assert {"S1", "S3"} <= bundle.stores.keys()
    assert [f"{r.file} line {r.line}: {r.reason}" for r in bundle.rejected] == [expected]


def test_jsonl_signals_may_name_their_own_store(write_bundle_files):
    root = write_bundle_files({"stores.jsonl": '{"store_id": "S1", "signals": [{"store_id": "S1", '
                                               '"kind": "ip", "value": "1"}], "products": null}\n'})
    assert read_bundle(root).signals == [Signal("S1", "ip", "1")]


# ---------------------------------------------------------------------------------- CLI wiring


def _cli():
    # A module that exists but fails to import (a name not written yet) also skips: exc_type=ImportError.
    pytest.importorskip("assoc.catalog", exc_type=ImportError)  # guard until catalog/normalise land
    pytest.importorskip("assoc.normalise", exc_type=ImportError)  # guard until catalog/normalise land
    from click.testing import CliRunner

    from assoc.cli import main

    return CliRunner(), main


def _scan(root: Path, outdir: Path, *flags: str):
    runner, main = _cli()
    args = ["scan", str(root), "--out", str(outdir), "--quiet", "--no-images", "--no-cache", *flags]
    return runner.invoke(main, args)


BAD_SIGNALS = {"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\nS1,ip,1.2.3.4\nS9,ip,1.2.3.4\n"
                                                        "S2,ip,1.2.3.4\n"}


def test_cli_invalid_bundle_exits_2_with_the_list(write_bundle_files, tmp_path):
    root = write_bundle_files(BAD_SIGNALS)
    result = _scan(root, tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "signals.csv line 3: unknown store_id 'S9'" in result.output
    assert "the bundle has 1 problem(s)" in result.output
    assert "--skip-invalid" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "pairs.csv").exists()


def test_cli_shows_twenty_problems_and_a_count(write_bundle_files, tmp_path):
    rows = "".join(f"S9,ip,10.0.0.{i}\n" for i in range(30))
    root = write_bundle_files({"stores.csv": STORES_CSV, "signals.csv": "store_id,kind,value\n" + rows})
    result = _scan(root, tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.output.count("unknown store_id 'S9'") == 20
    assert "... and 10 more" in result.output


def test_cli_skip_invalid_writes_rejected_csv(write_bundle_files, tmp_path):
    root = write_bundle_files(BAD_SIGNALS)
    outdir = tmp_path / "out"
    result = _scan(root, outdir, "--skip-invalid")
    assert result.exit_code == 0, result.output
    with open(outdir / "rejected.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"file": "signals.csv", "line": "3",
                     "reason": "unknown store_id 'S9'; every store_id must appear in stores.csv",
                     "content": "S9,ip,1.2.3.4"}]
    assert (outdir / "pairs.csv").exists()


def test_cli_skip_invalid_writes_undecodable_rows(write_bundle_files, tmp_path):
    root = write_bundle_files({"stores.csv": b"store_id,name\nS1,a\nS2,\xff,extra\nS3,\xfe\n"})
    outdir = tmp_path / "out"
    result = _scan(root, outdir, "--skip-invalid")
    assert result.exit_code == 0, result.output
    text = (outdir / "rejected.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["file"], r["line"]) for r in rows] == [("stores.csv", "3"), ("stores.csv", "4")]


def test_cli_missing_column_exits_2_even_with_skip_invalid(write_bundle_files, tmp_path):
    root = write_bundle_files({"stores.csv": "id\nS1\n"})
    result = _scan(root, tmp_path / "out", "--skip-invalid")
    assert result.exit_code == 2, result.output
    assert "stores.csv line 1: missing required column(s) store_id" in result.output
