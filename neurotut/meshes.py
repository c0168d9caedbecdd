"""Surface meshes of segments: marching cubes at the true voxel size, then quadric decimation.

A :class:`Mesh` keeps the segment's id and size (voxels), so that a figure can say which object
it shows and how big it is. Vertices are in nm in (z, y, x) order, with voxel ``(i, j, k)`` centred
at ``(i, j, k) * voxel_size``: the surface of a segment lies half a voxel outside its outermost
voxel centres. Decimation uses fast-simplification (Fast-Quadric-Mesh-Simplification), which
keeps the shape while cutting the triangle count to a bound, so that an interactive figure of
several neurites stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mesh:
    """The surface of one segment.

    ``vertices``: (V, 3) float32, nm, (z, y, x); ``faces``: (F, 3) int32 indices into the vertices.
    """

    id: int
    size: int  # voxels of the segment
    vertices: np.ndarray
    faces: np.ndarray

    @property
    def n_faces(self) -> int:
        return int(len(self.faces))


def check_voxel_size(voxel_size: Sequence[float]) -> tuple[float, float, float]:
    """``voxel_size`` as three positive floats (z, y, x) in nm, or a ValueError."""
    values = tuple(float(v) for v in voxel_size)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x) in nm, got {tuple(voxel_size)}")
    return values  # type: ignore[return-value]


def segment_sizes(labels: np.ndarray) -> dict[int, int]:
    """``{id: voxels}`` of the non-zero segments of integer ``labels`` (any shape)."""
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise TypeError(f"labels must hold integer ids, got {labels.dtype}")
    ids, counts = np.unique(labels[labels != 0], return_counts=True)
    return {int(i): int(n) for i, n in zip(ids, counts)}


def largest_segments(labels: np.ndarray, n: int) -> list[int]:
    """Ids of the ``n`` largest non-zero segments, largest first (ties: smaller id first);
    fewer when ``labels`` holds fewer, an empty list when it holds none."""
    sizes = segment_sizes(labels)
    return sorted(sizes, key=lambda i: (-sizes[i], i))[: max(int(n), 0)]


def through_segments(labels: np.ndarray, n: int) -> list[int]:
    """Ids of the ``n`` largest segments that reach both the first and the last section (z),
    largest first; fewer (or none) when fewer segments run through the whole volume."""
    labels = np.asarray(labels)
    both = set(np.unique(labels[0]).tolist()) & set(np.unique(labels[-1]).tolist())
    both.discard(0)
    sizes = segment_sizes(labels)
    return sorted(both, key=lambda i: (-sizes[i], i))[: max(int(n), 0)]


def check_ids(labels: np.ndarray, ids: Sequence[int]) -> dict[int, int]:
    """The sizes of ``ids`` in ``labels``; a ValueError naming the ids it does not hold."""
    sizes = segment_sizes(labels)
    missing = [int(i) for i in ids if int(i) not in sizes]
    if missing:
        held = f"{len(sizes)} segments, ids {min(sizes)}..{max(sizes)}" if sizes else "no segment"
        raise ValueError(f"the segmentation has no segment {', '.join(map(str, missing))} (it holds {held})")
    return {int(i): sizes[int(i)] for i in ids}


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a triangle mesh to at most ``max_faces`` faces by quadric edge collapse.

    ``vertices`` (V, 3) float, ``faces`` (F, 3) int; returns float32 vertices and int32 faces.
    A mesh that is already small enough is returned unchanged.
    """
    import fast_simplification

    max_faces = int(max_faces)
    if max_faces < 4:
        raise ValueError(f"max_faces must be at least 4 (a tetrahedron), got {max_faces}")
    verts = np.asarray(vertices, np.float64)
    tris = np.asarray(faces, np.int32)
    target = max_faces
    while len(tris) > max_faces:
        reduction = 1.0 - target / len(tris)
        verts, tris = fast_simplification.simplify(verts, tris, target_reduction=reduction, agg=7.0)
        tris = np.asarray(tris, np.int32)
        target = max(4, int(target * 0.9))  # the library may stop a little above its target
    return verts.astype(np.float32), tris.astype(np.int32)


def segment_mesh(
    labels: np.ndarray,
    segment_id: int,
    voxel_size: Sequence[float],
    max_faces: int | None = 20_000,
    size: int | None = None,
) -> Mesh:
    """The surface of segment ``segment_id`` of ``labels`` (Z, Y, X) integers, in nm.

    Marching cubes runs on the segment's bounding box (padded, so the surface is closed at the
    volume's faces) with ``spacing=voxel_size``; the mesh is then decimated to at most
    ``max_faces`` triangles (None: not decimated). ``size``: the segment's voxel count, when known.
    """
    from skimage.measure import marching_cubes

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (Z, Y, X), got shape {labels.shape}")
    spacing = np.asarray(check_voxel_size(voxel_size))
    mask = labels == segment_id
    if size is None:
        size = int(mask.sum())
    if size == 0:
        raise ValueError(f"the segmentation has no segment {segment_id}")
    coords = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    lo = np.array([c[0] for c in coords])
    hi = np.array([c[-1] + 1 for c in coords])
    box = np.pad(mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(box, 0.5, spacing=tuple(spacing))
    verts += (lo - 1) * spacing  # box index 0 is the padding before voxel lo
    if max_faces is not None:
        verts, faces = decimate(verts, faces, max_faces)
    return Mesh(int(segment_id), int(size), verts.astype(np.float32), np.asarray(faces, np.int32))


def segment_meshes(
    labels: np.ndarray,
    ids: Sequence[int],
    voxel_size: Sequence[float],
    max_faces: int | None = 60_000,
) -> list[Mesh]:
    """Meshes of ``ids`` (in that order) of ``labels`` (Z, Y, X) integers, in nm.

    ``max_faces`` bounds the triangles of all meshes together (None: no bound); each segment gets
    4 triangles plus a share of the rest proportional to its raw surface. Raises ValueError naming ids ``labels`` lacks.
    """
    sizes = check_ids(labels, ids)
    raw = [segment_mesh(labels, i, voxel_size, max_faces=None, size=sizes[int(i)]) for i in ids]
    if max_faces is None:
        return raw
    if max_faces < 4 * len(raw):
        raise ValueError(f"max_faces {max_faces} is too small for {len(raw)} meshes (at least 4 each)")
    total = sum(m.n_faces for m in raw)
    if total <= max_faces:
        return raw
    spare = max_faces - 4 * len(raw)
    meshes = []
    for m in raw:
        share = 4 + int(spare * m.n_faces / total)
        verts, faces = decimate(m.vertices, m.faces, share)
        meshes.append(Mesh(m.id, m.size, verts, faces))
    return meshes
