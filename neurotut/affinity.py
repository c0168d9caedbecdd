"""From labels to affinity graphs (the Superhuman / waterz convention).

An *affinity* for an offset ``d = (dz, dy, dx)`` is stored at the later voxel ``v`` of the edge
``(v - d, v)``: channel ``c`` at voxel ``v`` is 1 when ``v`` and ``v - d`` carry the same
**non-zero** label, else 0. Label 0 (membrane, background, unlabelled) has affinity 0 to
everything, including to other 0 voxels. Edges that leave the volume do not exist; they are 0 in
the affinities and False in :func:`affinity_mask`.

Arrays are ``(Z, Y, X)`` for labels and ``(C, Z, Y, X)`` for affinities, channels first, channel
``c`` belonging to ``offsets[c]``.

The default offsets are the 12 of Superhuman (Lee et al. 2017): first the three nearest neighbours
in the order x, y, z, then x/y at 3, 9, 27 voxels and z at 2, 3, 4 sections. waterz wants the
nearest-neighbour channels in the order z, y, x: use :func:`nearest_neighbour_channels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Offset = tuple[int, int, int]

#: the 12 Superhuman offsets (z, y, x), in the order of the network's output channels
SUPERHUMAN_OFFSETS: tuple[Offset, ...] = (
    (0, 0, 1),
    (0, 1, 0),
    (1, 0, 0),
    (0, 0, 3),
    (0, 3, 0),
    (2, 0, 0),
    (0, 0, 9),
    (0, 9, 0),
    (3, 0, 0),
    (0, 0, 27),
    (0, 27, 0),
    (4, 0, 0),
)

#: the nearest-neighbour offsets in the channel order waterz reads: z, y, x
WATERZ_OFFSETS: tuple[Offset, ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def check_offsets(offsets: Sequence[Sequence[int]]) -> tuple[Offset, ...]:
    """Validate offsets: a non-empty list of distinct, non-zero ``(dz, dy, dx)`` integer triples."""
    result: list[Offset] = []
    for off in offsets:
        arr = np.asarray(off)
        if arr.shape != (3,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"an offset must be three integers (dz, dy, dx), not {off!r}")
        triple = (int(arr[0]), int(arr[1]), int(arr[2]))
        if triple == (0, 0, 0):
            raise ValueError("the offset (0, 0, 0) links a voxel to itself; it is not an edge")
        result.append(triple)
    if not result:
        raise ValueError("at least one offset is needed")
    if len(set(result)) != len(result):
        raise ValueError(f"offsets must be distinct, got {result}")
    return tuple(result)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (Z, Y, X) volume, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    return labels


def _edge_slices(shape: Sequence[int], offset: Offset) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices ``(later, earlier)`` such that ``volume[later]`` holds ``v`` and ``volume[earlier]``
    holds ``v - offset`` for every edge inside the volume; None when no edge fits."""
    later, earlier = [], []
    for n, d in zip(shape, offset):
        if abs(d) >= n:
            return None
        if d >= 0:
            later.append(slice(d, n))
            earlier.append(slice(0, n - d))
        else:
            later.append(slice(0, n + d))
            earlier.append(slice(-d, n))
    return tuple(later), tuple(earlier)


def affinities(
    labels: np.ndarray,
    offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
    dtype: npt.DTypeLike = np.float32,
) -> np.ndarray:
    """Ground-truth affinities of a label volume.

    Args:
        labels: ``(Z, Y, X)`` integer labels; 0 is membrane/background/unlabelled.
        offsets: ``C`` offsets ``(dz, dy, dx)``; default the 12 Superhuman offsets.
        dtype: output dtype, ``float32`` by default (what waterz and torch losses read).

    Returns:
        ``(C, Z, Y, X)`` array: channel ``c`` at voxel ``v`` is 1 iff ``labels[v] ==
        labels[v - offsets[c]] != 0``; 0 elsewhere, including edges that leave the volume.
    """
    labels = _check_labels(labels)
    offs = check_offsets(offsets)
    out = np.zeros((len(offs),) + labels.shape, dtype=dtype)
    for c, off in enumerate(offs):  # one vectorised comparison per channel
        sl = _edge_slices(labels.shape, off)
        if sl is None:
            continue
        later, earlier = sl
        a = labels[later]
        same = a == labels[earlier]
        same &= a != 0
        out[(c,) + later] = same
    return out


def affinity_mask(
    shape: Sequence[int],
    offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Which affinities are real edges, for masking a loss.

    Args:
        shape: ``(Z, Y, X)`` of the volume.
        offsets: the ``C`` offsets of the affinity channels.
        valid: optional ``(Z, Y, X)`` bool mask of voxels whose labels can be trusted (e.g. the
            annotated region). An edge is valid only when **both** of its voxels are (the DeepEM
            convention; DataProvider used either one).

    Returns:
        ``(C, Z, Y, X)`` bool: True where ``v - offsets[c]`` lies inside the volume (and both ends
        are valid).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (Z, Y, X), got {shape}")
    offs = check_offsets(offsets)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != shape:
            raise ValueError(f"valid mask has shape {valid.shape}, expected {shape}")
    out = np.zeros((len(offs),) + shape, dtype=bool)
    for c, off in enumerate(offs):
        sl = _edge_slices(shape, off)
        if sl is None:
            continue
        later, earlier = sl
        if valid is None:
            out[(c,) + later] = True
        else:
            out[(c,) + later] = valid[later] & valid[earlier]
    return out


def erode_borders(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Open a 0 gap between touching objects, in-plane (slice by slice).

    A voxel is set to 0 when the ``(2*width+1) x (2*width+1)`` window around it in its own z-slice
    contains more than one non-zero label (Kisuk Lee's rule for SNEMI3D, whose official labels
    touch without membranes). Objects that already sit apart are unchanged; z is left alone because
    sections are 5x thicker than pixels.

    Args:
        labels: ``(Z, Y, X)`` non-negative integer labels.
        width: half-size of the in-plane window in pixels (>= 1); 0 returns a copy.

    Returns:
        a new ``(Z, Y, X)`` array of the same dtype.
    """
    labels = _check_labels(labels)
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    if width == 0 or labels.size == 0 or labels.dtype == bool:  # bool: a single object
        return labels.copy()
    size = (1, 2 * width + 1, 2 * width + 1)
    highest = ndimage.maximum_filter(labels, size=size, mode="nearest")
    # smallest non-zero label in the window: lift 0 above every label first
    big = np.iinfo(labels.dtype).max
    lifted = np.where(labels == 0, big, labels)
    lowest = ndimage.minimum_filter(lifted, size=size, mode="nearest")
    out = labels.copy()
    out[(highest != lowest) & (highest != 0)] = 0
    return out


def nearest_neighbour_channels(offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS) -> list[int]:
    """Indices of the channels for offsets (1,0,0), (0,1,0), (0,0,1), in that (waterz) order.

    Raises ValueError naming the missing ones when an offset is absent.
    """
    offs = check_offsets(offsets)
    missing = [o for o in WATERZ_OFFSETS if o not in offs]
    if missing:
        raise ValueError(
            f"the affinities lack the nearest-neighbour offsets {missing}; watershed and "
            f"agglomeration need (1,0,0), (0,1,0) and (0,0,1). Offsets given: {list(offs)}"
        )
    return [offs.index(o) for o in WATERZ_OFFSETS]


def add_noise(
    affs: np.ndarray,
    sigma: float,
    rng: np.random.Generator,
    smooth: float | Sequence[float] = 0.0,
) -> np.ndarray:
    """Affinities plus Gaussian noise of standard deviation ``sigma``, clipped to [0, 1].

    Args:
        affs: ``(C, Z, Y, X)`` float affinities.
        sigma: standard deviation of the noise.
        rng: random generator (the result is deterministic given its state).
        smooth: Gaussian smoothing of the noise in voxels, a scalar or ``(z, y, x)``; the noise is
            rescaled to standard deviation ``sigma`` afterwards. Smooth noise makes the
            spatially correlated errors of a real network (weak patches of membrane) rather than
            independent flips that agglomeration averages away.

    Returns:
        a new float32 ``(C, Z, Y, X)`` array.
    """
    affs = np.asarray(affs)
    if affs.ndim != 4:
        raise ValueError(f"affinities must be (C, Z, Y, X), got shape {affs.shape}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    noise = rng.standard_normal(affs.shape, dtype=np.float32)
    if np.any(np.asarray(smooth) > 0):
        width = np.broadcast_to(np.asarray(smooth, dtype=float), (3,))
        for c in range(noise.shape[0]):
            noise[c] = ndimage.gaussian_filter(noise[c], sigma=width)
            std = float(noise[c].std())
            if std > 0:
                noise[c] /= std
    noise *= np.float32(sigma)
    noise += affs
    return np.clip(noise, 0.0, 1.0, out=noise)


def blank_sections(
    affs: np.ndarray,
    sections: Sequence[int],
    offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
    value: float = 0.5,
) -> np.ndarray:
    """Simulate missing sections: every affinity of an edge touching a blank section gets ``value``.

    An edge ``(v - d, v)`` touches section ``s`` when ``v`` or ``v - d`` lies in it, so channel
    ``c`` changes at z = s and at z = s + dz (where those edges exist). A network that
    sees an empty section has no evidence there; 0.5 ("don't know") is what it tends to output.

    Args:
        affs: ``(C, Z, Y, X)`` float affinities for ``offsets``.
        sections: z indices of the missing sections.
        offsets: the ``C`` offsets of ``affs``.
        value: the affinity written on those edges.

    Returns:
        a new float32 ``(C, Z, Y, X)`` array.
    """
    affs = np.asarray(affs)
    offs = check_offsets(offsets)
    if affs.ndim != 4 or affs.shape[0] != len(offs):
        raise ValueError(f"affs of shape {affs.shape} do not fit {len(offs)} offsets")
    nz = affs.shape[1]
    out = affs.astype(np.float32, copy=True)
    for s in sections:
        if not 0 <= s < nz:
            raise ValueError(f"section {s} is outside 0..{nz - 1}")
        for c, off in enumerate(offs):
            sl = _edge_slices(affs.shape[1:], off)
            if sl is None:
                continue
            later = sl[0]  # where edges exist: only those are changed
            for z in {s, s + off[0]}:
                if later[0].start <= z < later[0].stop:
                    out[(c, z) + later[1:]] = value
    return out
