"""Seed policies: where flood filling starts (google/ffn ``seed.py``).

A seed policy is an iterator over ``(z, y, x)`` points of one canvas. It computes its list of
points once (``coords``, ``(N, 3) int64``), then hands them out in order, skipping points closer
than ``margin`` to the border (the field of view would leave the volume there). Its state is the
index of the next point, so an interrupted inference resumes at the same seed
(:meth:`SeedPolicy.get_state` / :meth:`SeedPolicy.set_state`).

* :class:`PolicyPeaks` (the default of the original): points far from image edges. 3-D Sobel
  gradient magnitude; an adaptive threshold (edge = magnitude above its Gaussian blur with
  sigma 49/6, mode 'reflect'); masked voxels count as edges; Euclidean distance transform of the
  non-edge voxels; fixed-seed noise of 1e-4 breaks ties; local maxima with ``min_distance=3``,
  ``threshold_abs=0``, ``threshold_rel=0``; sorted in raster (z, y, x) order.
* :class:`PolicyGrid3d`: a regular grid of step 16, repeated at the offsets 0, 8, 4, 12, 2, 10, 14.
* :class:`PolicyMax`: every voxel, brightest first.

The image given to a policy is the **normalised** image the network sees, as in the original.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from neurotut.geometry import as_zyx

#: sigma of the Gaussian blur that sets PolicyPeaks' local edge threshold (the original's 49/6)
PEAKS_SIGMA = 49.0 / 6.0
#: the original's fixed seed for PolicyPeaks' tie-breaking noise
PEAKS_NOISE_SEED = 42


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be a 3-D (Z, Y, X) volume, got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise TypeError(f"image must be numeric, got {image.dtype}")
    return image


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} differs from the image shape {tuple(shape)}")
    return mask


class SeedPolicy:
    """Base class: an iterator over seed points ``(z, y, x)`` of a ``(Z, Y, X)`` image.

    Args:
        image: the normalised image ``(Z, Y, X)`` (float32 in inference).
        margin: ``(z, y, x)`` half-size of the field of view; points with fewer voxels than this
            to any border are skipped when iterating (``coords`` still holds them).
        mask: optional ``(Z, Y, X)`` bool, True = excluded (policies may use it).

    Subclasses implement :meth:`compute_coords`.
    """

    name = "SeedPolicy"

    def __init__(
        self,
        image: np.ndarray,
        margin: int | Sequence[int] = 0,
        mask: np.ndarray | None = None,
    ):
        self.image = _check_image(image)
        self.shape = tuple(int(s) for s in self.image.shape)
        self.margin = np.asarray(as_zyx(margin, "margin"), dtype=np.int64)
        self.mask = _check_mask(mask, self.shape)
        self._coords: np.ndarray | None = None
        self.idx = 0

    def compute_coords(self) -> np.ndarray:
        """All candidate points in the order they will be tried, ``(N, 3) int64`` (z, y, x)."""
        raise NotImplementedError

    @property
    def coords(self) -> np.ndarray:
        """``(N, 3) int64`` candidate points (computed on first use)."""
        if self._coords is None:
            coords = np.asarray(self.compute_coords(), dtype=np.int64).reshape(-1, 3)
            self._coords = coords
        return self._coords

    def in_bounds(self, point: Sequence[int]) -> bool:
        """True when the field of view around ``point`` fits inside the image."""
        p = np.asarray(point)
        return bool(np.all(p - self.margin >= 0) and np.all(p + self.margin < self.shape))

    def valid_coords(self) -> np.ndarray:
        """The points iteration will yield (those away from the border), ``(M, 3) int64``."""
        c = self.coords
        ok = np.all(c - self.margin >= 0, axis=1) & np.all(c + self.margin < self.shape, axis=1)
        return c[ok]

    def __iter__(self) -> SeedPolicy:
        return self

    def __next__(self) -> tuple[int, int, int]:
        coords = self.coords
        while self.idx < len(coords):
            point = coords[self.idx]
            self.idx += 1
            if self.in_bounds(point):
                return int(point[0]), int(point[1]), int(point[2])
        raise StopIteration

    def __len__(self) -> int:
        """Number of candidate points, border points included."""
        return len(self.coords)

    def get_state(self) -> dict:
        """What a checkpoint stores: the next index and the number of points (a consistency check)."""
        return {"policy": self.name, "idx": int(self.idx), "n_coords": int(len(self.coords))}

    def set_state(self, state: dict) -> None:
        """Continue from a state of :meth:`get_state` taken on the same image."""
        if state.get("policy") != self.name:
            raise ValueError(
                f"the checkpoint was written with seed policy {state.get('policy')!r}, this run "
                f"uses {self.name!r}"
            )
        if int(state["n_coords"]) != len(self.coords):
            raise ValueError(
                f"the checkpoint's seed policy had {state['n_coords']} points, this image gives "
                f"{len(self.coords)}: the image or the policy's settings changed"
            )
        self.idx = int(state["idx"])


def peaks_maps(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    sigma: float = PEAKS_SIGMA,
    sampling: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The intermediate maps of :class:`PolicyPeaks`.

    Args:
        image: normalised image ``(Z, Y, X)``.
        mask: optional ``(Z, Y, X)`` bool, True = excluded; counted as edges.
        sigma: blur of the adaptive threshold (voxels).
        sampling: voxel size ``(z, y, x)`` for an anisotropic distance transform (the newer
            google/ffn); None measures distances in voxels (the classic code).

    Returns:
        magnitude ``(Z, Y, X) float32`` (Sobel gradient magnitude), edges ``(Z, Y, X) bool``
        (magnitude above its blurred version, or masked), distance ``(Z, Y, X) float32``
        (distance of every non-edge voxel to the nearest edge).
    """
    image = _check_image(image)
    mask = _check_mask(mask, image.shape)
    magnitude = ndimage.generic_gradient_magnitude(image.astype(np.float32), ndimage.sobel)
    threshold = np.zeros(magnitude.shape, dtype=np.float32)
    ndimage.gaussian_filter(magnitude, sigma, output=threshold, mode="reflect")
    edges = magnitude > threshold
    if mask is not None:
        edges[mask] = True
    distance = ndimage.distance_transform_edt(~edges, sampling=sampling).astype(np.float32)
    return magnitude, edges, distance


class PolicyPeaks(SeedPolicy):
    """Seeds at local maxima of the distance to image edges (the original's default policy).

    Args:
        min_distance: ``peak_local_max``'s minimum distance between peaks (the original: 3).
        sigma: blur of the adaptive edge threshold (the original: 49/6).
        sampling: voxel size ``(z, y, x)`` for the distance transform, or None (voxels, classic).
        noise_seed: seed of the tie-breaking noise U(0, 1) * 1e-4 (the original: 42, drawn
            with NumPy's legacy generator, so the noise is the original's exactly).
    """

    name = "PolicyPeaks"

    def __init__(
        self,
        image: np.ndarray,
        margin: int | Sequence[int] = 0,
        mask: np.ndarray | None = None,
        min_distance: int = 3,
        sigma: float = PEAKS_SIGMA,
        sampling: Sequence[float] | None = None,
        noise_seed: int = PEAKS_NOISE_SEED,
    ):
        super().__init__(image, margin, mask)
        self.min_distance = int(min_distance)
        self.sigma = float(sigma)
        self.sampling = None if sampling is None else tuple(float(s) for s in sampling)
        self.noise_seed = int(noise_seed)

    def compute_coords(self) -> np.ndarray:
        from skimage.feature import peak_local_max

        _, _, distance = peaks_maps(self.image, self.mask, self.sigma, self.sampling)
        noise = np.random.RandomState(self.noise_seed).random_sample(distance.shape)
        peaks = peak_local_max(
            distance + noise * 1e-4,
            min_distance=self.min_distance,
            threshold_abs=0,
            threshold_rel=0,
        )
        peaks = np.asarray(peaks, dtype=np.int64).reshape(-1, 3)
        order = np.lexsort((peaks[:, 2], peaks[:, 1], peaks[:, 0]))  # raster order
        return peaks[order]


class PolicyGrid3d(SeedPolicy):
    """Points on a regular 3-D grid of ``step``, once per offset in ``offsets`` (same on all axes)."""

    name = "PolicyGrid3d"

    def __init__(
        self,
        image: np.ndarray,
        margin: int | Sequence[int] = 0,
        mask: np.ndarray | None = None,
        step: int = 16,
        offsets: Sequence[int] = (0, 8, 4, 12, 2, 10, 14),
    ):
        super().__init__(image, margin, mask)
        if step < 1:
            raise ValueError(f"step must be positive, got {step}")
        self.step = int(step)
        self.offsets = tuple(int(o) for o in offsets)

    def compute_coords(self) -> np.ndarray:
        parts = []
        for off in self.offsets:
            axes = [np.arange(off, s, self.step) for s in self.shape]
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
            parts.append(grid)
        return np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)


class PolicyMax(SeedPolicy):
    """Every voxel, in order of decreasing image intensity (ties in raster order)."""

    name = "PolicyMax"

    def compute_coords(self) -> np.ndarray:
        flat = np.argsort(-self.image.ravel().astype(np.float64), kind="stable")
        return np.stack(np.unravel_index(flat, self.shape), axis=1)


SEED_POLICIES: dict[str, type[SeedPolicy]] = {
    cls.name: cls for cls in (PolicyPeaks, PolicyGrid3d, PolicyMax)
}


def make_seed_policy(
    name: str,
    image: np.ndarray,
    margin: int | Sequence[int] = 0,
    mask: np.ndarray | None = None,
    **kwargs,
) -> SeedPolicy:
    """A seed policy by its original name (``"PolicyPeaks"``, ``"PolicyGrid3d"``, ``"PolicyMax"``)."""
    try:
        cls = SEED_POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown seed policy {name!r}; available: {sorted(SEED_POLICIES)}") from None
    return cls(image, margin, mask, **kwargs)
