"""FFN training summaries for TensorBoard: scalars and the centre planes of an example."""

from __future__ import annotations

import os

import numpy as np
from scipy.special import expit

from neurotut.ffn.inputs import Example
from neurotut.ffn.train_config import TrainConfig


def center_slices(example: Example) -> dict[str, np.ndarray]:
    """Images of an example's centre planes, each (H, W) float32 in [0, 1]: image, target and
    predicted probability side by side, for the xy, xz and yz planes through the centre."""
    cz, cy, cx = (s // 2 for s in example.canvas.shape)
    prob = expit(example.canvas.astype(np.float64))
    img = example.image
    img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
    planes = {"xy": (slice(cz, cz + 1), slice(None), slice(None)),
              "xz": (slice(None), slice(cy, cy + 1), slice(None)),
              "yz": (slice(None), slice(None), slice(cx, cx + 1))}
    out = {}
    for name, sl in planes.items():
        tiles = [np.squeeze(a[sl]) for a in (img, example.target, prob)]
        gap = np.ones((tiles[0].shape[0], 1))
        out[name] = np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1).astype(np.float32)
    return out


class SummaryLogger:
    """Writes summaries to TensorBoard (``torch.utils.tensorboard``) in ``log_dir``.

    Needs the ``tensorboard`` package; without it, a message says so and nothing is logged
    (training is unaffected).
    """

    def __init__(self, log_dir: str | os.PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("neurotut: the tensorboard package is not installed; no TensorBoard logs "
                  "(pip install tensorboard)")
            self.writer = None
        else:
            self.writer = SummaryWriter(str(log_dir))

    def log(self, row: dict, example: Example | None, config: TrainConfig | None = None) -> None:
        if self.writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and value == value:  # skip NaN
                self.writer.add_scalar(f"ffn/{key}", value, step)
        if example is not None:
            for plane, image in center_slices(example).items():
                self.writer.add_image(f"center_{plane}/image|target|prediction", image[None], step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
