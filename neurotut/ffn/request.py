"""The inference request (google/ffn ``inference.proto``, ``run_inference.py``): parsing the
original's text proto or YAML, :class:`InferenceRequest`, bounding boxes, and running a request on
one subvolume (:func:`run_request`). The command line is ``neurotut ffn inference``
(:mod:`neurotut.ffn.cli`). A deviation from the original: the request may also be YAML."""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from neurotut.ffn import storage
from neurotut.ffn.checkpoints import load_network
from neurotut.ffn.inference import Canvas, InferenceOptions, Predictor, TorchPredictor, normalize_image
from neurotut.ffn.model import model_args_to_zyx
from neurotut.ffn.seeds import SEED_POLICIES
from neurotut.geometry import as_zyx, parse_xyz
from neurotut.io import check_can_write, check_dataset, get_dataset, open_h5, parse_volume_spec


_TOKEN = re.compile(
    r"""\s*(?:(?P<comment>\#[^\n]*)|(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<punct>[{}:<>;,\[\]])|(?P<word>[^\s{}:<>;,"'\[\]\#]+))"""
)


def parse_text_proto(text: str) -> dict:
    """Parse protobuf text format (the original's ``.pbtxt`` requests) into nested dicts.

    ``name: value`` pairs and ``name { ... }`` messages; a repeated name becomes a list.
    Strings are unquoted, numbers become int/float, ``true``/``false`` bool.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot parse the text proto near {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "comment" or kind is None:
            continue
        tokens.append((kind, m.group(kind)))

    def value_of(kind: str, tok: str):
        if kind == "string":
            return ast.literal_eval(tok)
        low = tok.lower()
        if low in ("true", "false"):
            return low == "true"
        for cast in (int, float):
            try:
                return cast(tok)
            except ValueError:
                pass
        return tok  # an enum name

    def message(i: int, closing: str | None) -> tuple[dict, int]:
        out: dict = {}
        while i < len(tokens):
            kind, tok = tokens[i]
            if closing is not None and kind == "punct" and tok == closing:
                return out, i + 1
            if kind == "punct" and tok in ";,":
                i += 1
                continue
            if kind != "word":
                raise ValueError(f"expected a field name, found {tok!r}")
            name, i = tok, i + 1
            if i < len(tokens) and tokens[i] == ("punct", ":"):
                i += 1
            if i >= len(tokens):
                raise ValueError(f"field {name!r} has no value")
            kind, tok = tokens[i]
            if kind == "punct" and tok in "{<":
                value, i = message(i + 1, "}" if tok == "{" else ">")
            elif kind == "punct" and tok == "[":
                value, i = [], i + 1
                while tokens[i] != ("punct", "]"):
                    if tokens[i] != ("punct", ","):
                        value.append(value_of(*tokens[i]))
                    i += 1
                i += 1
            elif kind in ("string", "word"):
                value = value_of(kind, tok)
                i += 1
                while i < len(tokens) and tokens[i][0] == "string" and kind == "string":
                    value += ast.literal_eval(tokens[i][1])  # adjacent strings concatenate
                    i += 1
            else:
                raise ValueError(f"unexpected {tok!r} after field {name!r}")
            if name in out:
                if not isinstance(out[name], list) or isinstance(value, list):
                    out[name] = [out[name]]
                out[name].append(value)
            else:
                out[name] = value
        if closing is not None:
            raise ValueError(f"missing {closing!r} at the end of the text proto")
        return out, i

    return message(0, None)[0]


_OPTION_FIELDS = {f for f in InferenceOptions.__dataclass_fields__}
_IGNORED_FIELDS = {"concurrent_requests", "model_name", "movement_policy_name"}
_UNSUPPORTED_FIELDS = {
    "masks", "seed_masks", "init_segmentation", "alignment_options", "shift_mask",
    "shift_mask_fov", "shift_mask_threshold", "shift_mask_scale", "histogram_matching",
    "self_prediction", "reference_histogram", "movement_policy_args",
}


@dataclass(frozen=True)
class InferenceRequest:
    """The original's ``InferenceRequest``, with the fields neurotut runs.

    ``image`` is ``file.h5:dataset`` (or ``@``); ``model_checkpoint_path`` a neurotut FFN
    checkpoint (``model.ckpt-<step>.pt`` of :mod:`neurotut.ffn.trainer`) or a google/ffn
    TensorFlow checkpoint prefix (``model.ckpt-7000000``, read by :mod:`neurotut.ffn.tf_model`);
    ``model_args`` the original's JSON with ``fov_size`` / ``deltas`` in x, y, z (optional for a
    neurotut checkpoint, which knows its architecture; when given, it must agree; a TensorFlow
    checkpoint takes its fov_size and deltas from it).
    """

    image: str
    image_mean: float
    image_stddev: float
    model_checkpoint_path: str
    segmentation_output_dir: str
    model_args: dict = field(default_factory=dict)
    seed_policy: str = "PolicyPeaks"
    seed_policy_args: dict = field(default_factory=dict)
    inference_options: InferenceOptions = field(default_factory=InferenceOptions)
    #: seconds between inference checkpoints; 0 = none (as in the original)
    checkpoint_interval: float = 0.0
    #: most positions per network call (results do not depend on it)
    batch_size: int = 1
    #: run the network under autocast (float16 on CUDA, bfloat16 on CPU); changes results slightly
    mixed_precision: bool = False

    @classmethod
    def from_dict(cls, data: Mapping) -> InferenceRequest:
        """From the parsed YAML or text proto (the original's field names)."""
        data = dict(data)
        unsupported = sorted(set(data) & _UNSUPPORTED_FIELDS)
        if unsupported:
            raise ValueError(f"the request uses {unsupported}, which neurotut's inference does not support")
        for name in _IGNORED_FIELDS & set(data):
            if name == "model_name" and "ConvStack3D" not in str(data[name]):
                raise ValueError(f"model_name {data[name]!r}: only ConvStack3DFFNModel is implemented")
            data.pop(name)
        image = data.pop("image", None)
        if isinstance(image, Mapping):
            if "hdf5" not in image:
                raise ValueError(f"image must name an HDF5 volume (image {{ hdf5: 'file.h5:raw' }}), got {image}")
            image = image["hdf5"]
        if "checkpoint" in data and "model_checkpoint_path" not in data:
            data["model_checkpoint_path"] = data.pop("checkpoint")
        missing = [k for k in ("image_mean", "image_stddev", "model_checkpoint_path", "segmentation_output_dir")
                   if k not in data] + ([] if image else ["image"])
        if missing:
            raise ValueError(f"the inference request lacks {missing}")
        options = dict(data.pop("inference_options", {}) or {})
        unknown = set(options) - _OPTION_FIELDS
        if unknown:
            raise ValueError(f"unknown inference_options {sorted(unknown)}; known: {sorted(_OPTION_FIELDS)}")
        if "min_boundary_dist" in options:
            options["min_boundary_dist"] = parse_xyz(options["min_boundary_dist"], "min_boundary_dist")
        for key in ("model_args", "seed_policy_args"):
            value = data.get(key)
            if isinstance(value, str):
                data[key] = json.loads(value) if value.strip() else {}
            elif value is None:
                data[key] = {}
        known = set(cls.__dataclass_fields__) - {"image", "inference_options"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown request fields {sorted(unknown)}; known: {sorted(known | {'image', 'inference_options'})}")
        if data.get("seed_policy", "PolicyPeaks") not in SEED_POLICIES:
            raise ValueError(f"seed_policy {data['seed_policy']!r} is not one of {sorted(SEED_POLICIES)}")
        return cls(image=str(image), inference_options=InferenceOptions(**options), **data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> InferenceRequest:
        """Read a request file: YAML (``.yml``/``.yaml``) or the original's text proto."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such inference request: {path}")
        return cls.parse(path.read_text(), yaml_format=path.suffix.lower() in (".yml", ".yaml"))

    @classmethod
    def parse(cls, text: str, yaml_format: bool | None = None) -> InferenceRequest:
        """Parse request text; ``yaml_format=None`` guesses (text proto when it has ``{``)."""
        if yaml_format is None:
            yaml_format = "{" not in text
        if yaml_format:
            import yaml

            data = yaml.safe_load(text) or {}
            if not isinstance(data, Mapping):
                raise ValueError("the YAML request must be a mapping of field: value")
        else:
            data = parse_text_proto(text)
        return cls.from_dict(data)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["inference_options"] = self.inference_options.as_dict()
        return d


def parse_bounding_box(text: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``--bounding_box``: ``start { x:0 y:0 z:0 } size { x:512 y:512 z:100 }`` (the original's
    text proto) or ``x,y,z:x,y,z`` (start:size) -> ``(start_zyx, size_zyx)``."""
    text = text.strip()
    if "{" in text:
        data = parse_text_proto(text)
        if set(data) != {"start", "size"}:
            raise ValueError(f"the bounding box needs start {{...}} and size {{...}}, got {sorted(data)}")
        start, size = parse_xyz(data["start"], "start"), parse_xyz(data["size"], "size")
    else:
        parts = text.split(":")
        try:
            start, size = (tuple(int(v) for v in p.split(",")) for p in parts)
        except ValueError:
            raise ValueError(f"{text!r}: write the bounding box as x,y,z:x,y,z (start:size)") from None
        if len(start) != 3 or len(size) != 3:
            raise ValueError(f"{text!r}: write the bounding box as x,y,z:x,y,z (start:size)")
        start, size = start[::-1], size[::-1]
    if any(s < 0 for s in start) or any(s <= 0 for s in size):
        raise ValueError(f"bounding box start must be >= 0 and size > 0, got start {start} size {size} (z, y, x)")
    return start, size  # type: ignore[return-value]

def load_predictor(request: InferenceRequest, device=None):
    """The network of a request: (TorchPredictor, model config). ``model_checkpoint_path`` is a
    neurotut checkpoint or a google/ffn TensorFlow checkpoint prefix. Checks ``model_args`` and
    warns when pad_value / move_threshold differ from training's seed_pad / threshold."""
    model, train_config = load_network(request.model_checkpoint_path, request.model_args, device or "cpu")
    if request.model_args:
        asked = model_args_to_zyx(request.model_args)
        have = model.config
        for key in request.model_args:
            if getattr(asked, key) != getattr(have, key):
                raise ValueError(
                    f"model_args {key} = {getattr(asked, key)} (z, y, x) but the checkpoint's model "
                    f"has {getattr(have, key)}"
                )
    opts = request.inference_options
    for ours, theirs, name in ((opts.pad_value, train_config.seed_pad, "pad_value/seed_pad"),
                               (opts.move_threshold, train_config.threshold, "move_threshold/threshold")):
        if abs(ours - theirs) > 1e-9:
            print(f"note: inference {name.split('/')[0]} {ours} differs from training's "
                  f"{name.split('/')[1]} {theirs}; the manual recommends matching them", file=sys.stderr)
    return TorchPredictor(model, device, request.mixed_precision), model.config


def run_request(
    request: InferenceRequest,
    bounding_box: tuple[Sequence[int], Sequence[int]] | None = None,
    overwrite: bool = False,
    device=None,
    predictor: Predictor | None = None,
    model_config=None,
    progress: bool = True,
) -> Path:
    """Run an inference request on one subvolume, as ``run_inference.py``; returns the ``.npz``.

    Args:
        bounding_box: ``(start, size)`` in (z, y, x); None = the whole image. The box is one
            canvas: the whole subvolume is held in memory, as in the original.
        overwrite: replace an existing result. Without it an existing result raises
            :class:`~neurotut.io.OutputExistsError` before any work (the original silently skips).
        predictor, model_config: use this network instead of loading the request's checkpoint.

    An inference checkpoint (``.cpoint``) of an interrupted run with the same settings is
    resumed and removed at the end.
    """
    spec = parse_volume_spec(request.image)
    with open_h5(spec.path) as f:
        dset = get_dataset(f, spec.dataset)
        check_dataset(dset, spec, ndim=3)
        shape = dset.shape
        start, size = bounding_box if bounding_box is not None else ((0, 0, 0), shape)
        start = as_zyx(start, "bounding box start")
        size = as_zyx(size, "bounding box size", 1)
        end = tuple(min(s + n, full) for s, n, full in zip(start, size, shape))
        if any(s >= e for s, e in zip(start, end)):
            raise ValueError(f"the bounding box start {start} (z, y, x) lies outside the image {shape}")
        out_dir = Path(request.segmentation_output_dir)
        npz_path = storage.segmentation_path(out_dir, start)
        check_can_write(npz_path, overwrite)
        check_can_write(storage.probability_path(out_dir, start), overwrite)
        raw = dset[tuple(slice(s, e) for s, e in zip(start, end))]
    if predictor is None:
        predictor, model_config = load_predictor(request, device)
    elif model_config is None:
        raise ValueError("give model_config (fov_size, deltas) together with a predictor")
    image = normalize_image(raw, request.image_mean, request.image_stddev)
    cpoint = storage.checkpoint_path(out_dir, start)
    canvas = Canvas(
        image, predictor, model_config.fov_size, model_config.deltas, request.inference_options,
        checkpoint_path=cpoint,
        checkpoint_interval=request.checkpoint_interval if request.checkpoint_interval > 0 else None,
        batch_size=request.batch_size,
    )
    if cpoint.exists():
        canvas.restore_checkpoint(cpoint)
        print(f"resuming from the inference checkpoint {cpoint}", file=sys.stderr)
    canvas.segment_all(request.seed_policy, request.seed_policy_args, progress=progress)
    saved = storage.save_subvolume(
        out_dir, start, canvas.segmentation, canvas.origins, canvas.overlaps,
        counters=dict(canvas.counters), request=request.as_dict(), seg_prob=canvas.seg_prob,
        overwrite=overwrite,
    )
    storage.write_counters(out_dir, canvas.counters)
    if cpoint.exists():
        cpoint.unlink()
    return saved
