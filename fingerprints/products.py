"""Product exports -> products.csv rows: Shopify's product CSV, or any CSV / JSON Lines with a column mapping.

Shopify writes one row per variant and per extra image; the rows after a product's first share
its Handle and leave Title empty. A product here is one Handle: its title and body from the first
row that has them, its price the lowest variant price (the "from" price a listing shows, which
does not depend on variant order), and its images in Image Position order, then variant images.
The HTML body becomes plain text: tags dropped, entities decoded, scripts and styles left out.

A product with a bad row (a price that is no number, a second title for one Handle, a product id
given twice) is left out whole, in both formats, and the report names it: a product written with
some of its cells missing would be one the report does not describe. Rows that cannot be read at
all (malformed CSV, undecodable text) are listed by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from assoc.records import Progress, no_progress

from .base import MAX_KEPT_PROBLEMS, CollectReport, Problems
from .bundleio import BundleRows, write_into
from .errors import CollectError
from .sources import Field, check_encoding, first_line, read_rows

FORMATS = ("auto", "shopify", "csv", "jsonl")
SHOPIFY_FIELDS = {
    "handle": Field("Handle", required=True),
    "title": Field("Title"),
    "body": Field("Body (HTML)"),
    "price": Field("Variant Price"),
    "image": Field("Image Src"),
    "position": Field("Image Position"),
    "variant_image": Field("Variant Image"),
}
# A price as exports write it: an optional currency sign, digits with an optional decimal point.
_PRICE = re.compile(r"[$€£¥₹]?\s*([+]?(?:\d+(?:\.\d*)?|\.\d+))")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_BLOCK_TAGS = frozenset({"p", "br", "div", "li", "ul", "ol", "tr", "td", "th", "table", "h1", "h2", "h3", "h4",
                         "h5", "h6", "section", "article", "blockquote", "hr", "pre"})
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ProductColumns:
    """Columns (CSV) or keys (JSON Lines, dotted for nested objects) of a generic product export.

    `explicit` names the fields the user set; those must exist. `store` is read only when the
    export holds many stores (no --store-id).
    """

    product_id: str = "product_id"
    title: str = "title"
    description: str = "description"
    price: str = "price"
    currency: str = "currency"
    images: str = "images"
    store: str = "store_id"
    explicit: frozenset[str] = frozenset()

    def fields(self, with_store: bool) -> dict[str, Field]:
        aliases = {"product_id": ("id", "sku"), "images": ("image", "image_url", "image_urls")}
        fields = {name: Field(getattr(self, name), required=name == "product_id", explicit=name in self.explicit,
                              aliases=aliases.get(name, ()))
                  for name in ("product_id", "title", "description", "price", "currency", "images")}
        if with_store:
            fields["store"] = Field(self.store, required=True, explicit="store" in self.explicit)
        return fields


class _Text(HTMLParser):
    """Collects the text of an HTML fragment, with a space wherever a block element breaks the flow."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, whitespace collapsed."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return _SPACE.sub(" ", "".join(parser.parts)).strip()


def parse_price(text: str) -> str | None:
    """'$19.99' -> '19.99'; None when `text` is not a plain price (1,299.00 and 19,99 are ambiguous)."""
    match = _PRICE.fullmatch(text.strip())
    return match.group(1).lstrip("+") if match else None


@dataclass
class _Listing:
    product_id: str
    line: int
    title: str = ""
    description: str = ""
    price: float | None = None
    price_text: str = ""
    images: list[tuple[float, int, str]] = field(default_factory=list)  # (position, row order, src)
    variant_images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProductsCollector:
    """One store's product export (or a generic export of many stores) -> products.csv rows."""

    name: ClassVar[str] = "products"
    summary: ClassVar[str] = "product exports (Shopify CSV, generic CSV / JSON Lines) -> products"

    file: Path
    store_id: str | None = None  # the store the export belongs to; None: a generic export's store column
    fmt: str = "auto"
    columns: ProductColumns = field(default_factory=ProductColumns)
    currency: str = ""  # for exports without a currency column (Shopify's has none)
    encoding: str = "utf-8-sig"
    replace: bool = False  # newer rows replace a product already in the bundle (counted in the report)
    skip_invalid: bool = False

    def collect(self, out: Path, *, progress: Progress = no_progress) -> CollectReport:
        """Read the export and merge its products into the bundle `out`.

        Raises InputError (writing nothing) if a row is bad, unless `skip_invalid`; ConflictError
        if a product already in the bundle differs, unless `replace`.
        """
        if self.fmt not in FORMATS:
            raise CollectError(f"unknown product format {self.fmt!r}; use one of {', '.join(FORMATS)}")
        check_encoding(self.encoding)
        if self.currency and not _CURRENCY.fullmatch(self.currency):
            raise CollectError(f"currency {self.currency!r} is not an ISO 4217 code (e.g. USD)")
        if self.store_id is not None and not self.store_id.strip():
            raise CollectError("the store id is empty; give the id the store has in stores.csv")
        fmt = self.fmt if self.fmt != "auto" else detect_format(self.file, self.encoding)
        if fmt == "shopify" and self.store_id is None:
            raise CollectError("a Shopify export is one store's: pass --store-id")
        problems = Problems()
        rows = BundleRows()
        if fmt == "shopify":
            left_out = self._shopify(rows, problems, progress)
        else:
            left_out = self._generic(fmt, rows, problems, progress)
        problems.check(self.skip_invalid)
        merged = write_into(out, rows, replace_products=self.replace)
        report = CollectReport(self.name, out)
        report.counts = {"products": len(rows.products), "products_left_out": len(left_out),
                         "stores": len({store_id for store_id, _ in rows.products}),
                         "replaced": merged.replaced, "bundle_products": len(merged.products)}
        report.take_problems(problems)
        report.notes = _left_out_notes(left_out)
        return report

    def _shopify(self, rows: BundleRows, problems: Problems, progress: Progress) -> dict[tuple[str, str], list[int]]:
        """Add the good products to `rows`; returns the products left out, with the lines of their bad rows."""
        assert self.store_id is not None
        store_id = self.store_id.strip()
        name = str(self.file)
        listings: dict[str, _Listing] = {}
        bad: dict[tuple[str, str], list[int]] = {}
        for order, (line, row) in enumerate(read_rows(self.file, "csv", SHOPIFY_FIELDS, problems,
                                                      encoding=self.encoding)):
            handle = row["handle"]
            listing = listings.get(handle)
            if listing is None:
                listing = listings[handle] = _Listing(handle, line)
            elif row["title"] and listing.title and row["title"] != listing.title:
                problems.add(name, line, f"handle {handle!r} has title {listing.title!r} at line {listing.line} "
                                         f"and {row['title']!r} here; one Handle must be one product")
                bad.setdefault((store_id, handle), []).append(line)
                continue
            if row["title"] and not listing.title:
                listing.title = row["title"]
            if row["body"] and not listing.description:
                listing.description = html_to_text(row["body"])
            if row["price"] and not self._price(listing, row["price"], name, line, problems):
                bad.setdefault((store_id, handle), []).append(line)
                continue
            if row["image"]:
                position = float(row["position"]) if row["position"].isdigit() else float("inf")
                listing.images.append((position, order, row["image"]))
            if row["variant_image"]:
                listing.variant_images.append(row["variant_image"])
            if order % 10_000 == 0:
                progress(f"read {self.file.name}", order, None)
        for listing in listings.values():
            if (store_id, listing.product_id) in bad:
                continue
            images = [src for _, _, src in sorted(listing.images)] + listing.variant_images
            rows.add_product({
                "store_id": store_id,
                "product_id": listing.product_id,
                "title": listing.title,
                "description": listing.description,
                "price": listing.price_text,
                "currency": self.currency.upper(),
                "images": "|".join(dict.fromkeys(images)),  # an image shown for two variants is listed once
            }, f"{name} line {listing.line}")
        return bad

    @staticmethod
    def _price(listing: _Listing, text: str, name: str, line: int, problems: Problems) -> bool:
        price = parse_price(text)
        if price is None:
            problems.add(name, line, f"price {text!r} is not a decimal number (e.g. 19.99)")
            return False
        if listing.price is None or float(price) < listing.price:
            listing.price, listing.price_text = float(price), price
        return True

    def _generic(self, fmt: str, rows: BundleRows, problems: Problems,
                 progress: Progress) -> dict[tuple[str, str], list[int]]:
        """Add the good products to `rows`; returns the products left out, with the lines of their bad rows."""
        name = str(self.file)
        fields = self.columns.fields(with_store=self.store_id is None)
        first_line_of: dict[tuple[str, str], int] = {}
        bad: dict[tuple[str, str], list[int]] = {}
        for count, (line, row) in enumerate(read_rows(self.file, fmt, fields, problems, encoding=self.encoding)):
            store_id = (self.store_id or row["store"]).strip()
            key = (store_id, row["product_id"])
            if key in first_line_of:
                problems.add(name, line, f"duplicate product_id {row['product_id']!r} (first at line "
                                         f"{first_line_of[key]}); product ids must be unique within a store")
                # Which of the two rows is the product cannot be known, so neither is written.
                bad.setdefault(key, []).append(line)
                rows.products.pop(key, None)
                continue
            first_line_of[key] = line
            price = ""
            if row["price"]:
                parsed = parse_price(row["price"])
                if parsed is None:
                    problems.add(name, line, f"price {row['price']!r} is not a decimal number (e.g. 19.99)")
                    bad.setdefault(key, []).append(line)
                    continue
                price = parsed
            currency = row["currency"] or self.currency
            if currency and not _CURRENCY.fullmatch(currency):
                problems.add(name, line, f"currency {currency!r} is not an ISO 4217 code (e.g. USD)")
                bad.setdefault(key, []).append(line)
                continue
            description = row["description"]
            if "<" in description and ">" in description:
                description = html_to_text(description)
            images = [p.strip() for p in row["images"].split("|") if p.strip()]
            rows.add_product({"store_id": store_id, "product_id": row["product_id"], "title": row["title"],
                              "description": description, "price": price, "currency": currency.upper(),
                              "images": "|".join(images)}, f"{name} line {line}")
            if count % 10_000 == 0:
                progress(f"read {self.file.name}", count, None)
        return bad


def _left_out_notes(left_out: dict[tuple[str, str], list[int]]) -> list[str]:
    """One note per product left out (at most MAX_KEPT_PROBLEMS, then how many more)."""
    notes = [f"product {product_id!r} of store {store_id!r} left out whole: bad row(s) at line(s) "
             f"{', '.join(map(str, lines))}" for (store_id, product_id), lines in left_out.items()]
    if len(notes) > MAX_KEPT_PROBLEMS:
        notes[MAX_KEPT_PROBLEMS:] = [f"... and {len(notes) - MAX_KEPT_PROBLEMS} more products left out"]
    return notes


def detect_format(path: Path, encoding: str = "utf-8-sig") -> str:
    """shopify, csv or jsonl: JSON Lines by name or a leading '{', Shopify by its header, else CSV."""
    name = path.name.lower().removesuffix(".gz")
    line = first_line(path, encoding)
    if name.endswith((".jsonl", ".ndjson", ".json")) or line.startswith("{"):
        return "jsonl"
    header = {h.strip().strip('"') for h in line.split(",")}
    if {"Handle", "Title", "Body (HTML)"} <= header:
        return "shopify"
    return "csv"
