"""Clustering against the obvious oracle (networkx connected components) and its chaining guard."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from assoc.cluster import STRONG_BRIDGE, cluster_stores


def _random_edges(seed: int, nodes: int = 40, edges: int = 45, strong: bool = True) -> dict[tuple[str, str], float]:
    rng = random.Random(seed)
    names = [f"S{i:03d}" for i in range(nodes)]
    out = {}
    for _ in range(edges):
        a, b = sorted(rng.sample(names, 2))
        out[(a, b)] = rng.uniform(STRONG_BRIDGE, 1.0) if strong else rng.uniform(0.5, 1.0)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_strong_edges_cluster_like_connected_components(seed):
    edges = _random_edges(seed)
    graph = nx.Graph(list(edges))
    expected = sorted(tuple(sorted(c)) for c in nx.connected_components(graph) if len(c) >= 2)
    clusters, within = cluster_stores(edges)
    assert sorted(c.members for c in clusters) == expected
    for cluster in clusters:
        assert cluster.cluster_id == f"C-{cluster.members[0]}"
        assert 0.0 < cluster.risk <= 1.0
        size = len(cluster.members)
        assert sum(1 for a, b in within if a in cluster.members) == size * (size - 1) // 2


def test_weak_bridge_between_two_groups_is_cut_but_strong_chain_stays():
    edges = {("A", "B"): 0.99, ("B", "C"): 0.99, ("C", "D"): 0.6, ("D", "E"): 0.99, ("E", "F"): 0.99}
    clusters, _ = cluster_stores(edges)
    assert sorted(c.members for c in clusters) == [("A", "B", "C"), ("D", "E", "F")]
    assert any(("C", "D") in c.cut_edges for c in clusters)
    chain = {("A", "B"): 0.92, ("B", "C"): 0.93, ("C", "D"): 0.91}
    clusters, within = cluster_stores(chain)
    assert [c.members for c in clusters] == [("A", "B", "C", "D")]
    assert within[("A", "D")] == pytest.approx(0.92 * 0.93 * 0.91)
    assert clusters[0].risk == pytest.approx(0.91)
    assert clusters[0].bridges == ("B", "C")


def test_weak_edge_to_a_lone_store_is_kept():
    clusters, _ = cluster_stores({("A", "B"): 0.99, ("B", "C"): 0.55})
    assert [c.members for c in clusters] == [("A", "B", "C")]


def test_result_does_not_depend_on_edge_order():
    edges = _random_edges(7, strong=False)
    reordered = dict(reversed(list(edges.items())))
    assert cluster_stores(edges) == cluster_stores(reordered)
