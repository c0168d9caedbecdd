"""How pictures look and where they are shown: label colours, and whether a live kernel can drive
an interactive viewer. Used by :mod:`neurotut.viz` and :mod:`neurotut.mesh_figure` alike."""

from __future__ import annotations

import numpy as np


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



STATIC_ENV = "NEUROTUT_STATIC"


def interactive_session() -> bool:
    """True when a live Jupyter kernel with ipywidgets can drive a viewer.

    False when building the static book (``$NEUROTUT_STATIC=1``, set by ``scripts/book.sh``),
    outside IPython, or without ipywidgets.
    """
    import os

    if os.environ.get(STATIC_ENV) == "1":
        return False
    try:
        from IPython import get_ipython
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
