"""The original trained FFNs: the ffn_windows workshop's SNEMI3D networks and google/ffn's FIB-25
network, with the inference requests they were run with.

Files come from the data registry (``ffn-windows-models``, ``google-ffn-fib25``: downloaded and
checksummed, or copied with ``neurotut data fill-cache``); the TensorFlow checkpoints are read by
:mod:`neurotut.ffn.tf_model` without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neurotut.data.download import fetch
from neurotut.ffn.request import InferenceRequest
from neurotut.ffn.model import ConvStack3DFFN
from neurotut.ffn.tf_model import ffn_from_tf_checkpoint

#: training steps of the workshop's three SNEMI3D checkpoints (about 1, 2 and 3 weeks on a GTX 1080 Ti)
WORKSHOP_STEPS: tuple[int, ...] = (2_013_116, 4_000_000, 7_000_000)
WORKSHOP_DATASET = "ffn-windows-models"
FIB25_DATASET = "google-ffn-fib25"
FIB25_STEP = 27_465_036


def _checkpoint_files(dataset: str, step: int, progress: bool) -> Path:
    """Fetch (or find in the cache) one checkpoint's index and data; return its prefix."""
    names = [f"model.ckpt-{step}.index", f"model.ckpt-{step}.data-00000-of-00001"]
    return fetch(dataset, names, progress=progress)[0].with_suffix("")


def workshop_request(progress: bool = False) -> InferenceRequest:
    """The workshop's ``inference.pbtxt`` (image mean 131, stddev 62, PolicyPeaks, ...)."""
    return InferenceRequest.load(fetch(WORKSHOP_DATASET, ["inference.pbtxt"], progress=progress)[0])


def fib25_request(progress: bool = False) -> InferenceRequest:
    """google/ffn's ``inference_training_sample2.pbtxt`` (image mean 128, stddev 33, ...)."""
    name = "inference_training_sample2.pbtxt"
    return InferenceRequest.load(fetch(FIB25_DATASET, [name], progress=progress)[0])


def workshop_network(
    step: int = 7_000_000, device: str | torch.device = "cpu", progress: bool = False
) -> tuple[ConvStack3DFFN, int]:
    """One of the workshop's SNEMI3D networks (depth 9, FOV (z, y, x) 17 x 33 x 33) in eval mode
    on ``device``, and its global step."""
    if step not in WORKSHOP_STEPS:
        raise ValueError(f"the workshop trained checkpoints at {WORKSHOP_STEPS} steps, not {step}")
    prefix = _checkpoint_files(WORKSHOP_DATASET, step, progress)
    model, _, global_step = ffn_from_tf_checkpoint(prefix, workshop_request().model_args)
    return model.to(device).eval(), global_step


def fib25_network(
    device: str | torch.device = "cpu", progress: bool = False
) -> tuple[ConvStack3DFFN, int]:
    """google/ffn's FIB-25 network (depth 12, FOV 33 x 33 x 33) in eval mode, and its global step."""
    prefix = _checkpoint_files(FIB25_DATASET, FIB25_STEP, progress)
    model, _, global_step = ffn_from_tf_checkpoint(prefix, fib25_request().model_args)
    return model.to(device).eval(), global_step
