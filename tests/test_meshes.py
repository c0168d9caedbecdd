"""Meshes of synthetic objects: positions in nm, ids and sizes kept, the decimation bound; the
interactive figure built from them; bad input."""

import numpy as np
import pytest

from neurotut import mesh_figure, meshes, viz

VOXEL = (30.0, 6.0, 6.0)


def _two_objects() -> np.ndarray:
    """A box (id 7) and a slab through every section (id 3), on a (10, 40, 50) volume."""
    labels = np.zeros((10, 40, 50), np.uint32)
    labels[2:6, 5:30, 10:45] = 7
    labels[:, 32:38, :] = 3
    return labels


def test_vertices_are_in_nanometres_at_the_object_extent():
    labels = _two_objects()
    box, slab = meshes.segment_meshes(labels, [7, 3], VOXEL, max_faces=None)
    # voxel i is centred at i * size; the surface lies half a voxel outside the outermost centres
    assert np.allclose(box.vertices.min(0), [1.5 * 30, 4.5 * 6, 9.5 * 6])
    assert np.allclose(box.vertices.max(0), [5.5 * 30, 29.5 * 6, 44.5 * 6])
    # an object that touches the volume's faces is closed there, half a voxel outside
    assert np.allclose(slab.vertices.min(0), [-0.5 * 30, 31.5 * 6, -0.5 * 6])
    assert np.allclose(slab.vertices.max(0), [9.5 * 30, 37.5 * 6, 49.5 * 6])
    assert box.vertices.dtype == np.float32 and box.faces.dtype == np.int32
    assert box.faces.shape[1] == 3 and box.faces.max() < len(box.vertices)


def test_anisotropy_changes_positions_not_topology():
    labels = _two_objects()
    iso = meshes.segment_mesh(labels, 7, (1.0, 1.0, 1.0), max_faces=None)
    aniso = meshes.segment_mesh(labels, 7, VOXEL, max_faces=None)
    assert np.array_equal(iso.faces, aniso.faces)
    assert np.allclose(aniso.vertices, iso.vertices * np.array(VOXEL))


def test_ids_and_sizes_are_kept_in_the_order_asked():
    labels = _two_objects()
    got = meshes.segment_meshes(labels, [3, 7], VOXEL)
    assert [m.id for m in got] == [3, 7]
    assert [m.size for m in got] == [int((labels == 3).sum()), int((labels == 7).sum())]
    assert meshes.largest_segments(labels, 5) == [7, 3]  # 3500 voxels before 3000
    assert meshes.largest_segments(np.zeros((2, 2, 2), np.uint8), 3) == []
    assert meshes.through_segments(labels, 5) == [3]  # only the slab reaches z = 0 and z = 9


def test_decimation_respects_the_bound_and_keeps_the_shape():
    labels = _two_objects()
    full = meshes.segment_meshes(labels, [7, 3], VOXEL, max_faces=None)
    total = sum(m.n_faces for m in full)
    for bound in (2000, 300, 40):
        small = meshes.segment_meshes(labels, [7, 3], VOXEL, max_faces=bound)
        assert sum(m.n_faces for m in small) <= bound < total
        for a, b in zip(full, small):
            assert b.faces.max() < len(b.vertices)
            # the bounding box stays within a voxel of the undecimated one
            assert np.all(np.abs(a.vertices.min(0) - b.vertices.min(0)) <= np.array(VOXEL))
            assert np.all(np.abs(a.vertices.max(0) - b.vertices.max(0)) <= np.array(VOXEL))
    assert meshes.segment_meshes(labels, [7], VOXEL, max_faces=10**6)[0].n_faces == full[0].n_faces


def test_bad_input_is_one_clear_error():
    labels = _two_objects()
    with pytest.raises(ValueError, match=r"no segment 4, 99 \(it holds 2 segments, ids 3\.\.7\)"):
        meshes.segment_meshes(labels, [7, 4, 99], VOXEL)
    with pytest.raises(ValueError, match="no segment 1 .*no segment"):
        meshes.segment_meshes(np.zeros((3, 3, 3), np.uint8), [1], VOXEL)
    with pytest.raises(ValueError, match="voxel_size"):
        meshes.segment_meshes(labels, [7], (30.0, 0.0, 6.0))
    with pytest.raises(TypeError, match="integer ids"):
        meshes.segment_meshes(labels.astype(np.float32), [7], VOXEL)
    with pytest.raises(ValueError, match="too small"):
        meshes.segment_meshes(labels, [7, 3], VOXEL, max_faces=7)
    with pytest.raises(ValueError, match="no segment in panel 'FFN'"):
        mesh_figure.segments_figure({"truth": (labels, [7]), "FFN": (labels, [])}, VOXEL)


def test_figure_has_one_scene_per_panel_with_hover_ids_and_stays_small():
    labels = _two_objects()
    fig = mesh_figure.segments_figure({"truth": (labels, [7, 3]), "route": (labels, [3])}, VOXEL,
                                      max_faces=1000)
    assert [t.name for t in fig.data] == ["segment 7", "segment 3", "segment 3"]
    assert [t.scene for t in fig.data] == ["scene", "scene", "scene2"]
    assert "segment 7<br>3,500 voxels" in fig.data[0].hovertemplate
    assert sum(len(t.i) for t in fig.data) <= 1000
    # micrometres, x y z: the slab spans the whole x extent of the volume
    assert max(fig.data[1].x) == pytest.approx(49.5 * 6 / 1000, abs=1e-6)
    # every scene spans the whole volume, at its true proportions (x 300 nm, y 240 nm, z 300 nm)
    for scene in (fig.layout.scene, fig.layout.scene2):
        assert scene.xaxis.range == pytest.approx((-0.003, 0.297)) and scene.zaxis.range == pytest.approx((-0.015, 0.285))
        assert (scene.aspectratio.x, scene.aspectratio.y, scene.aspectratio.z) == pytest.approx((1.0, 0.8, 1.0))
    html = mesh_figure.static_html(fig)
    assert 'class="plotly-graph-div"' in html and "<script src" not in html and "cdn" not in html.lower()
    assert len(html) < 200_000


def test_a_full_budget_figure_stays_under_2_mb():
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 200, 200), np.uint32)
    for i in range(1, 10):  # tubes through every section, each with a wavy cross-section
        y, x = rng.integers(20, 180, 2)
        for z in range(40):
            r = 6 + int(4 * np.sin(z / 3 + i))
            labels[z, y - r:y + r, x - r:x + r] = i
    panels = {name: (labels, meshes.largest_segments(labels, 3 * k)) for k, name in enumerate("abc", 1)}
    html = mesh_figure.static_html(mesh_figure.segments_figure(panels, VOXEL))
    assert len(html.encode()) <= 2_000_000


def test_static_and_live_display(monkeypatch):
    labels = _two_objects()
    monkeypatch.setenv("NEUROTUT_STATIC", "1")
    shown = viz.segments_3d({"truth": (labels, [7])}, VOXEL)
    assert 'class="plotly-graph-div"' in shown.data
    live = viz.segments_3d({"truth": (labels, [7])}, VOXEL, interactive=True)
    assert type(live).__name__ == "Figure"


def test_largest_segments_3d_leaves_out_empty_segmentations_and_says_so(monkeypatch):
    monkeypatch.setenv("NEUROTUT_STATIC", "1")
    labels = _two_objects()
    empty = np.zeros_like(labels)
    shown, text = viz.largest_segments_3d({"truth": labels, "FFN": empty}, n=1, voxel_size=VOXEL)
    assert shown.data.count('class="plotly-graph-div"') == 1 and '"scene2"' not in shown.data
    assert text == "truth: the 1 largest of 2 segments (3,500 to 3,500 voxels); FFN: no segment, so no panel."
    shown, text = viz.largest_segments_3d({"FFN": empty}, voxel_size=VOXEL)
    assert shown is None and text == "FFN: no segment, so no panel."
    _, text = viz.largest_segments_3d({"truth": labels}, n=5, voxel_size=VOXEL)
    assert text == "truth: all 2 segments (3,500 to 3,000 voxels)."
