"""Training augmentations of the Superhuman recipe (``specs/superhuman_revnet.md`` A3).

Geometric (applied to the image, the labels and the valid mask together, before affinities are
computed from the labels):

* :func:`flip_volume`: the 16 variants of z, y and x reflections and the y/x transpose;
* :func:`misalign`: translate one section ("slip") or every section above a random z.

Image-only (the labels stay the truth, the network has to see through the defect):

* :func:`missing_sections`: blank whole sections, or some quadrants around a random point;
* :func:`blur_sections`: Gaussian out-of-focus blur of whole or partial sections;
* :func:`greyscale`: brightness, contrast and gamma changes, per section or for the whole patch.

Affinities can also be transformed *after* they were computed: :func:`flip_affinities` does it
correctly (a reflected axis shifts its channels by their offset; the transpose swaps the y and x
channels), which is what test-time augmentation needs to map predictions back.

Arrays are ``(Z, Y, X)``; affinities ``(C, Z, Y, X)``. Every random choice comes from the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from neurotut.affinity import check_offsets

N_VARIANTS = 16


# --------------------------------------------------------------------------------------------
# the 16 flip/transpose variants
# --------------------------------------------------------------------------------------------


def variant_axes(variant: int) -> tuple[bool, bool, bool, bool]:
    """``(flip_z, flip_y, flip_x, transpose_yx)`` of a variant 0..15 (bits 0..3).

    The flips are applied first, then the transpose.
    """
    if not 0 <= int(variant) < N_VARIANTS:
        raise ValueError(f"variant must be in 0..15, got {variant}")
    v = int(variant)
    return bool(v & 1), bool(v & 2), bool(v & 4), bool(v & 8)


def inverse_variant(variant: int) -> int:
    """The variant that undoes ``variant``.

    Flips then transpose is undone by the transpose then the same flips, i.e. by flips with the y
    and x flags exchanged, then the transpose.
    """
    fz, fy, fx, tr = variant_axes(variant)
    if tr:
        fy, fx = fx, fy
    return int(fz) | int(fy) << 1 | int(fx) << 2 | int(tr) << 3


def flip_volume(volume: np.ndarray, variant: int) -> np.ndarray:
    """Apply a variant to the last three axes ``(..., Z, Y, X)`` (returns a view when possible).

    The transpose needs Y == X only if you want the shape kept; otherwise Y and X swap.
    """
    fz, fy, fx, tr = variant_axes(variant)
    if volume.ndim < 3:
        raise ValueError(f"need (..., Z, Y, X), got shape {volume.shape}")
    axes = [ax for ax, on in zip((-3, -2, -1), (fz, fy, fx)) if on]
    out = np.flip(volume, axis=axes) if axes else volume
    if tr:
        out = np.swapaxes(out, -1, -2)
    return out


def _shift(a: np.ndarray, axis: int, d: int) -> np.ndarray:
    """``out[i] = a[i - d]`` along ``axis`` (zero/False where ``i - d`` is outside)."""
    out = np.zeros_like(a)
    n = a.shape[axis]
    if abs(d) >= n:
        return out
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if d >= 0:
        src[axis], dst[axis] = slice(0, n - d), slice(d, n)
    else:
        src[axis], dst[axis] = slice(-d, n), slice(0, n + d)
    out[tuple(dst)] = a[tuple(src)]
    return out


def flip_affinities(
    affs: np.ndarray, variant: int, offsets: Sequence[Sequence[int]]
) -> np.ndarray:
    """Transform ``(C, Z, Y, X)`` affinities (or their bool mask) of ``labels`` into those of
    ``flip_volume(labels, variant)``.

    A reflection along an axis turns the edge ``(v - d, v)`` around, so the value moves to the
    other end of the edge: the reflected channel is shifted by its offset along that axis (edges
    that now start outside the volume get 0). The transpose exchanges y and x, so the channel of
    offset ``(dz, dy, dx)`` is taken from the channel of ``(dz, dx, dy)``, which must exist.

    Exact: ``flip_affinities(affinities(l), k, offs) == affinities(flip_volume(l, k), offs)``.
    Offsets must be axis-aligned along the reflected axes (as the Superhuman ones are).
    """
    offs = check_offsets(offsets)
    affs = np.asarray(affs)
    if affs.ndim != 4 or affs.shape[0] != len(offs):
        raise ValueError(f"affinities of shape {affs.shape} do not fit {len(offs)} offsets")
    fz, fy, fx, tr = variant_axes(variant)
    channels = []
    for c, off in enumerate(offs):
        a = affs[c]
        for axis, on in zip((0, 1, 2), (fz, fy, fx)):
            if on and off[axis] and sum(1 for d in off if d) > 1:
                raise ValueError(
                    f"reflecting axis {'zyx'[axis]} turns the diagonal offset {off} into one that "
                    "is not in the set; flip_affinities supports axis-aligned offsets"
                )
            if on:
                a = _shift(np.flip(a, axis=axis), axis, off[axis])
        channels.append(a)
    out = np.stack(channels)
    if tr:
        index = {o: c for c, o in enumerate(offs)}
        try:
            order = [index[(dz, dx, dy)] for dz, dy, dx in offs]
        except KeyError as exc:
            raise ValueError(
                f"the y/x transpose needs the swapped offset of every offset; {exc.args[0]} is "
                "missing"
            ) from None
        out = np.swapaxes(out[order], -1, -2)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------
# misalignment
# --------------------------------------------------------------------------------------------


def misalign(
    arrays: Sequence[np.ndarray],
    max_shift: int,
    rng: np.random.Generator,
    slip_prob: float = 0.3,
) -> tuple[list[np.ndarray], dict]:
    """Misalign sections by cropping them at shifted positions.

    Every array is ``(Z, Y + 2*max_shift, X + 2*max_shift)``; the result is ``(Z, Y, X)``: the
    centre for unaffected sections, the centre moved by ``(sy, sx)`` for the affected ones. ``sy``
    and ``sx`` are each uniform in ``0..max_shift`` with a random sign. With probability
    ``slip_prob`` one section slips; otherwise every section from a random ``z0 >= 1`` on moves.
    The same shift applies to every array (image, labels, mask stay consistent).

    Returns the cropped arrays and ``{"z": affected section indices, "shift": (sy, sx)}``.
    """
    arrays = [np.asarray(a) for a in arrays]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays) or len(shape) != 3:
        raise ValueError("misalign takes (Z, Y, X) arrays of one shape")
    t = int(max_shift)
    z, y, x = shape[0], shape[1] - 2 * t, shape[2] - 2 * t
    if y < 1 or x < 1:
        raise ValueError(f"arrays of shape {shape} are too small for max_shift {t}")
    sy = int(rng.integers(0, t + 1)) * (1 if rng.random() < 0.5 else -1)
    sx = int(rng.integers(0, t + 1)) * (1 if rng.random() < 0.5 else -1)
    if z < 2:
        affected = np.zeros(z, bool)
    elif rng.random() < slip_prob:
        affected = np.zeros(z, bool)
        affected[int(rng.integers(0, z))] = True
    else:
        affected = np.arange(z) >= int(rng.integers(1, z))
    outs = []
    for a in arrays:
        out = np.empty((z, y, x), dtype=a.dtype)
        out[~affected] = a[~affected, t : t + y, t : t + x]
        out[affected] = a[affected, t + sy : t + sy + y, t + sx : t + sx + x]
        outs.append(out)
    return outs, {"z": np.flatnonzero(affected).tolist(), "shift": (sy, sx)}


# --------------------------------------------------------------------------------------------
# image-only defects
# --------------------------------------------------------------------------------------------


def _n_sections(z: int, max_sections: int, rng: np.random.Generator) -> int:
    """How many sections a defect hits: 1..max_sections, at most half the patch (>= 1)."""
    return min(int(rng.integers(1, max(1, max_sections) + 1)), max(1, z // 2))


def _quadrant_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random non-empty set of the four quadrants around a random point, as a (Y, X) mask."""
    y, x = shape
    cy, cx = int(rng.integers(0, y + 1)), int(rng.integers(0, x + 1))
    chosen = rng.random(4) < 0.5
    if not chosen.any():
        chosen[int(rng.integers(0, 4))] = True
    mask = np.zeros(shape, bool)
    for (sy, sx), on in zip(
        [(slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, x)),
         (slice(cy, y), slice(0, cx)), (slice(cy, y), slice(cx, x))], chosen
    ):
        if on:
            mask[sy, sx] = True
    return mask


def missing_sections(
    raw: np.ndarray, rng: np.random.Generator, max_sections: int = 10, partial_prob: float = 0.5
) -> tuple[np.ndarray, list[int]]:
    """Blank sections of a ``(Z, Y, X)`` float image in [0, 1] with a random grey value.

    Each chosen section is blanked fully or (with ``partial_prob``) in a random set of quadrants
    around a random point (Superhuman's ``mix`` mode). Returns a new array and the sections hit.
    """
    out = np.array(raw, dtype=np.float32, copy=True)
    z = out.shape[0]
    sections = sorted(rng.choice(z, size=_n_sections(z, max_sections, rng), replace=False).tolist())
    for s in sections:
        value = np.float32(rng.random())
        if rng.random() < partial_prob:
            out[s][_quadrant_mask(out.shape[1:], rng)] = value
        else:
            out[s] = value
    return out, sections


def blur_sections(
    raw: np.ndarray,
    rng: np.random.Generator,
    max_sections: int = 10,
    sigma_max: float = 5.0,
    partial_prob: float = 0.5,
) -> tuple[np.ndarray, list[int]]:
    """Out-of-focus sections: Gaussian blur with sigma ~ U[0, sigma_max] px, of the whole section
    or (with ``partial_prob``) of some quadrants. Returns a new array and the sections hit."""
    out = np.array(raw, dtype=np.float32, copy=True)
    z = out.shape[0]
    sections = sorted(rng.choice(z, size=_n_sections(z, max_sections, rng), replace=False).tolist())
    for s in sections:
        blurred = ndimage.gaussian_filter(out[s], sigma=float(rng.uniform(0, sigma_max)))
        if rng.random() < partial_prob:
            region = _quadrant_mask(out.shape[1:], rng)
            out[s][region] = blurred[region]
        else:
            out[s] = blurred
    return out, sections


def greyscale(
    raw: np.ndarray,
    rng: np.random.Generator,
    contrast: float = 0.3,
    brightness: float = 0.3,
    per_section: bool | None = None,
) -> np.ndarray:
    """Random contrast, brightness and gamma of a ``(Z, Y, X)`` float image in [0, 1].

    ``x * (1 + c) + b`` with ``c ~ U[-contrast/2, contrast/2]``, ``b ~ U[-brightness/2,
    brightness/2]``, clipped to [0, 1], then ``x ** 2**g`` with ``g ~ U[-1, 1]``. Per section
    ("2D") or for the whole patch ("3D"); ``per_section=None`` picks one at random.
    """
    out = np.array(raw, dtype=np.float32, copy=True)
    if per_section is None:
        per_section = bool(rng.random() < 0.5)
    groups = [out[s : s + 1] for s in range(out.shape[0])] if per_section else [out]
    for g in groups:
        g *= np.float32(1 + (rng.random() - 0.5) * contrast)
        g += np.float32((rng.random() - 0.5) * brightness)
        np.clip(g, 0.0, 1.0, out=g)
        g **= np.float32(2.0 ** (rng.random() * 2 - 1))
    return out


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations a training patch gets, and how strong.

    Probabilities are per patch. The Superhuman recipe skips each defect with probability 0.3
    (i.e. applies it with 0.7), with up to 10 missing or blurred sections and shifts up to 17 px.
    """

    flips: bool = True
    misalign_prob: float = 0.5
    max_shift: int = 17
    slip_prob: float = 0.3
    missing_prob: float = 0.3
    max_missing: int = 10
    blur_prob: float = 0.3
    max_blur: int = 10
    sigma_max: float = 5.0
    greyscale_prob: float = 0.5
    contrast: float = 0.3
    brightness: float = 0.3

    def __post_init__(self) -> None:
        for name in ("misalign_prob", "slip_prob", "missing_prob", "blur_prob", "greyscale_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(flips=False, misalign_prob=0.0, missing_prob=0.0, blur_prob=0.0, greyscale_prob=0.0)

    @property
    def shift_margin(self) -> int:
        """Extra context per side in y and x needed for misalignment (0 when it is off)."""
        return self.max_shift if self.misalign_prob > 0 else 0

    def to_dict(self) -> dict:
        return asdict(self)


def augment_image(raw: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """The image-only augmentations of ``config`` on a ``(Z, Y, X)`` float image in [0, 1]."""
    out = np.asarray(raw, dtype=np.float32)
    if config.missing_prob and rng.random() < config.missing_prob:
        out, _ = missing_sections(out, rng, config.max_missing)
    if config.blur_prob and rng.random() < config.blur_prob:
        out, _ = blur_sections(out, rng, config.max_blur, config.sigma_max)
    if config.greyscale_prob and rng.random() < config.greyscale_prob:
        out = greyscale(out, rng, config.contrast, config.brightness)
    return out
