"""Blockwise relabelling of the fragments into a segmentation, and the whole blockwise route.

:func:`relabel` maps fragment ids through a lookup table (0 stays 0). :func:`segment_blockwise`
runs fragments + graph (:mod:`neurotut.blockwise.fragments`), the global agglomeration
(:mod:`neurotut.blockwise.agglomerate`, tables stored as ``luts/<dataset>`` in the output
container) and one relabel step per threshold, each resumable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def relabel(fragments: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``(z, y, x)`` uint64 segment ids of ``fragments`` through ``lut`` ``(2, N)`` (sorted
    fragment ids, segment ids); 0 stays 0, ValueError for a fragment missing from the table."""
    frags = np.asarray(fragments, dtype=np.uint64)
    keys, values = lut[0], lut[1]
    pos = np.searchsorted(keys, frags).clip(0, max(len(keys) - 1, 0))
    nonzero = frags != 0
    if len(keys) == 0:
        if nonzero.any():
            raise ValueError("the lookup table is empty but the block has fragments")
        return np.zeros(frags.shape, np.uint64)
    found = keys[pos] == frags
    if (nonzero & ~found).any():
        raise ValueError(f"fragment {int(frags[nonzero & ~found][0])} is not in the lookup table "
                         "(fragments and graph come from different runs?)")
    return np.where(nonzero, values[pos], np.uint64(0)).astype(np.uint64)


@dataclass
class RelabelBlocks:
    """The block function of the relabel step (picklable): ``fragments``, ``output`` and
    ``lut`` are ``(container, dataset)``. A block reads only its own part of the table
    (:func:`read_block_lut`), so a worker's memory does not grow with the volume."""

    fragments: tuple[str, str]
    output: tuple[str, str]
    lut: tuple[str, str]
    block_shape: tuple[int, int, int]
    grid: tuple[int, int, int]

    def __call__(self, block) -> None:
        from neurotut.blockwise.schedule import block_index, roi_slices
        from neurotut.volumes import open_volume, read_region, write_region

        region = roi_slices(block.write_roi)
        frags = read_region(open_volume(*self.fragments), region, where=":".join(self.fragments))
        lut = read_block_lut(*self.lut, block_index([s.start for s in region], self.block_shape, self.grid))
        write_region(open_volume(*self.output, mode="r+"), region, relabel(frags, lut),
                     where=":".join(self.output))


def write_lut(container: str | os.PathLike, name: str, lut: np.ndarray, threshold: float,
              block_voxels: int, n_blocks: int) -> None:
    """Store a ``(2, N)`` uint64 lookup table (sorted fragment ids) as
    ``container:luts/<name>/table``, with ``luts/<name>/block_starts`` ``(n_blocks + 1,)`` int64:
    block ``b``'s fragments ``(b V, (b + 1) V]`` (``V = block_voxels``) are the columns
    ``block_starts[b]:block_starts[b + 1]``."""
    import zarr

    group = zarr.open_group(os.fspath(container), mode="a").require_group(f"luts/{name}")
    table = group.create_array("table", shape=lut.shape, dtype="uint64",
                               chunks=(2, max(1, min(lut.shape[1], 1 << 16))), overwrite=True)
    table[...] = lut
    bounds = np.arange(n_blocks + 1, dtype=np.uint64) * np.uint64(block_voxels)
    starts = np.searchsorted(lut[0], bounds, side="right").astype(np.int64)
    index = group.create_array("block_starts", shape=starts.shape, dtype="int64",
                               chunks=(max(1, min(starts.size, 1 << 16)),), overwrite=True)
    index[...] = starts
    group.attrs.update({"threshold": float(threshold), "block_voxels": int(block_voxels)})


def read_lut(container: str | os.PathLike, name: str) -> np.ndarray:
    """The whole lookup table :func:`write_lut` stored (``name`` as passed there)."""
    import zarr

    return np.asarray(zarr.open_array(os.fspath(container), path=f"luts/{name}/table", mode="r")[...])


def read_block_lut(container: str | os.PathLike, name: str, block: int) -> np.ndarray:
    """The ``(2, n)`` columns of the lookup table for the fragments of block number ``block``,
    reading only those (and two entries of ``block_starts``)."""
    import zarr

    root = os.fspath(container)
    starts = zarr.open_array(root, path=f"luts/{name}/block_starts", mode="r")
    if not 0 <= block < starts.shape[0] - 1:
        raise ValueError(f"block {block} is not one of the {starts.shape[0] - 1} blocks of {root}:luts/{name}")
    lo, hi = (int(v) for v in starts[block:block + 2])
    return np.asarray(zarr.open_array(root, path=f"luts/{name}/table", mode="r")[:, lo:hi])


def _names(base: str, thresholds: Sequence[float]) -> dict[float, str]:
    from neurotut.agglomerate import threshold_dataset_name

    return {t: base if len(thresholds) == 1 else threshold_dataset_name(base, t) for t in thresholds}


def segment_blockwise(
    affinities: str,
    output: str,
    thresholds: Sequence[float],
    block_shape: Sequence[int],
    *,
    db: str | None = None,
    workers: int = 1,
    aff_low: float = 0.0001,
    aff_high: float = 0.9999,
    context: Sequence[int] = (8, 32, 32),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[float, str]:
    """Affinities (``in.zarr:affinities``, with an ``offsets`` attribute) -> fragments
    (``<output container>:fragments``), the graph (``db``, default ``<output container>/graph.db``
    SQLite) and one segmentation per threshold (``output``'s dataset, ``NAME_<t>`` for several).
    ``context``: the voxels ``(z, y, x)`` each block's watershed sees beyond the block on every
    side (:mod:`neurotut.blockwise.fragments`). Returns ``{threshold: dataset}``."""
    from neurotut.affinity import nearest_neighbour_channels
    from neurotut.agglomerate import read_offsets
    from neurotut.blockwise import schedule
    from neurotut.blockwise.agglomerate import agglomerate_db
    from neurotut.blockwise.fragments import FragmentBlocks
    from neurotut.blockwise.graph import open_graph_db
    from neurotut.io import OutputExistsError
    from neurotut.volumes import offset, open_volume, parse_zarr_spec, voxel_size

    a_cont, a_name = parse_zarr_spec(affinities, default_dataset="affinities")
    o_cont, o_name = parse_zarr_spec(output, default_dataset="segmentation")
    affs = open_volume(a_cont, a_name)
    offsets = read_offsets(affs.attrs, affs.shape, f"{a_cont}:{a_name}")
    channels = tuple(nearest_neighbour_channels(offsets))
    shape = tuple(affs.shape[1:])
    block_shape = schedule.check_block_shape(block_shape, shape)
    context = tuple(int(c) for c in context)
    if len(context) != 3 or min(context) < 0:
        raise ValueError(f"--context needs three sizes >= 0 (z, y, x), got {list(context)}")
    thresholds = sorted({float(t) for t in thresholds})
    db = db or os.path.join(os.fspath(o_cont), "graph.db")
    params = {"step": "fragments", "affinities": f"{a_cont}:{a_name}", "block_shape": block_shape,
              "aff_low": aff_low, "aff_high": aff_high, "db": str(db), "context": context}
    names = _names(o_name, thresholds)
    for name in ([] if resume or overwrite else names.values()):
        if (o_cont / name).exists():
            raise OutputExistsError(f"{o_cont}:{name} already exists; pass --resume or --overwrite")
    existed = (o_cont / "fragments").exists()
    frag_arr = schedule.prepare_output(
        o_cont, "fragments", shape=shape, dtype="uint64", chunks=block_shape, voxel_size=voxel_size(affs),
        offset=offset(affs), params=params, resume=resume, overwrite=overwrite, steps=["fragments", "edges"])
    schedule.prepare_output(
        o_cont, "fragment_links", shape=shape, dtype="uint8", chunks=block_shape, voxel_size=voxel_size(affs),
        offset=offset(affs), params=params, resume=resume and existed, overwrite=not (resume and existed),
        steps=[])
    if not (resume and existed):
        open_graph_db(db, mode="w").close()
    grid = schedule.grid_shape(shape, block_shape)
    common = dict(affinities=(str(a_cont), a_name), fragments=(str(o_cont), "fragments"),
                  links=(str(o_cont), "fragment_links"), db=str(db), channels=channels, block_shape=block_shape,
                  grid=grid, shape=shape, context=context, aff_low=aff_low, aff_high=aff_high)
    tasks = [schedule.make_task(f"{step}", shape, block_shape, FragmentBlocks(step, **common),
                                context_neg=(1, 1, 1) if step == "edges" else (0, 0, 0), workers=workers,
                                tracking=schedule.tracking_dir(o_cont, "fragments", step))
             for step in ("fragments", "edges")]
    for task in tasks:  # one after the other: daisy 2.0.0 runs only part of a two-task pipeline
        schedule.run(task, workers=workers, progress=progress, log_dir=schedule.log_dir(o_cont))
    for t, lut in agglomerate_db(str(db), thresholds).items():
        write_lut(o_cont, names[t], lut, t, int(np.prod(block_shape)), int(np.prod(grid)))
        seg = schedule.prepare_output(
            o_cont, names[t], shape=shape, dtype="uint64", chunks=block_shape, voxel_size=voxel_size(affs),
            offset=offset(affs), params={**params, "step": "relabel", "threshold": t},
            resume=resume, overwrite=overwrite, steps=["relabel"])
        fn = RelabelBlocks((str(o_cont), "fragments"), (str(o_cont), names[t]), (str(o_cont), names[t]),
                           block_shape, grid)
        task = schedule.make_task(f"relabel-{names[t]}", shape, block_shape, fn, workers=workers,
                                  tracking=schedule.tracking_dir(o_cont, names[t], "relabel"))
        schedule.run(task, workers=workers, progress=progress, log_dir=schedule.log_dir(o_cont))
        seg.attrs.update({"threshold": t, "fragments": f"{o_cont}:fragments", "graph": str(db)})
    return names
