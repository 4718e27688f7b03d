"""Clustering against the obvious oracle (networkx connected components) and its chaining guard."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from assoc.cluster import cluster_stores


def _random_edges(seed: int, nodes: int = 40, edges: int = 45) -> dict[tuple[str, str], float]:
    rng = random.Random(seed)
    names = [f"S{i:03d}" for i in range(nodes)]
    out = {}
    for _ in range(edges):
        a, b = sorted(rng.sample(names, 2))
        out[(a, b)] = rng.uniform(0.5, 1.0)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_clusters_are_connected_components_of_linked_edges(seed):
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


def test_chain_of_single_links_is_one_cluster_with_path_scores():
    chain = {("A", "B"): 0.92, ("B", "C"): 0.67, ("C", "D"): 0.91}
    clusters, within = cluster_stores(chain)
    assert [c.members for c in clusters] == [("A", "B", "C", "D")]
    assert within[("A", "D")] == pytest.approx(0.92 * 0.67 * 0.91)
    assert clusters[0].risk == pytest.approx(0.67)
    assert clusters[0].bridges == ("B", "C")


def test_fragile_edges_do_not_pull_stores_into_an_existing_group():
    solid = {("A", "B"): 0.99, ("B", "C"): 0.99, ("A", "C"): 0.99}
    # One pooled value held by C, X and Y: three fragile edges.
    fragile_pairs = {("C", "X"): 0.97, ("C", "Y"): 0.97, ("X", "Y"): 0.97}
    clusters, within = cluster_stores({**solid, **fragile_pairs}, frozenset(fragile_pairs))
    assert sorted(c.members for c in clusters) == [("A", "B", "C"), ("X", "Y")]
    assert ("A", "X") not in within
    # The same edges, trusted, chain everything.
    clusters, _ = cluster_stores({**solid, **fragile_pairs})
    assert [c.members for c in clusters] == [("A", "B", "C", "X", "Y")]


def test_result_does_not_depend_on_edge_order():
    edges = _random_edges(7)
    reordered = dict(reversed(list(edges.items())))
    assert cluster_stores(edges) == cluster_stores(reordered)
