"""PNG/TIFF stacks to HDF5 and back, mean/std, and bad input."""

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from neurotut.data import mean_std, read_png_stack, read_stack, stack_to_h5, write_png_stack
from neurotut.io import OutputExistsError, read_volume


@pytest.fixture
def volume():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (5, 17, 23), dtype=np.uint8)


def test_png_stack_round_trip_through_h5(tmp_path, volume):
    write_png_stack(volume, tmp_path / "png")
    spec = stack_to_h5(tmp_path / "png", tmp_path / "img.h5:raw", progress=False)
    assert str(spec).endswith("img.h5:raw")
    back = read_volume(tmp_path / "img.h5@raw")
    assert back.dtype == np.uint8 and np.array_equal(back, volume)
    with h5py.File(tmp_path / "img.h5") as f:
        assert f["raw"].compression == "gzip" and f["raw"].chunks is not None


def test_16bit_label_pngs_round_trip_as_uint32(tmp_path):
    labels = np.arange(4 * 6 * 7, dtype=np.uint16).reshape(4, 6, 7) * 300
    write_png_stack(labels, tmp_path / "seg")
    back = read_png_stack(tmp_path / "seg", kind="labels")
    assert back.dtype == np.uint32 and np.array_equal(back, labels)


def test_multipage_tiff_round_trips(tmp_path, volume):
    tifffile.imwrite(tmp_path / "stack.tif", volume, photometric="minisblack")
    stack_to_h5(tmp_path / "stack.tif", tmp_path / "t.h5", progress=False)  # default dataset raw
    assert np.array_equal(read_volume(tmp_path / "t.h5:raw"), volume)
    labels = (volume.astype(np.uint32) * 70000)
    tifffile.imwrite(tmp_path / "labels.tif", labels, photometric="minisblack")
    assert np.array_equal(read_stack(tmp_path / "labels.tif", kind="labels"), labels)


def test_slices_sorted_by_name(tmp_path, volume):
    for z in (3, 0, 4, 1, 2):  # written out of order
        iio.imwrite(tmp_path / f"{z:04d}.png", volume[z])
    assert np.array_equal(read_png_stack(tmp_path), volume)


def test_mean_std_matches_numpy_in_memory_and_from_h5(tmp_path, volume):
    stack_to_h5_spec = tmp_path / "m.h5:raw"
    write_png_stack(volume, tmp_path / "png")
    stack_to_h5(tmp_path / "png", stack_to_h5_spec, progress=False)
    expected = (volume.astype(float).mean(), volume.astype(float).std())
    assert mean_std(volume) == pytest.approx(expected)
    assert mean_std(str(stack_to_h5_spec), block=2) == pytest.approx(expected, rel=1e-12)


def test_mixed_shapes_name_the_odd_file(tmp_path, volume):
    write_png_stack(volume, tmp_path)
    iio.imwrite(tmp_path / "0002.png", np.zeros((9, 9), np.uint8))
    with pytest.raises(ValueError, match="0002.png"):
        read_png_stack(tmp_path)


def test_wrong_label_dtype_and_colour_images_are_refused(tmp_path):
    iio.imwrite(tmp_path / "0000.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="2D greyscale"):
        read_png_stack(tmp_path, kind="labels")
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(TypeError, match="integer ids"):
        read_stack(tmp_path / "f.tif", kind="labels")
    with pytest.raises(TypeError, match="8- or 16-bit"):
        read_stack(tmp_path / "f.tif", kind="raw")


def test_missing_inputs_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_png_stack(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no .png"):
        read_png_stack(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_stack(tmp_path / "nope.tif")


def test_existing_output_is_never_overwritten_without_the_flag(tmp_path, volume):
    write_png_stack(volume, tmp_path / "png")
    out = tmp_path / "img.h5"
    out.write_bytes(b"precious")  # not HDF5: refused even with overwrite, left as it is
    for overwrite in (False, True):
        with pytest.raises(OSError, match="not a readable HDF5 file"):
            stack_to_h5(tmp_path / "png", f"{out}:raw", overwrite=overwrite, progress=False)
    assert out.read_bytes() == b"precious"
    out.unlink()
    stack_to_h5(tmp_path / "png", f"{out}:raw", progress=False)
    with pytest.raises(OutputExistsError, match="already holds dataset 'raw'"):
        stack_to_h5(tmp_path / "png", f"{out}:raw", progress=False)
    stack_to_h5(tmp_path / "png", f"{out}:raw", overwrite=True, progress=False)
    assert np.array_equal(read_volume(f"{out}:raw"), volume)
    with pytest.raises(OutputExistsError):
        write_png_stack(volume, tmp_path / "png")
