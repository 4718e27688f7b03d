"""Linked pairs -> clusters of stores run by one operator, without chaining unrelated groups.

Method (DESIGN_NOTES §7):
1. The graph holds confident edges only: pairs whose operator evidence reaches the link
   threshold. Hub values never made pairs in the first place (index.py), and catalog-rule links
   join stores pairwise but do not merge operator clusters: "possibly related" stays apart from
   "same operator". Fragile edges, which would not reach the threshold without a doubtful value
   (evidence.without_doubtful_values: one its other holders do not corroborate, or one only the
   two stores hold, seen far apart or, for a payout account, at an unknown time, with nothing else
   between them), join only stores that no solid edge has placed in a group yet: an agency
   account shared by one store of a large operator must not pull unrelated sellers into that
   operator's cluster.
2. Each connected component of two or more stores is a cluster. Its id is derived from its
   members (the smallest store id), so it is stable across runs and input orders. Its risk is
   the weakest link of its maximum spanning tree: how sure we are that every member belongs.
3. Articulation points (stores whose removal splits their cluster) are reported as bridges for
   the reviewer.
Pairs inside a cluster without a direct link get the probability of their most probable path.
A rule that cut middling bridge edges between groups was measured and dropped: it broke the
chains evasive operators leave (each link one slip) and stopped no false link that the
fragile-edge guard does not already stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from .index import StorePair


@dataclass(frozen=True, slots=True)
class Cluster:
    cluster_id: str
    members: tuple[str, ...]  # sorted
    risk: float
    bridges: tuple[str, ...]  # articulation points


def cluster_stores(edges: dict[StorePair, float], fragile: frozenset[StorePair] = frozenset()
                   ) -> tuple[list[Cluster], dict[StorePair, float]]:
    """Clusters from linked edges (pair -> score), and the path probability of every pair inside them.

    The second result maps every within-cluster pair (direct or not) to a probability: the
    direct score for an edge, the best path product for a pair linked only through others.
    """
    graph = nx.Graph()
    for (a, b), score in sorted(edges.items()):
        if (a, b) not in fragile:
            graph.add_edge(a, b, score=score)
    grouped = set(graph)
    for (a, b), score in sorted(edges.items()):
        if (a, b) in fragile and a not in grouped and b not in grouped:
            graph.add_edge(a, b, score=score)
    clusters = []
    within: dict[StorePair, float] = {}
    for component in nx.connected_components(graph):
        if len(component) < 2:
            continue
        members = tuple(sorted(component))
        sub = graph.subgraph(members)
        tree = nx.maximum_spanning_tree(sub, weight="score")
        risk = min(d["score"] for _, _, d in tree.edges(data=True))
        bridges = tuple(sorted(nx.articulation_points(sub)))
        clusters.append(Cluster(cluster_id=f"C-{members[0]}", members=members, risk=risk, bridges=bridges))
        within.update(_path_probabilities(sub))
    clusters.sort(key=lambda c: (-c.risk, -len(c.members), c.cluster_id))
    return clusters, within


def _path_probabilities(sub: nx.Graph) -> dict[StorePair, float]:
    """Most probable path between every two members: edge costs -log(score), shortest paths."""
    cost = {(u, v): -math.log(max(d["score"], 1e-12)) for u, v, d in sub.edges(data=True)}
    weighted = nx.Graph()
    for (u, v), c in cost.items():
        weighted.add_edge(u, v, cost=c)
    out: dict[StorePair, float] = {}
    for source, lengths in nx.all_pairs_dijkstra_path_length(weighted, weight="cost"):
        for target, length in lengths.items():
            if source < target:
                out[(source, target)] = math.exp(-length)
    return out
