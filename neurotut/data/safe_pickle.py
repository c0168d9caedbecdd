"""Reading pickled ``.npy`` data without letting the pickle run code.

A pickle names the functions and classes ("globals") that :mod:`pickle` must import and call to
rebuild it, so loading an untrusted pickle (``np.load(..., allow_pickle=True)``) can run anything,
``os.system`` included. :class:`RestrictedUnpickler` resolves only the ``(module, name)`` pairs of
an allow-list and refuses every other global with :class:`pickle.UnpicklingError` before anything
is imported or called. :data:`NUMPY_GLOBALS` admits what numpy arrays, dtypes and scalars need.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

try:  # numpy >= 2 (and the compatibility module of numpy 1.26)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - older numpy
    from numpy.core import multiarray as _multiarray

# numpy 1.x writes "numpy.core.multiarray", numpy 2.x "numpy._core.multiarray"
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): _multiarray._reconstruct
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _multiarray.scalar
       for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals come only from ``allowed``: ``{(module, name): object}``.

    ``encoding="latin1"`` reads Python 2 pickles of numpy data (their byte strings are array
    buffers, not text).
    """

    def __init__(self, file: io.BufferedIOBase, allowed: Mapping[tuple[str, str], Any],
                 encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self._allowed = dict(allowed)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load the global {module}.{name}: it is not in the allow-list"
            ) from None


def read_pickled_npy(data: bytes, allowed: Mapping[tuple[str, str], Any]) -> Any:
    """The object stored in the bytes of a ``.npy`` file that holds a pickle (an object array).

    The header is parsed with :mod:`numpy.lib.format`; the rest is loaded by
    :class:`RestrictedUnpickler` with ``allowed``. Raises ValueError for a bad header or a plain
    (non-object) array, and :class:`pickle.UnpicklingError` for a refused global or a corrupted
    pickle.
    """
    stream = io.BytesIO(data)
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        _, _, dtype = npy_format.read_array_header_1_0(stream)
    elif version == (2, 0):
        _, _, dtype = npy_format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    if not dtype.hasobject:
        raise ValueError(f"the .npy data is a plain {dtype} array, not a pickle")
    try:
        return RestrictedUnpickler(stream, allowed).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # truncated or garbled opcodes, wrong arguments to an allowed global
        raise pickle.UnpicklingError(f"corrupted pickle: {type(exc).__name__}: {exc}") from None
