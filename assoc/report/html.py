"""The HTML report: one self-contained file (OUTDIR/report.html) a reviewer opens offline.

Built from a scan's OUTDIR (outdir.py), plus the scanned bundle when it is still there, for
store names, product titles and pictures. Everything the page shows is one JSON document
(`report_data`) embedded in the page and drawn by a small inline script: the page then opens
fast on large scans (clusters are drawn a page at a time, and the search box searches the
data, not the drawn page), and the data is what the golden-file test pins down.

Nothing is fetched: styles and script are inline, pictures are downscaled JPEG data: URIs, and
a Content-Security-Policy forbids the page any other source, so a report opened on a machine
without network (or mailed to one) looks the same. Personal values are masked in the data
itself, not by the script, so a masked report does not contain them at all.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from models.rules import PRIOR

from ..bundle import read_bundle
from ..errors import AssocError, OutputError
from ..records import Product, Progress, no_progress
from .graph import IdentifierGraph, identifier_graph
from .outdir import PII_KINDS, CatalogMatch, ClusterRecord, PairRecord, ScanOutput
from .queue import top_reasons
from .tables import _atomic

REPORT_FILE = "report.html"
DATA_VERSION = 1
# Side by side catalog matches shown per pair; the rest are counted (catalog_matches.csv has them all).
MATCHES_PER_PAIR = 4
THUMBNAIL_PIXELS = 64  # longest side: enough to recognise a product, small enough for thousands
THUMBNAIL_QUALITY = 70

# Cluster diagram geometry (SVG user units).
ROW = 30
PAD = 24
STORE_X = 150
IDENTIFIER_X = 430
DIAGRAM_WIDTH = 760
LABEL_CHARS = 38


@dataclass(frozen=True, slots=True)
class _BundleExtras:
    """What the bundle adds to a report: store names and the listings behind catalog matches."""

    names: dict[str, str]
    products: dict[tuple[str, str], Product]
    root: Path | None
    note: str  # why the bundle could not be used, '' when it could


def report_data(scan: ScanOutput, *, reveal_pii: bool = False, matches_per_pair: int = MATCHES_PER_PAIR,
                progress: Progress = no_progress) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data; deterministic for a given OUTDIR and bundle.

    Clusters come in risk order with their diagram laid out, their pairs with the evidence
    waterfall and side-by-side catalog matches; then linked pairs outside clusters and hubs.
    Pictures are a map of id -> data: URI that products refer to.
    """
    extras = _bundle_extras(scan)
    matches = scan.matches_by_pair()
    catalog = _CatalogSection(extras, matches_per_pair)
    pairs: list[dict[str, Any]] = []
    pair_index: dict[tuple[str, str], int] = {}

    def add_pair(pair: PairRecord) -> int:
        if pair.key not in pair_index:
            pair_index[pair.key] = len(pairs)
            pairs.append(_pair_data(pair, matches.get(pair.key, []), catalog, reveal_pii))
        return pair_index[pair.key]

    clusters = []
    for rank, cluster in enumerate(scan.clusters, start=1):
        inside = scan.cluster_pairs(cluster.cluster_id)
        clusters.append({
            "id": cluster.cluster_id, "rank": rank, "risk": round(cluster.risk, 4), "members": list(cluster.members),
            "bridges": list(cluster.bridges), "top_reasons": [[code, n] for code, n in top_reasons(inside)],
            "diagram": _diagram(cluster, inside, reveal_pii), "pairs": [add_pair(p) for p in inside],
        })
    outside = [add_pair(p) for p in scan.linked_outside_clusters()]
    notes = [extras.note] if extras.note else []
    picture_data = catalog.pictures(progress)
    notes += catalog.notes()
    summary = scan.summary
    return {
        "version": DATA_VERSION,
        "summary": {key: summary.get(key) for key in ("stores", "pairs_reported", "pairs_linked", "clusters",
                                                       "stores_in_clusters", "hubs", "hubs_ignored",
                                                       "rejected_rows")},
        "settings": {key: scan.settings.get(key) for key in ("link_threshold", "catalog_threshold", "hub_cap")},
        "prior_bits": PRIOR,
        "pii_revealed": reveal_pii,
        "masked_kinds": [] if reveal_pii else sorted(PII_KINDS),
        "notes": notes,
        "store_names": {store: extras.names[store] for store in sorted({s for p in pairs for s in (p["a"], p["b"])})
                        if extras.names.get(store)},
        "clusters": clusters,
        "pairs": pairs,
        "outside_pairs": outside,
        "hubs": [{"kind": h.kind, "value": h.shown_value(reveal_pii), "stores": h.stores, "note": h.note}
                 for h in scan.hubs],
        "products": catalog.products,
        "pictures": picture_data,
    }


def _pair_data(pair: PairRecord, matches: list[CatalogMatch], catalog: _CatalogSection,
               reveal_pii: bool) -> dict[str, Any]:
    shown = matches[:catalog.per_pair]
    return {
        "a": pair.store_a, "b": pair.store_b, "score": round(pair.score, 4),
        "operator_score": round(pair.operator_score, 4),
        "catalog_overlap": None if pair.catalog_overlap is None else round(pair.catalog_overlap, 4),
        "reasons": list(pair.reasons), "cluster": pair.cluster_id,
        "waterfall": [step.to_dict(reveal_pii) for step in pair.waterfall()],
        "matches": [{"a": catalog.product_ref(m.store_a, m.product_a), "b": catalog.product_ref(m.store_b, m.product_b),
                     "text": m.text_similarity, "image": m.image_distance} for m in shown],
        "more_matches": len(matches) - len(shown),
    }


class _CatalogSection:
    """Collects the products shown beside each other and, once, their pictures (deduplicated by file)."""

    def __init__(self, extras: _BundleExtras, per_pair: int):
        self.extras = extras
        self.per_pair = per_pair
        self.products: list[dict[str, Any]] = []
        self._index: dict[tuple[str, str], int] = {}
        self._picture_ids: dict[str, str] = {}  # image path as listed -> picture id

    def product_ref(self, store: str, product_id: str) -> int:
        key = (store, product_id)
        if key in self._index:
            return self._index[key]
        product = self.extras.products.get(key)
        entry: dict[str, Any] = {"store": store, "product": product_id,
                                 "title": product.title if product else "", "picture": None, "picture_note": ""}
        if product is None:
            entry["picture_note"] = "listing not found in the bundle" if self.extras.root else "bundle not available"
        elif not product.images:
            entry["picture_note"] = "no picture listed"
        elif product.images[0].startswith(("http://", "https://")):
            # A report must not fetch anything: a remote picture stays a link in products.csv.
            entry["picture_note"] = "remote picture, not fetched"
        else:
            entry["picture"] = self._picture_ids.setdefault(product.images[0], f"p{len(self._picture_ids) + 1}")
        self._index[key] = len(self.products)
        self.products.append(entry)
        return self._index[key]

    def pictures(self, progress: Progress) -> dict[str, str]:
        """Picture id -> data: URI. A picture that cannot be read is dropped and its products say why."""
        out: dict[str, str] = {}
        failed: dict[str, str] = {}
        root = self.extras.root
        if root is None:  # no bundle, no products, so no pictures either
            return out
        total = len(self._picture_ids)
        # Pillow releases the GIL while it decodes and encodes, so threads use every core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            thumbnails = pool.map(lambda listed: _thumbnail(root / listed), self._picture_ids)
            for done, (picture_id, (uri, problem)) in enumerate(zip(self._picture_ids.values(), thumbnails,
                                                                    strict=True), start=1):
                if done % 200 == 0:
                    progress("report pictures", done, total)
                if uri:
                    out[picture_id] = uri
                else:
                    failed[picture_id] = problem
        progress("report pictures", total, total)
        for entry in self.products:
            if entry["picture"] in failed:
                entry["picture_note"] = failed[entry["picture"]]
                entry["picture"] = None
        return out

    def notes(self) -> list[str]:
        without = [entry for entry in self.products if entry["picture"] is None]
        if not without:
            return []
        reasons = "; ".join(sorted({entry["picture_note"] for entry in without}))
        return [f"{len(without)} of {len(self.products)} listings shown without a picture ({reasons})."]


def _thumbnail(path: Path) -> tuple[str | None, str]:
    """A JPEG data: URI of the picture at most THUMBNAIL_PIXELS on a side, or (None, why not)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))  # JPEG decodes straight at a reduced scale
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    except FileNotFoundError:
        return None, "picture file missing"
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None, "picture unreadable"
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), ""


def _bundle_extras(scan: ScanOutput) -> _BundleExtras:
    if scan.bundle is None:
        return _BundleExtras({}, {}, None, "summary.json names no bundle: store names, titles and pictures not shown.")
    if not scan.bundle.exists():
        return _BundleExtras({}, {}, None, f"The scanned bundle {scan.bundle} is not there any more: "
                                           "store names, titles and pictures not shown.")
    try:
        bundle = read_bundle(scan.bundle, skip_invalid=True)
    except AssocError as exc:
        return _BundleExtras({}, {}, None, f"The scanned bundle {scan.bundle} cannot be read ({exc}): "
                                           "store names, titles and pictures not shown.")
    return _BundleExtras(names={s.store_id: s.name for s in bundle.stores.values()},
                         products={(p.store_id, p.product_id): p for p in bundle.products},
                         root=bundle.root, note="")


def _diagram(cluster: ClusterRecord, pairs: list[PairRecord], reveal_pii: bool) -> dict[str, Any]:
    """Positions for the cluster's stores (left column) and the identifiers tying them (right column).

    Two columns keep every label readable. Identifiers sit at the mean position of their stores
    and stores are then reordered by the mean position of their identifiers (one barycentre
    sweep each way), which untangles most crossings without any randomness.
    """
    ties = identifier_graph(pairs, reveal_pii=reveal_pii, id_prefix="i")
    stores = list(cluster.members)
    identities = list(ties.identifiers)
    held = _held_by(ties)
    store_rank = {s: n for n, s in enumerate(stores)}
    identities.sort(key=lambda i: (_mean(store_rank[s] for s in held[i]), i))
    identity_rank = {i: n for n, i in enumerate(identities)}
    holds: dict[str, list[str]] = {s: [] for s in stores}
    for store, identity in ties.uses:
        holds[store].append(identity)
    stores.sort(key=lambda s: (_mean(identity_rank[i] for i in holds[s]) if holds[s] else len(identities), s))
    store_rank = {s: n for n, s in enumerate(stores)}
    identities.sort(key=lambda i: (_mean(store_rank[s] for s in held[i]), i))

    rows = max(len(stores), len(identities), 1)
    height = PAD * 2 + rows * ROW
    store_y = _spread(len(stores), height)
    identifier_y = _spread(len(identities), height)
    bridges = set(cluster.bridges)
    store_nodes = [{"id": store, "x": STORE_X, "y": y, "bridge": store in bridges}
                   for store, y in zip(stores, store_y, strict=True)]
    identifier_nodes = []
    for identity, y in zip(identities, identifier_y, strict=True):
        identifier = ties.identifiers[identity]
        label = identifier.label
        identifier_nodes.append({
            "id": identifier.node_id, "x": IDENTIFIER_X, "y": y, "kind": identifier.kind,
            "label": label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…",
            "title": f"{label} (shared by {identifier.stores} stores)", "stores": identifier.stores,
        })
    position = {s: n for n, s in enumerate(stores)}
    node_of = {identity: n for n, identity in enumerate(identities)}
    edges = [{"store": position[store], "identifier": node_of[identity], "weight": round(weight, 2)}
             for (store, identity), weight in ties.uses.items()]
    catalog = [{"a": position[p.store_a], "b": position[p.store_b], "overlap": round(p.catalog_overlap, 2)}
               for p in pairs if p.catalog_overlap is not None and any(e.kind == "catalog" for e in p.evidence)]
    return {"width": DIAGRAM_WIDTH, "height": height, "stores": store_nodes, "identifiers": identifier_nodes,
            "edges": edges, "catalog": catalog}


def _held_by(ties: IdentifierGraph) -> dict[tuple[str, str], list[str]]:
    held: dict[tuple[str, str], list[str]] = {identity: [] for identity in ties.identifiers}
    for store, identity in ties.uses:
        held[identity].append(store)
    return held


def _mean(values: Iterable[int]) -> float:
    items = list(values)
    return sum(items) / len(items)


def _spread(count: int, height: int) -> list[float]:
    """`count` positions spaced evenly down a column of `height`, centred."""
    if count == 0:
        return []
    step = (height - 2 * PAD) / count
    return [round(PAD + step * (n + 0.5), 1) for n in range(count)]


def render_html(data: dict[str, Any]) -> str:
    """The report page: the template with `data` embedded as JSON.

    Pictures go in a block of their own, parsed only when a reviewer first unfolds a pair:
    they are most of the bytes of a large report, and parsing them up front would slow its opening.
    """
    rest = {key: value for key, value in data.items() if key != "pictures"}
    # Spliced, not str.replace'd in turn: a title that reads "/*PICTURES*/" must stay a title.
    before_data, before_pictures, after = _TEMPLATE_PARTS
    return before_data + _script_json(rest) + before_pictures + _script_json(data["pictures"]) + after


def _script_json(value: Any) -> str:
    # In a <script> element only "</" can end the element early; escaping every "<", ">" and "&"
    # as \\u003c etc. keeps the JSON valid and the page safe whatever a title or store name contains.
    return (json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            .replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def write_html_report(scan: ScanOutput, path: Path | None = None, *, reveal_pii: bool = False,
                      matches_per_pair: int = MATCHES_PER_PAIR, progress: Progress = no_progress) -> Path:
    """Write the report (default OUTDIR/report.html); returns its path."""
    path = Path(path) if path is not None else scan.outdir / REPORT_FILE
    data = report_data(scan, reveal_pii=reveal_pii, matches_per_pair=matches_per_pair, progress=progress)
    try:
        with _atomic(path) as handle:
            handle.write(render_html(data))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the report: {exc.strerror or exc}") from exc
    return path


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>assoc report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 16px 48px; color: #222; }
h1 { font-size: 22px; margin: 16px 0 4px; }
h2 { font-size: 17px; margin: 0 0 6px; }
.summary span { margin-right: 18px; }
.notes { background: #fff7e0; border: 1px solid #e8d49a; padding: 6px 10px; margin: 8px 0; }
.bar { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #ddd; z-index: 1; }
#store-search { font-size: 15px; padding: 4px 8px; width: 280px; }
.cluster { border: 1px solid #ccc; border-radius: 6px; padding: 12px; margin: 14px 0; }
.risk { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; background: #b33; }
.reasons { color: #555; margin: 4px 0 8px; }
svg { display: block; max-width: 100%; height: auto; margin: 6px 0; }
svg text { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { border-bottom: 1px solid #eee; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
table.hubs { width: auto; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
details > summary { cursor: pointer; color: #245; }
.wbar { display: inline-block; height: 10px; background: #468; vertical-align: middle; }
.waterfall td { white-space: nowrap; }
.waterfall td.value { white-space: normal; }
.matches { display: grid; grid-template-columns: 1fr 1fr auto; gap: 4px 12px; margin: 6px 0; }
.product { display: flex; gap: 8px; align-items: center; }
.product img, .nopic { width: 64px; height: 64px; object-fit: contain; border: 1px solid #ddd; flex: none; }
.nopic { font-size: 10px; color: #888; display: flex; align-items: center; justify-content: center;
         text-align: center; }
.muted { color: #888; }
button { margin: 8px 0; }
</style>
</head>
<body>
<noscript><p>This report draws its content with JavaScript; allow scripts for this file to see it.</p></noscript>
<h1>assoc report</h1>
<div class="summary" id="summary"></div>
<div id="notes"></div>
<div class="bar">
  <label>Store id <input id="store-search" type="search" placeholder="filter by store id" autocomplete="off"></label>
  <span id="search-status" class="muted"></span>
</div>
<section id="clusters"></section>
<button id="more-clusters" hidden>Show more clusters</button>
<section id="outside"></section>
<section id="hubs"></section>
<script id="assoc-data" type="application/json">/*DATA*/</script>
<script id="assoc-pictures" type="application/json">/*PICTURES*/</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("assoc-data").textContent);
// Clusters are drawn a page at a time, a page ending at 20 clusters or 300 pair rows, so a
// large scan opens fast whatever the size of its biggest clusters; the rest are drawn on demand.
const PAGE_CLUSTERS = 20;
const PAGE_PAIRS = 300;
const FAMILY_COLOURS = {payout: "#b5367a", identity: "#c0662a", hardware: "#2f6db3", network: "#4a9a5b",
                        address: "#8a6bbf", catalog: "#d08f00", other: "#777"};
const KIND_FAMILY = {mac: "hardware", device_id: "hardware", browser_fp: "hardware", ip: "network",
                     phone: "identity", email: "identity", person_name: "identity", tax_id: "identity",
                     payment_account: "payout", address: "address"};
let shownClusters = [];
let drawn = 0;
let pictures = null;  // parsed from #assoc-pictures on first use

function picture(id) {
  if (pictures === null) pictures = JSON.parse(document.getElementById("assoc-pictures").textContent);
  return pictures[id];
}

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function s(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function fmt(value, digits) { return value === null || value === undefined ? "" : Number(value).toFixed(digits); }
function storeLabel(id) { const name = DATA.store_names[id]; return name ? id + " (" + name + ")" : id; }

function header() {
  const sum = DATA.summary;
  document.getElementById("summary").append(
    h("span", {}, "stores: ", sum.stores), h("span", {}, "linked pairs: ", sum.pairs_linked,
      " of ", sum.pairs_reported, " reported"), h("span", {}, "clusters: ", sum.clusters, " (",
      sum.stores_in_clusters, " stores)"),
    h("span", {}, "hubs: ", sum.hubs, " (", sum.hubs_ignored ?? sum.hubs, " ignored)"));
  const notes = [...DATA.notes];
  if (DATA.masked_kinds.length) {
    notes.push("Masked: " + DATA.masked_kinds.join(", ") + ". Run `assoc report OUTDIR --reveal-pii` to show them.");
  }
  if (notes.length) {
    document.getElementById("notes").append(h("div", {class: "notes"}, notes.map(n => h("div", {}, n))));
  }
}

function diagram(d) {
  const root = s("svg", {viewBox: "0 0 " + d.width + " " + d.height, width: d.width, height: d.height,
                         class: "diagram", role: "img"});
  for (const c of d.catalog) {
    const a = d.stores[c.a], b = d.stores[c.b], bend = 40 + Math.abs(b.y - a.y) * 0.25;
    root.append(s("path", {d: `M${a.x},${a.y} C${a.x + bend},${a.y} ${b.x + bend},${b.y} ${b.x},${b.y}`,
                           fill: "none", stroke: FAMILY_COLOURS.catalog, "stroke-dasharray": "5 3",
                           class: "catalog-edge"}, s("title", {}, "catalog overlap " + c.overlap)));
  }
  for (const e of d.edges) {
    const a = d.stores[e.store], b = d.identifiers[e.identifier];
    const attrs = {x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: "evidence-edge",
                   stroke: e.weight > 0 ? FAMILY_COLOURS[KIND_FAMILY[b.kind] || "other"] : "#bbb",
                   "stroke-width": Math.max(1, Math.min(4, e.weight / 4))};
    if (e.weight <= 0) attrs["stroke-dasharray"] = "3 3";
    root.append(s("line", attrs, s("title", {}, b.title + ", weight " + e.weight + " bits")));
  }
  for (const n of d.stores) {
    root.append(s("circle", {cx: n.x, cy: n.y, r: 8, fill: "#fff", stroke: n.bridge ? "#b33" : "#333",
                             "stroke-width": n.bridge ? 3 : 1.5, class: "store-node"},
                  s("title", {}, storeLabel(n.id) + (n.bridge ? " (bridge: removing it splits the cluster)" : ""))));
    root.append(s("text", {x: n.x - 14, y: n.y + 4, "text-anchor": "end"}, n.id));
  }
  for (const n of d.identifiers) {
    root.append(s("rect", {x: n.x - 6, y: n.y - 6, width: 12, height: 12, rx: 2, class: "identifier-node",
                           fill: FAMILY_COLOURS[KIND_FAMILY[n.kind] || "other"]}, s("title", {}, n.title)));
    root.append(s("text", {x: n.x + 12, y: n.y + 4}, n.label));
  }
  return root;
}

function waterfall(p) {
  const rows = [h("tr", {}, h("td", {}, "prior"), h("td", {}), h("td", {class: "num"}, fmt(DATA.prior_bits, 1)),
                h("td", {}), h("td", {class: "num"}, fmt(DATA.prior_bits, 1)), h("td", {}), h("td", {}), h("td", {}))];
  for (const w of p.waterfall) {
    rows.push(h("tr", {class: "evidence-row"},
      h("td", {}, w.code),
      h("td", {class: "value"}, w.value, w.note ? h("span", {class: "muted"}, " (", w.note, ")") : null),
      h("td", {class: "num"}, fmt(w.weight, 1), " ", h("span", {class: "wbar",
        style: "width:" + Math.max(0, w.weight) * 5 + "px;background:" + (FAMILY_COLOURS[w.family] || "#777")})),
      h("td", {class: "num"}, w.stores), h("td", {class: "num"}, fmt(w.bits_after, 1), " → ", fmt(w.p_after, 3)),
      h("td", {}, w.first_seen_a), h("td", {}, w.first_seen_b),
      h("td", {class: "num"}, w.gap_hours === null ? "" : fmt(w.gap_hours, 1))));
  }
  return h("table", {class: "waterfall"},
    h("thead", {}, h("tr", {}, ["evidence", "value", "weight (bits)", "stores sharing", "total → probability",
      "first seen by " + p.a, "first seen by " + p.b, "closest gap (h)"].map(t => h("th", {}, t)))),
    h("tbody", {}, rows),
    h("tfoot", {}, h("tr", {}, h("td", {colspan: 8}, "operator score ", fmt(p.operator_score, 3), "; score ",
      fmt(p.score, 3), p.score > p.operator_score ? " (raised by the catalog rule or the cluster path)" : ""))));
}

function product(ref) {
  const item = DATA.products[ref];
  const uri = item.picture && picture(item.picture);
  return h("div", {class: "product"},
    uri ? h("img", {src: uri, alt: item.title || item.product})
            : h("div", {class: "nopic"}, item.picture_note || "no picture"),
    h("div", {}, h("div", {}, item.title || h("span", {class: "muted"}, "(no title)")),
      h("div", {class: "muted"}, item.store, " / ", item.product)));
}

function matches(p) {
  if (!p.matches.length) return null;
  const grid = h("div", {class: "matches"}, h("b", {}, p.a), h("b", {}, p.b), h("b", {}, "similarity"));
  for (const m of p.matches) {
    grid.append(product(m.a), product(m.b), h("div", {class: "muted"}, "text ", fmt(m.text, 2),
      m.image === null ? "" : "; image distance " + m.image));
  }
  return h("div", {class: "catalog"}, h("div", {}, "Catalog matches (overlap ", fmt(p.catalog_overlap, 2), ")"), grid,
    p.more_matches ? h("div", {class: "muted"}, "and ", p.more_matches, " more in catalog_matches.csv") : null);
}

function pairTable(indexes) {
  const body = h("tbody", {});
  for (const i of indexes) {
    const p = DATA.pairs[i];
    body.append(h("tr", {class: "pair-row", "data-stores": p.a + " " + p.b},
      h("td", {}, storeLabel(p.a)), h("td", {}, storeLabel(p.b)), h("td", {class: "num"}, fmt(p.score, 3)),
      h("td", {class: "num"}, fmt(p.catalog_overlap, 2)), h("td", {}, p.reasons.join("; "))));
    // The waterfall and the pictures are built when a pair is first unfolded: a page of large
    // clusters holds thousands of evidence rows and pictures nobody may look at.
    const details = h("details", {}, h("summary", {}, "evidence: ", p.a, " + ", p.b));
    details.addEventListener("toggle", () => {
      if (details.open && details.childElementCount === 1) details.append(waterfall(p), matches(p));
    });
    body.append(h("tr", {class: "pair-detail", "data-stores": p.a + " " + p.b}, h("td", {colspan: 5}, details)));
  }
  return h("table", {class: "pairs"}, h("thead", {}, h("tr", {}, ["store", "store", "score", "catalog overlap",
    "reasons"].map(t => h("th", {}, t)))), body);
}

function cluster(c) {
  return h("section", {class: "cluster", id: "cluster-" + c.id, "data-cluster": c.id,
                       "data-stores": c.members.join(" ")},
    h("h2", {}, "#", c.rank, " ", c.id, " ", h("span", {class: "risk"}, "risk ", fmt(c.risk, 3)), " ",
      c.members.length, " stores"),
    h("div", {class: "members"}, "Stores: ", c.members.map(storeLabel).join(", "),
      c.bridges.length ? h("span", {class: "muted"}, " — bridges: ", c.bridges.join(", ")) : null),
    h("div", {class: "reasons"}, "Top reasons: ",
      c.top_reasons.map(([code, n]) => code + " (" + n + " pairs)").join("; ")),
    diagram(c.diagram), pairTable(c.pairs));
}

function matchesQuery(stores, query) { return !query || stores.some(id => id.toLowerCase().includes(query)); }

function drawMoreClusters() {
  const list = document.getElementById("clusters");
  let rows = 0;
  const next = [];
  for (const c of shownClusters.slice(drawn, drawn + PAGE_CLUSTERS)) {
    if (next.length && rows + c.pairs.length > PAGE_PAIRS) break;
    next.push(c);
    rows += c.pairs.length;
  }
  list.append(...next.map(cluster));
  drawn += next.length;
  const more = document.getElementById("more-clusters");
  more.hidden = drawn >= shownClusters.length;
  more.textContent = "Show more clusters (" + (shownClusters.length - drawn) + " left)";
}

function applySearch() {
  const query = document.getElementById("store-search").value.trim().toLowerCase();
  shownClusters = DATA.clusters.filter(c => matchesQuery(c.members, query));
  drawn = 0;
  const list = document.getElementById("clusters");
  list.replaceChildren(h("h2", {}, "Clusters, highest risk first"));
  drawMoreClusters();
  const outside = DATA.outside_pairs.filter(i => matchesQuery([DATA.pairs[i].a, DATA.pairs[i].b], query));
  document.getElementById("outside").replaceChildren(
    h("h2", {}, "Linked pairs outside clusters"),
    h("p", {class: "muted"}, "Linked pairwise: by the catalog rule, or by a value whose other holders share " +
      "nothing else, which may not join a cluster."),
    outside.length ? pairTable(outside) : h("p", {class: "muted"}, "none"));
  document.getElementById("search-status").textContent = query ?
    shownClusters.length + " of " + DATA.clusters.length + " clusters and " + outside.length + " of " +
    DATA.outside_pairs.length + " other pairs match" : DATA.clusters.length + " clusters";
}

function hubs() {
  const section = document.getElementById("hubs");
  section.append(h("h2", {}, "Hubs: values shared by many stores (over ", DATA.settings.hub_cap,
    " stores or marked by a reviewer: ignored; the others weighed down, as each note says)"));
  if (!DATA.hubs.length) { section.append(h("p", {class: "muted"}, "none")); return; }
  section.append(h("table", {class: "hubs"}, h("thead", {}, h("tr", {}, ["kind", "value", "stores", "note"].map(
    t => h("th", {}, t)))), h("tbody", {}, DATA.hubs.map(x => h("tr", {class: "hub-row"}, h("td", {}, x.kind),
    h("td", {}, x.value), h("td", {class: "num"}, x.stores), h("td", {}, x.note))))));
}

header();
hubs();
applySearch();
let searchTimer = 0;
document.getElementById("store-search").addEventListener("input", () => {
  // Redraw once typing pauses, not once per key.
  clearTimeout(searchTimer);
  searchTimer = setTimeout(applySearch, 150);
});
document.getElementById("more-clusters").addEventListener("click", drawMoreClusters);
document.body.dataset.ready = "true";
</script>
</body>
</html>
"""

_TEMPLATE_PARTS = tuple(re.split(r"/\*DATA\*/|/\*PICTURES\*/", _TEMPLATE))
