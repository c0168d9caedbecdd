"""Watershed and agglomeration of an affinity graph with waterz.

The Superhuman route from affinities back to objects: a seeded watershed on the nearest-neighbour
affinities makes an oversegmentation (fragments); neighbouring fragments are then merged greedily,
lowest score first, while the score of their shared boundary is below a threshold. With the
Superhuman scoring function, ``1 - mean affinity`` of the boundary, a threshold ``t`` keeps merging
while the mean affinity between two regions is above ``1 - t``: raising ``t`` merges more.

This module handles what waterz leaves to its caller:

* affinities must be ``float32``, channels first, with channel 0, 1, 2 = z, y, x. The project's
  networks output the 12 Superhuman channels in the order x, y, z, ...; the nearest-neighbour
  channels are picked and reordered here from the offsets, and a channels-last array is refused
  instead of silently giving a wrong result.
* waterz yields one buffer that it overwrites at every threshold: results are copied.
* waterz prints from C++; the output is sent to ``/dev/null`` at the file-descriptor level
  (``contextlib.redirect_stdout`` cannot catch it) unless ``verbose=True``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from neurotut.affinity import (
    SUPERHUMAN_OFFSETS,
    WATERZ_OFFSETS,
    check_offsets,
    nearest_neighbour_channels,
)

#: the Superhuman agglomeration: 1 - mean affinity of the boundary between two regions
MEAN_AFFINITY = "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>"
#: the quantiles of the histogram variant that waterz ships precompiled
PREBUILT_QUANTILES = tuple(range(10, 100, 5))


def scoring_function(name: str) -> str:
    """The waterz C++ scoring function for a short name.

    * ``"mean"`` (or PyTC's ``"affmean"``): ``1 - mean affinity``, the Superhuman default.
    * ``"quantileQ"`` (or PyTC's ``"affQ_his256"``), Q in 10, 15, ..., 95: ``1 - Q-th percentile``
      of a 256-bin histogram of the boundary affinities (each initial edge contributes its
      maximum affinity, waterz's default ``InitWithMax``).
    * ``"quantileQ_all"``: the same histogram over all boundary affinities (``InitWithMax=false``).
    * a string containing ``<`` is passed through as a C++ type (anything not precompiled is
      compiled on first use, which needs a C++ compiler and the boost headers).
    """
    key = name.strip()
    if "<" in key:
        return key
    low = key.lower()
    if low in ("mean", "affmean"):
        return MEAN_AFFINITY
    m = re.fullmatch(r"(?:quantile(\d+)(_all)?|aff(\d+)_his256)", low)
    if m:
        q = int(m.group(1) or m.group(3))
        if q not in PREBUILT_QUANTILES:
            raise ValueError(
                f"quantile {q} is not one of the precompiled {PREBUILT_QUANTILES}; pass the C++ "
                "type string to compile it"
            )
        init_with_max = "false" if m.group(2) else "true"
        return (
            f"OneMinus<HistogramQuantileAffinity<RegionGraphType, {q}, ScoreValue, 256, "
            f"{init_with_max}>>"
        )
    raise ValueError(
        f"unknown scoring function {name!r}: use 'mean', 'quantile50' (10..95 in steps of 5), "
        "'quantile50_all', PyTC's 'aff50_his256', or a waterz C++ type string"
    )


@contextlib.contextmanager
def native_output_suppressed(enabled: bool = True) -> Iterator[None]:
    """Silence ``stdout``: Python's ``sys.stdout`` and file descriptor 1 (C/C++), which goes to
    ``/dev/null``.

    Python's ``sys.stdout`` is flushed before and restored after; C stdio buffers are flushed
    before the descriptor is put back, so nothing leaks out later.
    """
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()):  # waterz's Cython part prints from Python
            yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _flush_c_stdio() -> None:
    """fflush(NULL): push C stdio buffers out while fd 1 still points to /dev/null."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no libc by that name
        pass


def waterz_affinities(
    affs: np.ndarray, offsets: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """The ``(3, Z, Y, X)`` C-contiguous float32 array (channels z, y, x) that waterz reads.

    Args:
        affs: ``(C, Z, Y, X)`` affinities in [0, 1], any float dtype, channels first.
        offsets: the ``C`` offsets of ``affs``. Default: the Superhuman offsets, 12 channels or
            their first 3 (x, y, z nearest neighbours).

    Raises:
        TypeError: for non-float affinities (uint8 affinities: divide by 255 first).
        ValueError: for a wrong number of dimensions or channels, channels-last arrays, values
            outside [0, 1] or NaN.
    """
    affs = np.asarray(affs)
    if affs.ndim != 4:
        raise ValueError(
            f"affinities must be (C, Z, Y, X) with channels first, got shape {affs.shape}"
        )
    if not np.issubdtype(affs.dtype, np.floating):
        raise TypeError(
            f"affinities must be floats in [0, 1], got dtype {affs.dtype}"
            + (" (uint8 affinities: divide by 255 first)" if affs.dtype == np.uint8 else "")
        )
    if offsets is None:
        offs = SUPERHUMAN_OFFSETS if affs.shape[0] != 3 else SUPERHUMAN_OFFSETS[:3]
    else:
        offs = check_offsets(offsets)
    if affs.shape[0] != len(offs):
        hint = ""
        if affs.shape[-1] == len(offs):
            hint = " It looks channels-last: use np.moveaxis(affs, -1, 0)."
        raise ValueError(
            f"affinities of shape {affs.shape} have {affs.shape[0]} channels along axis 0, but "
            f"{len(offs)} offsets were given; the layout must be (C, Z, Y, X).{hint}"
        )
    channels = nearest_neighbour_channels(offs)
    out = np.empty((3,) + affs.shape[1:], dtype=np.float32)
    for i, c in enumerate(channels):
        out[i] = affs[c]
    if out.size:
        lo, hi = float(out.min()), float(out.max())
        if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
            raise ValueError(
                f"affinities must lie in [0, 1] (probabilities), found min {lo} and max {hi}"
            )
    return out


def _check_fragments(fragments: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if fragments is None:
        return None
    fragments = np.asarray(fragments)
    if fragments.shape != shape:
        raise ValueError(f"fragments have shape {fragments.shape}, the affinities {shape}")
    if not np.issubdtype(fragments.dtype, np.integer):
        raise TypeError(f"fragments must be integer labels, got dtype {fragments.dtype}")
    if fragments.size and fragments.min() < 0:
        raise ValueError("fragments must be non-negative labels")
    return np.ascontiguousarray(fragments, dtype=np.uint64)


def iter_agglomerate(
    affs: np.ndarray,
    thresholds: Sequence[float],
    offsets: Sequence[Sequence[int]] | None = None,
    *,
    scoring: str = "mean",
    fragments: np.ndarray | None = None,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
    discretize_queue: int = 0,
    verbose: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Agglomerate at several thresholds in one pass, yielding ``(threshold, segmentation)``.

    Thresholds are visited in ascending order (duplicates once); each segmentation is a fresh
    ``(Z, Y, X)`` uint64 array (0 = voxels the watershed left unassigned: their affinities are all
    ``<= aff_threshold_low``). Only one segmentation is alive at a time unless you keep them, so
    sweeping many thresholds on a large volume is cheap in memory.

    Args:
        affs: ``(C, Z, Y, X)`` float affinities in [0, 1]; see :func:`waterz_affinities`.
        thresholds: merge while the score is below the threshold.
        offsets: the ``C`` offsets of ``affs`` (default: Superhuman order).
        scoring: a name for :func:`scoring_function` (default ``"mean"``).
        fragments: optional ``(Z, Y, X)`` integer oversegmentation replacing the watershed.
        aff_threshold_low, aff_threshold_high: watershed thresholds: voxels with all affinities
            ``<= low`` stay 0, edges ``>= high`` are always joined.
        discretize_queue: 0 (exact priority queue) or a number of bins (256 is precompiled).
        verbose: let waterz print its progress from C++.
    """
    import waterz

    ws_affs = waterz_affinities(affs, offsets)
    frags = _check_fragments(fragments, ws_affs.shape[1:])
    values = sorted({float(t) for t in thresholds})
    if not values:
        raise ValueError("give at least one threshold")
    if not all(np.isfinite(values)):
        raise ValueError(f"thresholds must be finite, got {values}")
    function = scoring_function(scoring)
    with native_output_suppressed(not verbose):
        gen = waterz.agglomerate(
            ws_affs,
            values,
            fragments=frags,
            aff_threshold_low=aff_threshold_low,
            aff_threshold_high=aff_threshold_high,
            scoring_function=function,
            discretize_queue=discretize_queue,
        )
    for t in values:
        with native_output_suppressed(not verbose):
            seg = next(gen)
        yield t, seg.copy()  # waterz overwrites this buffer at the next threshold
    gen.close()


def agglomerate(
    affs: np.ndarray,
    thresholds: float | Sequence[float],
    offsets: Sequence[Sequence[int]] | None = None,
    **kwargs,
) -> list[np.ndarray] | np.ndarray:
    """Segmentations of ``affs`` at the given thresholds, computed in one waterz pass.

    Returns one independent ``(Z, Y, X)`` uint64 array per threshold, in the order the thresholds
    were given (a single array for a single number). Keyword arguments are those of
    :func:`iter_agglomerate`.
    """
    single = np.ndim(thresholds) == 0
    wanted = [float(thresholds)] if single else [float(t) for t in thresholds]  # type: ignore[arg-type]
    results = dict(iter_agglomerate(affs, wanted, offsets, **kwargs))
    segs, handed_out = [], set()
    for t in wanted:  # a threshold asked for twice gets its own copy
        segs.append(results[t].copy() if t in handed_out else results[t])
        handed_out.add(t)
    return segs[0] if single else segs


def watershed(
    affs: np.ndarray,
    offsets: Sequence[Sequence[int]] | None = None,
    *,
    aff_threshold_low: float = 0.0001,
    aff_threshold_high: float = 0.9999,
    verbose: bool = False,
) -> np.ndarray:
    """The initial oversegmentation (fragments) of waterz, before any agglomeration.

    Returns ``(Z, Y, X)`` uint64 fragment ids; 0 where all affinities are ``<= aff_threshold_low``.
    """
    return agglomerate(
        affs,
        0.0,
        offsets,
        aff_threshold_low=aff_threshold_low,
        aff_threshold_high=aff_threshold_high,
        verbose=verbose,
    )


def fill_unassigned(
    seg: np.ndarray, voxel_size: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Give every 0 voxel the id of the nearest non-zero voxel (distances in physical units).

    The watershed leaves voxels with no affinity above ``aff_threshold_low`` at 0. SNEMI3D scores
    a predicted 0 inside a true object as a singleton (a split), so a submission fills them.

    Args:
        seg: ``(Z, Y, X)`` integer segmentation, 0 = unassigned.
        voxel_size: ``(z, y, x)`` voxel size, e.g. ``(30, 6, 6)`` nm for SNEMI3D.

    Returns:
        a new array of the same dtype without zeros (unchanged copy when ``seg`` has no non-zero
        voxel at all).
    """
    from scipy import ndimage

    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise ValueError(f"seg must be (Z, Y, X), got shape {seg.shape}")
    unassigned = seg == 0
    if not unassigned.any() or unassigned.all():
        return seg.copy()
    _, nearest = ndimage.distance_transform_edt(
        unassigned, sampling=tuple(float(v) for v in voxel_size), return_indices=True
    )
    return seg[tuple(nearest)]


def sweep(
    affs: np.ndarray,
    gt: np.ndarray,
    thresholds: Sequence[float],
    offsets: Sequence[Sequence[int]] | None = None,
    **kwargs,
):
    """Score the agglomeration against ``gt`` at every threshold, keeping no segmentation.

    Args:
        affs: ``(C, Z, Y, X)`` float affinities.
        gt: ``(Z, Y, X)`` integer ground truth (0 ignored by the scores).
        thresholds: agglomeration thresholds.
        offsets, kwargs: as for :func:`iter_agglomerate`.

    Returns:
        ``{threshold: SegmentationScores}`` in ascending threshold order, with
        ``n_segments`` (number of non-zero ids) filled in.
    """
    from neurotut import metrics

    gt = np.asarray(gt)
    if gt.shape != np.shape(affs)[1:]:
        raise ValueError(f"gt has shape {gt.shape}, the affinities {np.shape(affs)[1:]}")
    out = {}
    for t, seg in iter_agglomerate(affs, thresholds, offsets, **kwargs):
        out[t] = metrics.evaluate(gt, seg)
    return out


# --------------------------------------------------------------------------------------------
# command line: neurotut segment
# --------------------------------------------------------------------------------------------


def threshold_dataset_name(base: str, threshold: float) -> str:
    """The dataset of one threshold when several are asked: ``segmentation_0.30`` (two
    decimals; more when the threshold has more, e.g. ``segmentation_0.325``)."""
    text = f"{threshold:.2f}"
    if float(text) != threshold:
        text = f"{threshold:g}"
    return f"{base}_{text}"


def read_offsets(attrs, shape: tuple[int, ...], where: str) -> tuple[tuple[int, int, int], ...]:
    """The ``offsets`` attribute that ``neurotut predict`` writes: one ``(dz, dy, dx)`` per
    channel, as a ``(C, 3)`` integer array or a JSON list. ``shape`` is the affinities' shape.

    Raises ValueError when it is missing or does not fit the channels.
    """
    value = attrs.get("offsets")
    if value is None:
        raise ValueError(
            f"{where} has no 'offsets' attribute, so which channel links which neighbours is "
            "unknown; `neurotut predict` writes it. For your own affinities add it with h5py, "
            "e.g. f['affinities'].attrs['offsets'] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]] for "
            "channels z, y, x (each (dz, dy, dx) links a voxel to the one at minus that offset)"
        )
    if isinstance(value, bytes):
        value = value.decode()
    try:
        offsets = json.loads(value) if isinstance(value, str) else np.asarray(value).tolist()
        offsets = check_offsets(offsets)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: the 'offsets' attribute is not a list of (dz, dy, dx) "
                         f"integer triples ({exc})") from None
    if len(offsets) != shape[0]:
        raise ValueError(
            f"{where} has {shape[0]} channels (shape {shape}) but its 'offsets' attribute "
            f"lists {len(offsets)}"
        )
    return offsets


def _smallest_label_dtype(seg: np.ndarray) -> np.ndarray:
    """uint32 when the ids fit (most tools read it), else the uint64 waterz returns."""
    return seg.astype(np.uint32) if seg.size == 0 or int(seg.max()) < 2**32 else seg


def _segment_command(args: argparse.Namespace) -> int:
    from neurotut.io import add_datasets, check_can_add, check_dataset, get_dataset, open_h5
    from neurotut.io import parse_volume_spec

    src = parse_volume_spec(args.affinities, default_dataset="affinities")
    dst = parse_volume_spec(args.output, default_dataset="segmentation")
    thresholds = list(dict.fromkeys(float(t) for t in args.thresholds))
    if not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"thresholds must lie in [0, 1] (scores are 1 - mean affinity), got {thresholds}")
    if len(args.voxel_size) != 3 or min(args.voxel_size) <= 0:
        raise ValueError(f"--voxel-size needs three positive sizes (z, y, x), got {args.voxel_size}")
    names = {t: dst.dataset if len(thresholds) == 1 else threshold_dataset_name(dst.dataset, t)
             for t in thresholds}
    if len(set(names.values())) != len(names):
        raise ValueError(f"thresholds {thresholds} give the same dataset names {list(names.values())}")
    check_can_add(dst.path, names.values(), args.overwrite)  # refuse before the work

    with open_h5(src.path) as f:
        dset = get_dataset(f, src.dataset)
        check_dataset(dset, src, ndim=4, kind="float")
        if 0 in dset.shape:
            raise ValueError(f"{src} is empty (shape {dset.shape})")
        attrs = dset.attrs if "offsets" in dset.attrs else f.attrs  # older predict: file root
        offsets = read_offsets(attrs, dset.shape, str(src))
        try:
            channels = sorted(nearest_neighbour_channels(offsets))
        except ValueError as exc:
            raise ValueError(f"{src}: {exc}") from None
        affs = dset[channels]  # only the 3 channels waterz reads
    try:
        affs = waterz_affinities(affs, [offsets[c] for c in channels])  # checks the values
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{src}: {exc}") from None
    if not args.quiet:
        print(f"affinities {src}: {affs.shape[1:]} (z, y, x), nearest-neighbour channels {channels}")

    segs, seg_attrs = {}, {}
    for t, seg in iter_agglomerate(affs, thresholds, WATERZ_OFFSETS,
                                   aff_threshold_low=args.aff_low, aff_threshold_high=args.aff_high):
        unassigned = float(np.mean(seg == 0)) if seg.size else 0.0
        if args.fill:
            seg = fill_unassigned(seg, args.voxel_size)
        seg = _smallest_label_dtype(seg)
        name = names[t]
        segs[name] = seg
        seg_attrs[name] = {
            "threshold": t, "affinities": str(src), "scoring_function": MEAN_AFFINITY,
            "aff_threshold_low": args.aff_low, "aff_threshold_high": args.aff_high,
            "filled": bool(args.fill), "voxel_size": list(args.voxel_size),
        }
        if not args.quiet:
            n = int(np.unique(seg[seg != 0]).size)
            print(f"threshold {t:g}: {n} objects; {unassigned:.1%} of the voxels left unassigned "
                  f"(0) by the watershed{', then filled' if args.fill else ''} -> {dst.path}:{name}")
    chunks = tuple(min(c, s) for c, s in zip((16, 128, 128), affs.shape[1:]))
    add_datasets(dst.path, segs, attrs=seg_attrs, overwrite=args.overwrite, chunks=chunks)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut segment``."""
    p = subparsers.add_parser(
        "segment",
        help="affinities -> segmentation (waterz watershed + mean-affinity agglomeration)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Watershed of the nearest-neighbour affinities into fragments, then greedy merging of\n"
            "neighbouring fragments while 1 - (mean affinity of their boundary) is below the\n"
            "threshold (the Superhuman agglomeration): a higher threshold merges more.\n\n"
            "The affinity dataset must carry an 'offsets' attribute ((dz, dy, dx) per channel),\n"
            "as `neurotut predict` writes; the channels (1,0,0), (0,1,0), (0,0,1) are used.\n\n"
            "Output: (Z, Y, X) uint32 ids (uint64 if needed), 0 = voxels the watershed left\n"
            "unassigned (all their affinities <= --aff-low) unless --fill. One threshold writes\n"
            "OUT.h5:NAME; several write one dataset per threshold, NAME_<threshold> with two\n"
            "decimals (more when needed), e.g. segmentation_0.30 and segmentation_0.50. Datasets\n"
            "are added to OUT.h5 if it exists (its other datasets are kept); an existing\n"
            "dataset of the same name is refused unless --overwrite, which replaces it only."
        ),
    )
    p.add_argument("affinities", help="affinities, AFFS.h5:dataset (default dataset 'affinities'), "
                   "(C, Z, Y, X) float in [0, 1]")
    p.add_argument("output", help="output OUT.h5:dataset (default dataset 'segmentation')")
    p.add_argument("--threshold", "--thresholds", dest="thresholds", type=float, nargs="+",
                   default=[0.5], metavar="T",
                   help="agglomeration threshold(s) in [0, 1], one waterz pass for all "
                   "(default 0.5)")
    p.add_argument("--fill", action="store_true",
                   help="give the unassigned (0) voxels the id of the nearest object (SNEMI3D "
                   "counts a predicted 0 inside an object as a split)")
    p.add_argument("--voxel-size", type=float, nargs=3, default=[1.0, 1.0, 1.0],
                   metavar=("Z", "Y", "X"),
                   help="voxel size for the distances of --fill (default 1 1 1; anisotropic EM: "
                   "e.g. 30 6 6 nm for SNEMI3D)")
    p.add_argument("--aff-low", type=float, default=0.0001,
                   help="watershed: voxels with all affinities <= this stay 0 (default 0.0001)")
    p.add_argument("--aff-high", type=float, default=0.9999,
                   help="watershed: edges >= this are always joined (default 0.9999)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing datasets of the same names (only those)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_segment_command)
