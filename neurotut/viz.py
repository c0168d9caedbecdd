"""Pictures of EM volumes: label colours, overlays, orthogonal views, slice animations.

Images are (Z, Y, X); physical extents come from the voxel size (z, y, x) in nm, so xz and yz views
are drawn with the true anisotropy.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.axes import Axes


def label_colors(n_max: int, seed: int = 0) -> np.ndarray:
    """(n_max + 1, 3) float32 RGB colours for ids 0..n_max; id 0 is black.

    The same id gets the same colour in every panel and figure (for a given seed).
    """
    rng = np.random.default_rng(seed)
    hsv = np.stack(
        [rng.random(n_max + 1), rng.uniform(0.55, 1.0, n_max + 1), rng.uniform(0.7, 1.0, n_max + 1)],
        axis=1,
    )
    from matplotlib.colors import hsv_to_rgb

    rgb = hsv_to_rgb(hsv).astype(np.float32)
    rgb[0] = 0.0
    return rgb


def colorize(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Integer labels (...,) to RGB (..., 3) float32 with :func:`label_colors` (0 black)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    # hash ids into a fixed palette so colours do not depend on the largest id present
    palette = label_colors(4095, seed)
    index = np.where(labels == 0, 0, 1 + (labels.astype(np.int64) * 2654435761 % 4095))
    return palette[index]


def overlay(raw: np.ndarray, labels: np.ndarray, alpha: float = 0.45, seed: int = 0) -> np.ndarray:
    """Blend a greyscale image (Y, X) with coloured labels (Y, X) into RGB (Y, X, 3) float32.

    Label 0 is left uncoloured, so membranes stay visible.
    """
    if raw.shape != labels.shape:
        raise ValueError(f"image {raw.shape} and labels {labels.shape} differ in shape")
    grey = np.repeat((raw.astype(np.float32) / max(float(raw.max()), 1.0))[..., None], 3, axis=-1)
    colours = colorize(labels, seed)
    a = np.where(labels[..., None] > 0, alpha, 0.0).astype(np.float32)
    return (1 - a) * grey + a * colours


def extent_nm(shape: tuple[int, int], spacing: tuple[float, float]) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) in nm for an image of ``shape`` (rows, cols)."""
    return (0.0, shape[1] * spacing[1], shape[0] * spacing[0], 0.0)


def show_plane(
    ax: Axes,
    volume: np.ndarray,
    index: int,
    plane: str = "xy",
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    labels: np.ndarray | None = None,
    alpha: float = 0.45,
    title: str | None = None,
) -> None:
    """Draw one plane (``"xy"`` at z=index, ``"xz"`` at y=index, ``"yz"`` at x=index) in nm."""
    take = {"xy": lambda v: v[index], "xz": lambda v: v[:, index, :], "yz": lambda v: v[:, :, index]}
    spacing = {"xy": voxel_size[1:], "xz": (voxel_size[0], voxel_size[2]), "yz": voxel_size[:2]}
    axis_names = {"xy": ("x", "y"), "xz": ("x", "z"), "yz": ("y", "z")}
    if plane not in take:
        raise ValueError(f"plane must be 'xy', 'xz' or 'yz', not {plane!r}")
    image = take[plane](volume)
    shown = image if labels is None else overlay(image, take[plane](labels), alpha)
    ax.imshow(shown, cmap="gray", extent=extent_nm(image.shape, spacing[plane]), interpolation="nearest")
    ax.set_xlabel(f"{axis_names[plane][0]} (nm)")
    ax.set_ylabel(f"{axis_names[plane][1]} (nm)")
    ax.set_title(title or f"{plane} plane at {'zyx'[('xy', 'xz', 'yz').index(plane)]} = {index}")


def slice_animation(
    raw: np.ndarray,
    labels: np.ndarray | None = None,
    step: int = 1,
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    size: float = 4.0,
    interval: int = 150,
) -> animation.FuncAnimation:
    """A z-scroll through (Z, Y, X) as a matplotlib animation (every ``step``-th slice).

    In a notebook, ``HTML(anim.to_jshtml())`` gives a player that works in the static book.
    The figure is closed so that no extra still frame is shown.
    """
    n_panels = 1 if labels is None else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(size * n_panels, size), squeeze=False, constrained_layout=True)
    zs = list(range(0, raw.shape[0], step))
    images = []
    for i, ax in enumerate(axes[0]):
        frame = raw[zs[0]] if i == 0 else overlay(raw[zs[0]], labels[zs[0]])
        images.append(ax.imshow(frame, cmap="gray", extent=extent_nm(raw.shape[1:], voxel_size[1:])))
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm)")
    title = fig.suptitle("")

    def update(k: int):
        z = zs[k]
        images[0].set_data(raw[z])
        if labels is not None:
            images[1].set_data(overlay(raw[z], labels[z]))
        title.set_text(f"z = {z} ({z * voxel_size[0]:.0f} nm)")
        return images

    update(0)
    anim = animation.FuncAnimation(fig, update, frames=len(zs), interval=interval, blit=False)
    plt.close(fig)
    return anim
