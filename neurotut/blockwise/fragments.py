"""Blockwise watershed fragments and the region adjacency graph, into zarr and a graph store.

Two daisy steps over the same blocks:

1. ``fragments``: the waterz watershed (:func:`neurotut.agglomerate.watershed`) of the block's
   nearest-neighbour affinities alone. Its ids ``1..n`` become ``n + b * V`` for block number
   ``b`` (z-major) and ``V`` voxels per full block, so ids are unique across blocks without any
   coordination; 0 stays "unassigned". The fragments go to zarr, one node per fragment to the
   graph store.
2. ``edges``: the affinity of voxel ``x`` along axis ``k`` links ``x`` to ``x - e_k``. A block
   owns the affinities of its own voxels, so it reads its fragments plus one voxel before it
   along each axis (the previous blocks' fragments: daisy runs this step of a block after the
   ``fragments`` step of every block it reads) and sums, for each pair of different non-zero
   fragments, the affinities linking them and their number. Every voxel pair belongs to exactly
   one block, and fragments never span blocks, so every edge is computed whole by one block:
   the statistics are exact, nothing needs combining across blocks.

The seams: a watershed basin cut by a block face becomes two fragments, joined by an edge of
high mean affinity, which the agglomeration merges again at any usual threshold; the in-memory
watershed would not have cut it. That, and the merge order it changes, is where the blockwise
segmentation can differ from the in-memory one.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from neurotut.blockwise.schedule import Slices


def block_fragments(affs: np.ndarray, block_number: int, block_voxels: int,
                    aff_low: float = 0.0001, aff_high: float = 0.9999) -> np.ndarray:
    """Watershed fragments of one block with globally unique ids.

    Args:
        affs: ``(3, z, y, x)`` float32 nearest-neighbour affinities, channels z, y, x.
        block_number, block_voxels: the block's number and the voxels of a full block.

    Returns:
        ``(z, y, x)`` uint64: 0 where the watershed leaves voxels unassigned, else
        ``local id + block_number * block_voxels`` with local ids ``1..n``.
    """
    from neurotut.affinity import WATERZ_OFFSETS
    from neurotut.agglomerate import watershed

    seg = watershed(affs, WATERZ_OFFSETS, aff_threshold_low=aff_low, aff_threshold_high=aff_high)
    ids, local = np.unique(seg, return_inverse=True)
    local = local.reshape(seg.shape).astype(np.uint64)
    if ids.size and ids[0] != 0:
        local += np.uint64(1)
    out = np.where(local > 0, local + np.uint64(block_number * block_voxels), np.uint64(0))
    return out.astype(np.uint64)


def fragment_table(frags: np.ndarray, origin: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids (N,) uint64, centres (N, 3) float64 in volume voxels, sizes (N,) int64)`` of the
    non-zero fragments of a block whose first voxel is at ``origin``."""
    flat = frags.ravel()
    ids, inverse, sizes = np.unique(flat, return_inverse=True, return_counts=True)
    coords = np.indices(frags.shape).reshape(3, -1)
    centres = np.stack([np.bincount(inverse, weights=c, minlength=ids.size) for c in coords], 1)
    centres = centres / sizes[:, None] + np.asarray(origin, dtype=np.float64)
    keep = ids != 0
    return ids[keep], centres[keep], sizes[keep].astype(np.int64)


def block_edges(frags: np.ndarray, affs: np.ndarray, context: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The region adjacency edges a block owns.

    Args:
        frags: ``(z, y, x)`` fragment ids of the block plus ``context[k]`` (0 or 1) voxels before
            it along axis ``k``.
        affs: ``(3, bz, by, bx)`` float affinities of the block (channels z, y, x).
        context: 1 where the block has a neighbour before it along the axis, else 0.

    Returns:
        ``(pairs (E, 2) uint64 with u < v, sums (E,) float64, counts (E,) int64)``, sorted.
    """
    us, vs, values = [], [], []
    for k in range(3):
        # voxel x (frags index i >= 1 along k) and its neighbour x - e_k (index i - 1)
        here = [slice(c, None) for c in context]
        before = list(here)
        here[k], before[k] = slice(1, None), slice(0, -1)
        a, b = frags[tuple(here)], frags[tuple(before)]
        aff_sl = [slice(None)] * 3
        aff_sl[k] = slice(1 - context[k], None)
        aff = affs[k][tuple(aff_sl)]
        mask = (a != b) & (a != 0) & (b != 0)
        us.append(np.minimum(a[mask], b[mask]))
        vs.append(np.maximum(a[mask], b[mask]))
        values.append(aff[mask].astype(np.float64))
    u, v, val = np.concatenate(us), np.concatenate(vs), np.concatenate(values)
    if u.size == 0:
        return np.zeros((0, 2), np.uint64), np.zeros(0), np.zeros(0, np.int64)
    pairs, inverse = np.unique(np.stack([u, v], 1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    sums = np.bincount(inverse, weights=val, minlength=len(pairs))
    counts = np.bincount(inverse, minlength=len(pairs)).astype(np.int64)
    return pairs.astype(np.uint64), sums, counts


@dataclass
class FragmentBlocks:
    """The block function of both steps (``step`` = ``"fragments"`` or ``"edges"``), picklable.

    ``affinities`` and ``fragments`` are ``(container, dataset)``; ``channels`` the
    nearest-neighbour channels (z, y, x) of the affinities; ``db`` the graph store."""

    step: str
    affinities: tuple[str, str]
    fragments: tuple[str, str]
    db: str
    channels: tuple[int, int, int]
    block_shape: tuple[int, int, int]
    grid: tuple[int, int, int]
    aff_low: float = 0.0001
    aff_high: float = 0.9999

    def _affs(self, region: Slices) -> np.ndarray:
        from neurotut.volumes import open_volume, read_region

        arr = open_volume(*self.affinities)
        data = read_region(arr, region, where=":".join(self.affinities))
        return np.ascontiguousarray(data[list(self.channels)], dtype=np.float32)

    def __call__(self, block) -> None:
        from neurotut.blockwise.graph import open_graph_db, write_edges, write_fragments
        from neurotut.blockwise.schedule import block_index, roi_slices
        from neurotut.volumes import open_volume, read_region, write_region

        region = roi_slices(block.write_roi)
        start = [s.start for s in region]
        number = block_index(start, self.block_shape, self.grid)
        where = ":".join(self.fragments)
        out = open_volume(*self.fragments, mode="r+")
        affs = self._affs(region)
        db = open_graph_db(self.db, mode="r+")
        try:
            if self.step == "fragments":
                frags = block_fragments(affs, number, int(np.prod(self.block_shape)),
                                        self.aff_low, self.aff_high)
                write_region(out, region, frags, where=where)
                write_fragments(db, *fragment_table(frags, start), block=number)
            else:
                context = [1 if s.start > 0 else 0 for s in region]
                grown = tuple(slice(s.start - c, s.stop) for s, c in zip(region, context))
                frags = read_region(out, grown, where=where)
                write_edges(db, *block_edges(frags, affs, context))
        finally:
            db.close()
