"""The scan as a graph of stores and the identifiers that tie them, exported for graph tools.

Nodes are stores and shared identifiers (a payout account, a device, an IP /24, ...). A store
is tied to an identifier by a USES edge, and two reported stores by a LINKED edge carrying the
pair's score. Written to OUTDIR/graph/:

  graph.graphml        GraphML (yEd, Gephi, Cytoscape desktop, networkx)
  graph.gexf           GEXF 1.2 (Gephi)
  cytoscape.json       Cytoscape.js elements JSON (also opens in Cytoscape desktop as .cyjs)
  neo4j/*.csv          neo4j-admin import files: stores, identifiers, uses, linked
  neo4j/load.cypher    the same import with LOAD CSV, for a running server

Graph tools reject files whose attributes change type from one element to the next, so every
node carries every node attribute and every edge every edge attribute, each with one type; a
number that does not apply is -1 (cluster_risk outside clusters, catalog_overlap of a pair
whose catalogs were not compared, score of a USES edge). Attribute names avoid the words the
formats reserve (GEXF takes an edge's `type` for directed/undirected and a node's `key` for its
own use): nodes have `node_type` (store, identifier), edges `relation` (LINKED, USES).
Identifier values of personal kinds are masked unless revealed; identifier ids are positions
in a sorted list, not hashes of the values, so a masked export cannot be reversed by hashing
guesses.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import OutputError
from ..records import Progress, no_progress
from .outdir import PairRecord, ScanOutput
from .tables import _atomic

GRAPH_DIR = "graph"
NOT_APPLICABLE = -1.0

Identity = tuple[str, str]  # (index key kind, canonical value), as EvidenceRecord.identity


@dataclass(frozen=True, slots=True)
class Identifier:
    """A value two or more stores share, as a graph node."""

    node_id: str
    key: str  # index key kind: 'payment_account', 'ip/24', 'address/unit', ...
    kind: str  # signal kind: 'payment_account', 'ip', 'address', ...
    value: str  # canonical value, unmasked
    stores: int  # how many stores share it (across the whole scan)
    shown: str  # the value as reports show it: masked unless revealed

    @property
    def label(self) -> str:
        return f"{self.key}: {self.shown}"


@dataclass(frozen=True, slots=True)
class IdentifierGraph:
    """Stores, identifiers and the store-identifier ties behind a set of pairs."""

    stores: tuple[str, ...]  # sorted
    identifiers: dict[Identity, Identifier]  # in node id order
    uses: dict[tuple[str, Identity], float]  # (store, identifier) -> heaviest evidence weight through it


def identifier_graph(pairs: Iterable[PairRecord], *, reveal_pii: bool = False, id_prefix: str = "I") -> IdentifierGraph:
    """The identifiers behind `pairs`, numbered in sorted order, and which store uses which.

    A piece of evidence between stores A and B through value V becomes the ties A-V and B-V;
    the same tie met through several pairs keeps the heaviest weight. Catalog evidence is a
    share of products, not a value, and makes no identifier.
    """
    found: dict[Identity, tuple[str, int, str]] = {}
    uses: dict[tuple[str, Identity], float] = {}
    stores: set[str] = set()
    for pair in pairs:
        stores.update(pair.key)
        for piece in pair.evidence:
            if not piece.is_identifier:
                continue
            identity = piece.identity
            found[identity] = (piece.kind, max(piece.stores, found.get(identity, ("", 0, ""))[1]),
                               piece.shown_value(reveal_pii))
            for store in pair.key:
                uses[(store, identity)] = max(piece.weight, uses.get((store, identity), 0.0))
    width = len(str(len(found)))
    identifiers = {
        identity: Identifier(node_id=f"{id_prefix}{number:0{width}d}", key=identity[0], kind=kind, value=identity[1],
                             stores=count, shown=shown)
        for number, (identity, (kind, count, shown)) in enumerate(sorted(found.items()), start=1)
    }
    return IdentifierGraph(stores=tuple(sorted(stores)), identifiers=identifiers, uses=dict(sorted(uses.items())))


def store_node(store: str) -> str:
    # Store ids and identifier ids share one id space in GraphML, GEXF and Cytoscape: keep them apart.
    return f"store:{store}"


def build_graph(scan: ScanOutput, *, reveal_pii: bool = False) -> nx.Graph:
    """Every reported pair as a LINKED edge, every identifier behind them as a node with USES edges."""
    ties = identifier_graph(scan.pairs, reveal_pii=reveal_pii)
    risk = {c.cluster_id: c.risk for c in scan.clusters}
    bridges = {store for c in scan.clusters for store in c.bridges}
    graph = nx.Graph(name="assoc scan")
    for store in ties.stores:
        cluster_id = scan.cluster_of(store)
        graph.add_node(store_node(store), node_type="store", label=store, match_key="", kind="", cluster_id=cluster_id,
                       cluster_risk=risk.get(cluster_id, NOT_APPLICABLE), bridge=store in bridges, shared_by=0)
    for identifier in ties.identifiers.values():
        graph.add_node(identifier.node_id, node_type="identifier", label=identifier.label, match_key=identifier.key,
                       kind=identifier.kind, cluster_id="", cluster_risk=NOT_APPLICABLE, bridge=False,
                       shared_by=identifier.stores)
    for pair in scan.pairs:
        overlap = NOT_APPLICABLE if pair.catalog_overlap is None else pair.catalog_overlap
        graph.add_edge(store_node(pair.store_a), store_node(pair.store_b), relation="LINKED", weight=pair.score,
                       score=pair.score, linked=pair.linked, catalog_overlap=overlap, reasons=";".join(pair.reasons),
                       cluster_id=pair.cluster_id)
    for (store, identity), weight in ties.uses.items():
        graph.add_edge(store_node(store), ties.identifiers[identity].node_id, relation="USES", weight=weight,
                       score=NOT_APPLICABLE, linked=False, catalog_overlap=NOT_APPLICABLE, reasons="", cluster_id="")
    return graph


def cytoscape_elements(graph: nx.Graph) -> dict[str, Any]:
    """The graph as Cytoscape.js JSON: {"elements": {"nodes": [{"data": ...}], "edges": [{"data": ...}]}}.

    Not networkx's cytoscape_data: that leaves edges without ids, and Cytoscape then invents
    different ones on every load, which breaks saved styles and selections.
    """
    nodes = [{"data": {"id": node, **attrs}} for node, attrs in graph.nodes(data=True)]
    edges = [{"data": {"id": f"e{number}", "source": source, "target": target, **attrs}}
             for number, (source, target, attrs) in enumerate(graph.edges(data=True), start=1)]
    return {"format_version": "1.0", "generated_by": "assoc", "target_cytoscapejs_version": "~3.0",
            "data": {"name": graph.graph.get("name", "")}, "elements": {"nodes": nodes, "edges": edges}}


# neo4j-admin import headers: ids in their own id spaces, typed properties, label and type columns.
NEO4J_FILES: dict[str, list[str]] = {
    "stores.csv": ["storeId:ID(Store)", "clusterId", "clusterRisk:float", "bridge:boolean", ":LABEL"],
    "identifiers.csv": ["identifierId:ID(Identifier)", "key", "kind", "label", "sharedBy:int", ":LABEL"],
    "uses.csv": [":START_ID(Store)", ":END_ID(Identifier)", ":TYPE", "weight:float"],
    "linked.csv": [":START_ID(Store)", ":END_ID(Store)", ":TYPE", "score:float", "linked:boolean",
                   "catalogOverlap:float", "reasons", "clusterId"],
}

LOAD_CYPHER = """\
// Load an assoc scan into Neo4j with LOAD CSV. Copy the neo4j/*.csv files into the server's
// import folder, then run this file (cypher-shell -f load.cypher).
// The same files load offline, faster, with:
//   neo4j-admin database import full --nodes=Store=stores.csv --nodes=Identifier=identifiers.csv \\
//     --relationships=uses.csv --relationships=linked.csv neo4j
CREATE CONSTRAINT store_id IF NOT EXISTS FOR (s:Store) REQUIRE s.storeId IS UNIQUE;
CREATE CONSTRAINT identifier_id IF NOT EXISTS FOR (i:Identifier) REQUIRE i.identifierId IS UNIQUE;

LOAD CSV WITH HEADERS FROM 'file:///stores.csv' AS row
MERGE (s:Store {storeId: row.`storeId:ID(Store)`})
SET s.clusterId = row.clusterId, s.clusterRisk = toFloat(row.`clusterRisk:float`),
    s.bridge = row.`bridge:boolean` = 'true';

LOAD CSV WITH HEADERS FROM 'file:///identifiers.csv' AS row
MERGE (i:Identifier {identifierId: row.`identifierId:ID(Identifier)`})
SET i.key = row.key, i.kind = row.kind, i.label = row.label, i.sharedBy = toInteger(row.`sharedBy:int`);

LOAD CSV WITH HEADERS FROM 'file:///uses.csv' AS row
MATCH (s:Store {storeId: row.`:START_ID(Store)`}), (i:Identifier {identifierId: row.`:END_ID(Identifier)`})
MERGE (s)-[r:USES]->(i)
SET r.weight = toFloat(row.`weight:float`);

LOAD CSV WITH HEADERS FROM 'file:///linked.csv' AS row
MATCH (a:Store {storeId: row.`:START_ID(Store)`}), (b:Store {storeId: row.`:END_ID(Store)`})
MERGE (a)-[r:LINKED]->(b)
SET r.score = toFloat(row.`score:float`), r.linked = row.`linked:boolean` = 'true',
    r.catalogOverlap = toFloat(row.`catalogOverlap:float`), r.reasons = row.reasons, r.clusterId = row.clusterId;
"""


def _neo4j_rows(graph: nx.Graph) -> dict[str, list[list[Any]]]:
    rows: dict[str, list[list[Any]]] = {name: [] for name in NEO4J_FILES}
    for node, attrs in graph.nodes(data=True):
        if attrs["node_type"] == "store":
            rows["stores.csv"].append([attrs["label"], attrs["cluster_id"], attrs["cluster_risk"],
                                       _bool(attrs["bridge"]), "Store"])
        else:
            rows["identifiers.csv"].append([node, attrs["match_key"], attrs["kind"], attrs["label"], attrs["shared_by"],
                                            "Identifier"])
    for source, target, attrs in graph.edges(data=True):
        store, other = (source, target) if graph.nodes[source]["node_type"] == "store" else (target, source)
        if attrs["relation"] == "USES":
            rows["uses.csv"].append([graph.nodes[store]["label"], other, "USES", attrs["weight"]])
        else:
            rows["linked.csv"].append([graph.nodes[source]["label"], graph.nodes[target]["label"], "LINKED",
                                       attrs["score"], _bool(attrs["linked"]), attrs["catalog_overlap"],
                                       attrs["reasons"], attrs["cluster_id"]])
    return rows


XML_DECLARATION = "<?xml version='1.0' encoding='utf-8'?>\n"


def _graphml_lines(graph: nx.Graph) -> Iterator[str]:
    """networkx's GraphML with booleans spelled as XML Schema has them.

    networkx writes Python's `True`/`False`; XML Schema booleans (which GraphML's attr.type
    refers to) are lowercase, and strict readers reject the capitalised form.
    """
    boolean_keys: set[str] = set()
    for line in nx.generate_graphml(graph):
        key = _GRAPHML_KEY.search(line)
        if key and key["type"] == "boolean":
            boolean_keys.add(key["id"])
        data = _GRAPHML_BOOL.fullmatch(line)
        if data and data["key"] in boolean_keys:
            line = f'{data["indent"]}<data key="{data["key"]}">{data["value"].lower()}</data>'
        yield line


_GRAPHML_KEY = re.compile(r'<key id="(?P<id>[^"]+)" .*attr\.type="(?P<type>[^"]+)"')
_GRAPHML_BOOL = re.compile(r'(?P<indent>\s*)<data key="(?P<key>[^"]+)">(?P<value>True|False)</data>')


def _bool(value: bool) -> str:
    return "true" if value else "false"


EXPORT_STAGE = "graph export"


def write_graph_exports(scan: ScanOutput, directory: Path | None = None, *, reveal_pii: bool = False,
                        progress: Progress = no_progress) -> list[Path]:
    """Write every graph format into `directory` (default OUTDIR/graph); returns the files written.

    `progress` hears (EXPORT_STAGE, files written, files in all) before the first file and after
    each: GraphML and GEXF of a 2,000-store scan take seconds each.
    """
    directory = Path(directory) if directory is not None else scan.outdir / GRAPH_DIR
    neo4j = directory / "neo4j"
    total = 3 + len(NEO4J_FILES) + 1  # GraphML, GEXF, Cytoscape, the Neo4j CSVs, load.cypher
    progress(EXPORT_STAGE, 0, total)
    graph = build_graph(scan, reveal_pii=reveal_pii)
    written: list[Path] = []

    def done(path: Path) -> None:
        written.append(path)
        progress(EXPORT_STAGE, len(written), total)

    try:
        neo4j.mkdir(parents=True, exist_ok=True)
        for name, lines in (("graph.graphml", _graphml_lines(graph)), ("graph.gexf", nx.generate_gexf(graph))):
            with _atomic(directory / name) as handle:
                handle.write(XML_DECLARATION)
                handle.writelines(line + "\n" for line in lines)
            done(directory / name)
        with _atomic(directory / "cytoscape.json") as handle:
            json.dump(cytoscape_elements(graph), handle, indent=1, sort_keys=True)
            handle.write("\n")
        done(directory / "cytoscape.json")
        for name, rows in _neo4j_rows(graph).items():
            with _atomic(neo4j / name) as handle:
                writer = csv.writer(handle)
                writer.writerow(NEO4J_FILES[name])
                writer.writerows(rows)
            done(neo4j / name)
        with _atomic(neo4j / "load.cypher") as handle:
            handle.write(LOAD_CYPHER)
        done(neo4j / "load.cypher")
    except OSError as exc:
        raise OutputError(f"{directory}: cannot write graph exports: {exc.strerror or exc}") from exc
    return written
