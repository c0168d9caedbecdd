"""Global mean-affinity agglomeration of the stored region adjacency graph.

The same greedy rule as waterz's ``OneMinus<MeanAffinity>`` (:mod:`neurotut.agglomerate`):
repeatedly merge the two adjacent regions whose boundary has the lowest score
``1 - aff_sum / aff_count`` while that score is below the threshold; a merged region's boundary
to a neighbour is the union of its parts' boundaries (sums and counts add). Thresholds are
visited in ascending order, continuing from the previous one, and each yields a lookup table
fragment -> segment. Edges with ``joins > 0`` (pieces of one watershed basin cut by a block face,
:mod:`neurotut.blockwise.fragments`) are merged first, whatever their score: the in-memory
watershed made them one fragment. Ties are broken by the smaller ``(u, v)``; waterz breaks them its own way
(and sums in single precision), the one place the two can part on the same fragments.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

import numpy as np


def _find(parent: list[int], i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def _merge(adj: list[dict], parent: list[int], heap: list, u: int, v: int) -> None:
    """Merge regions ``u`` and ``v`` (roots): the one with fewer neighbours into the other."""
    big, small = (u, v) if len(adj[u]) >= len(adj[v]) else (v, u)
    parent[small] = big
    del adj[big][small]
    for w, stats in adj[small].items():
        if w == big:
            continue
        del adj[w][small]
        mine = adj[big].get(w)
        if mine is None:
            mine = adj[big][w] = [0.0, 0]
            adj[w][big] = mine
        mine[0] += stats[0]
        mine[1] += stats[1]
        heapq.heappush(heap, (1.0 - mine[0] / mine[1], min(big, w), max(big, w)))
    adj[small] = {}


def iter_agglomerate_graph(
    n_nodes: int, pairs: np.ndarray, sums: np.ndarray, counts: np.ndarray, thresholds: Sequence[float],
    joins: np.ndarray | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """Agglomerate a graph of ``n_nodes`` nodes ``0..n-1``; yield ``(threshold, roots)`` per
    threshold (ascending), ``roots (n,)`` int64 the region of each node.

    Args:
        pairs: ``(E, 2)`` node indices of the edges, each edge once.
        sums, counts: ``(E,)`` affinity sums and voxel-pair counts of the edges.
        joins: ``(E,)``; edges with ``joins > 0`` are merged before any threshold (None: none).
    """
    adj: list[dict] = [dict() for _ in range(n_nodes)]
    heap = []
    for (u, v), s, c in zip(pairs.tolist(), sums.tolist(), counts.tolist()):
        stats = [float(s), int(c)]
        adj[u][v] = adj[v][u] = stats
        heap.append((1.0 - stats[0] / stats[1], min(u, v), max(u, v)))
    heapq.heapify(heap)
    parent = list(range(n_nodes))
    for u, v in ([] if joins is None else pairs[np.asarray(joins) > 0].tolist()):
        ru, rv = _find(parent, u), _find(parent, v)
        if ru != rv:  # their boundary is in adj (merging moves boundaries to the roots)
            _merge(adj, parent, heap, ru, rv)
    for t in sorted({float(t) for t in thresholds}):
        while heap and heap[0][0] < t:
            score, u, v = heapq.heappop(heap)
            if parent[u] != u or parent[v] != v:
                continue  # an endpoint was merged away: a stale entry
            stats = adj[u].get(v)
            if stats is None or 1.0 - stats[0] / stats[1] != score:
                continue  # the boundary grew since: its newer entry is in the heap
            _merge(adj, parent, heap, u, v)
        yield t, np.array([_find(parent, i) for i in range(n_nodes)], dtype=np.int64)


def lookup_tables(ids: np.ndarray, pairs: np.ndarray, sums: np.ndarray, counts: np.ndarray,
                  thresholds: Sequence[float], joins: np.ndarray | None = None) -> dict[float, np.ndarray]:
    """``{threshold: (2, N) uint64 [fragment ids, segment ids]}`` for a graph with fragment
    ``ids (N,)`` (sorted) and edges ``pairs (E, 2)`` of fragment ids (``joins``: see
    :func:`iter_agglomerate_graph`). Segments are numbered ``1..K`` in the order of their
    smallest fragment."""
    ids = np.asarray(ids, dtype=np.uint64)
    index = np.searchsorted(ids, pairs.astype(np.uint64)) if len(pairs) else np.zeros((0, 2), np.int64)
    if len(pairs) and not np.array_equal(ids[index], pairs):
        raise ValueError("the graph has edges to fragments that are not among its nodes")
    out = {}
    for t, roots in iter_agglomerate_graph(len(ids), index, sums, counts, thresholds, joins):
        _, segment = np.unique(roots, return_inverse=True)
        out[t] = np.stack([ids, segment.ravel().astype(np.uint64) + np.uint64(1)])
    return out


def agglomerate_db(db_spec: str, thresholds: Sequence[float]) -> dict[float, np.ndarray]:
    """Read the whole graph from the store ``db_spec`` and agglomerate it:
    :func:`lookup_tables`."""
    from neurotut.blockwise.graph import open_graph_db, read_graph

    db = open_graph_db(db_spec, mode="r")
    try:
        ids, pairs, sums, counts, joins = read_graph(db)
    finally:
        db.close()
    return lookup_tables(ids, pairs, sums, counts, thresholds, joins)
