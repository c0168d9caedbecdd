"""Blockwise watershed fragments and the region adjacency graph, into zarr and a graph store.

Two daisy steps over the same blocks:

1. ``fragments``: the waterz watershed (:func:`neurotut.agglomerate.watershed`) of the block
   grown by ``context`` voxels on each side; only the block's part is kept. Its ids ``1..n``
   become ``n + b * V`` for block number ``b`` (z-major) and ``V`` voxels per full block, so ids
   are unique across blocks without any coordination (and a block's ids are one contiguous
   range); 0 stays "unassigned". Besides the fragments (zarr) and one node per fragment (graph
   store), the block records in ``fragment_links`` (uint8, zarr) which voxels on its faces its
   watershed puts in the same basin as the voxel just across the face.
2. ``edges``: the affinity of voxel ``x`` along axis ``k`` links ``x`` to ``x - e_k``. A block
   owns the affinities of its own voxels, so it reads its fragments plus one voxel before it
   along each axis (the previous blocks' fragments: daisy runs this step of a block after the
   ``fragments`` step of every block it reads) and sums, for each pair of different non-zero
   fragments, the affinities linking them and their number. Every voxel pair belongs to exactly
   one block, and fragments never span blocks, so every edge is computed whole by one block:
   the statistics are exact, nothing needs combining across blocks. An edge also counts the
   face pairs that *both* blocks' watersheds put in one basin (``joins``).

The seams. waterz's watershed has no size-based merging, but a basin is not a local thing: a
voxel joins the basin its steepest-ascent path (and plateau walk, in scan order) leads to, and
basins of anisotropic EM run far along z. A watershed of the block alone cuts every basin at
the block faces and changes basins near them; seen with a context, the block's basins are the
in-memory ones up to those reaching beyond the context. The pieces of a basin cut by a face are
joined by their ``joins`` edge before any agglomeration (:mod:`neurotut.blockwise.agglomerate`),
so the fragments are the in-memory fragments, and the agglomeration that of waterz, wherever
no basin reaches beyond the context. On the tutorial's 20 x 256 x 256 validation crop with
10 x 128 x 128 blocks, a context of (8, 32, 32) gives the in-memory segmentation up to an ARAND
below 0.001; without a context, 0.06 to 0.11 (the appendix "Scaling out" measures it).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from neurotut.blockwise.schedule import Slices


def grown_region(region: Slices, context: Sequence[int], shape: Sequence[int]) -> Slices:
    """``region`` grown by ``context[k]`` voxels on both sides along axis ``k``, clipped to a
    volume of ``shape``."""
    return tuple(slice(max(0, s.start - int(c)), min(int(n), s.stop + int(c)))  # type: ignore[return-value]
                 for s, c, n in zip(region, context, shape))


def _face_links(ws: np.ndarray, inner: Slices) -> np.ndarray:
    """``(z, y, x)`` uint8 of the block ``inner`` of the watershed ``ws``: bit ``k`` where a voxel
    on the block's first face along axis ``k`` is in the same basin as its neighbour before the
    face, bit ``3 + k`` where a voxel on the last face is in the same basin as the one after."""
    links = np.zeros(tuple(s.stop - s.start for s in inner), np.uint8)
    for k in range(3):
        for bit, face, out, dst in ((k, inner[k].start, inner[k].start - 1, slice(0, 1)),
                                    (3 + k, inner[k].stop - 1, inner[k].stop, slice(-1, None))):
            if out < 0 or out >= ws.shape[k]:
                continue  # the grown region ends at this face: no view of the other side
            here, there = list(inner), list(inner)
            here[k], there[k] = slice(face, face + 1), slice(out, out + 1)
            a, b = ws[tuple(here)], ws[tuple(there)]
            sel = [slice(None)] * 3
            sel[k] = dst
            links[tuple(sel)] |= (((a == b) & (a != 0)).astype(np.uint8) << bit)
    return links


def block_fragments(affs: np.ndarray, inner: Slices, block_number: int, block_voxels: int,
                    aff_low: float = 0.0001, aff_high: float = 0.9999) -> tuple[np.ndarray, np.ndarray]:
    """Watershed fragments of one block, computed on the block grown by a context, with globally
    unique ids.

    Args:
        affs: ``(3, z, y, x)`` float32 nearest-neighbour affinities (channels z, y, x) of the
            block grown by its context; ``inner`` the block inside them.
        block_number, block_voxels: the block's number and the voxels of a full block.

    Returns:
        ``fragments`` ``(bz, by, bx)`` uint64: 0 where the watershed leaves voxels unassigned,
        else ``local id + block_number * block_voxels`` with local ids ``1..n``; and ``links``
        ``(bz, by, bx)`` uint8, the face bits of :func:`_face_links`.
    """
    from neurotut.affinity import WATERZ_OFFSETS
    from neurotut.agglomerate import watershed

    ws = watershed(affs, WATERZ_OFFSETS, aff_threshold_low=aff_low, aff_threshold_high=aff_high)
    seg = ws[tuple(inner)]
    ids, local = np.unique(seg, return_inverse=True)
    local = local.reshape(seg.shape).astype(np.uint64)
    if ids.size and ids[0] != 0:
        local += np.uint64(1)
    out = np.where(local > 0, local + np.uint64(block_number * block_voxels), np.uint64(0))
    return out.astype(np.uint64), _face_links(ws, inner)


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


def block_edges(frags: np.ndarray, affs: np.ndarray, context: Sequence[int],
                links: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The region adjacency edges a block owns.

    Args:
        frags: ``(z, y, x)`` fragment ids of the block plus ``context[k]`` (0 or 1) voxels before
            it along axis ``k``.
        affs: ``(3, bz, by, bx)`` float affinities of the block (channels z, y, x).
        context: 1 where the block has a neighbour before it along the axis, else 0.
        links: the face bits of :func:`block_fragments` over the same region as ``frags``
            (None: no joins).

    Returns:
        ``(pairs (E, 2) uint64 with u < v, sums (E,) float64, counts (E,) int64, joins (E,)
        int64)``, sorted; ``joins`` counts the voxel pairs across a block face that both blocks'
        watersheds put in one basin (the two fragments are pieces of one in-memory fragment).
    """
    us, vs, values, joined = [], [], [], []
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
        if links is None:
            joined.append(np.zeros(int(mask.sum()), np.int64))
        else:  # this block's view (bit k of x) and the previous block's (bit 3 + k of x - e_k)
            both = ((links[tuple(here)] >> k) & (links[tuple(before)] >> (3 + k)) & 1)
            joined.append(both[mask].astype(np.int64))
    u, v, val = np.concatenate(us), np.concatenate(vs), np.concatenate(values)
    if u.size == 0:
        return np.zeros((0, 2), np.uint64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs, inverse = np.unique(np.stack([u, v], 1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    sums = np.bincount(inverse, weights=val, minlength=len(pairs))
    counts = np.bincount(inverse, minlength=len(pairs)).astype(np.int64)
    joins = np.bincount(inverse, weights=np.concatenate(joined), minlength=len(pairs)).astype(np.int64)
    return pairs.astype(np.uint64), sums, counts, joins


@dataclass
class FragmentBlocks:
    """The block function of both steps (``step`` = ``"fragments"`` or ``"edges"``), picklable.

    ``affinities``, ``fragments`` and ``links`` are ``(container, dataset)``; ``channels`` the
    nearest-neighbour channels (z, y, x) of the affinities; ``db`` the graph store; ``context``
    the voxels the watershed of a block sees beyond it on each side, ``shape`` the volume's."""

    step: str
    affinities: tuple[str, str]
    fragments: tuple[str, str]
    links: tuple[str, str]
    db: str
    channels: tuple[int, int, int]
    block_shape: tuple[int, int, int]
    grid: tuple[int, int, int]
    shape: tuple[int, int, int]
    context: tuple[int, int, int] = (8, 32, 32)
    aff_low: float = 0.0001
    aff_high: float = 0.9999

    def _affs(self, region: Slices) -> np.ndarray:
        from neurotut.volumes import open_volume, read_region

        arr = open_volume(*self.affinities)
        data = read_region(arr, region, where=":".join(self.affinities))
        return np.ascontiguousarray(data[list(self.channels)], dtype=np.float32)

    def _fragments(self, region: Slices, number: int, db) -> None:
        from neurotut.blockwise.graph import write_fragments
        from neurotut.volumes import open_volume, write_region

        grown = grown_region(region, self.context, self.shape)
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(region, grown))
        frags, links = block_fragments(self._affs(grown), inner, number, int(np.prod(self.block_shape)),
                                       self.aff_low, self.aff_high)
        write_region(open_volume(*self.links, mode="r+"), region, links, where=":".join(self.links))
        write_region(open_volume(*self.fragments, mode="r+"), region, frags, where=":".join(self.fragments))
        write_fragments(db, *fragment_table(frags, [s.start for s in region]), block=number)

    def __call__(self, block) -> None:
        from neurotut.blockwise.graph import open_graph_db, write_edges
        from neurotut.blockwise.schedule import block_index, roi_slices
        from neurotut.volumes import open_volume, read_region

        region = roi_slices(block.write_roi)
        number = block_index([s.start for s in region], self.block_shape, self.grid)
        db = open_graph_db(self.db, mode="r+")
        try:
            if self.step == "fragments":
                self._fragments(region, number, db)
            else:
                context = [1 if s.start > 0 else 0 for s in region]
                grown = tuple(slice(s.start - c, s.stop) for s, c in zip(region, context))
                frags = read_region(open_volume(*self.fragments), grown, where=":".join(self.fragments))
                links = read_region(open_volume(*self.links), grown, where=":".join(self.links))
                write_edges(db, *block_edges(frags, self._affs(region), context, links))
        finally:
            db.close()
