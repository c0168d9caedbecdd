"""FFN training augmentation (google/ffn ``training/augmentation.py``): a random permutation
of some axes and flips of each axis, applied alike to image and labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """An axis permutation of (z, y, x) and a flip flag per axis, applied permutation first."""

    permutation: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Augment a (Z, Y, X) array (a copy, C-contiguous)."""
        out = np.transpose(array, self.permutation)
        flip_axes = tuple(a for a, f in enumerate(self.flips) if f)
        if flip_axes:
            out = np.flip(out, flip_axes)
        return np.ascontiguousarray(out)

    def as_dict(self) -> dict:
        return {"permutation": list(self.permutation), "flips": list(self.flips)}


def draw_augmentation(
    rng: np.random.Generator, permutable_axes: Sequence[int] = (1, 2), reflectable_axes: Sequence[int] = (0, 1, 2)
) -> Augmentation:
    """A random :class:`Augmentation`: the permutable axes in a random order, each reflectable
    axis flipped with p = 1/2. Draws ``rng.permutation`` (when 2+ axes are permutable) and then one
    ``rng.random()`` per reflectable axis, in that order."""
    permutation = [0, 1, 2]
    if len(permutable_axes) > 1:
        order = rng.permutation(len(permutable_axes))
        for slot, k in zip(permutable_axes, order):
            permutation[slot] = permutable_axes[int(k)]
    flips = [False, False, False]
    for axis in reflectable_axes:
        flips[axis] = bool(rng.random() < 0.5)
    return Augmentation(tuple(permutation), tuple(flips))  # type: ignore[arg-type]
