"""The HTML report's data and page: golden file, masking, graceful degradation, escaping, offline-only.

Golden file: tests/data/report_example.json is the report data of tests/data/example-out, a
committed scan of examples/bundle, with picture bytes left out (they depend on the JPEG encoder).
Most tests here read the committed scan, so they pin the report layer alone; one scans
examples/bundle afresh and fails when the scanner's output has drifted from the committed one.
To regenerate both after an intended change:

    assoc scan examples/bundle --out tests/data/example-out --no-cache -q
    ASSOC_REGENERATE_GOLDEN=1 python -m pytest tests/test_report_html.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from assoc.bundle import read_bundle
from assoc.report import write_scan_outputs
from assoc.report.html import REPORT_FILE, render_html, report_data, write_html_report
from assoc.report.outdir import read_scan_output
from assoc.scan import scan
from assoc.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "report_example.json"


def copy_example_outdir(target: Path) -> Path:
    """tests/data/example-out copied to `target`, pointing at this checkout's examples/bundle."""
    shutil.copytree(DATA / "example-out", target)
    summary = json.loads((target / "summary.json").read_text(encoding="utf-8"))
    summary["bundle"] = str(ROOT / "examples" / "bundle")
    (target / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return target


def golden_view(data: dict[str, Any]) -> dict[str, Any]:
    """Report data with picture bytes replaced by their ids."""
    return json.loads(json.dumps(dict(data, pictures=sorted(data["pictures"]))))


def embedded_data(html: str) -> dict[str, Any]:
    """The report data as the page holds it: the data block plus the pictures block."""
    blocks = {}
    for name in ("data", "pictures"):
        found = re.search(rf'<script id="assoc-{name}" type="application/json">(.*?)</script>', html, re.S)
        assert found, f"no embedded {name}"
        blocks[name] = json.loads(found.group(1))
    return dict(blocks["data"], pictures=blocks["pictures"])


@pytest.fixture
def example_outdir(tmp_path: Path) -> Path:
    return copy_example_outdir(tmp_path / "out")


def test_report_data_matches_the_golden_file(example_outdir):
    data = golden_view(report_data(read_scan_output(example_outdir)))
    if os.environ.get("ASSOC_REGENERATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    assert data == json.loads(GOLDEN.read_text(encoding="utf-8"))


# The scan's result files, as the committed example-out holds them; summary.json is left out: its
# stats count cache hits and its bundle path is the machine's.
RESULT_FILES = ("pairs.csv", "clusters.csv", "hubs.csv", "rejected.csv", "catalog_matches.csv", "evidence.jsonl")


def test_a_fresh_scan_of_the_example_bundle_gives_the_committed_scan_and_the_golden_data(tmp_path):
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    settings = Settings(cache_dir=tmp_path / "cache")
    for run in ("first", "cached"):  # a rescan served by the cache must give the same files
        outdir = tmp_path / run
        write_scan_outputs(scan(read_bundle(ROOT / "examples" / "bundle"), settings), outdir, settings)
        for name in RESULT_FILES:
            assert (outdir / name).read_bytes() == (DATA / "example-out" / name).read_bytes(), (
                f"{name} of a fresh scan differs from tests/data/example-out: regenerate it (module docstring)")
        assert golden_view(report_data(read_scan_output(outdir))) == golden
    assert json.loads((outdir / "summary.json").read_text(encoding="utf-8"))["summary"]["stats"]["catalog_from_cache"]


def test_the_page_embeds_exactly_the_report_data_and_is_deterministic(example_outdir):
    results = read_scan_output(example_outdir)
    first = write_html_report(results).read_text(encoding="utf-8")
    second = render_html(report_data(results))
    assert first == second
    assert golden_view(embedded_data(first)) == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_every_cluster_pair_and_evidence_piece_is_in_the_data(example_outdir):
    results = read_scan_output(example_outdir)
    data = report_data(results)
    assert [c["id"] for c in data["clusters"]] == [c.cluster_id for c in results.clusters]
    for cluster, record in zip(data["clusters"], results.clusters, strict=True):
        shown = [(data["pairs"][i]["a"], data["pairs"][i]["b"]) for i in cluster["pairs"]]
        assert shown == [p.key for p in results.cluster_pairs(record.cluster_id)]
        assert {n["id"] for n in cluster["diagram"]["stores"]} == set(record.members)
    linked = {p.key for p in results.pairs if p.linked}
    assert {(p["a"], p["b"]) for p in data["pairs"]} == linked
    for pair in data["pairs"]:
        assert len(pair["waterfall"]) == len(results.pair(pair["a"], pair["b"]).evidence)


def test_diagram_has_an_edge_per_store_and_identifier_and_no_overlapping_nodes(example_outdir):
    data = report_data(read_scan_output(example_outdir))
    for cluster in data["clusters"]:
        diagram = cluster["diagram"]
        pieces = {(s, e["code"], e["value"]) for i in cluster["pairs"] for e in data["pairs"][i]["waterfall"]
                  if not e["code"].startswith("catalog:") for s in (data["pairs"][i]["a"], data["pairs"][i]["b"])}
        drawn = {(diagram["stores"][e["store"]]["id"], diagram["identifiers"][e["identifier"]]["id"])
                 for e in diagram["edges"]}
        assert len(drawn) == len(diagram["edges"])  # no duplicate edges
        assert len(drawn) == len({(store, code, value) for store, code, value in pieces})
        for column in ("stores", "identifiers"):
            ys = [n["y"] for n in diagram[column]]
            assert all(b - a >= 20 for a, b in zip(ys, ys[1:], strict=False)), "nodes overlap"
            assert all(0 < y < diagram["height"] for y in ys)


def test_pictures_are_inlined_as_small_jpeg_data_uris(example_outdir):
    data = report_data(read_scan_output(example_outdir))
    assert data["pictures"], "the example bundle has pictures of matched listings"
    for uri in data["pictures"].values():
        assert uri.startswith("data:image/jpeg;base64,") and len(uri) < 20_000
    shown = [p for p in data["products"] if p["picture"]]
    assert shown and all(p["title"] for p in data["products"])


def test_masked_report_does_not_contain_the_personal_values(example_outdir):
    results = read_scan_output(example_outdir)
    personal = {e.value for p in results.pairs for e in p.evidence if e.kind in ("payment_account", "phone", "email")}
    assert personal, "the example has personal values to mask"
    masked = write_html_report(results).read_text(encoding="utf-8")
    assert not [v for v in personal if v in masked]
    assert "****" in masked
    revealed = write_html_report(results, reveal_pii=True).read_text(encoding="utf-8")
    assert all(v in revealed for v in personal)
    assert embedded_data(revealed)["pii_revealed"] is True


def test_the_page_requests_nothing_from_outside(example_outdir):
    html = write_html_report(read_scan_output(example_outdir)).read_text(encoding="utf-8")
    assert "default-src 'none'" in html  # the browser itself refuses any other source
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"<link\b|@import|url\(", html)


def _tiny_outdir(tmp_path: Path, *, bundle: Path | None) -> Path:
    """A hand-written OUTDIR: one cluster A-B with a phone, catalog matches, a hub; store names that attack."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    evidence = [{"code": "shared:phone", "kind": "phone", "level": "exact", "value": "+8613800138000", "stores": 2,
                 "weight": 14.0, "first_seen_a": "2024-01-01T00:00:00Z", "first_seen_b": "", "gap_hours": None,
                 "note": "", "key": "phone", "support": None},
                {"code": "catalog:own", "kind": "catalog", "level": "own", "value": "0.75", "stores": 1,
                 "weight": 8.0, "first_seen_a": "", "first_seen_b": "", "gap_hours": None, "note": "3 of 4 products",
                 "key": "", "support": None}]
    pair = {"store_a": "A", "store_b": "B", "score": 1.0, "operator_score": 1.0, "linked": True,
            "catalog_overlap": 0.75, "reasons": ["shared:phone", "catalog:own"], "cluster_id": "C-A",
            "evidence": evidence}
    (outdir / "evidence.jsonl").write_text(json.dumps(pair) + "\n", encoding="utf-8")
    (outdir / "clusters.csv").write_text("store_id,cluster_id,cluster_risk,cluster_size,bridge\n"
                                         "A,C-A,1.0,2,false\nB,C-A,1.0,2,false\n", encoding="utf-8")
    (outdir / "hubs.csv").write_text("kind,value,stores,note\nemail,agency@example.com,40,\n", encoding="utf-8")
    (outdir / "catalog_matches.csv").write_text(
        "store_a,product_a,store_b,product_b,text_similarity,image_distance\n"
        + "".join(f"A,a{n},B,b{n},0.9,{n}\n" for n in range(1, 5)), encoding="utf-8")
    summary = {"stores": 2, "pairs_reported": 1, "pairs_linked": 1, "clusters": 1, "stores_in_clusters": 2,
               "hubs": 1, "rejected_rows": 0}
    (outdir / "summary.json").write_text(json.dumps({"summary": summary, "settings": {"hub_cap": 25},
                                                     "bundle": str(bundle) if bundle else None}), encoding="utf-8")
    return outdir


def _tiny_bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "img").mkdir(parents=True)
    Image.new("RGB", (300, 200), (200, 30, 30)).save(bundle / "img" / "a1.png")
    (bundle / "img" / "broken.jpg").write_bytes(b"not a picture")
    (bundle / "stores.csv").write_text('store_id,name\nA,"</script><script>alert(1)</script>"\nB,Bee & Co\n',
                                       encoding="utf-8")
    (bundle / "products.csv").write_text(
        "store_id,product_id,title,images\n"
        "A,a1,Red <b>lamp</b>,img/a1.png\nA,a2,Blue lamp,img/missing.jpg\nA,a3,Green lamp,img/broken.jpg\n"
        "A,a4,Gold lamp,https://cdn.example.com/a4.jpg\n"
        "B,b1,Red lamp,img/a1.png\nB,b2,/*PICTURES*/ lamp,\nB,b3,Green lamp,\nB,b4,Gold lamp,\n", encoding="utf-8")
    return bundle


def test_missing_pictures_and_remote_pictures_degrade_with_a_note(tmp_path):
    outdir = _tiny_outdir(tmp_path, bundle=_tiny_bundle(tmp_path))
    data = report_data(read_scan_output(outdir))
    products = {p["product"]: p for p in data["products"]}
    assert products["a1"]["picture"] and products["b1"]["picture"] == products["a1"]["picture"]  # one file, once
    assert len(data["pictures"]) == 1
    assert products["a2"]["picture_note"] == "picture file missing"
    assert products["a3"]["picture_note"] == "picture unreadable"
    assert products["a4"]["picture_note"] == "remote picture, not fetched"
    assert products["b2"]["picture_note"] == "no picture listed"
    assert any("listings shown without a picture" in note for note in data["notes"])
    assert data["store_names"]["B"] == "Bee & Co"


def test_matches_per_pair_limits_what_is_shown_and_counts_the_rest(tmp_path):
    outdir = _tiny_outdir(tmp_path, bundle=_tiny_bundle(tmp_path))
    pair = report_data(read_scan_output(outdir), matches_per_pair=1)["pairs"][0]
    assert len(pair["matches"]) == 1 and pair["more_matches"] == 3


def test_a_missing_bundle_leaves_titles_and_pictures_out_with_a_note(tmp_path):
    outdir = _tiny_outdir(tmp_path, bundle=tmp_path / "moved-away")
    data = report_data(read_scan_output(outdir))
    assert any("is not there any more" in note for note in data["notes"])
    assert data["pictures"] == {} and all(p["picture_note"] == "bundle not available" for p in data["products"])
    assert (outdir / REPORT_FILE) == write_html_report(read_scan_output(outdir))


def test_hub_values_of_personal_kinds_are_masked(tmp_path):
    data = report_data(read_scan_output(_tiny_outdir(tmp_path, bundle=None)))
    assert data["hubs"] == [{"kind": "email", "value": "a***@example.com", "stores": 40, "note": ""}]


def test_text_from_the_bundle_cannot_break_out_of_the_data(tmp_path):
    outdir = _tiny_outdir(tmp_path, bundle=_tiny_bundle(tmp_path))
    html = write_html_report(read_scan_output(outdir)).read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "<b>lamp" not in html
    data = embedded_data(html)
    assert data["store_names"]["A"] == "</script><script>alert(1)</script>"
    assert "/*PICTURES*/ lamp" in [p["title"] for p in data["products"]] and len(data["pictures"]) == 1
    assert html.count("<script") == 3  # data, pictures and the renderer, nothing injected
