"""Neuroglancer on local arrays: ``neurotut view`` and :func:`neurotut.viz.neuroglancer_viewer`.

Neuroglancer is the viewer connectomics labs browse segmentations with (google/ffn and PyTorch
Connectomics point to it). The ``neuroglancer`` Python package serves arrays held in this process
to the Neuroglancer web client it ships, from a small web server bound to 127.0.0.1 only: the data
never leaves the machine and nothing is fetched from the internet. The viewer lives as long as
the Python process (a notebook's kernel, or ``neurotut view`` until Ctrl-C); the static book cannot
embed it.

Layers: one image (uint8 or float) and any number of segmentations (non-negative integer ids), all
(Z, Y, X) of the same shape, shown at the voxel size (z, y, x) in nm.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence

import numpy as np

from neurotut.meshes import check_voxel_size

#: the only address the viewer's server listens on
LOOPBACK = "127.0.0.1"


def check_shapes(layers: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
    """The common (Z, Y, X) shape of ``{layer name: shape}``; ValueError naming a layer that differs."""
    shapes = {name: tuple(shape) for name, shape in layers.items()}
    if not shapes:
        raise ValueError("nothing to show: give an image or a segmentation")
    for name, shape in shapes.items():
        if len(shape) != 3:
            raise ValueError(f"{name} has shape {shape}; expected (Z, Y, X)")
    first_name, first = next(iter(shapes.items()))
    for name, shape in shapes.items():
        if shape != first:
            raise ValueError(f"{name} has shape {shape} but {first_name} has {first}; all layers must "
                             "cover the same (Z, Y, X) voxels")
    return first


def _segmentation_array(name: str, seg: np.ndarray) -> np.ndarray:
    """Ids as an unsigned type Neuroglancer reads (uint8..uint64); negative ids are refused."""
    seg = np.asarray(seg)
    if not (np.issubdtype(seg.dtype, np.integer) or seg.dtype == bool):
        raise TypeError(f"segmentation {name!r} holds {seg.dtype}; expected integer ids")
    if np.issubdtype(seg.dtype, np.unsignedinteger):
        return seg
    if seg.size and seg.min() < 0:
        raise ValueError(f"segmentation {name!r} has negative ids; Neuroglancer needs ids >= 0")
    return seg.astype(np.uint64 if seg.dtype.itemsize > 4 else np.uint32)


def open_viewer(
    image: np.ndarray | None,
    segmentations: Mapping[str, np.ndarray],
    voxel_size: Sequence[float] = (30.0, 6.0, 6.0),
    port: int = 0,
    image_name: str = "image",
):
    """A ``neuroglancer.Viewer`` on 127.0.0.1 (``port`` 0: any free port) showing ``image``
    (Z, Y, X) and ``segmentations`` ``{layer name: (Z, Y, X) ids}``, voxel size (z, y, x) nm.

    The view starts in the middle of the volume with the xy, xz, yz and 3D panels. ``str(viewer)``
    is the URL to open in a browser on this machine.
    """
    import neuroglancer

    shape = check_shapes(({image_name: np.shape(image)} if image is not None else {})
                         | {name: np.shape(s) for name, s in segmentations.items()})
    scales = check_voxel_size(voxel_size)
    if image is not None and not (np.asarray(image).dtype == np.uint8
                                  or np.issubdtype(np.asarray(image).dtype, np.floating)):
        raise TypeError(f"the image holds {np.asarray(image).dtype}; expected uint8 or floats")
    neuroglancer.set_server_bind_address(LOOPBACK, bind_port=int(port))
    dims = neuroglancer.CoordinateSpace(names=["z", "y", "x"], units="nm", scales=list(scales))
    viewer = neuroglancer.Viewer()
    with viewer.txn() as state:
        state.dimensions = dims
        if image is not None:
            state.layers[image_name] = neuroglancer.ImageLayer(
                source=neuroglancer.LocalVolume(np.asarray(image), dimensions=dims, volume_type="image"))
        for name, seg in segmentations.items():
            state.layers[name] = neuroglancer.SegmentationLayer(source=neuroglancer.LocalVolume(
                _segmentation_array(name, seg), dimensions=dims, volume_type="segmentation"))
        state.position = [s / 2 for s in shape]
        state.layout = "4panel"
    url = viewer.get_viewer_url()
    if not url.startswith(f"http://{LOOPBACK}:"):  # a server started elsewhere before, on another address
        raise RuntimeError(f"the Neuroglancer server listens at {url}, not on {LOOPBACK}; call "
                           "neuroglancer.stop() first")
    return viewer


def stop() -> None:
    """Stop the viewer's server (every viewer URL of this process stops working)."""
    import neuroglancer

    neuroglancer.stop()


# ------------------------------------------------------------------------------------------------
# neurotut view

VIEW_EPILOG = """examples:
  neurotut view images.h5:raw
  neurotut view images.h5:raw labels.h5:labels seg.h5:segmentation_0.30 --voxel-size 30 6 6

The viewer runs on this machine only (127.0.0.1) until Ctrl-C. From another computer, forward the
port: ssh -L PORT:127.0.0.1:PORT this-machine, then open the URL there."""


def _layer_name(spec, taken: set[str]) -> str:
    name = f"{spec.path.stem}:{spec.dataset}"
    k = 2
    base = name
    while name in taken:
        name, k = f"{base} ({k})", k + 1
    taken.add(name)
    return name


def _view_command(args: argparse.Namespace) -> int:
    from neurotut.io import check_dataset, get_dataset, open_h5, parse_volume_spec, read_volume

    image_spec = parse_volume_spec(args.image, default_dataset="raw")
    seg_specs = [parse_volume_spec(s, default_dataset="segmentation") for s in args.segmentation]
    voxel_size = check_voxel_size(args.voxel_size)
    shapes = {}
    for spec, kind in [(image_spec, "image")] + [(s, "integer") for s in seg_specs]:
        with open_h5(spec.path) as f:  # check every layer from the metadata before reading
            dset = get_dataset(f, spec.dataset)
            check_dataset(dset, spec, ndim=3, kind=kind)
            shapes[str(spec)] = dset.shape
    check_shapes(shapes)
    names: set[str] = set()
    image = read_volume(image_spec)
    segs = {_layer_name(s, names): read_volume(s) for s in seg_specs}
    viewer = open_viewer(image, segs, voxel_size, port=args.port, image_name=_layer_name(image_spec, names))
    print(f"Neuroglancer: {viewer.get_viewer_url()}", flush=True)
    print(f"layers: {', '.join([str(image_spec)] + [str(s) for s in seg_specs])}; shape {image.shape} (z, y, x), "
          f"voxel size {' x '.join(f'{v:g}' for v in voxel_size)} nm (z, y, x)", flush=True)
    print("serving on 127.0.0.1 only; press Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop()
        print("stopped", flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``neurotut view``."""
    p = subparsers.add_parser(
        "view",
        help="open an image and segmentations in Neuroglancer (served on 127.0.0.1)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Open an EM image and any number of segmentations (HDF5 datasets of the same "
        "(Z, Y, X) shape) in Neuroglancer, served from this machine on 127.0.0.1 only, and print "
        "the URL to open in a browser.",
        epilog=VIEW_EPILOG,
    )
    p.add_argument("image", help="IMAGE.h5:dataset, (Z, Y, X) uint8 or float (default dataset 'raw')")
    p.add_argument("segmentation", nargs="*", help="SEG.h5:dataset, (Z, Y, X) integer ids, the same "
                   "shape (default dataset 'segmentation')")
    p.add_argument("--voxel-size", nargs=3, type=float, default=(30.0, 6.0, 6.0), metavar=("Z", "Y", "X"),
                   help="voxel size in nm (default 30 6 6, SNEMI3D)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    p.set_defaults(func=_view_command)
