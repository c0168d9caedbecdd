"""The region adjacency graph in a database: funlib.persistence's graph store.

Nodes are fragments: ``id`` (uint64 fragment id), ``position`` (centre of mass, ``(z, y, x)``
voxels), ``size`` (voxels) and ``block`` (the number of the block that made it). Edges join two
fragments that touch across a nearest-neighbour face: ``u < v``, ``aff_sum`` (float, the sum of
the affinities of every voxel pair between them) and ``aff_count`` (the number of pairs), so
``mean affinity = aff_sum / aff_count`` and statistics of merged regions add exactly; and
``aff_join`` (int, the face voxel pairs both blocks' watersheds put in one basin: > 0 means the
two are pieces of one fragment, joined before the agglomeration).

The store is SQLite (a file, the default) or PostgreSQL (``postgresql://user:password@host:port/
database``, for a lab with a server). Writes are ``INSERT OR IGNORE`` on the primary keys, so a
block that is redone after its worker died cannot duplicate a node or an edge.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

NODE_ATTRS_NAMES = ("position", "size", "block")
EDGE_ATTRS_NAMES = ("aff_sum", "aff_count", "aff_join")


def _attrs():
    from funlib.persistence.types import Vec

    return ({"position": Vec(float, 3), "size": int, "block": int},
            {"aff_sum": float, "aff_count": int, "aff_join": int})


def open_graph_db(spec: str | os.PathLike, mode: str = "r+"):
    """Open (``"r"``, ``"r+"``) or create afresh (``"w"``, dropping old tables) the graph store
    named by ``spec``: a PostgreSQL URL or the path of an SQLite file."""
    node_attrs, edge_attrs = _attrs()
    text = os.fspath(spec)
    if text.startswith(("postgresql://", "postgres://")):
        from funlib.persistence.graphs import PgSQLGraphDataBase

        url = urlparse(text)
        return PgSQLGraphDataBase(
            position_attribute="position", db_name=url.path.lstrip("/"), db_host=url.hostname or "localhost",
            db_user=url.username, db_password=url.password, db_port=url.port, mode=mode,
            node_attrs=node_attrs, edge_attrs=edge_attrs)
    from funlib.persistence.graphs import SQLiteGraphDataBase

    path = Path(text)
    if mode != "w" and not path.exists():
        raise FileNotFoundError(f"no graph database {path} (run `neurotut blockwise fragments` first)")
    path.parent.mkdir(parents=True, exist_ok=True)
    db = SQLiteGraphDataBase(path, position_attribute="position", mode=mode,
                             node_attrs=node_attrs if mode == "w" else None,
                             edge_attrs=edge_attrs if mode == "w" else None)
    db.con.execute("PRAGMA busy_timeout = 120000")  # workers write concurrently: wait, don't fail
    return db


def write_fragments(db, ids: np.ndarray, positions: np.ndarray, sizes: np.ndarray, block: int) -> None:
    """Store fragments: ``ids (N,)`` uint64, ``positions (N, 3)`` float, ``sizes (N,)`` int."""
    nodes = {int(i): {"position": tuple(float(p) for p in pos), "size": int(s), "block": int(block)}
             for i, pos, s in zip(ids, positions, sizes)}
    db.bulk_write_nodes(nodes)


def write_edges(db, pairs: np.ndarray, sums: np.ndarray, counts: np.ndarray,
                joins: np.ndarray | None = None) -> None:
    """Store edges: ``pairs (E, 2)`` uint64 with ``u < v``, ``sums (E,)``, ``counts (E,)``,
    ``joins (E,)`` (default 0)."""
    joins = np.zeros(len(pairs), np.int64) if joins is None else joins
    edges = {(int(u), int(v)): {"aff_sum": float(s), "aff_count": int(c), "aff_join": int(j)}
             for (u, v), s, c, j in zip(pairs, sums, counts, joins)}
    db.bulk_write_edges({}, edges)


def read_graph(db) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole graph: ``(node ids (N,) uint64, pairs (E, 2) uint64, sums (E,) float64,
    counts (E,) int64, joins (E,) int64)``, nodes and edges sorted by id."""
    nodes = db.read_nodes(read_attrs=["size"])
    ids = np.array(sorted(int(n["id"]) for n in nodes), dtype=np.uint64)
    edges = db.read_edges()
    if not edges:
        return ids, np.zeros((0, 2), np.uint64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    table = sorted((int(e["u"]), int(e["v"]), float(e["aff_sum"]), int(e["aff_count"]),
                    int(e.get("aff_join") or 0)) for e in edges)
    pairs = np.array([t[:2] for t in table], dtype=np.uint64)
    return (ids, pairs, np.array([t[2] for t in table], dtype=np.float64),
            np.array([t[3] for t in table], dtype=np.int64), np.array([t[4] for t in table], dtype=np.int64))
