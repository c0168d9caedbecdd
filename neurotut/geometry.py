"""Small geometry helpers shared by every module: z, y, x triples and boxes.

Axis order is always z, y, x. A *box* is given by its start and size (or as slices); helpers
that take the original google/ffn order (x, y, z) say so in their name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Pos = tuple[int, int, int]


def as_zyx(values: int | Sequence[int], name: str, minimum: int | None = 0) -> Pos:
    """Three whole numbers >= ``minimum`` (z, y, x); a single int is used for all axes.

    ``minimum=None`` accepts any whole numbers (the caller checks the range). Used for radii,
    margins, FOV sizes, deltas and positions.
    """
    if np.isscalar(values):
        values = (values, values, values)
    values = tuple(values)
    if len(values) != 3:
        raise ValueError(f"{name} needs 3 values (z, y, x), got {values!r}")
    out = []
    for v in values:
        if isinstance(v, (float, np.floating)) and not float(v).is_integer():
            raise ValueError(f"{name} must be whole numbers of voxels, got {values!r}")
        iv = int(v)
        if minimum is not None and iv < minimum:
            bound = "must not be negative" if minimum == 0 else f"must be >= {minimum}"
            raise ValueError(f"{name} {bound}, got {values!r}")
        out.append(iv)
    return out[0], out[1], out[2]


def xyz_to_zyx(values: Sequence) -> tuple:
    """(x, y, z) -> (z, y, x)."""
    return tuple(values)[::-1]


def parse_xyz(value, name: str) -> Pos:
    """The original's ``{x:, y:, z:}`` message (missing axes are 0) or ``[x, y, z]`` -> (z, y, x)."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"x", "y", "z"}
        if unknown:
            raise ValueError(f"{name} has fields {sorted(unknown)}; use x, y and z")
        return int(value.get("z", 0)), int(value.get("y", 0)), int(value.get("x", 0))
    if isinstance(value, (list, tuple)) and len(value) == 3:
        x, y, z = (int(v) for v in value)
        return z, y, x
    raise ValueError(f"{name} must be {{x: .. y: .. z: ..}} or [x, y, z], got {value!r}")


def center_crop(shape: Sequence[int], crop: Sequence[int] | None) -> tuple[slice, ...]:
    """Slices of the centred ``crop`` (clipped to ``shape``) of a ``shape`` volume; None: all."""
    if crop is None:
        return tuple(slice(0, n) for n in shape)
    return tuple(
        slice(max(0, (n - c) // 2), max(0, (n - c) // 2) + min(n, c)) for n, c in zip(shape, crop)
    )


def inner_slices(shape: Sequence[int], margin: Sequence[int]) -> tuple[slice, ...]:
    """Slices of ``shape`` without ``margin`` voxels on both sides of every axis."""
    return tuple(slice(m, s - m) for s, m in zip(shape, margin))


def crop_padded(volume: np.ndarray, start: Sequence[int], shape: Sequence[int], fill) -> np.ndarray:
    """``volume[start : start + shape]`` where parts outside the volume are ``fill``."""
    out = np.full(tuple(shape), fill, dtype=volume.dtype)
    src, dst = [], []
    for s, n, size in zip(start, shape, volume.shape):
        lo, hi = max(s, 0), min(s + n, size)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def crop_centered(array: np.ndarray, center: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The (z, y, x) box of ``size`` whose middle voxel (index ``size // 2``) is ``center``.

    Start = ``center - (size - 1) // 2``, as the original's patch loader. Raises ValueError when
    the box leaves the array (the original does not pad; the sampler's margin must prevent it).
    """
    starts = [int(c) - (int(s) - 1) // 2 for c, s in zip(center, size)]
    if any(a < 0 or a + s > n for a, s, n in zip(starts, size, array.shape)):
        raise ValueError(
            f"a patch of size (z, y, x) {tuple(size)} around {tuple(int(c) for c in center)} leaves "
            f"the volume of shape {array.shape}; sample centres at least {tuple(s // 2 for s in size)} "
            "voxels from every border (the coordinates' margin)"
        )
    return array[tuple(slice(a, a + s) for a, s in zip(starts, size))]


def boxes_overlap(a: Sequence[int], b: Sequence[int], size: Sequence[int]) -> bool:
    """Whether the boxes of ``size`` centred on ``a`` and on ``b`` are closer than ``size`` on
    every axis (z, y, x)."""
    return all(abs(a[i] - b[i]) < size[i] for i in range(3))
