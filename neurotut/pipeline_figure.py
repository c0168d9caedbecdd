"""The book's landing-page figure: the pipeline on real data, computed when the book is built.

One section of a validation block of the tutorial volume (sections the affinity network never
saw), four panels: the EM; the affinities the pretrained RSUNet predicts for it (the x, y, z
nearest-neighbour affinities as red, green, blue); the segmentation waterz agglomerates from them
(scoring function and threshold chosen on the rows beside the window,
:func:`neurotut.experiments.tune_and_score`);
one object a flood-filling network (the ffn_windows workshop's 7M network) grows from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class PipelineResult:
    """What :func:`compute` returns: (Z, Y, X) arrays of the block and what they came from."""

    raw: np.ndarray  # (Z, Y, X) uint8
    affinities: np.ndarray  # (3, Z, Y, X) float32, x, y, z nearest neighbours
    segmentation: np.ndarray  # (Z, Y, X) uint64
    ffn_object: np.ndarray  # (Z, Y, X) bool
    seed: tuple[int, int, int]  # z, y, x in the block
    first_section: int  # the block's first section in the volume
    box: tuple[slice, slice, slice]  # the block in the volume
    threshold: float  # agglomeration threshold, chosen on the rows beside the window
    arand: float  # of the segmentation against the block's ground truth
    networks: str  # which networks made the panels
    voxel_size: tuple[float, float, float]
    attribution: str


def seed_point(labels: np.ndarray, z: int, margin: tuple[int, int, int]) -> tuple[int, int, int]:
    """A seed (z, y, x) in section ``z`` of ``labels`` (Z, Y, X): the point of that section deepest
    inside a labelled object, counting the band of ``margin`` (y, x) along the block's sides as
    outside (the FFN's field of view cannot be centred there); ``z`` must lie ``margin[0]``
    sections away from the block's faces."""
    if not margin[0] <= z < labels.shape[0] - margin[0]:
        raise ValueError(f"section {z} lies within {margin[0]} sections of the block's faces")
    section = labels[z]
    inside = np.zeros(section.shape, bool)
    inside[margin[1]:section.shape[0] - margin[1], margin[2]:section.shape[1] - margin[2]] = True
    inside &= section != 0
    # the distance to the nearest voxel of another id (or of the band), per object
    boundary = np.zeros(section.shape, bool)
    boundary[:-1] |= section[:-1] != section[1:]
    boundary[:, :-1] |= section[:, :-1] != section[:, 1:]
    depth = ndimage.distance_transform_edt(inside & ~boundary)
    if not depth.any():
        raise ValueError(f"section {z} has no labelled object away from the block's sides")
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(z), int(y), int(x)


def compute(profile=None, size: int = 160, device: str = "cpu") -> PipelineResult:
    """Run the pipeline on the last ``profile.unet_predict_window[0]`` sections of the tutorial
    volume, a ``size`` x ``size`` window at its centre (y, x; a multiple of 16)."""
    from neurotut import config, data, experiments, inference, pretrained
    from neurotut.affinity import nearest_neighbour_channels
    from neurotut.ffn import inference as ffn_inference
    from neurotut.ffn import originals

    profile = profile or config.get_profile()
    vol = data.load_tutorial_volume(profile, verbose=False)
    depth = profile.unet_predict_window[0]
    n_z, n_y, n_x = vol.raw.shape
    y0, x0 = (n_y - size) // 2, (n_x - size) // 2
    box = (slice(n_z - depth, n_z), slice(y0, y0 + size), slice(x0, x0 + size))
    # the tuning block: the same sections, the next size x size rows (they share no voxel with it)
    tune_box = (box[0], slice(y0 + size, y0 + 2 * size), box[2])
    unet, cfg, what = pretrained.affinity_network(profile, device)
    affs = inference.predict_volume(unet, vol.raw[box], profile.unet_predict_window, progress=False)
    tune = inference.predict_volume(unet, vol.raw[tune_box], profile.unet_predict_window, progress=False)
    aff = experiments.tune_and_score((tune, vol.labels[tune_box]), (affs, vol.labels[box]),
                                     profile.agglomeration_thresholds, cfg.offsets, vol.voxel_size,
                                     profile.agglomeration_scorings)

    # the FFN's canvas adds half a FOV of sections below the block as context, as chapter 9 does
    request = originals.workshop_request()
    model, steps = originals.workshop_network(originals.WORKSHOP_STEPS[-1], device)
    context = model.config.fov_size[0] // 2
    canvas_box = (slice(n_z - depth - context, n_z),) + box[1:]
    image = ffn_inference.normalize_image(vol.raw[canvas_box], request.image_mean, request.image_stddev)
    canvas = ffn_inference.Canvas(image, ffn_inference.TorchPredictor(model, device), model.config.fov_size,
                                  model.config.deltas, request.inference_options)
    seed = seed_point(vol.labels[canvas_box], context + depth // 2, tuple(int(m) for m in canvas.margin))
    canvas.segment_at(seed)
    labelled, _ = ndimage.label(canvas.seed >= canvas.t_segment)
    ffn_object = (labelled == labelled[seed])[context:]  # the component that holds the seed, in the block
    seed = (seed[0] - context, seed[1], seed[2])
    channels = nearest_neighbour_channels(cfg.offsets)  # z, y, x order
    return PipelineResult(
        raw=vol.raw[box], affinities=affs[channels[::-1]], segmentation=aff["segmentation"],
        ffn_object=ffn_object, seed=seed, first_section=n_z - depth, box=box,
        threshold=float(aff["threshold"]), arand=float(aff["scores"].arand),
        networks=f"affinities: the {what}; FFN: ffn_windows model.ckpt-{steps}",
        voxel_size=tuple(vol.voxel_size), attribution=vol.attribution,
    )


def draw(result: PipelineResult, width: float = 9.0):
    """The four panels of section ``result.seed[0]``, left to right with arrows between them.
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    from neurotut.viz import extent_nm, overlay

    z = result.seed[0]
    raw = result.raw[z]
    ext = [v / 1000 for v in extent_nm(raw.shape, result.voxel_size[1:])]  # um
    fov = np.zeros(raw.shape, np.uint32)
    fov[result.ffn_object[z]] = 1
    grey = np.repeat((raw / 255.0)[..., None], 3, axis=-1)
    ffn_rgb = np.where(fov[..., None] > 0, 0.45 * grey + 0.55 * np.array([1.0, 0.75, 0.1]), grey)
    panels = [
        ("EM section", grey),
        ("affinities (x, y, z as RGB)", np.moveaxis(result.affinities[:, z], 0, -1).clip(0, 1)),
        (f"watershed + agglomeration\n(threshold {result.threshold:g})",
         overlay(raw, result.segmentation[z].astype(np.uint32), alpha=0.6)),
        ("one flood-filling network object", ffn_rgb),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(width, width / 4 + 0.6),
                             gridspec_kw=dict(wspace=0.2, left=0.01, right=0.99, top=0.84, bottom=0.02))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, extent=ext, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    _, y, x = result.seed
    axes[3].plot((x + 0.5) * result.voxel_size[2] / 1000, (y + 0.5) * result.voxel_size[1] / 1000, "+",
                 color="black", markersize=12, mew=2)
    for left, right in zip(axes[:-1], axes[1:]):  # arrows in the gaps between panels
        a, b = left.get_position(), right.get_position()
        middle = 0.5 * (a.y0 + a.y1)
        fig.add_artist(plt.Annotation("", xy=(b.x0 - 0.004, middle), xytext=(a.x1 + 0.004, middle),
                                      xycoords="figure fraction", textcoords="figure fraction",
                                      arrowprops=dict(arrowstyle="-|>", lw=1.5, color="0.3")))
    return fig


def caption(result: PipelineResult) -> str:
    """One paragraph (Markdown) saying what the figure shows, with its numbers."""
    z, y, x = result.seed
    um = result.raw.shape[1] * result.voxel_size[1] / 1000
    return (
        f"Section {result.first_section + z} of the tutorial volume, a {um:.2f} x {um:.2f} um window "
        f"of a block (sections {result.first_section}-{result.first_section + result.raw.shape[0] - 1}) "
        f"that the affinity network never saw (the FFN was trained on every section of the volume). "
        f"The segmentation scores ARAND {result.arand:.3f} on the block; the FFN object grew from the seed marked + (section {result.first_section + z}, y {y}, "
        f"x {x} of the window) to {int(result.ffn_object.sum()):,} voxels. Networks: {result.networks}. "
        f"{result.attribution}"
    )
