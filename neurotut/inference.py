"""Sliding-window prediction of affinities over a whole volume, with bump blending.

A network sees a window (its training patch size) at a time. Windows overlap (by default half a
window, the Superhuman stride of 0.5 FOV) and their predictions are averaged with a "bump"
weight that is 1 in the window's centre and falls to 1e-4 at its borders, where a
"same"-padded network is least reliable (``specs/superhuman_revnet.md`` A4)::

    t_i = (i + 1) / (n + 1),  i = 0..n-1   along each axis of an n-voxel window
    s   = sum over axes of -(t (1 - t)) ** -1.5
    w   = 1e-4 + exp(s - max(s))

The blended value at a voxel is ``sum_k w_k p_k / sum_k w_k`` over the windows ``k`` that cover
it. Sums are kept in float64 (``8 * C`` bytes per voxel), so a single window reproduces the
network's output exactly.

The network runs in eval mode (BatchNorm uses its running statistics), without a graph, in
bfloat16/float16 autocast on CUDA; the output is ``sigmoid(logits)`` as float32.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neurotut.affinity import SUPERHUMAN_OFFSETS
from neurotut.tta import predict_with_tta
from neurotut.windows import (  # noqa: F401 - re-exported, the public names of this module
    autocast,
    bump_weights,
    channel_selection,
    choose_batch_size,
    device_and_batch,
    eval_mode,
    forward_batch,
    raw_to_input,
    window_grid,
    window_starts,
)


def _window_predictions(
    model: nn.Module,
    vol: np.ndarray,
    starts: list[tuple[int, int, int]],
    window: tuple[int, int, int],
    batch_size: int,
    device: torch.device,
    amp: bool,
    progress: bool,
) -> Iterator[tuple[list[tuple[int, int, int]], np.ndarray]]:
    """``(starts, sigmoid predictions (N, C, z, y, x) float32)`` of the windows, a batch at a time,
    with the model in eval mode and without a graph."""
    # no_grad rather than inference_mode: reversible blocks check their input's version counter,
    # which inference tensors do not have
    with eval_mode(model), torch.no_grad():
        batches = range(0, len(starts), batch_size)
        for b in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            chunk = starts[b : b + batch_size]
            x = np.stack(
                [vol[z : z + window[0], y : y + window[1], x0 : x0 + window[2]] for z, y, x0 in chunk]
            )
            yield chunk, forward_batch(model, x, device, amp)


def predict_volume(
    model: nn.Module,
    raw: np.ndarray,
    window: Sequence[int],
    *,
    overlap: float = 0.5,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    channels: int | Sequence[int] | None = None,
    amp: bool = True,
    progress: bool = True,
    tta: int = 1,
    offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
) -> np.ndarray:
    """Affinities of a whole volume by blended sliding windows.

    Args:
        model: maps ``(N, 1, z, y, x)`` float to ``(N, C, z, y, x)`` logits (e.g. an RSUNet).
        raw: ``(Z, Y, X)`` uint8 image (or float in [0, 1]).
        window: ``(z, y, x)`` window, a size the model accepts (RSUNet: y, x multiples of 16).
            A volume smaller than the window along an axis is mirror-padded up to it.
        overlap: fraction of a window shared by neighbours along each axis, in [0, 1); the
            stride is ``round(window * (1 - overlap))``, at least 1.
        batch_size: windows per forward pass; None: :func:`choose_batch_size`.
        device: where the model runs; None: the model's device.
        channels: output channels to keep (an int ``k`` keeps the first ``k``; e.g. 3 for waterz),
            None keeps all.
        amp: autocast (bfloat16, else float16) on CUDA; ignored on CPU.
        progress: show a tqdm bar over batches.
        tta: test-time augmentation: the mean over 1 (none), 4, 8 or 16 flipped/transposed
            variants of the volume (:mod:`neurotut.tta`; 16 is Superhuman's set), each
            predicted as above; ``tta`` times the work.
        offsets: the offsets of the model's output channels (needed to map flipped affinities
            back; the default is the 12 Superhuman offsets).

    Returns:
        ``(C, Z, Y, X)`` float32 affinities in [0, 1].
    """
    if tta != 1:
        def plain(volume: np.ndarray) -> np.ndarray:
            return predict_volume(model, volume, window, overlap=overlap, batch_size=batch_size,
                                  device=device, amp=amp, progress=progress)

        full = predict_with_tta(plain, np.asarray(raw), offsets, tta)
        return np.ascontiguousarray(full[channel_selection(channels, full.shape[0])])
    vol = raw_to_input(raw)
    if vol.ndim != 3:
        raise ValueError(f"raw must be a (Z, Y, X) volume, got shape {vol.shape}")
    window = tuple(int(w) for w in window)
    if len(window) != 3 or min(window) < 1:
        raise ValueError(f"window must be (z, y, x) positive sizes, got {window}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    device, batch_size = device_and_batch(model, window, device, batch_size)

    shape = vol.shape
    pad = [(0, max(0, w - n)) for w, n in zip(window, shape)]
    if any(p for _, p in pad):
        vol = np.pad(vol, pad, mode="symmetric")
    starts = window_grid(vol.shape, window, overlap)
    weight = bump_weights(window)
    weight_sum = np.zeros(vol.shape, dtype=np.float64)
    out: np.ndarray | None = None
    keep: list[int] | slice | None = None
    for chunk, pred in _window_predictions(model, vol, starts, window, batch_size, device, amp, progress):
        if out is None:
            keep = channel_selection(channels, pred.shape[1])
            n_keep = len(range(pred.shape[1])[keep]) if isinstance(keep, slice) else len(keep)
            out = np.zeros((n_keep,) + vol.shape, dtype=np.float64)
        pred = pred[:, keep]
        for (z, y, x0), p in zip(chunk, pred):
            region = (slice(z, z + window[0]), slice(y, y + window[1]), slice(x0, x0 + window[2]))
            out[(slice(None),) + region] += weight * p
            weight_sum[region] += weight
    assert out is not None
    out /= weight_sum
    crop = (slice(None),) + tuple(slice(0, n) for n in shape)
    return np.ascontiguousarray(out[crop], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# command line: neurotut predict
# --------------------------------------------------------------------------------------------


def _predict_command(args: argparse.Namespace) -> int:
    if args.blockwise:
        from neurotut.blockwise.cli import predict_command

        return predict_command(args)
    from neurotut import config as nt_config
    from neurotut.io import check_can_write, parse_volume_spec, read_volume, write_h5
    from neurotut.checkpoints import load_model

    out_spec = parse_volume_spec(args.output, default_dataset="affinities")
    check_can_write(out_spec.path, args.overwrite)  # fail before hours of work
    device = nt_config.get_device(args.device)
    model, train_config = load_model(args.checkpoint, device=device)
    window = tuple(args.window) if args.window else tuple(train_config.patch)
    raw = read_volume(args.raw, ndim=3, kind="image")
    affs = predict_volume(
        model,
        raw,
        window,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=device,
        channels=args.channels,
        amp=not args.no_amp,
        progress=not args.quiet,
        tta=args.tta,
        offsets=train_config.offsets,
    )
    write_h5(
        out_spec.path,
        {out_spec.dataset: affs},
        dataset_attrs={
            out_spec.dataset: {
                "offsets": np.asarray(train_config.offsets[: affs.shape[0]], dtype=np.int64),
                "checkpoint": str(args.checkpoint),
                "raw": str(args.raw),
                "window": list(window),
                "overlap": args.overlap,
                "tta": args.tta,
            }
        },
        overwrite=args.overwrite,
    )
    if not args.quiet:
        print(f"wrote {out_spec.path}:{out_spec.dataset} {affs.shape} float32 (C, Z, Y, X)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut predict``."""
    p = subparsers.add_parser(
        "predict",
        help="predict affinities of a volume with a trained checkpoint (sliding window)",
        description="Sliding-window affinity prediction with bump blending; writes (C, Z, Y, X) "
        "float32 affinities to HDF5, with the dataset attribute 'offsets' ((C, 3) int, the "
        "(dz, dy, dx) of each channel) that `neurotut segment` reads.",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by `neurotut train`")
    p.add_argument("--raw", required=True, help="input image, file.h5:dataset (uint8 or float)")
    p.add_argument("--output", required=True, help="output, file.h5:dataset (default dataset 'affinities')")
    p.add_argument("--window", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="window size (default: the training patch)")
    p.add_argument("--overlap", type=float, default=0.5, help="overlap fraction (default 0.5)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per pass (default: by hardware)")
    p.add_argument("--channels", type=int, default=None,
                   help="keep only the first K channels (3 = the nearest neighbours waterz needs; "
                   "blending holds 8 bytes per kept channel and voxel)")
    p.add_argument("--tta", type=int, default=1, choices=(1, 4, 8, 16),
                   help="test-time augmentation: average over this many flipped/transposed copies "
                   "of the volume (16: Superhuman's set; default 1, none)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from neurotut.blockwise.cli import add_predict_arguments

    add_predict_arguments(p)
    p.set_defaults(func=_predict_command)
