"""Segmenting a whole in-memory volume with an FFN: one canvas, as ``run_inference.py``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurotut.ffn.inference import Canvas, InferenceOptions, Predictor, normalize_image
from neurotut.ffn.seeds import SeedPolicy
from neurotut.ffn.storage import OriginInfo


@dataclass
class InferenceResult:
    """What :func:`segment_volume` returns."""

    #: (Z, Y, X) uint32 ids, 0 = unsegmented (no connected-component splitting)
    segmentation: np.ndarray
    #: (Z, Y, X) uint8 quantised probability of each voxel's segment (0 = none)
    seg_prob: np.ndarray
    origins: dict[int, OriginInfo]
    overlaps: dict[int, np.ndarray]
    counters: dict[str, float] = field(default_factory=dict)


def segment_volume(
    raw: np.ndarray,
    predictor: Predictor,
    fov_size: Sequence[int],
    deltas: Sequence[int],
    options: InferenceOptions | None = None,
    image_mean: float | None = None,
    image_stddev: float | None = None,
    seed_policy: str | SeedPolicy = "PolicyPeaks",
    seed_policy_args: Mapping | None = None,
    mask: np.ndarray | None = None,
    batch_size: int = 1,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_interval: float | None = None,
    progress: bool = True,
) -> InferenceResult:
    """Segment a whole ``(Z, Y, X)`` volume with an FFN (one canvas, as ``run_inference.py``).

    ``raw`` is normalised with ``image_mean`` / ``image_stddev`` (defaults: its own mean and
    standard deviation); a float image is used as given when both are None. With a
    ``checkpoint_path``, an existing checkpoint is resumed and the checkpoint is removed at the
    end.
    """
    raw = np.asarray(raw)
    if image_mean is None and image_stddev is None and np.issubdtype(raw.dtype, np.floating):
        image = raw.astype(np.float32, copy=False)
    else:
        mean = float(raw.mean()) if image_mean is None else float(image_mean)
        std = float(raw.std()) if image_stddev is None else float(image_stddev)
        image = normalize_image(raw, mean, std)
    canvas = Canvas(
        image, predictor, fov_size, deltas, options, mask=mask, batch_size=batch_size,
        checkpoint_path=checkpoint_path, checkpoint_interval=checkpoint_interval,
    )
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        canvas.restore_checkpoint(checkpoint_path)
    canvas.segment_all(seed_policy, seed_policy_args, progress=progress)
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        Path(checkpoint_path).unlink()
    return InferenceResult(
        canvas.result(), canvas.seg_prob, canvas.origins, canvas.overlaps, dict(canvas.counters)
    )
