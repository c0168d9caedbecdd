"""google/ffn's inference results (``seg-*.npz``), read safely, and its published FIB-25 result.

google/ffn saves a result with ``np.savez``: ``segmentation``, ``counters`` (JSON text),
``request`` (the serialized ``InferenceRequest`` protocol buffer, binary) and ``origins``, a
pickled ``{segment id: OriginInfo(start_zyx, iters, walltime_sec)}`` whose class lives in
google/ffn's ``storage`` module. :func:`read_ffn_npz` reads the pickle with
:class:`~neurotut.data.safe_pickle.RestrictedUnpickler`: numpy's own reconstruction functions and
``OriginInfo`` (rebuilt as :class:`neurotut.ffn.storage.OriginInfo`) are admitted, any other
global is refused. ``allow_pickle=True`` is never used.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from neurotut.data.download import fetch
from neurotut.data.safe_pickle import NUMPY_GLOBALS, read_pickled_npy
from neurotut.ffn.storage import OriginInfo

# google/ffn's public module, and the Google-internal one named by its published results
ORIGIN_INFO_MODULES = ("ffn.inference.storage", "google3.research.neuromancer.segmentation.ffn.storage")
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **NUMPY_GLOBALS,
    **{(module, "OriginInfo"): OriginInfo for module in ORIGIN_INFO_MODULES},
}
RESULT_KEYS = ("segmentation", "origins", "counters", "request")


@dataclass
class FFNResult:
    """One google/ffn inference result."""

    segmentation: np.ndarray  # (Z, Y, X) uint64, 0 = background
    origins: dict[int, OriginInfo]  # segment id -> seed (z, y, x), FFN steps, seconds
    counters: dict[str, Any]  # the run's counters ("predict-calls", "voxels-segmented", ...)
    request: bytes  # the serialized InferenceRequest protocol buffer (not JSON)


def _plain_array(data: bytes, name: str) -> np.ndarray:
    try:
        return npy_format.read_array(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _text(array: np.ndarray, name: str) -> str:
    """A 0-d text array: bytes ("S", written by Python 2) or str ("U", Python 3)."""
    if array.shape != () or array.dtype.kind not in "SU":
        raise ValueError(f"{name}: expected text, found {array.shape} {array.dtype}")
    value = array[()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _origins(obj: Any) -> dict[int, OriginInfo]:
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj[()]  # np.savez wraps the dict in a 0-d object array
    if not isinstance(obj, dict):
        raise ValueError(f"origins: expected a dict of OriginInfo, found {type(obj).__name__}")
    origins = {}
    for key, info in obj.items():
        if not isinstance(info, OriginInfo) or len(info.start_zyx) != 3:
            raise ValueError(f"origins: segment {key!r} has no OriginInfo(start_zyx, iters, walltime_sec)")
        z, y, x = (int(v) for v in info.start_zyx)
        origins[int(key)] = OriginInfo((z, y, x), int(info.iters), float(info.walltime_sec))
    return origins


def read_ffn_npz(path: str | os.PathLike) -> FFNResult:
    """Read a google/ffn result ``.npz`` without running anything its pickle names.

    Raises FileNotFoundError for a missing file, ValueError for a file that is not a complete,
    readable result, and :class:`pickle.UnpicklingError` when ``origins`` names a global other
    than numpy's reconstruction functions and ``OriginInfo`` (nothing is imported or called then).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            present = {name.removesuffix(".npy") for name in zf.namelist()}
            missing = [key for key in RESULT_KEYS if key not in present]
            if missing:
                raise ValueError(f"{path} lacks {', '.join(missing)}: not a google/ffn inference result")
            members = {key: zf.read(f"{key}.npy") for key in RESULT_KEYS}  # CRC-checked here
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz file (corrupted or truncated?): {exc}") from None

    try:
        segmentation = _plain_array(members["segmentation"], "segmentation")
        if segmentation.ndim != 3 or segmentation.dtype.kind not in "ui":
            raise ValueError(f"segmentation: expected (Z, Y, X) integer ids, found "
                             f"{segmentation.shape} {segmentation.dtype}")
        if segmentation.dtype.kind == "i" and segmentation.min() < 0:
            raise ValueError("segmentation: ids must be >= 0")
        try:
            counters = json.loads(_text(_plain_array(members["counters"], "counters"), "counters"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"counters: not JSON ({exc})") from None
        if not isinstance(counters, dict):
            raise ValueError("counters: expected a JSON object")
        request = _plain_array(members["request"], "request")
        if request.shape != () or request.dtype.kind != "S":
            raise ValueError(f"request: expected serialized bytes, found {request.shape} {request.dtype}")
        request = request.tobytes()  # not [()]: numpy drops the trailing NULs of an "S" scalar
        origins = _origins(read_pickled_npy(members["origins"], ALLOWED_GLOBALS))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(f"{path}: origins: {exc}") from None
    return FFNResult(segmentation.astype(np.uint64), origins, counters, request)


def load_google_result(base_url: str | None = None, progress: bool = True) -> FFNResult:
    """google/ffn's own segmentation of FlyEM's training_sample2 (``results/fib25/sample-training2.npz``).

    Made with the FIB-25 network and ``inference_training_sample2.pbtxt`` of the same dataset
    (``google-ffn-fib25``); segmentation ``(250, 250, 250)`` with 254 segments, fetched into the
    cache if needed.
    """
    (path,) = fetch("google-ffn-fib25", files=["sample-training2.npz"], base_url=base_url, progress=progress)
    return read_ffn_npz(path)
