"""``neurotut doctor``: check that this machine can run the active profile.

Prints one line per check (Python, torch and its CUDA build, the GPU and a small CUDA computation
checked against the CPU, waterz, the profile, the data directory and the data cache) and exits
with 0 when everything the profile needs is in place, 1 otherwise, with one line per problem.

What counts as needed: the ``quick`` profile needs Python, torch, waterz and a writable data
directory; the ``full`` profile also needs a CUDA build of torch that sees a GPU. Whenever a GPU
is visible the chapters compute on it, so the CUDA computation must then be right in either
profile. Data that is not cached yet is downloaded on first use, so a missing dataset is only a
warning, unless ``--require-data`` is given (for a machine without internet, or before a
workshop).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from dataclasses import dataclass

from neurotut import config

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"

#: tolerance of the CUDA check: the largest absolute difference from the reference divided by the
#: largest absolute reference value, over the output and both gradients of a small conv3d
CUDA_CHECK_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Check:
    """The result of one check: ``status`` is ok, warn, FAIL or info; ``detail`` says what was
    found, or for a failure, what is wrong and what to do."""

    name: str
    status: str
    detail: str


def _python() -> Check:
    # neurotut does not install on Python < 3.11 (requires-python), so reaching here means it is new enough
    return Check("python", OK, f"{platform.python_version()} ({sys.executable})")


def conv3d_max_error(device, seed: int = 0) -> float:
    """Run a small conv3d forward and backward on ``device`` in float32 and return its largest
    relative deviation from the same computation in float64 on the CPU.

    The deviation is the largest absolute difference from the reference divided by the largest
    absolute reference value, for the output and for the gradients of the input and of the
    weights, whichever is worst. TF32 is switched off for the
    duration, so a correct GPU stays near float32 round-off (about 1e-6).
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 6, 10, 10, generator=gen, dtype=torch.float64)  # (N, C, Z, Y, X)
    w = torch.randn(4, 3, 3, 3, 3, generator=gen, dtype=torch.float64) / 9
    g = torch.randn(2, 4, 6, 10, 10, generator=gen, dtype=torch.float64)  # upstream gradient

    def forward_backward(dev, dtype):
        xx = x.to(dev, dtype).requires_grad_(True)
        ww = w.to(dev, dtype).requires_grad_(True)
        out = F.conv3d(xx, ww, padding=1)
        out.backward(g.to(dev, dtype))
        return [t.detach().to("cpu", torch.float64) for t in (out, xx.grad, ww.grad)]

    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        got = forward_backward(torch.device(device), torch.float32)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
    want = forward_backward(torch.device("cpu"), torch.float64)
    return max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, want))


def _torch_and_gpu(profile: config.Profile) -> list[Check]:
    try:
        import torch
    except ImportError as exc:
        return [Check("torch", FAIL, f"torch cannot be imported ({exc}); install a torch build first")]
    checks = []
    build = torch.version.cuda
    if build:
        checks.append(Check("torch", OK, f"{torch.__version__}, a CUDA {build} build"))
    elif profile.name == "full":
        checks.append(Check("torch", FAIL, f"{torch.__version__} is a CPU-only build; the full "
                            "profile needs a CUDA build of torch (see pytorch.org for the command)"))
    else:
        checks.append(Check("torch", OK,
                            f"{torch.__version__}, a CPU-only build (enough for the quick profile)"))

    if not torch.cuda.is_available():
        reason = ("this torch is a CPU-only build" if not build
                  else "torch sees no GPU (driver, CUDA_VISIBLE_DEVICES?)")
        if profile.name == "full":
            checks.append(Check("cuda", FAIL, f"CUDA is not available ({reason}); the full profile needs "
                                "a GPU; use NEUROTUT_PROFILE=quick on this machine"))
        else:
            checks.append(Check("cuda", INFO, f"not available ({reason}); the quick profile runs on the CPU"))
        return checks

    count = torch.cuda.device_count()
    props = torch.cuda.get_device_properties(0)
    try:
        free = f", {torch.cuda.mem_get_info(0)[0] / 2**30:.1f} GiB free"
    except RuntimeError:  # some drivers cannot report free memory
        free = ""
    cudnn = torch.backends.cudnn.version()
    checks.append(Check("cuda", OK, f"{count} device(s); cuDNN {cudnn}"))
    checks.append(Check("gpu", INFO, f"{props.name}, {props.total_memory / 2**30:.1f} GiB{free}, "
                        f"compute capability {props.major}.{props.minor}"))
    try:
        error = conv3d_max_error("cuda")
    except RuntimeError as exc:  # a driver/toolkit mismatch, an unsupported GPU, out of memory
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        checks.append(Check("cuda op", FAIL, f"a conv3d forward+backward on the GPU raised: {first}"))
        return checks
    if error <= CUDA_CHECK_TOLERANCE:
        checks.append(Check("cuda op", OK, f"conv3d forward+backward on the GPU matches the CPU "
                            f"(max relative error {error:.1e})"))
    else:
        checks.append(Check("cuda op", FAIL, f"conv3d forward+backward on the GPU differs from the CPU: "
                            f"max relative error {error:.1e} > {CUDA_CHECK_TOLERANCE:g}"))
    return checks


def _device() -> Check:
    try:
        device = config.get_device(verbose=False)
    except (RuntimeError, ValueError) as exc:
        return Check("device", FAIL, f"{config.DEVICE_ENV}={os.environ.get(config.DEVICE_ENV)!r}: {exc}")
    source = f" (from {config.DEVICE_ENV})" if os.environ.get(config.DEVICE_ENV) else ""
    return Check("device", INFO, f"the chapters compute on {device}{source}")


def _waterz() -> Check:
    try:
        import waterz
    except ImportError as exc:
        return Check("waterz", FAIL, f"cannot be imported ({exc}); the affinity chapters need it: "
                     "pip install waterz")
    return Check("waterz", OK, getattr(waterz, "__version__", "imported"))


def _data_dir() -> Check:
    try:
        path = config.data_dir()
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        where = os.environ.get(config.DATA_DIR_ENV, "the user cache directory")
        return Check("data dir", FAIL, f"{where} is not writable ({exc}); set {config.DATA_DIR_ENV} to "
                     "a writable folder")
    source = f"from {config.DATA_DIR_ENV}" if os.environ.get(config.DATA_DIR_ENV) else "default"
    return Check("data dir", OK, f"{path} ({source}, writable)")


def _datasets(profile: config.Profile, require_data: bool) -> list[Check]:
    from neurotut.data.download import dataset_dir, is_cached
    from neurotut.data.registry import REGISTRY

    checks = []
    for name in REGISTRY:
        needed = name == profile.dataset
        try:
            cached = is_cached(name)
        except OSError as exc:
            cached, note = False, f" ({exc})"
        else:
            note = ""
        if cached:
            checks.append(Check(f"data {name}", OK, f"cached and verified in {dataset_dir(name)}"))
        elif not needed:
            checks.append(Check(f"data {name}", INFO, f"not cached{note} (not used by the "
                                f"{profile.name} profile)"))
        else:
            hint = (f"not cached{note}: run `neurotut data fetch {name}` (or `neurotut data fill-cache "
                    f"{name} FOLDER` without internet)")
            if require_data:
                checks.append(Check(f"data {name}", FAIL, f"{hint}; the {profile.name} profile uses it"))
            else:
                checks.append(Check(f"data {name}", WARN, f"{hint}; otherwise the chapters download it "
                                    "on first use"))
    return checks


def run_checks(profile_name: str | None = None, require_data: bool = False) -> list[Check]:
    """Every check, in order, for the profile called ``profile_name`` (default: the active one)."""
    checks = [_python()]
    try:
        profile = config.get_profile(profile_name)
    except ValueError as exc:
        return checks + [Check("profile", FAIL, str(exc))]
    source = "given" if profile_name else (f"from {config.PROFILE_ENV}" if os.environ.get(config.PROFILE_ENV)
                                           else "chosen from the hardware")
    checks.append(Check("profile", INFO, f"{profile.name} ({source}); dataset {profile.dataset}"))
    checks += _torch_and_gpu(profile)
    checks.append(_device())
    checks.append(_waterz())
    data_dir = _data_dir()
    checks.append(data_dir)
    if data_dir.status != FAIL:
        checks += _datasets(profile, require_data)
    return checks


def report(checks: list[Check], profile_name: str = "active", stream=None) -> int:
    """Print the checks and a verdict; return the exit code (0: all needed checks pass, 1: not)."""
    stream = stream or sys.stdout
    for c in checks:
        print(f"  {c.status:4s}  {c.name:20s} {c.detail}", file=stream)
    failures = [c for c in checks if c.status == FAIL]
    name = profile_name
    if failures:
        print(f"neurotut doctor: {len(failures)} problem(s) for the {name} profile:", file=stream)
        for c in failures:
            print(f"  - {c.name}: {c.detail}", file=stream)
        return 1
    print(f"neurotut doctor: everything the {name} profile needs is in place", file=stream)
    return 0


def _main(args: argparse.Namespace) -> int:
    checks = run_checks(args.profile, args.require_data)
    try:
        name = args.profile or config.profile_name()
    except ValueError:
        name = "active"
    return report(checks, name)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", help="check Python, torch, CUDA, waterz, profile and data for this machine",
        description="Check that this machine can run a profile: exit 0 when all it needs is in "
        "place, 1 otherwise (one line per problem).")
    p.add_argument("--profile", choices=sorted(config.PROFILES),
                   help=f"check this profile instead of the active one (${config.PROFILE_ENV})")
    p.add_argument("--require-data", action="store_true",
                   help="fail (instead of warn) when the profile's dataset is not in the cache")
    p.set_defaults(func=_main)
