"""Blockwise affinity prediction into zarr, equal voxel for voxel to the in-memory route.

:func:`neurotut.inference.predict_volume` places windows on a grid over the whole volume, runs
them ``batch_size`` at a time in grid order and blends them with bump weights, summing in
float64. A voxel's value depends on the windows that cover it, their predictions and the order
of the sums. A block here therefore

1. takes the same global window grid (:func:`neurotut.windows.window_grid` of the whole volume),
2. finds the windows that overlap the block and the global batches that hold them, and runs
   exactly those batches (the same windows together: a convolution's result may depend on its
   batch companions in the last bits),
3. sums, over the overlapping windows in grid order, their weighted predictions restricted to
   the block, then divides.

Each block voxel thus gets the same float64 terms in the same order as in memory: the result
is bit-identical (``np.array_equal``), on the whole volume, not only inside. The context a block
reads is the window minus one voxel on each side (the reach of the windows that touch it), plus
the few batch companions outside it, read one window at a time: memory per worker is bounded
by the block and the window, not the volume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from neurotut.blockwise.schedule import Slices


def _overlaps(start: Sequence[int], window: Sequence[int], block: Slices) -> bool:
    return all(s < b.stop and s + w > b.start for s, w, b in zip(start, window, block))


def _read_window(raw, context, lo: Sequence[int], start: Sequence[int], window: Sequence[int]) -> np.ndarray:
    """One window of raw as the network's float32 input, from the context array when it lies
    inside it, else straight from ``raw``."""
    from neurotut.windows import raw_to_input

    rel = [s - o for s, o in zip(start, lo)]
    if all(r >= 0 and r + w <= n for r, w, n in zip(rel, window, context.shape)):
        sub = context[tuple(slice(r, r + w) for r, w in zip(rel, window))]
    else:
        sub = raw_to_input(np.asarray(raw[tuple(slice(s, s + w) for s, w in zip(start, window))]))
    return sub


def predict_block(
    model,
    raw,
    block: Slices,
    window: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 2,
    device=None,
    amp: bool = True,
    channels: int | Sequence[int] | None = None,
) -> np.ndarray:
    """The affinities of one block as :func:`neurotut.inference.predict_volume` computes them
    on the whole of ``raw``.

    Args:
        model: the network (see ``predict_volume``).
        raw: ``(Z, Y, X)`` uint8 (or float) volume, any array-like that slices (numpy, zarr,
            h5py); at least the window along every axis.
        block: three slices inside the volume.
        window, overlap, batch_size, device, amp, channels: as for ``predict_volume``; the same
            values give the same result.

    Returns:
        ``(C, z, y, x)`` float32 affinities of the block.
    """
    import torch

    from neurotut.windows import (bump_weights, channel_selection, device_and_batch, eval_mode,
                                  forward_batch, raw_to_input, window_grid)

    shape, window = tuple(raw.shape), tuple(int(w) for w in window)
    if any(n < w for n, w in zip(shape, window)):
        raise ValueError(f"the volume {shape} is smaller than the window {window}; blockwise "
                         "prediction needs at least one window along every axis")
    device, batch_size = device_and_batch(model, window, device, batch_size)
    starts = window_grid(shape, window, overlap)
    touching = {i for i, s in enumerate(starts) if _overlaps(s, window, block)}
    batches = sorted({i // batch_size for i in touching})
    lo = [max(0, b.start - w + 1) for b, w in zip(block, window)]
    hi = [min(n, b.stop + w - 1) for b, w, n in zip(block, window, shape)]
    context = raw_to_input(np.asarray(raw[tuple(slice(a, b) for a, b in zip(lo, hi))]))
    weight = bump_weights(window)
    bshape = tuple(b.stop - b.start for b in block)
    out: np.ndarray | None = None
    weight_sum = np.zeros(bshape, dtype=np.float64)
    with eval_mode(model), torch.no_grad():
        for b in batches:
            ids = range(b * batch_size, min((b + 1) * batch_size, len(starts)))
            x = np.stack([_read_window(raw, context, lo, starts[i], window) for i in ids])
            pred = forward_batch(model, x, device, amp)
            keep = channel_selection(channels, pred.shape[1])
            pred = pred[:, keep]
            if out is None:
                out = np.zeros((pred.shape[1],) + bshape, dtype=np.float64)
            for i, p in zip(ids, pred):
                if i not in touching:
                    continue
                src, dst = [], []
                for s, w, bl in zip(starts[i], window, block):
                    a, e = max(s, bl.start), min(s + w, bl.stop)
                    src.append(slice(a - s, e - s))
                    dst.append(slice(a - bl.start, e - bl.start))
                src, dst = tuple(src), tuple(dst)
                out[(slice(None),) + dst] += weight[src] * p[(slice(None),) + src]
                weight_sum[dst] += weight[src]
    assert out is not None
    out /= weight_sum
    return np.ascontiguousarray(out, dtype=np.float32)


@dataclass
class PredictBlocks:
    """The block function of the prediction step, sent to each daisy worker (picklable).

    ``model`` is a network or the path of a checkpoint (loaded once per worker); ``raw`` names
    the input (``file.h5:dataset`` or ``in.zarr:dataset``); ``output`` is ``(container,
    dataset)``. ``threads``: torch threads per worker (None: torch's default).
    """

    model: object
    raw: str
    output: tuple[str, str]
    window: tuple[int, int, int]
    overlap: float
    batch_size: int
    channels: int | list[int] | None
    device: str | None
    amp: bool
    threads: int | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def _open(self):
        if not self._cache:
            import torch

            from neurotut.volumes import open_volume

            if self.threads:
                torch.set_num_threads(int(self.threads))
            model = self.model
            if isinstance(model, (str, os.PathLike)):
                from neurotut.checkpoints import load_model

                model, _ = load_model(model, device=self.device or "cpu")
            self._cache.update(model=model, raw=open_input(self.raw),
                               out=open_volume(*self.output, mode="r+"))
        return self._cache["model"], self._cache["raw"], self._cache["out"]

    def __call__(self, block) -> None:
        from neurotut.blockwise.schedule import roi_slices
        from neurotut.volumes import write_region

        model, raw, out = self._open()
        region = roi_slices(block.write_roi)
        affs = predict_block(model, raw, region, self.window, overlap=self.overlap,
                             batch_size=self.batch_size, device=self.device, amp=self.amp,
                             channels=self.channels)
        write_region(out, region, affs, where=f"{self.output[0]}:{self.output[1]}")


def open_input(spec: str):
    """A ``(Z, Y, X)`` input volume, opened lazily: a zarr array (``in.zarr:dataset``) or an
    h5py dataset (``file.h5:dataset``; the file stays open for reading)."""
    from neurotut.volumes import is_zarr_spec, open_volume, parse_zarr_spec

    if is_zarr_spec(spec):
        return open_volume(*parse_zarr_spec(spec, default_dataset="raw"))
    from neurotut.io import check_dataset, get_dataset, open_h5, parse_volume_spec

    vs = parse_volume_spec(spec, default_dataset="raw")
    dset = get_dataset(open_h5(vs.path), vs.dataset)
    check_dataset(dset, vs, ndim=3, kind="image")
    return dset


def input_grid(spec: str, voxel_size: Sequence[int] | None) -> tuple[tuple[int, ...], tuple[int, int, int], tuple[int, int, int]]:
    """``(shape, voxel size, offset)`` of an input: zarr's attributes (ValueError when
    ``voxel_size`` is given and differs), for HDF5 ``voxel_size`` (required) and offset 0."""
    from neurotut.volumes import is_zarr_spec, offset, voxel_size as vs_of

    arr = open_input(spec)
    if is_zarr_spec(spec):
        own = vs_of(arr)
        if voxel_size is not None and tuple(int(v) for v in voxel_size) != own:
            raise ValueError(f"{spec} has voxel size {own}, but --voxel-size {list(voxel_size)} was given")
        return tuple(arr.shape), own, offset(arr)
    if voxel_size is None:
        voxel_size = arr.attrs.get("voxel_size", arr.attrs.get("resolution"))
        if voxel_size is None:
            raise ValueError(f"{spec} has no voxel_size attribute: give --voxel-size Z Y X")
    return tuple(arr.shape), tuple(int(v) for v in voxel_size), (0, 0, 0)  # type: ignore[return-value]


def predict_blockwise(
    model,
    raw: str,
    output: str,
    window: Sequence[int],
    block_shape: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int = 2,
    channels: int | Sequence[int] | None = None,
    n_channels: int,
    offsets: Sequence[Sequence[int]],
    voxel_size: Sequence[int] | None = None,
    workers: int = 1,
    threads: int | None = 1,
    device: str | None = None,
    amp: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
):
    """Predict the affinities of ``raw`` into the zarr volume ``output`` (``out.zarr:dataset``,
    default dataset ``affinities``), block by block with ``workers`` daisy workers (0: in this
    process). ``n_channels`` is the number of channels written (after ``channels``), ``offsets``
    theirs, stored as the ``offsets`` attribute. Returns the output zarr array.

    The result equals ``predict_volume(model, raw, window, overlap=..., batch_size=...)``
    exactly (see the module docstring). ``resume`` continues an interrupted run of the same
    settings; an existing output is refused otherwise unless ``overwrite``.
    """
    from neurotut.blockwise import schedule
    from neurotut.volumes import parse_zarr_spec

    container, dataset = parse_zarr_spec(output, default_dataset="affinities")
    shape, vs, off = input_grid(raw, voxel_size)
    block_shape = schedule.check_block_shape(block_shape, shape)
    window = tuple(int(w) for w in window)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = {"step": "predict", "raw": str(raw), "window": window, "overlap": overlap,
              "batch_size": batch_size, "channels": channels, "block_shape": block_shape,
              "model": str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__}
    arr = schedule.prepare_output(
        container, dataset, shape=(n_channels,) + shape, dtype="float32", chunks=block_shape,
        voxel_size=vs, offset=off, params=params, resume=resume, overwrite=overwrite, steps=["predict"])
    arr.attrs["offsets"] = [list(map(int, o)) for o in offsets[:n_channels]]
    fn = PredictBlocks(model, str(raw), (str(container), dataset), window, overlap, batch_size,
                       channels if channels is None or isinstance(channels, int) else list(channels),
                       device, amp, threads)
    task = schedule.make_task(f"predict-{dataset.replace('/', '_')}", shape, block_shape, fn,
                              workers=workers, tracking=schedule.tracking_dir(container, dataset, "predict"))
    schedule.run(task, workers=workers, progress=progress, log_dir=schedule.log_dir(container))
    return arr

