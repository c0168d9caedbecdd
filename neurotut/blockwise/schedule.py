"""Blocks, daisy tasks and their bookkeeping, shared by every blockwise step.

All regions here are in voxels, ``(z, y, x)``, with the volume starting at 0 (world offsets
live in the zarr attributes, :mod:`neurotut.volumes`). A step tiles the volume with write
blocks of ``block_shape`` (the last ones along an axis shrink to the volume's end, daisy's
``fit="shrink"``) and reads each with extra context. daisy hands the blocks to ``workers``
processes; each block it records as done (one byte per block in ``tracking`` under the output
container, written only after the block's function has returned, i.e. after all of its writes)
is skipped by a rerun, so an interrupted run resumes where it stopped and a block whose worker
died is redone, never left half-written and marked done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Slices = tuple[slice, slice, slice]


class BlocksFailedError(OSError):
    """Some blocks of a blockwise step failed; the finished ones are recorded (rerun to resume)."""


def grid_shape(shape: Sequence[int], block_shape: Sequence[int]) -> tuple[int, int, int]:
    """Blocks along ``(z, y, x)``: ``ceil(shape / block_shape)``."""
    return tuple(-(-int(n) // int(b)) for n, b in zip(shape, block_shape))  # type: ignore[return-value]


def block_index(start: Sequence[int], block_shape: Sequence[int], grid: Sequence[int]) -> int:
    """The z-major number (0, 1, ...) of the block starting at voxel ``start``."""
    pos = [int(s) // int(b) for s, b in zip(start, block_shape)]
    return int(np.ravel_multi_index(pos, tuple(grid)))


def roi_slices(roi) -> Slices:
    """A funlib/daisy ``Roi`` in voxels as three slices."""
    return tuple(slice(int(b), int(e)) for b, e in zip(roi.begin, roi.end))  # type: ignore[return-value]


def all_blocks(shape: Sequence[int], block_shape: Sequence[int]) -> list[Slices]:
    """Every write block of the volume, z-major (the ids of :func:`block_index`)."""
    import itertools

    axes = [range(0, int(n), int(b)) for n, b in zip(shape, block_shape)]
    return [tuple(slice(s, min(s + int(b), int(n))) for s, b, n in zip(start, block_shape, shape))
            for start in itertools.product(*axes)]  # type: ignore[misc]


def check_block_shape(block_shape: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
    """``block_shape`` as three positive ints (ValueError otherwise)."""
    out = tuple(int(b) for b in block_shape)
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"--block-size needs three positive sizes (z, y, x), got {list(block_shape)}")
    return out  # type: ignore[return-value]


def make_task(
    task_id: str,
    shape: Sequence[int],
    block_shape: Sequence[int],
    process: Callable,
    *,
    context_neg: Sequence[int] = (0, 0, 0),
    context_pos: Sequence[int] = (0, 0, 0),
    workers: int = 1,
    tracking: str | os.PathLike | None = None,
    max_retries: int = 2,
):
    """A daisy ``Task`` whose write blocks tile a ``shape`` volume and whose read blocks add
    ``context_neg`` / ``context_pos`` voxels before / after (they may reach outside the volume:
    the block function clips). ``process(block)`` runs once per block; ``tracking`` is the folder
    of the done markers (None: no resuming)."""
    import daisy
    from funlib.geometry import Roi

    neg, pos = [int(c) for c in context_neg], [int(c) for c in context_pos]
    block = [int(b) for b in block_shape]
    total = Roi([-c for c in neg], [int(n) + a + b for n, a, b in zip(shape, neg, pos)])
    read = Roi((0, 0, 0), [b + a + c for b, a, c in zip(block, neg, pos)])
    write = Roi(neg, block)
    return daisy.Task(
        task_id, total_roi=total, read_roi=read, write_roi=write, process_function=process,
        read_write_conflict=False, fit="shrink", max_workers=max(1, int(workers)),
        max_retries=int(max_retries), tracking_path=str(tracking) if tracking else False,
    )


def _first_error(state) -> str:
    text = state.first_worker_error or state.last_worker_error or state.abandon_reason or ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else "no error message (see the daisy worker logs)"


def run(pipeline, *, workers: int = 1, progress: bool = True, log_dir: str | os.PathLike | None = None) -> dict:
    """Run a daisy task or pipeline to completion; ``workers=0`` runs the blocks in this process
    (no subprocesses: for debugging and tests). Returns ``{task_id: TaskState}``.

    Raises :class:`BlocksFailedError` naming the first failure when any block failed; the blocks
    that finished stay recorded, so the same call again resumes.
    """
    import daisy
    from daisy import logging as daisy_logging

    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        daisy_logging.set_log_basedir(str(log_dir))
    try:
        states = daisy.run_blockwise(pipeline, multiprocessing=workers > 0, progress=progress,
                                     return_states=True, summary=progress)
    except Exception as exc:  # in this process (workers=0) daisy re-raises a block's error
        if workers > 0:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise BlocksFailedError(f"a block failed: {type(exc).__name__}: {text}; the finished blocks "
                                "are recorded, rerun with --resume to do the rest") from exc
    failed = {tid: s for tid, s in states.items() if s.failed_count or s.orphaned_count or s.abandoned
              or s.completed_count + s.skipped_count < s.total_block_count}
    if failed:
        tid, state = next(iter(failed.items()))
        n = state.total_block_count - state.completed_count - state.skipped_count
        where = f"; worker logs in {log_dir}" if log_dir else ""
        raise BlocksFailedError(
            f"{n} of {state.total_block_count} blocks of step {tid!r} failed: {_first_error(state)}; "
            f"the finished blocks are recorded, rerun with --resume to do the rest{where}"
        )
    return states


def tracking_dir(container: str | os.PathLike, dataset: str, step: str) -> Path:
    """Where the done markers of ``step`` writing ``container:dataset`` live:
    ``container/.daisy/<dataset>-<step>`` (zarr ignores the dot folder)."""
    return Path(container) / ".daisy" / f"{dataset.replace('/', '_')}-{step}"


def done_blocks(container: str | os.PathLike, dataset: str, step: str) -> np.ndarray:
    """``(gz, gy, gx)`` bool: the blocks of ``step`` writing ``container:dataset`` that daisy
    recorded as done (all False before the first run)."""
    import zarr

    path = tracking_dir(container, dataset, step) / "done"
    if not path.exists():
        raise FileNotFoundError(f"no done markers for step {step!r} of {container}:{dataset} (never run)")
    return np.asarray(zarr.open_array(str(path), mode="r")[...]).astype(bool)


def log_dir(container: str | os.PathLike) -> Path:
    """The daisy worker logs of a container: ``container/.daisy/logs``."""
    return Path(container) / ".daisy" / "logs"


def prepare_output(container, dataset: str, *, shape, dtype, chunks, voxel_size, offset,
                   params: dict, resume: bool, overwrite: bool, steps: Sequence[str]):
    """The output array of a blockwise step, new or (``resume``) the one an interrupted run with
    the same ``params`` left (ValueError when they differ). An existing output is refused
    without ``resume`` or ``overwrite``; ``overwrite`` starts afresh (done markers removed)."""
    import json
    import shutil

    from neurotut.io import OutputExistsError
    from neurotut.volumes import create_volume, open_volume

    params = json.loads(json.dumps(params))
    path = Path(container) / dataset
    if path.exists() and resume and not overwrite:
        arr = open_volume(container, dataset, mode="r+")
        recorded = arr.attrs.get("blockwise")
        if recorded != params:
            changed = sorted(k for k in set(params) | set(recorded or {})
                             if (recorded or {}).get(k) != params.get(k))
            raise ValueError(f"{container}:{dataset} was started with other settings ({changed}); "
                             "resume with the same ones, or --overwrite to start afresh")
        return arr
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{container}:{dataset} already exists; pass --resume to finish an "
                                "interrupted run or --overwrite to start afresh")
    for step in steps:
        shutil.rmtree(tracking_dir(container, dataset, step), ignore_errors=True)
    return create_volume(container, dataset, shape, dtype, chunks, voxel_size, offset,
                         overwrite=True, attrs={"blockwise": params})
