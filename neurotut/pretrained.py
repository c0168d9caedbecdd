"""neurotut's own pretrained networks: where their files are and how to load them.

The weights live in the repository (``data/pretrained/``) with the command line that made them and
their training log; the registry entry ``pretrained`` gives their sha256 and a URL on GitHub. Run
from a checkout (the book build, CI, an editable install) the repository copy is used when its
checksum matches; installed without the repository (Colab: ``pip install git+...``) the file is
downloaded into the data cache and verified, like every other dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neurotut.data.download import fetch, hash_matches
from neurotut.data.registry import get_dataset

#: the registry dataset that holds the pretrained files
DATASET = "pretrained"
#: the quick-profile RSUNet trained on sections 0-79 of the SNEMI3D crop
RSUNET_QUICK = "rsunet_quick_snemi3d_crop.pt"

_REPO_DIR = Path(__file__).resolve().parent.parent / "data" / "pretrained"


def path(name: str = RSUNET_QUICK, progress: bool = False, base_url: str | None = None) -> Path:
    """The verified local file of a pretrained network: the repository copy when its sha256 is
    the registered one, else the data cache's (downloaded from GitHub, or from the mirror
    ``base_url``, when missing)."""
    remote = get_dataset(DATASET).file(name)
    local = _REPO_DIR / name
    if hash_matches(local, remote.known_hash):
        return local
    return fetch(DATASET, [name], base_url=base_url, progress=progress)[0]


def load_rsunet(name: str = RSUNET_QUICK, device: str | torch.device = "cpu"):
    """The pretrained RSUNet in eval mode, with its training configuration and its checkpoint
    record (step, history): ``(model, TrainConfig, dict)``."""
    from neurotut.checkpoints import load_checkpoint, load_model

    file = path(name)
    model, cfg = load_model(file, device)
    ckpt = load_checkpoint(file)
    return model, cfg, {"step": int(ckpt["step"]), "history": ckpt["history"], "path": file}


def chapter4_run_dir() -> Path:
    """Where chapter 4 keeps its training run (``last.pt``, ``history.json``)."""
    from neurotut import config

    return config.data_dir() / "work" / "ch04_rsunet"


def affinity_network(profile=None, device: str | torch.device = "cpu"):
    """The affinity network chapters 6 and 10 segment with: the profile's pretrained RSUNet
    (``Profile.unet_pretrained``; the quick profile's is trained on sections 0-79 of the crop), or,
    where a profile has none (full), the network chapter 4 trained. Returns ``(model in eval
    mode, TrainConfig, one line saying which network it is)``."""
    from neurotut import config
    from neurotut.checkpoints import load_checkpoint, load_model

    profile = profile or config.get_profile()
    if profile.unet_pretrained:
        model, cfg, record = load_rsunet(profile.unet_pretrained, device)
        return model, cfg, f"pretrained RSUNet {record['path'].name} ({record['step']:,} steps)"
    checkpoint = chapter4_run_dir() / "last.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"the {profile.name} profile has no pretrained RSUNet and chapter 4's network is not at "
            f"{checkpoint}: run chapter 4 first"
        )
    model, cfg = load_model(checkpoint, device)
    return model, cfg, f"chapter 4's RSUNet ({load_checkpoint(checkpoint)['step']:,} steps)"


__all__ = ["DATASET", "RSUNET_QUICK", "affinity_network", "chapter4_run_dir", "load_rsunet", "path"]
