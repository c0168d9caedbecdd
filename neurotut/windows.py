"""Sliding windows: where they go, how they are weighted, and one batched forward pass.

The pieces :func:`neurotut.inference.predict_volume` assembles, shared with the blockwise route
(:mod:`neurotut.blockwise.predict`), which must place, batch and weight windows exactly as the
in-memory route does to reproduce its result voxel for voxel. See :mod:`neurotut.inference` for
the bump weight and the blending formula.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


def raw_to_input(raw: np.ndarray) -> np.ndarray:
    """The network's input scaling: uint8 -> float32 in [0, 1] (``/ 255``); floats are taken to
    be in [0, 1] already and cast to float32. ``(Z, Y, X)`` in, ``(Z, Y, X)`` out."""
    raw = np.asarray(raw)
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / np.float32(255.0)
    if np.issubdtype(raw.dtype, np.floating):
        return raw.astype(np.float32, copy=False)
    raise TypeError(
        f"raw images must be uint8 (0..255) or float in [0, 1], got {raw.dtype}; rescale first"
    )


def bump_weights(shape: Sequence[int], exponent: float = 1.5, floor: float = 1e-4) -> np.ndarray:
    """The blending weight of one window: ``(Z, Y, X)`` float64, max ``1 + floor`` in the centre,
    about ``floor`` at the borders; see the module docstring."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"window shape must be three positive sizes, got {shape}")
    s = np.zeros(shape, dtype=np.float64)
    for axis, n in enumerate(shape):
        t = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
        term = -((t * (1 - t)) ** -exponent)
        s = s + term.reshape([n if a == axis else 1 for a in range(3)])
    return floor + np.exp(s - s.max())


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start positions along one axis so that windows of ``window`` voxels cover ``0..size-1``:
    ``0, stride, 2*stride, ...`` and finally ``size - window`` (``size >= window``)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
    if size < window:
        raise ValueError(f"the axis ({size}) is smaller than the window ({window})")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def choose_batch_size(window: Sequence[int], device: torch.device, model: nn.Module | None = None) -> int:
    """Windows per forward pass for this hardware.

    CPU: 2 (batch 1 at small sizes falls back to PyTorch's slower convolution path). CUDA: what
    fits in half of the free memory, estimating a window's forward activations as
    ``voxels * 4 bytes * 6 * (sum of the model's widths, or 256)``; between 1 and 32.
    """
    if device.type != "cuda":
        return 2
    widths = getattr(getattr(model, "config", None), "widths", None)
    channels = sum(widths) if widths else 256
    per_window = int(np.prod(window)) * 4 * 6 * channels
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(32, free // 2 // max(per_window, 1))))


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on CUDA when ``enabled`` (bfloat16 where supported, else float16); off
    elsewhere."""
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def channel_selection(channels: int | Sequence[int] | None, n_out: int) -> list[int] | slice:
    """Which of ``n_out`` output channels to keep: all (None), the first ``k`` (an int) or a list."""
    if channels is None:
        return slice(None)
    if isinstance(channels, (int, np.integer)):
        if not 1 <= int(channels) <= n_out:
            raise ValueError(f"channels={channels} but the model outputs {n_out}")
        return slice(0, int(channels))
    keep = [int(c) for c in channels]
    if not keep or min(keep) < 0 or max(keep) >= n_out:
        raise ValueError(f"channels {keep} out of range for {n_out} outputs")
    return keep


def device_and_batch(model: nn.Module, window: tuple[int, ...], device: torch.device | str | None,
                      batch_size: int | None) -> tuple[torch.device, int]:
    """The device to run on (default: the model's) and the windows per pass (default: by hardware)."""
    param = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (param.device if param is not None else torch.device("cpu"))
    if batch_size is None:
        batch_size = choose_batch_size(window, device, model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return device, batch_size


def window_grid(shape: Sequence[int], window: Sequence[int], overlap: float) -> list[tuple[int, int, int]]:
    """The start ``(z, y, x)`` of every window over a ``shape`` volume (each axis at least the
    window), in the order :func:`neurotut.inference.predict_volume` visits them (z slowest):
    strides ``round(window * (1 - overlap))``, at least 1, and a last window flush with the end."""
    strides = [max(1, int(round(w * (1 - overlap)))) for w in window]
    axes = (window_starts(int(n), int(w), s) for n, w, s in zip(shape, window, strides))
    return list(itertools.product(*axes))


def forward_batch(model: nn.Module, batch: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    """``sigmoid(model(batch))`` for ``(N, z, y, x)`` float32 windows: ``(N, C, z, y, x)`` float32.

    Call it with the model in eval mode and under ``torch.no_grad()`` (see :func:`eval_mode`)."""
    xt = torch.from_numpy(np.ascontiguousarray(batch)[:, None]).to(device)
    with autocast(device, amp):
        logits = model(xt)
    return torch.sigmoid(logits.float()).cpu().numpy()
