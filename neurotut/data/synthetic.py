"""A deterministic SNEMI3D-like volume with exact ground truth.

Neurites are smooth random tubes that mostly run across sections (and some in-plane), branch, and
pack densely; every voxel belongs to its nearest neurite skeleton (measured in nm, so the volume is
anisotropic like SNEMI3D's 30 x 6 x 6 nm voxels) unless it is too far from all of them
(extracellular space). Membranes between objects are dark and labelled 0, as in the real labels.
The EM-like image adds cytoplasm texture, dark mitochondria-like blobs, blur and noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from neurotut.data.registry import SNEMI3D_VOXEL_SIZE_NM


def _skeletons(
    shape: tuple[int, int, int],
    voxel_size: np.ndarray,
    n_objects: int,
    branch_prob: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rasterise random branching paths into a (Z, Y, X) uint32 volume of skeleton ids."""
    skel = np.zeros(shape, np.uint32)
    extent = np.asarray(shape) * voxel_size  # nm
    step = voxel_size[1] * 2.0  # nm per path step

    def walk(obj_id: int, start: np.ndarray, direction: np.ndarray, length_steps: int) -> None:
        pos = start.astype(float)
        d = direction / np.linalg.norm(direction)
        for _ in range(length_steps):
            d = d + rng.normal(0.0, 0.08, 3)
            d /= np.linalg.norm(d)
            pos = pos + d * step
            idx = np.floor(pos / voxel_size).astype(int)
            if np.any(idx < 0) or np.any(idx >= shape):
                return
            skel[tuple(idx)] = obj_id
            if rng.random() < branch_prob:
                side = np.cross(d, rng.normal(size=3))
                walk(obj_id, pos, d + 1.2 * side / (np.linalg.norm(side) + 1e-9), length_steps // 2)

    for obj_id in range(1, n_objects + 1):
        start = rng.random(3) * extent
        if rng.random() < 0.75:  # crosses sections, like most SNEMI3D neurites
            direction = np.array([1.0, *rng.normal(0.0, 0.25, 2)])
        else:  # runs in-plane
            direction = np.array([rng.normal(0.0, 0.1), *rng.normal(0.0, 1.0, 2)])
        n_steps = int(np.linalg.norm(extent) / step)
        for sign in (1.0, -1.0):  # grow both ways from the start point
            walk(obj_id, start, sign * direction, n_steps)
        skel[tuple(np.minimum((start / voxel_size).astype(int), np.asarray(shape) - 1))] = obj_id
    return skel


def _separate(labels: np.ndarray, membrane_px: int) -> np.ndarray:
    """Set to 0 every voxel that touches another non-zero label (in-plane: a membrane of about
    ``membrane_px`` pixels; across sections: the upper voxel of each touching pair)."""
    out = labels.copy()
    footprint = np.ones((1, 2 * membrane_px + 1, 2 * membrane_px + 1), bool)
    upper = ndimage.maximum_filter(labels, footprint=footprint)
    lower = ndimage.minimum_filter(np.where(labels == 0, np.iinfo(labels.dtype).max, labels), footprint=footprint)
    out[(upper != labels) | ((lower != labels) & (labels > 0))] = 0
    # across sections: a voxel whose lower neighbour carries a different non-zero id
    below = out[:-1]
    here = out[1:]
    here[(below != here) & (below > 0) & (here > 0)] = 0
    return out


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.uint32)


def make_synthetic(
    shape: tuple[int, int, int] = (40, 256, 256),
    seed: int = 0,
    n_objects: int | None = None,
    touching: bool = False,
    membrane_px: int = 2,
    noise: float = 10.0,
    blur_px: float = 1.0,
    missing_sections: tuple[int, ...] = (),
    shifted_sections: dict[int, tuple[int, int]] | None = None,
    voxel_size: tuple[float, float, float] = SNEMI3D_VOXEL_SIZE_NM,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Generate an SNEMI3D-like EM volume and its labels, deterministically from ``seed``.

    Args:
        shape: (Z, Y, X) in voxels.
        n_objects: number of neurites (default: about 6 per um^2 of section area, as in SNEMI3D).
        touching: keep objects touching without a 0 membrane (like the official SNEMI3D labels);
            the default separates them by 0-labelled membranes, like the SNEMI3D crop.
        membrane_px: half-width of the in-plane membranes, in pixels.
        noise, blur_px: Gaussian noise (grey levels) and in-plane blur (pixels) of the image.
        missing_sections: z indices whose image is replaced by a blank section (labels kept).
        shifted_sections: ``{z: (dy, dx)}``: from section z on, image and labels are shifted by
            (dy, dx) pixels (a misalignment; the labels follow the image).

    Returns:
        raw (Z, Y, X) uint8, labels (Z, Y, X) uint32 with 0 on membranes, voxel size (z, y, x) nm.
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (Z, Y, X) with positive sizes, got {shape}")
    rng = np.random.default_rng(seed)
    vs = np.asarray(voxel_size, float)
    if n_objects is None:
        area_um2 = shape[1] * shape[2] * vs[1] * vs[2] / 1e6
        n_objects = max(4, int(round(area_um2 * 6.0)))

    skel = _skeletons(tuple(shape), vs, n_objects, branch_prob=0.004, rng=rng)
    distance, indices = ndimage.distance_transform_edt(skel == 0, sampling=vs, return_indices=True)
    labels = skel[tuple(indices)]
    radius = rng.uniform(150.0, 450.0, n_objects + 1)  # nm; beyond it: extracellular space
    labels[distance > radius[labels]] = 0
    if not touching:
        labels = _separate(labels, membrane_px)
    labels = _relabel(labels)

    # image: bright cytoplasm with texture and organelles, dark membranes, grey outside
    n = int(labels.max()) + 1
    brightness = rng.normal(175.0, 12.0, n)
    brightness[0] = 70.0
    image = brightness[labels]
    texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, labels.shape), sigma=(0.5, 3.0, 3.0))
    image += 60.0 * texture
    blobs = ndimage.gaussian_filter(rng.random(labels.shape), sigma=(0.7, 4.0, 4.0))
    dark = (blobs > np.quantile(blobs, 0.97)) & (labels > 0)
    image[dark] -= 70.0
    if blur_px > 0:
        image = ndimage.gaussian_filter(image, sigma=(0.0, blur_px, blur_px))
    image += rng.normal(0.0, noise, image.shape)
    raw = np.clip(np.round(image), 0, 255).astype(np.uint8)

    for z in missing_sections:
        raw[z] = np.uint8(rng.normal(128.0, 3.0))
    for z, (dy, dx) in sorted((shifted_sections or {}).items()):
        raw[z:] = np.roll(raw[z:], (dy, dx), axis=(1, 2))
        labels[z:] = np.roll(labels[z:], (dy, dx), axis=(1, 2))
    return raw, labels, tuple(float(v) for v in vs)
