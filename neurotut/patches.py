"""Random, augmented training patches of an affinity network (``specs/superhuman_revnet.md`` A3).

The labels come with enough context around the patch that every long-range edge inside the patch
has both ends; image, labels and the valid mask are misaligned and flipped/transposed together,
then the affinities are computed from the augmented labels and cropped to the patch; the image
alone gets missing sections, blur and greyscale changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from neurotut.affinity import SUPERHUMAN_OFFSETS, affinities, affinity_mask, check_offsets
from neurotut.augment import AugmentConfig, augment_image, flip_volume, misalign
from neurotut.geometry import crop_padded
from neurotut.inference import raw_to_input


@dataclass
class Sample:
    """One training example: ``raw`` (1, Z, Y, X) float32 in [0, 1], ``target`` (C, Z, Y, X)
    float32 affinities, ``mask`` (C, Z, Y, X) bool (edges with both ends inside the volume and
    valid), ``variant`` (flip/transpose 0..15) and ``info`` (what the augmentations did)."""

    raw: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    variant: int = 0
    info: dict = field(default_factory=dict)


class PatchSampler:
    """Random, augmented training patches from one volume.

    Args:
        raw: ``(Z, Y, X)`` uint8 (or float in [0, 1]) image.
        labels: ``(Z, Y, X)`` integer labels, 0 = boundary/unlabelled.
        patch: ``(z, y, x)`` patch size.
        offsets: affinity offsets (one target channel each).
        augment: augmentation settings, None for none.
        valid: optional ``(Z, Y, X)`` bool mask of trustworthy labels.
    """

    def __init__(
        self,
        raw: np.ndarray,
        labels: np.ndarray,
        patch: Sequence[int],
        offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
        augment: AugmentConfig | None = None,
        valid: np.ndarray | None = None,
    ):
        raw, labels = np.asarray(raw), np.asarray(labels)
        if raw.ndim != 3 or raw.shape != labels.shape:
            raise ValueError(f"raw {raw.shape} and labels {labels.shape} must be one (Z, Y, X) shape")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integers, got {labels.dtype}")
        raw_to_input(raw[:1, :1, :1])  # dtype check with a clear message
        self.raw, self.labels = raw, labels
        self.valid = np.ones(raw.shape, bool) if valid is None else np.asarray(valid, bool)
        if self.valid.shape != raw.shape:
            raise ValueError(f"valid mask {self.valid.shape} does not match {raw.shape}")
        self.patch = tuple(int(p) for p in patch)
        self.offsets = check_offsets(offsets)
        self.augment = augment or AugmentConfig.none()
        self.margin = tuple(max(abs(o[a]) for o in self.offsets) for a in range(3))
        self.shift = self.augment.shift_margin
        need = (self.patch[0], self.patch[1] + 2 * self.shift, self.patch[2] + 2 * self.shift)
        if any(n < p for n, p in zip(raw.shape, need)):
            raise ValueError(
                f"volume {raw.shape} is too small for patches {self.patch}"
                + (f" with misalignment shifts of up to {self.shift} px" if self.shift else "")
            )

    def sample(self, rng: np.random.Generator, augment: bool = True) -> Sample:
        """A random patch; ``augment=False`` gives the plain patch (for validation)."""
        cfg = self.augment if augment else AugmentConfig.none()
        shift = self.shift
        p, m = self.patch, self.margin
        start = [int(rng.integers(lo, n - size - lo + 1)) for n, size, lo in
                 zip(self.raw.shape, p, (0, shift, shift))]
        # a block with the affinity margin on both sides (flips keep the patch centred) plus the
        # misalignment margin in y, x
        extra = (m[0], m[1] + shift, m[2] + shift)
        b_start = [s - e for s, e in zip(start, extra)]
        b_shape = [n + 2 * e for n, e in zip(p, extra)]
        raw = crop_padded(self.raw, b_start, b_shape, 0)
        labels = crop_padded(self.labels, b_start, b_shape, 0)
        valid = crop_padded(self.valid, b_start, b_shape, False)
        info: dict = {"start": start}
        if shift:
            if cfg.misalign_prob and rng.random() < cfg.misalign_prob:
                (raw, labels, valid), info["misalign"] = misalign(
                    [raw, labels, valid], shift, rng, cfg.slip_prob
                )
            else:
                crop = (slice(None), slice(shift, shift + p[1] + 2 * m[1]),
                        slice(shift, shift + p[2] + 2 * m[2]))
                raw, labels, valid = raw[crop], labels[crop], valid[crop]
        variant = 0
        if cfg.flips:
            variant = int(rng.integers(0, 16 if labels.shape[1] == labels.shape[2] else 8))
            raw, labels, valid = (np.ascontiguousarray(flip_volume(a, variant)) for a in (raw, labels, valid))
        target = affinities(labels, self.offsets)
        mask = affinity_mask(labels.shape, self.offsets, valid)
        core = tuple(slice(mm, mm + n) for mm, n in zip(m, p))
        target, mask = target[(slice(None),) + core], mask[(slice(None),) + core]
        image = augment_image(raw_to_input(raw[core]), cfg, rng) if augment else raw_to_input(raw[core])
        return Sample(
            np.ascontiguousarray(image[None]), np.ascontiguousarray(target),
            np.ascontiguousarray(mask), variant, info,
        )
