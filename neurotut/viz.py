"""Pictures of EM volumes: label colours, overlays, orthogonal views, slice animations, 3D meshes.

Images are (Z, Y, X); physical extents come from the voxel size (z, y, x) in nm, so xz and yz views
are drawn with the true anisotropy.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.axes import Axes

from neurotut.display import colorize, interactive_session



#: the widest figure (inches at the book's 100 dpi) that the book's column shows at a readable scale
MAX_FIGURE_WIDTH = 13.0


def _row_figsize(size: float, n_panels: int) -> tuple[float, float]:
    """``(width, height)`` of a row of ``n_panels`` square panels of ``size`` inches, narrowed so
    that the row is at most :data:`MAX_FIGURE_WIDTH` wide."""
    size = min(float(size), MAX_FIGURE_WIDTH / max(1, n_panels))
    return size * n_panels, size

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
    fig, axes = plt.subplots(1, n_panels, figsize=_row_figsize(size, n_panels), squeeze=False, constrained_layout=True)
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


# ------------------------------------------------------------------------------------------------
# slice viewer: ipywidgets with a live kernel, a JavaScript player in the static book

def _panel_image(volume: np.ndarray, labels: np.ndarray | None, z: int, alpha: float) -> np.ndarray:
    return volume[z] if labels is None else overlay(volume[z], labels[z], alpha)


def slice_viewer(
    raw: np.ndarray,
    panels: dict[str, np.ndarray | None] | None = None,
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    size: float = 4.0,
    static_step: int = 4,
    interactive: bool | None = None,
):
    """Scroll through ``raw`` (Z, Y, X) with side-by-side panels of label overlays.

    ``panels`` maps a title to labels (Z, Y, X) drawn over ``raw``, or to None for the bare image;
    default: the bare image only. Label colours are the same in every panel. With a live kernel
    (``interactive`` None: :func:`interactive_session`) this returns an ipywidgets viewer with a z
    slider and an opacity slider; otherwise an HTML player (every ``static_step``-th slice) that
    works in the static book.
    """
    panels = {"EM": None} if not panels else dict(panels)
    for name, lab in panels.items():
        if lab is not None and lab.shape != raw.shape:
            raise ValueError(f"panel {name!r} has shape {lab.shape}, the image {raw.shape}")
    interactive = interactive_session() if interactive is None else interactive
    extent = extent_nm(raw.shape[1:], voxel_size[1:])
    if not interactive:
        from IPython.display import HTML

        fig, axes = plt.subplots(1, len(panels), figsize=_row_figsize(size, len(panels)), squeeze=False,
                                 constrained_layout=True)
        zs = list(range(0, raw.shape[0], static_step))
        images = []
        for ax, (name, lab) in zip(axes[0], panels.items()):
            images.append(ax.imshow(_panel_image(raw, lab, zs[0], 0.45), cmap="gray", extent=extent))
            ax.set(title=name, xlabel="x (nm)", ylabel="y (nm)")
        title = fig.suptitle("")

        def update(k: int):
            for image, lab in zip(images, panels.values()):
                image.set_data(_panel_image(raw, lab, zs[k], 0.45))
            title.set_text(f"z = {zs[k]} ({zs[k] * voxel_size[0]:.0f} nm)")
            return images

        update(0)
        anim = animation.FuncAnimation(fig, update, frames=len(zs), interval=200)
        plt.close(fig)
        return HTML(anim.to_jshtml())

    import ipywidgets as widgets

    z_slider = widgets.IntSlider(value=raw.shape[0] // 2, min=0, max=raw.shape[0] - 1, description="z")
    alpha_slider = widgets.FloatSlider(value=0.45, min=0.0, max=1.0, step=0.05, description="opacity")
    out = widgets.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, len(panels), figsize=_row_figsize(size, len(panels)), squeeze=False,
                                     constrained_layout=True)
            for ax, (name, lab) in zip(axes[0], panels.items()):
                ax.imshow(_panel_image(raw, lab, z_slider.value, alpha_slider.value), cmap="gray", extent=extent)
                ax.set(title=f"{name}, z = {z_slider.value}", xlabel="x (nm)", ylabel="y (nm)")
            plt.show()

    z_slider.observe(draw, "value")
    alpha_slider.observe(draw, "value")
    draw()
    return widgets.VBox([widgets.HBox([z_slider, alpha_slider]), out])


def orthogonal_views(
    raw: np.ndarray,
    labels: np.ndarray | None = None,
    point: tuple[int, int, int] | None = None,
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    size: float = 4.0,
):
    """xy, xz and yz planes through ``point`` (z, y, x; default the centre), in nm. Returns the figure."""
    point = tuple(s // 2 for s in raw.shape) if point is None else point
    fig, axes = plt.subplots(1, 3, figsize=_row_figsize(size, 3), constrained_layout=True)
    for ax, plane, index in zip(axes, ("xy", "xz", "yz"), (point[0], point[1], point[2])):
        show_plane(ax, raw, index, plane, voxel_size, labels)
    return fig


# ------------------------------------------------------------------------------------------------
# 3D: interactive meshes in the book and in notebooks, Neuroglancer for local work


def segments_3d(
    panels: dict[str, tuple[np.ndarray, list[int]]],
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    max_faces: int = 60_000,
    height: int = 480,
    title: str | None = None,
    interactive: bool | None = None,
):
    """Turnable 3D surfaces of segments, side by side: ``{title: (labels (Z, Y, X), ids)}``.

    Marching cubes at ``voxel_size`` (z, y, x) nm, decimated to ``max_faces`` triangles in all
    (:mod:`neurotut.meshes`), drawn with plotly (:mod:`neurotut.mesh_figure`): the figure with a
    live kernel, an HTML block that works in the static book otherwise. Colours match
    :func:`colorize`; hovering shows a segment's id and size. ValueError for a panel without
    ids or with ids its labels lack.
    """
    from neurotut import mesh_figure

    fig = mesh_figure.segments_figure(panels, voxel_size, max_faces, height=height, title=title)
    return mesh_figure.show(fig, interactive)


def largest_segments_3d(
    segmentations: dict[str, np.ndarray],
    n: int = 5,
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    max_faces: int = 60_000,
    height: int = 480,
    interactive: bool | None = None,
):
    """The ``n`` largest segments of each ``{title: (Z, Y, X) integers}``, side by side in 3D
    (:func:`segments_3d`). A segmentation without segments gets no panel: an empty 3D view says
    nothing. Returns ``(figure or None when no panel is left, one sentence saying what is shown)``.
    """
    from neurotut.meshes import largest_segments, segment_sizes

    panels, said = {}, []
    for name, labels in segmentations.items():
        sizes = segment_sizes(labels)
        ids = largest_segments(labels, n)
        if not ids:
            said.append(f"{name}: no segment, so no panel")
            continue
        panels[name] = (labels, ids)
        which = f"all {len(ids)} segments" if len(ids) == len(sizes) else f"the {len(ids)} largest of {len(sizes):,} segments"
        said.append(f"{name}: {which} ({sizes[ids[0]]:,} to {sizes[ids[-1]]:,} voxels)")
    text = "; ".join(said) + "."
    if not panels:
        return None, text
    return segments_3d(panels, voxel_size, max_faces, height, interactive=interactive), text


def neuroglancer_viewer(
    image: np.ndarray | None = None,
    segmentations: dict[str, np.ndarray] | None = None,
    voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0),
    port: int = 0,
):
    """Open arrays in Neuroglancer, served from this process on 127.0.0.1: an image (Z, Y, X)
    and segmentation layers ``{name: (Z, Y, X) integers}`` of the same shape, at ``voxel_size``
    (z, y, x) nm. Returns the ``neuroglancer.Viewer``; ``str(viewer)`` is its URL. See
    :func:`neurotut.neuroglancer_view.open_viewer`."""
    from neurotut.neuroglancer_view import open_viewer

    return open_viewer(image, segmentations or {}, voxel_size, port=port)


# ------------------------------------------------------------------------------------------------
# error maps


def error_masks(
    gt: np.ndarray, pred: np.ndarray, min_overlap: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of split and merge errors of ``pred`` against ``gt`` (same shape, integer ids).

    A ground-truth object is *split* when more than one predicted segment covers at least
    ``min_overlap`` of its voxels; its voxels outside its largest segment are split errors. A
    predicted segment is a *merge* when it covers at least ``min_overlap`` voxels of more than one
    ground-truth object; its voxels outside its main object are merge errors. Ground-truth 0 is
    ignored. Returns two (Z, Y, X) bool masks.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} differ in shape")
    fg = gt != 0
    g = np.unique(gt[fg], return_inverse=True)[1].astype(np.uint64).ravel()
    p = np.unique(pred[fg], return_inverse=True)[1].astype(np.uint64).ravel()
    p_zero = np.unique(pred[fg])[:1]
    keys, inverse, counts = np.unique((g << np.uint64(32)) | p, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    pg, pp = keys >> np.uint64(32), keys & np.uint64(0xFFFFFFFF)
    big = counts >= min_overlap

    def off_main(key: np.ndarray) -> np.ndarray:
        """Per pair: True when its key has more than one big pair and it is not the key's largest."""
        order = np.lexsort((-counts, key))
        first = np.ones(len(key), bool)
        first[1:] = key[order][1:] != key[order][:-1]
        is_main = np.zeros(len(key), bool)
        is_main[order[first]] = True
        multi_keys, n_big = np.unique(key[big], return_counts=True)
        return np.isin(key, multi_keys[n_big > 1]) & ~is_main

    split_pair = off_main(pg)
    pred_is_zero = (pp == 0) & (p_zero.size > 0 and p_zero[0] == 0)
    merge_pair = off_main(pp) & ~pred_is_zero
    split = np.zeros(gt.shape, bool)
    merge = np.zeros(gt.shape, bool)
    split[fg] = split_pair[inverse]
    merge[fg] = merge_pair[inverse]
    return split, merge


def show_errors(ax: Axes, raw: np.ndarray, gt: np.ndarray, pred: np.ndarray, z: int,
                voxel_size: tuple[float, float, float] = (30.0, 6.0, 6.0), min_overlap: int = 100,
                title: str | None = None,
                masks: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Slice ``z`` of the EM with split errors in blue and merge errors in red.

    ``masks``: the (split, merge) of :func:`error_masks` when already computed.
    """
    split, merge = error_masks(gt, pred, min_overlap) if masks is None else masks
    grey = np.repeat((raw[z].astype(np.float32) / 255.0)[..., None], 3, axis=-1)
    rgb = grey.copy()
    rgb[split[z]] = 0.5 * grey[split[z]] + 0.5 * np.array([0.1, 0.4, 1.0])
    rgb[merge[z]] = 0.5 * grey[merge[z]] + 0.5 * np.array([1.0, 0.15, 0.1])
    ax.imshow(rgb, extent=extent_nm(raw.shape[1:], voxel_size[1:]))
    ax.set(xlabel="x (nm)", ylabel="y (nm)", title=title or f"z = {z}: splits (blue), merges (red)")
