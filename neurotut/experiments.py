"""The base-vs-reversible experiment of Koyama et al. (their Table 1), re-run with neurotut.

Koyama et al. replaced the residual modules of the Superhuman U-Net by ``n = 1..4`` RevNet blocks
and compared parameters, time per epoch, training memory and accuracy with the base network.
:func:`run_table1` does the same for :class:`neurotut.models.rsunet.RSUNet` and adds what a user
would pick instead of a reversible network: the plain network with gradient checkpointing.

Per network it reports

* ``params``: trainable parameters;
* ``time_per_100_s``: seconds per 100 training iterations (forward + backward of one batch,
  fastest of the timed rounds, times 100; data loading and the optimiser step excluded; the
  rounds are interleaved over the networks so that the ratios are measured under one load);
* ``memory_bytes`` / ``memory_method``: on the CPU the bytes *saved for backward*
  (:mod:`neurotut.memory`, ``"saved_tensors"``; transient memory such as the recompute inside a
  reversible or checkpointed backward is not included), on CUDA the peak allocated memory above
  the baseline of one step (``"cuda_peak"``); ``saved_bytes`` is always the saved-tensor count;
* accuracy after training every network with the same budget (same steps, patches, seed), on a
  validation crop: best adapted Rand error over the agglomeration thresholds, VOI split/merge at
  that threshold, and the boundary accuracy of that segmentation with its trivial baseline (the
  score of predicting no boundary anywhere).

Checkpointing computes the same function as the plain network, so its accuracy is the plain
network's and it is not trained again.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from neurotut import metrics
from neurotut.affinity import SUPERHUMAN_OFFSETS
from neurotut.agglomerate import iter_agglomerate
from neurotut.inference import predict_volume, raw_to_input
from neurotut.memory import MemoryRecord, measure_step, saved_tensor_bytes
from neurotut.models.rsunet import RSUNet, count_parameters
from neurotut.loss import affinity_loss
from neurotut.patches import PatchSampler
from neurotut.train import train
from neurotut.train_config import TrainConfig

#: Koyama et al.'s Table 1, quoted as the project received it: parameters, time per
#: epoch, training memory and accuracy (%) on SNEMI3D, on their GPU
KOYAMA_TABLE1: tuple[dict, ...] = (
    {"network": "base", "params": "2.2M", "time per epoch": "1h20m", "memory": "3.8 GB", "accuracy": 91.0},
    {"network": "RevNet n=1", "params": "1.4M", "time per epoch": "2h10m", "memory": "2.7 GB", "accuracy": 91.0},
    {"network": "RevNet n=2", "params": "2.2M", "time per epoch": "3h20m", "memory": "2.7 GB", "accuracy": 91.3},
    {"network": "RevNet n=3", "params": "3.0M", "time per epoch": "4h30m", "memory": "2.7 GB", "accuracy": 90.8},
    {"network": "RevNet n=4", "params": "3.7M", "time per epoch": "5h40m", "memory": "2.7 GB", "accuracy": 90.9},
)


@dataclass(frozen=True)
class Variant:
    """One network of the comparison: ``kind`` is ``"base"``, ``"reversible"`` or
    ``"checkpointing"`` (the base network with gradient checkpointing), ``depth`` the ``n``."""

    kind: str
    depth: int

    def __post_init__(self) -> None:
        if self.kind not in ("base", "reversible", "checkpointing"):
            raise ValueError(f"kind must be base, reversible or checkpointing, got {self.kind!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")

    @property
    def label(self) -> str:
        name = {"base": "base", "reversible": "RevNet", "checkpointing": "base+checkpointing"}
        return f"{name[self.kind]} n={self.depth}"

    def model_overrides(self) -> dict:
        return {
            "depth": self.depth,
            "reversible": self.kind == "reversible",
            "checkpointing": self.kind == "checkpointing",
        }


def table1_variants(depths: Sequence[int] = (1, 2, 3, 4), checkpointing: bool = True) -> list[Variant]:
    """base, RevNet and (optionally) base+checkpointing at every depth, grouped by depth."""
    kinds = ["base", "reversible"] + (["checkpointing"] if checkpointing else [])
    return [Variant(k, d) for d in depths for k in kinds]


@dataclass
class Table1Row:
    """One line of the table (see the module docstring for the meaning of each column)."""

    network: str
    kind: str
    depth: int
    params: int
    time_per_100_s: float
    memory_bytes: int
    memory_method: str
    saved_bytes: int
    device: str
    patch: str
    batch: int
    steps: int | None = None
    train_s: float | None = None
    val_loss: float | None = None
    arand: float | None = None
    threshold: float | None = None
    voi_split: float | None = None
    voi_merge: float | None = None
    boundary_accuracy: float | None = None
    boundary_baseline: float | None = None


def _prepare_variant(
    variant: Variant, config: TrainConfig, raw: np.ndarray, labels: np.ndarray, device: torch.device
) -> tuple[RSUNet, TrainConfig, Callable[[], torch.Tensor]]:
    """The model of ``variant`` (initialised with ``config.seed``) and a closure computing the
    loss of one fixed augmented batch of ``config.batch_size`` patches from ``raw``/``labels``."""
    cfg = replace(config, model=replace(config.model, **variant.model_overrides()))
    sampler = PatchSampler(raw, labels, cfg.patch, cfg.offsets, cfg.augment)
    rng = np.random.default_rng(cfg.seed)
    samples = [sampler.sample(rng) for _ in range(cfg.batch_size)]
    x = torch.from_numpy(np.stack([s.raw for s in samples])).to(device)
    t = torch.from_numpy(np.stack([s.target for s in samples])).to(device)
    m = torch.from_numpy(np.stack([s.mask for s in samples])).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = RSUNet(cfg.model).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    model.train()

    def forward() -> torch.Tensor:
        return affinity_loss(model(x), t, m, cfg.absent_class_weight)

    return model, cfg, forward


def measure_variants(
    variants: Sequence[Variant],
    config: TrainConfig,
    raw: np.ndarray,
    labels: np.ndarray,
    device: torch.device | str = "cpu",
    repeats: int = 2,
) -> list[Table1Row]:
    """Parameters, time and memory of one training step of every variant (no training).

    Every variant sees the same batch (:func:`_prepare_variant`). Timing is **interleaved**: each
    of the ``repeats`` rounds times one forward+backward step of every variant in turn, and the
    fastest round of each variant counts; so a slow spell of a shared machine hits all variants
    alike instead of whichever happened to be measured then, and the ratios between rows stay
    meaningful. On a CPU the clock is the CPU time of this process (all its threads), which
    other work on a shared machine barely changes; on a GPU it is wall time. ``repeats=0``
    measures the saved bytes only (``time_per_100_s`` is NaN).
    """
    device = torch.device(device)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    prepared = [_prepare_variant(v, config, raw, labels, device) for v in variants]
    best = [float("inf")] * len(prepared)
    if repeats > 0:
        for model, _, forward in prepared:  # warm-up: allocator, one-off initialisation
            forward().backward()
            model.zero_grad(set_to_none=True)
        for _ in range(repeats):
            for i, (model, _, forward) in enumerate(prepared):
                record = measure_step(forward, model.parameters(), device=device, warmup=0, repeats=1,
                                      clock=clock)
                best[i] = min(best[i], record.time_s)
                model.zero_grad(set_to_none=True)
    rows = []
    for v, (model, cfg, forward), seconds in zip(variants, prepared, best):
        params = list(model.parameters())
        saved, out = saved_tensor_bytes(forward, params)
        out.backward()
        if device.type == "cuda":
            record = measure_step(forward, params, method="cuda_peak", device=device, warmup=1, repeats=1)
        else:
            record = MemoryRecord(str(device), "saved_tensors", int(saved), float("nan"))
        model.zero_grad(set_to_none=True)
        rows.append(Table1Row(
            network=v.label,
            kind=v.kind,
            depth=v.depth,
            params=count_parameters(model),
            time_per_100_s=100 * seconds if repeats > 0 else float("nan"),
            memory_bytes=record.bytes,
            memory_method=record.method,
            saved_bytes=int(saved),
            device=record.device,
            patch="x".join(str(p) for p in cfg.patch),
            batch=cfg.batch_size,
        ))
    return rows


def measure_variant(
    variant: Variant,
    config: TrainConfig,
    raw: np.ndarray,
    labels: np.ndarray,
    device: torch.device | str = "cpu",
    repeats: int = 2,
) -> Table1Row:
    """:func:`measure_variants` for one variant."""
    return measure_variants([variant], config, raw, labels, device, repeats)[0]


def baseline_affinities(raw: np.ndarray) -> np.ndarray:
    """The trivial baseline: the image itself as a boundary map (membranes are dark).

    The nearest-neighbour affinity of an edge is the darker of its two voxels' intensities in
    [0, 1]; ``(3, Z, Y, X)`` float32 in the Superhuman channel order (x, y, z).
    """
    r = raw_to_input(raw)
    out = np.zeros((3,) + r.shape, dtype=np.float32)
    for c, (dz, dy, dx) in enumerate(SUPERHUMAN_OFFSETS[:3]):
        later = (slice(dz, None), slice(dy, None), slice(dx, None))
        earlier = tuple(slice(0, n - d) for n, d in zip(r.shape, (dz, dy, dx)))
        out[(c,) + later] = np.minimum(r[later], r[earlier])
    return out


def score_affinities(
    affs: np.ndarray,
    gt: np.ndarray,
    thresholds: Sequence[float],
    offsets: Sequence[Sequence[int]] | None = None,
    **agglomerate_kwargs,
) -> dict:
    """Agglomerate at every threshold and score against ``gt``; returns the best (lowest ARAND)
    threshold with its ARAND, VOI and boundary scores, the per-threshold scores (``"curve"``:
    ``{threshold: SegmentationScores}``), and the best segmentation (``"segmentation"``, (Z, Y,
    X) uint64). Keyword arguments go to :func:`neurotut.agglomerate.iter_agglomerate` (e.g.
    ``scoring="quantile50"``)."""
    if offsets is None:
        offsets = SUPERHUMAN_OFFSETS[: affs.shape[0]]
    curve = {}
    best = None
    for t, seg in iter_agglomerate(affs, thresholds, offsets, **agglomerate_kwargs):
        s = metrics.evaluate(gt, seg)
        curve[t] = s
        if best is None or s.arand < best[1].arand:
            best = (t, s, seg)
    t, s, seg = best
    b = metrics.boundary_scores(metrics.boundary_map(gt), metrics.boundary_map(seg))
    return {
        "threshold": t,
        "arand": s.arand,
        "voi_split": s.voi_split,
        "voi_merge": s.voi_merge,
        "boundary_accuracy": b.accuracy,
        "boundary_baseline": b.baseline_accuracy,
        "curve": curve,
        "segmentation": seg,
    }


def tuning_box(shape: Sequence[int], test_box: Sequence[slice]) -> tuple[slice, slice, slice]:
    """A block of a ``(Z, Y, X)`` volume for tuning choices, disjoint from ``test_box``.

    The z range of ``test_box`` and the larger of the two strips beside it along y (the rows
    before or after it) over every x; along x when the test box spans all of y.

    Args:
        shape: ``(Z, Y, X)`` of the volume both blocks come from (e.g. the validation sections).
        test_box: three slices with explicit starts and stops: the block that is reported.
    Raises:
        ValueError: when the test box leaves no room along y or x.
    """
    shape = tuple(int(n) for n in shape)
    box = [slice(*s.indices(n)[:2]) for s, n in zip(test_box, shape)]
    for axis in (1, 2):
        before, after = box[axis].start, shape[axis] - box[axis].stop
        if max(before, after) > 0:
            strip = slice(0, before) if before >= after else slice(box[axis].stop, shape[axis])
            out = [box[0], slice(0, shape[1]), slice(0, shape[2])]
            out[axis] = strip
            return tuple(out)
    raise ValueError(f"the test block {tuple(box)} covers all of y and x of {shape}: "
                     "no disjoint tuning block is left")


def score_at_tuned_threshold(
    tune: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    thresholds: Sequence[float],
    offsets: Sequence[Sequence[int]] | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    **agglomerate_kwargs,
) -> dict:
    """The honest protocol: choose the agglomeration threshold on one block, report another.

    Args:
        tune, test: ``(affinities (C, Z, Y, X) float32, ground truth (Z, Y, X))`` of the block the
            threshold is chosen on (lowest ARAND) and of the block that is scored.
        voxel_size: ``(z, y, x)`` for :func:`neurotut.agglomerate.fill_unassigned`, which gives the
            voxels the watershed leaves at 0 the nearest object's id before the test block is
            scored, as a submission would.
        agglomerate_kwargs: passed to :func:`neurotut.agglomerate.iter_agglomerate` for both
            blocks (e.g. ``scoring="quantile50"``).

    Returns ``threshold`` (chosen on ``tune``), ``tune_arand``, ``scores`` (the test block's
    :class:`neurotut.metrics.SegmentationScores` at that threshold, filled), ``boundary`` (its
    boundary scores), ``curve`` (the test block's unfilled scores at every threshold, for
    plots only) and ``segmentation`` (the filled test segmentation, (Z, Y, X) uint64).
    """
    from neurotut.agglomerate import fill_unassigned

    tuned = score_affinities(*tune, thresholds, offsets, **agglomerate_kwargs)
    t = tuned["threshold"]
    affs, gt = test
    curve, seg = {}, None
    for th, s in iter_agglomerate(affs, thresholds, offsets, **agglomerate_kwargs):  # one waterz pass: every threshold
        curve[th] = metrics.evaluate(gt, s)
        if th == t:
            seg = s.copy()
    filled = fill_unassigned(seg, voxel_size)
    return {
        "threshold": t,
        "tune_arand": tuned["arand"],
        "scores": metrics.evaluate(gt, filled),
        "boundary": metrics.boundary_scores(metrics.boundary_map(gt), metrics.boundary_map(filled)),
        "curve": curve,
        "segmentation": filled,
    }


def tune_and_score(
    tune: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    thresholds: Sequence[float],
    offsets: Sequence[Sequence[int]] | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    scorings: Sequence[str] = ("mean",),
) -> dict:
    """:func:`score_at_tuned_threshold` for each waterz scoring function in ``scorings``; the one
    with the lowest ARAND on the tuning block is chosen (never by the test block).

    Returns that function's result with ``"scoring"`` (its name) and ``"tuning"``
    (``{scoring: tuning-block ARAND}`` of every function tried) added.
    """
    if not scorings:
        raise ValueError("give at least one scoring function")
    tried = {name: score_at_tuned_threshold(tune, test, thresholds, offsets, voxel_size, scoring=name)
             for name in scorings}
    best = min(tried, key=lambda name: tried[name]["tune_arand"])
    return {**tried[best], "scoring": best, "tuning": {k: v["tune_arand"] for k, v in tried.items()}}


def evaluate_model(
    model: torch.nn.Module,
    raw: np.ndarray,
    gt: np.ndarray,
    window: Sequence[int],
    thresholds: Sequence[float],
    offsets: Sequence[Sequence[int]] = SUPERHUMAN_OFFSETS,
    **predict_kwargs,
) -> dict:
    """Predict ``raw`` with sliding windows and :func:`score_affinities` against ``gt``; the
    affinities are returned under ``"affinities"``."""
    affs = predict_volume(model, raw, window, progress=False, **predict_kwargs)
    out = score_affinities(affs, gt, thresholds, offsets)
    out["affinities"] = affs
    return out


def _score_trained(model: torch.nn.Module, test: tuple[np.ndarray, np.ndarray],
                   tune: tuple[np.ndarray, np.ndarray] | None, window: Sequence[int],
                   cfg: TrainConfig, device: torch.device) -> dict:
    """ARAND, threshold, VOI and boundary scores of ``test``: at the threshold chosen on ``tune``,
    or (``tune`` None) at the best threshold on ``test`` itself."""
    if tune is None:
        return evaluate_model(model, *test, window, cfg.val_thresholds, cfg.offsets, device=device)

    def predict(raw: np.ndarray) -> np.ndarray:
        return predict_volume(model, raw, window, progress=False, device=device)

    out = score_at_tuned_threshold((predict(tune[0]), tune[1]), (predict(test[0]), test[1]),
                                   cfg.val_thresholds, cfg.offsets)
    s, b = out["scores"], out["boundary"]
    return {"arand": s.arand, "threshold": out["threshold"], "voi_split": s.voi_split,
            "voi_merge": s.voi_merge, "boundary_accuracy": b.accuracy,
            "boundary_baseline": b.baseline_accuracy}


def _train_and_score(v: Variant, config: TrainConfig, steps: int,
                     train_vol: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                     tune: tuple[np.ndarray, np.ndarray] | None, eval_window: Sequence[int] | None,
                     device: torch.device) -> dict:
    """Train variant ``v`` for ``steps`` and score it on ``val`` (threshold tuned on ``tune``):
    the accuracy columns of its :class:`Table1Row`."""
    cfg = replace(
        config,
        model=replace(config.model, **{**v.model_overrides(), "checkpointing": False}),
        steps=steps, val_every=0, checkpoint_every=0, val_crop=(0, 0, 0),
        val_patches=min(config.val_patches, 4),
    )
    start = time.perf_counter()
    result = train(cfg, *train_vol, *val, device=device, progress=False, tensorboard=False)
    seconds = time.perf_counter() - start
    window = eval_window if eval_window is not None else cfg.eval_window(val[0].shape)
    scores = _score_trained(result.eval_model, val, tune, window, cfg, device)
    return {
        "steps": steps,
        "train_s": seconds,
        "val_loss": result.history[-1]["val_loss"],
        **{k: scores[k] for k in ("arand", "threshold", "voi_split", "voi_merge",
                                  "boundary_accuracy", "boundary_baseline")},
    }


def run_table1(
    config: TrainConfig,
    train_raw: np.ndarray,
    train_labels: np.ndarray,
    val_raw: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    *,
    tune_raw: np.ndarray | None = None,
    tune_labels: np.ndarray | None = None,
    variants: Sequence[Variant] | None = None,
    train_variants: Sequence[Variant] | None = None,
    train_steps: int | None = None,
    eval_window: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    repeats: int = 2,
    progress: bool = True,
) -> list[Table1Row]:
    """Measure every variant, and train and score those that compute a different function.

    Args:
        config: the shared training setup (patch, batch, lr, seed, augmentation, model widths);
            each variant changes only ``depth``, ``reversible`` and ``checkpointing``.
        train_raw, train_labels: the training volume.
        val_raw, val_labels: the validation crop scored after training (None: no accuracy).
        tune_raw, tune_labels: a block disjoint from the validation crop (see
            :func:`tuning_box`) on which the agglomeration threshold is chosen; the validation
            crop is then scored at that threshold (:func:`score_at_tuned_threshold`). None: the
            best threshold on the validation crop itself (an optimistic score, labelled so).
        variants: default :func:`table1_variants` ``(1..4)``.
        train_variants: the variants whose accuracy is measured (default: all); the others get
            parameters, time and memory only (accuracy columns None).
        train_steps: the same budget for every network (default ``config.steps``; 0: no
            training, only parameters, time and memory).
        eval_window: sliding window for scoring (default: the crop itself when it suits the
            network, else the patch).
        device: where to run.
        repeats: timing rounds, interleaved over the variants (the fastest round counts).
        progress: print one line per network.
    """
    device = torch.device(device)
    variants = list(variants) if variants is not None else table1_variants()
    steps = config.steps if train_steps is None else int(train_steps)
    rows: list[Table1Row] = []
    trained: dict[tuple[int, bool], dict] = {}
    measured = measure_variants(variants, config, train_raw, train_labels, device, repeats)
    for v, row in zip(variants, measured):
        wanted = train_variants is None or any(
            w.depth == v.depth and (w.kind == "reversible") == (v.kind == "reversible")
            for w in train_variants
        )
        if steps > 0 and val_raw is not None and wanted:
            key = (v.depth, v.kind == "reversible")  # checkpointing == base numerically
            if key not in trained:
                trained[key] = _train_and_score(
                    v, config, steps, (train_raw, train_labels), (val_raw, val_labels),
                    None if tune_raw is None else (tune_raw, tune_labels), eval_window, device)
            for k, value in trained[key].items():
                setattr(row, k, value)
        rows.append(row)
        if progress:
            acc = f", ARAND {row.arand:.3f}" if row.arand is not None else ""
            print(f"{row.network:24s} {row.params:>9,d} params  {row.time_per_100_s:7.1f} s/100 it  "
                  f"{row.memory_bytes / 2**20:8.1f} MiB ({row.memory_method}){acc}", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------


def write_csv(rows: Sequence[Table1Row], path: str | Path, overwrite: bool = False) -> Path:
    """Write the rows as CSV (one column per :class:`Table1Row` field), atomically."""
    from neurotut.io import atomic_path

    names = [f.name for f in fields(Table1Row)]
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            for r in rows:
                writer.writerow(asdict(r))
    return Path(path)


def read_csv(path: str | Path) -> list[Table1Row]:
    """Read rows written by :func:`write_csv`."""
    types = {f.name: f.type for f in fields(Table1Row)}
    rows = []
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            values = {}
            for k, v in rec.items():
                t = types[k]
                if v == "":
                    values[k] = None
                elif "int" in t and "float" not in t:
                    values[k] = int(v)
                elif "float" in t:
                    values[k] = float(v)
                else:
                    values[k] = v
            rows.append(Table1Row(**values))
    return rows


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def to_markdown(rows: Sequence[Table1Row]) -> str:
    """The table as Markdown, memory in MiB with its method named in the header."""
    methods = sorted({r.memory_method for r in rows})
    mem_label = {"saved_tensors": "saved for backward (MiB)", "cuda_peak": "CUDA peak (MiB)"}
    mem_header = " / ".join(mem_label.get(m, m) for m in methods)
    lines = [
        f"| network | params | s / 100 it | memory: {mem_header} | ARAND | VOI split | VOI merge "
        "| boundary acc. (no-boundary baseline) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        boundary = "–" if r.boundary_accuracy is None else (
            f"{r.boundary_accuracy:.1%} ({r.boundary_baseline:.1%})")
        lines.append(
            f"| {r.network} | {r.params / 1e6:.3f}M | {r.time_per_100_s:.1f} | "
            f"{r.memory_bytes / 2**20:.1f} | {_fmt(r.arand, '.3f')} | {_fmt(r.voi_split, '.3f')} | "
            f"{_fmt(r.voi_merge, '.3f')} | {boundary} |"
        )
    return "\n".join(lines)


def koyama_table_markdown() -> str:
    """Koyama et al.'s Table 1 as Markdown (their numbers, quoted)."""
    lines = ["| network (Koyama et al.) | params | time / epoch | memory | accuracy (%) |",
             "|---|---:|---:|---:|---:|"]
    for r in KOYAMA_TABLE1:
        lines.append(f"| {r['network']} | {r['params']} | {r['time per epoch']} | {r['memory']} | "
                     f"{r['accuracy']:.1f} |")
    return "\n".join(lines)


#: the project's benchmark goals: each ratio of :func:`goal_ratios` meets its goal when <= the value
GOALS: dict[str, float] = {
    "rev_memory_n4_over_n1": 1.05,
    "rev_over_base_memory_at_max_n": 0.6,
    "rev_over_base_time_at_n": 1.4,
}


def goal_ratios(rows: Sequence[Table1Row]) -> dict[str, float]:
    """The project's benchmark goals as measured ratios (NaN where a row is missing):

    * ``rev_memory_n4_over_n1``: reversible memory at the largest depth / at n=1 (goal <= 1.05);
    * ``rev_over_base_memory_at_max_n``: reversible / base memory at the largest depth (<= 0.6);
    * ``rev_over_base_time_at_n``: the largest reversible / base time ratio over depths (<= 1.4).
    """
    by = {(r.kind, r.depth): r for r in rows}
    depths = sorted({r.depth for r in rows})
    nan = float("nan")
    out = {"rev_memory_n4_over_n1": nan, "rev_over_base_memory_at_max_n": nan,
           "rev_over_base_time_at_n": nan}
    if not depths:
        return out
    lo, hi = depths[0], depths[-1]
    if ("reversible", lo) in by and ("reversible", hi) in by:
        out["rev_memory_n4_over_n1"] = by["reversible", hi].memory_bytes / by["reversible", lo].memory_bytes
    if ("reversible", hi) in by and ("base", hi) in by:
        out["rev_over_base_memory_at_max_n"] = by["reversible", hi].memory_bytes / by["base", hi].memory_bytes
    ratios = [by["reversible", d].time_per_100_s / by["base", d].time_per_100_s
              for d in depths if ("reversible", d) in by and ("base", d) in by]
    if ratios:
        out["rev_over_base_time_at_n"] = max(ratios)
    return out
