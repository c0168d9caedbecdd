"""The residual symmetric U-Net (RSUNet) of "Superhuman" (Lee et al. 2017), plain or reversible.

Layout (``specs/superhuman_revnet.md`` A2), axes (z, y, x), default widths 28, 36, 48, 64, 80::

    embed_in   conv 1x5x5 (in -> 28, bias) -> ELU
    enc0       module 28 -> 28  ----------------------------------------------- skip0 --+
    pool 1x2x2, enc1  module 28 -> 36  -------------------------------- skip1 --+      |
    pool 1x2x2, enc2  module 36 -> 48  ----------------- skip2 --+              |      |
    pool 1x2x2, enc3  module 48 -> 64  ---- skip3 --+            |              |      |
    pool 1x2x2, bridge module 64 -> 80              |            |              |      |
    up3  transposed conv 1x2x2 (80 -> 64) + skip3 -> BN -> ELU -> dec3 module 64 -> 64 ...
    ... up0 ... dec0 module 28 -> 28
    embed_out  conv 1x5x5 (28 -> 28, bias) -> ELU
    head       conv 1x1x1 (28 -> out, bias): affinity logits (apply a sigmoid for affinities)

z is never pooled, padding is "same" everywhere, so the output has the input's size.

A *module* first changes the number of channels with ``conv_a`` (1x3x3, no bias) -> norm -> ELU,
then runs its residual part ``depth`` times:

* plain (``reversible=False``): a residual unit ``conv_b (3x3x3) -> norm -> ELU -> conv_c
  (3x3x3)``, added to the unit's input, then norm -> ELU (the post-activation ``ConvMod`` of the
  Superhuman port). ``depth=1`` is the paper's network: 1,510,704 parameters with 12 outputs.
  ``checkpointing=True`` wraps every residual unit in :func:`torch.utils.checkpoint.checkpoint`
  (non-reentrant), which stores only the unit's input and recomputes the rest in backward.
* reversible (``reversible=True``): ``depth`` RevNet blocks (:mod:`neurotut.models.reversible`)
  on the ``C`` channels, then norm -> ELU. Each block splits the channels into two halves of
  ``C/2`` and has two branches ``F`` and ``G``, each ``conv 3x3x3 -> norm -> ELU -> conv 3x3x3``
  on ``C/2`` channels (the RevNet "basic" residual function). A block therefore has half the
  weights of a plain residual unit (``4 * 27 * (C/2)^2 = 27 C^2`` against ``2 * 27 * C^2``), and
  its activations are recomputed from the block's output in backward instead of being stored.

Channel changes, pooling, upsampling and the skip connections stay ordinary layers: their
activations are stored either way. Norm layers inside recomputed parts update their running
statistics exactly once per step (as in a plain network).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from neurotut.models.reversible import ReversibleBlock, ReversibleSequence

NORMS = ("batch", "group")


@dataclass(frozen=True)
class RSUNetConfig:
    """Hyper-parameters of :class:`RSUNet`.

    Attributes:
        in_channels: input channels (1 for EM).
        out_channels: affinity channels predicted: 3 (nearest neighbours) or 12 (Superhuman).
        widths: channels per scale, finest first; ``len(widths)`` scales, ``len(widths) - 1``
            poolings of 1x2x2. All widths must be even for the reversible variant.
        depth: residual units (plain) or reversible blocks per module, >= 1.
        reversible: use reversible blocks instead of residual units.
        checkpointing: (plain only) recompute each residual unit in backward.
        norm: ``"batch"`` (BatchNorm3d, the paper) or ``"group"`` (GroupNorm).
        norm_momentum: BatchNorm running-average momentum (PyTorch convention).
        group_size: channels per group for GroupNorm (the number of groups is
            ``max(1, C // group_size)`` adjusted to divide ``C``).
    """

    in_channels: int = 1
    out_channels: int = 12
    widths: tuple[int, ...] = (28, 36, 48, 64, 80)
    depth: int = 1
    reversible: bool = False
    checkpointing: bool = False
    norm: str = "batch"
    norm_momentum: float = 0.1
    group_size: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("in_channels and out_channels must be positive")
        if len(self.widths) < 2 or any(w < 1 for w in self.widths):
            raise ValueError(f"widths needs at least two positive entries, got {self.widths}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.reversible and any(w % 2 for w in self.widths):
            raise ValueError(
                f"a reversible RSUNet splits channels in halves: all widths must be even, got "
                f"{self.widths}"
            )
        if self.reversible and self.checkpointing:
            raise ValueError(
                "choose reversible=True or checkpointing=True, not both: reversible blocks "
                "already recompute their activations"
            )

    @property
    def divisor(self) -> int:
        """Y and X of the input must be multiples of this (``2 ** (len(widths) - 1)``)."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict:
        """Plain types only (for checkpoints and JSON)."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RSUNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RSUNetConfig fields {sorted(unknown)}")
        return cls(**{k: (tuple(v) if k == "widths" else v) for k, v in d.items()})


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, kernel: tuple[int, int, int], bias: bool) -> nn.Conv3d:
    conv = nn.Conv3d(cin, cout, kernel, padding=tuple(k // 2 for k in kernel), bias=bias)
    nn.init.kaiming_normal_(conv.weight)  # He normal, as in the Superhuman port
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def _groups(channels: int, group_size: int) -> int:
    g = max(1, channels // max(1, group_size))
    while channels % g:
        g -= 1
    return g


def _norm(channels: int, config: RSUNetConfig) -> nn.Module:
    if config.norm == "batch":
        return nn.BatchNorm3d(channels, momentum=config.norm_momentum)
    return nn.GroupNorm(_groups(channels, config.group_size), channels)


K133 = (1, 3, 3)
K333 = (3, 3, 3)
K155 = (1, 5, 5)


class ResidualUnit(nn.Module):
    """``x -> ELU(norm(x + conv_c(ELU(norm(conv_b(x))))))`` on ``(N, C, Z, Y, X)``."""

    def __init__(self, channels: int, config: RSUNetConfig):
        super().__init__()
        self.conv_b = _conv(channels, channels, K333, bias=False)
        self.norm_b = _norm(channels, config)
        self.conv_c = _conv(channels, channels, K333, bias=False)
        self.norm_out = _norm(channels, config)
        self.act = nn.ELU()

    def forward(self, x: Tensor) -> Tensor:
        r = self.act(self.norm_b(self.conv_b(x)))
        return self.act(self.norm_out(x + self.conv_c(r)))


def rev_branch(channels: int, config: RSUNetConfig) -> nn.Sequential:
    """``F`` or ``G`` of a reversible block: conv 3x3x3 -> norm -> ELU -> conv 3x3x3 (no bias)."""
    return nn.Sequential(
        _conv(channels, channels, K333, bias=False),
        _norm(channels, config),
        nn.ELU(),
        _conv(channels, channels, K333, bias=False),
    )


@contextmanager
def _running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Restore, on exit, the running statistics the body's BatchNorm calls changed."""
    saved = [
        (m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, mean, var, n in saved:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)


def _checkpointed(unit: nn.Module, x: Tensor) -> Tensor:
    """``unit(x)`` under non-reentrant checkpointing; the recompute in backward leaves the
    running statistics alone, so they are updated once per step as without checkpointing."""
    calls = [0]

    def run(inp: Tensor) -> Tensor:
        calls[0] += 1
        if calls[0] == 1:
            return unit(inp)
        with _running_stats_frozen(unit):
            return unit(inp)

    return checkpoint(run, x, use_reentrant=False)


class ConvModule(nn.Module):
    """One RSUNet module: ``conv_a`` (1x3x3, ``cin -> cout``) -> norm -> ELU, then ``depth``
    residual units or reversible blocks (+ norm -> ELU). ``(N, cin, Z, Y, X) -> (N, cout, Z, Y, X)``.
    """

    def __init__(self, cin: int, cout: int, config: RSUNetConfig):
        super().__init__()
        self.conv_a = _conv(cin, cout, K133, bias=False)
        self.norm_a = _norm(cout, config)
        self.act = nn.ELU()
        self.reversible = config.reversible
        self.checkpointing = config.checkpointing
        if config.reversible:
            half = cout // 2
            self.body = ReversibleSequence(
                [
                    ReversibleBlock(rev_branch(half, config), rev_branch(half, config))
                    for _ in range(config.depth)
                ]
            )
            self.norm_out = _norm(cout, config)
        else:
            self.body = nn.ModuleList(ResidualUnit(cout, config) for _ in range(config.depth))

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.norm_a(self.conv_a(x)))
        if self.reversible:
            return self.act(self.norm_out(self.body(x)))
        use_checkpoint = self.checkpointing and self.training and torch.is_grad_enabled()
        for unit in self.body:
            x = _checkpointed(unit, x) if use_checkpoint else unit(x)
        return x


class Upsample(nn.Module):
    """Transposed conv 1x2x2 stride 1x2x2 (``cin -> cout``, bias), add the skip, norm -> ELU."""

    def __init__(self, cin: int, cout: int, config: RSUNetConfig):
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, (1, 2, 2), stride=(1, 2, 2), bias=True)
        nn.init.kaiming_normal_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.norm = _norm(cout, config)
        self.act = nn.ELU()

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.act(self.norm(self.up(x) + skip))


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class RSUNet(nn.Module):
    """Residual symmetric U-Net: ``(N, in_channels, Z, Y, X)`` float -> ``(N, out_channels, Z, Y,
    X)`` affinity logits, Y and X multiples of ``config.divisor`` (16 for five scales).

    Build it from a :class:`RSUNetConfig` or keyword arguments, e.g. ``RSUNet(depth=2,
    reversible=True)``.
    """

    def __init__(self, config: RSUNetConfig | None = None, **overrides):
        super().__init__()
        config = replace(config or RSUNetConfig(), **overrides) if overrides else (config or RSUNetConfig())
        self.config = config
        w = config.widths
        self.embed_in = nn.Sequential(_conv(config.in_channels, w[0], K155, bias=True), nn.ELU())
        enc_in = [w[0]] + list(w[:-2])
        self.encoders = nn.ModuleList(
            ConvModule(cin, cout, config) for cin, cout in zip(enc_in, w[:-1])
        )
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.bridge = ConvModule(w[-2], w[-1], config)
        # decoder level l (coarse to fine after reversal) upsamples w[l+1] -> w[l]
        self.ups = nn.ModuleList(Upsample(w[l + 1], w[l], config) for l in range(len(w) - 1))
        self.decoders = nn.ModuleList(ConvModule(w[l], w[l], config) for l in range(len(w) - 1))
        self.embed_out = nn.Sequential(_conv(w[0], w[0], K155, bias=True), nn.ELU())
        self.head = _conv(w[0], config.out_channels, (1, 1, 1), bias=True)

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for a wrong shape or dtype."""
        c = self.config
        if x.dim() != 5 or x.shape[1] != c.in_channels:
            raise ValueError(
                f"RSUNet expects (N, {c.in_channels}, Z, Y, X), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"RSUNet expects a floating-point input, got {x.dtype}")
        if x.shape[3] % c.divisor or x.shape[4] % c.divisor:
            raise ValueError(
                f"Y and X must be multiples of {c.divisor} ({len(c.widths) - 1} poolings of "
                f"1x2x2), got Y={x.shape[3]}, X={x.shape[4]}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = self.embed_in(x)
        skips = []
        for level, enc in enumerate(self.encoders):
            x = enc(x if level == 0 else self.pool(x))
            skips.append(x)
        x = self.bridge(self.pool(x))
        for level in reversed(range(len(self.decoders))):
            x = self.decoders[level](self.ups[level](x, skips[level]))
        return self.head(self.embed_out(x))

    def set_reversible_mode(self, mode: str) -> None:
        """Switch every reversible sequence to ``"reversible"``, ``"checkpoint"`` or ``"plain"``
        (same weights, same results, different memory). No effect on a plain network."""
        for m in self.modules():
            if isinstance(m, ReversibleSequence):
                m.mode = mode


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# parameter table: counted from the modules and from closed-form formulas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartParameters:
    """Parameters of one part of the network.

    ``params`` is counted from the module; ``expected`` from the closed-form ``formula``.
    """

    part: str
    layers: str
    formula: str
    expected: int
    params: int


def _module_formula(cin: int, cout: int, c: RSUNetConfig) -> tuple[str, str, int]:
    n = c.depth
    head = f"9*{cin}*{cout} + 2*{cout}"
    base = 9 * cin * cout + 2 * cout
    if c.reversible:
        h = cout // 2
        layers = (
            f"conv 1x3x3 {cin}->{cout}, norm, ELU; {n} reversible block(s) of F, G = "
            f"[conv 3x3x3 {h}->{h}, norm, ELU, conv 3x3x3]; norm, ELU"
        )
        formula = f"{head} + {n}*(4*(27*{h}^2 + {h})) + 2*{cout}"
        return layers, formula, base + n * 4 * (27 * h * h + h) + 2 * cout
    layers = (
        f"conv 1x3x3 {cin}->{cout}, norm, ELU; {n} residual unit(s) of "
        f"[conv 3x3x3 {cout}->{cout}, norm, ELU, conv 3x3x3, add, norm, ELU]"
    )
    formula = f"{head} + {n}*(2*27*{cout}^2 + 2*2*{cout})"
    return layers, formula, base + n * (54 * cout * cout + 4 * cout)


def parameter_table(model: RSUNet) -> list[PartParameters]:
    """One row per part (embed_in, enc0.., bridge, up/dec pairs, embed_out, head), each with the
    parameters counted in the module and the closed-form count that explains them.

    Conventions of the formulas: a k-voxel conv ``cin -> cout`` has ``k*cin*cout`` weights (+
    ``cout`` bias where it has one); BatchNorm and GroupNorm have ``2*C`` (scale and shift).
    """
    c = model.config
    w = c.widths
    rows: list[PartParameters] = []

    def add(part: str, module: nn.Module, layers: str, formula: str, expected: int) -> None:
        rows.append(PartParameters(part, layers, formula, expected, count_parameters(module)))

    add(
        "embed_in",
        model.embed_in,
        f"conv 1x5x5 {c.in_channels}->{w[0]} (bias), ELU",
        f"25*{c.in_channels}*{w[0]} + {w[0]}",
        25 * c.in_channels * w[0] + w[0],
    )
    enc_in = [w[0]] + list(w[:-2])
    for level, (cin, cout) in enumerate(zip(enc_in, w[:-1])):
        add(f"enc{level}", model.encoders[level], *_module_formula(cin, cout, c))
    add("bridge", model.bridge, *_module_formula(w[-2], w[-1], c))
    for level in reversed(range(len(w) - 1)):
        cin, cout = w[level + 1], w[level]
        add(
            f"up{level}",
            model.ups[level],
            f"transposed conv 1x2x2 {cin}->{cout} (bias), add skip, norm, ELU",
            f"4*{cin}*{cout} + {cout} + 2*{cout}",
            4 * cin * cout + cout + 2 * cout,
        )
        add(f"dec{level}", model.decoders[level], *_module_formula(cout, cout, c))
    add(
        "embed_out",
        model.embed_out,
        f"conv 1x5x5 {w[0]}->{w[0]} (bias), ELU",
        f"25*{w[0]}^2 + {w[0]}",
        25 * w[0] * w[0] + w[0],
    )
    add(
        "head",
        model.head,
        f"conv 1x1x1 {w[0]}->{c.out_channels} (bias)",
        f"{w[0]}*{c.out_channels} + {c.out_channels}",
        w[0] * c.out_channels + c.out_channels,
    )
    return rows


def format_parameter_table(rows: list[PartParameters]) -> str:
    """A Markdown table of :func:`parameter_table` rows with a total line."""
    lines = ["| part | layers | formula | parameters |", "|---|---|---|---:|"]
    for r in rows:
        lines.append(f"| {r.part} | {r.layers} | `{r.formula}` | {r.params:,} |")
    lines.append(f"| **total** | | | **{sum(r.params for r in rows):,}** |")
    return "\n".join(lines)


def draw_architecture(config: RSUNetConfig | None = None, ax=None):
    """Draw the U of an RSUNet (modules as boxes, pooling/upsampling arrows, summation skips) on a
    matplotlib axis; returns the axis. Box text: part name, channels, and what a module holds."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    c = config or RSUNetConfig()
    w = c.widths
    n = len(w)
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.9 * n + 2))
    body = f"{c.depth}x {'RevNet block' if c.reversible else 'residual unit'}"
    enc_in = [w[0]] + list(w[:-2])

    def box(x, y, text, color):
        ax.add_patch(FancyBboxPatch((x - 0.9, y - 0.32), 1.8, 0.64, boxstyle="round,pad=0.03",
                                    fc=color, ec="black", lw=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5)

    def arrow(x0, y0, x1, y1, text="", style="-|>", color="black"):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle=style, color=color, lw=1.0))
        if text:
            ax.text((x0 + x1) / 2 + 0.08, (y0 + y1) / 2, text, fontsize=7, color=color, va="center")

    right = 2 * n
    box(0, 1, f"input\n{c.in_channels} ch", "white")
    box(0, 0.0, f"embed_in 1x5x5\n{c.in_channels}->{w[0]}", "#dddddd")
    arrow(0, 0.68, 0, 0.32)
    for level in range(n - 1):
        y = -1.2 * (level + 1)
        box(level, y, f"enc{level}: {enc_in[level]}->{w[level]}\n{body}", "#9ecae1")
        if level == 0:
            arrow(0, -0.32, 0, y + 0.32)
        box(right - level, y, f"dec{level}: {w[level]}->{w[level]}\n{body}", "#fdae6b")
        arrow(level + 0.9, y, right - level - 0.9, y, color="#31a354")
        ax.text(right / 2, y + 0.1, f"skip {w[level]} ch: add", ha="center", fontsize=7, color="#31a354")
        if level < n - 2:
            arrow(level + 0.3, y - 0.32, level + 1 - 0.3, y - 1.2 + 0.32, "pool 1x2x2")
            arrow(right - level - 1 + 0.3, y - 1.2 + 0.32, right - level - 0.3, y - 0.32,
                  "up 1x2x2")
    yb = -1.2 * n
    box(n - 1, yb, f"bridge: {w[-2]}->{w[-1]}\n{body}", "#c6dbef")
    arrow(n - 2 + 0.3, yb + 1.2 - 0.32, n - 1 - 0.3, yb + 0.32, "pool 1x2x2")
    arrow(n - 1 + 0.9, yb, right - (n - 2) - 0.3, yb + 1.2 - 0.32, "up 1x2x2")
    box(right, 0.0, f"embed_out 1x5x5\n+ head 1x1x1 -> {c.out_channels}", "#dddddd")
    arrow(right, -1.2 + 0.32, right, -0.32)
    box(right, 1, f"{c.out_channels} affinity\nlogits", "white")
    arrow(right, 0.32, right, 0.68)
    ax.set_xlim(-1.2, right + 1.2)
    ax.set_ylim(yb - 0.7, 1.6)
    ax.axis("off")
    kind = "reversible" if c.reversible else "plain"
    ax.set_title(f"RSUNet ({kind}, depth {c.depth}, widths {list(w)}): z is never pooled", fontsize=10)
    return ax
