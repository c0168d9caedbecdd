"""Interactive 3D figures of segment meshes (plotly), for the static book and for notebooks.

Why plotly: its figures are plain JSON drawn by one JavaScript file (plotly.js, WebGL), so the same
figure works in three places without a server: in the static book (the page carries the JSON and
loads plotly.js once from the book's own ``_static`` folder, so nothing comes from the internet),
in JupyterLab and in Colab (the figure object displays itself with a kernel). Rotating, zooming
and hovering (segment id and size) happen in the browser. k3d and ipyvolume need a widget
manager for the static book, pythreejs the same; VTK.js-based viewers embed whole scenes.

Figures are built from :class:`~neurotut.meshes.Mesh` objects (vertices in nm, z, y, x) and drawn
in micrometres with x, y, z axes at their true scale. Vertex and index arrays are sent as typed
arrays, so a figure of 60,000 triangles stays near 1.5 MB of HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from neurotut import meshes as meshes_mod
from neurotut.meshes import Mesh

#: the script the static book loads once per page that holds a figure (see ``_ext/neurotut_book.py``)
PLOTLY_JS = "plotly.min.js"
#: the class of the element that holds a plotly figure in its HTML
FIGURE_CLASS = "plotly-graph-div"
#: the camera of a one-panel figure before anyone turns it: from the front, a little from above
CAMERA = dict(eye=dict(x=1.4, y=-1.4, z=0.9), up=dict(x=0, y=0, z=1))
#: how much farther the camera stands per extra panel (narrow scenes would crop the volume)
CAMERA_STEP_BACK = 0.35


def _rgb(segment_id: int, seed: int = 0) -> str:
    from neurotut.display import colorize

    r, g, b = (255 * colorize(np.array([segment_id]), seed)[0]).astype(int)
    return f"rgb({r},{g},{b})"


def mesh_trace(mesh: Mesh, voxel_size: Sequence[float] | None = None, name: str = "", seed: int = 0):
    """One ``plotly.graph_objects.Mesh3d`` of ``mesh`` in micrometres (x, y, z), coloured like
    :func:`neurotut.display.colorize`; hovering shows the segment id and size (voxels, and um^3 when
    ``voxel_size`` (z, y, x) nm is given)."""
    import plotly.graph_objects as go

    um = mesh.vertices.astype(np.float32) / 1000.0
    size = f"{mesh.size:,} voxels"
    if voxel_size is not None:
        size += f" ({mesh.size * float(np.prod(voxel_size)) / 1e9:.3f} um³)"
    faces = mesh.faces.astype(np.uint16 if len(mesh.vertices) <= np.iinfo(np.uint16).max else np.uint32)
    return go.Mesh3d(
        x=um[:, 2], y=um[:, 1], z=um[:, 0], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
        color=_rgb(mesh.id, seed), flatshading=False, name=f"segment {mesh.id}",
        hovertemplate=f"segment {mesh.id}<br>{size}<extra>{name}</extra>",
        lighting=dict(ambient=0.45, diffuse=0.8, specular=0.15, roughness=0.6),
        lightposition=dict(x=1e4, y=-1e4, z=2e4),
    )


def mesh_figure(
    panels: Mapping[str, Sequence[Mesh]],
    voxel_size: Sequence[float] | None = None,
    height: int = 480,
    title: str | None = None,
    seed: int = 0,
    shape: Sequence[int] | None = None,
):
    """A plotly figure with one 3D scene per panel (side by side), ``{title: meshes}``.

    Axes are x, y, z in um at their true scale; every scene starts from the same camera (farther
    back the more panels share the width). With
    ``shape`` (the volume's (Z, Y, X)) and ``voxel_size``, every scene spans the whole volume, so
    panels compare at a glance; otherwise each fits its meshes. Raises ValueError when there is no
    panel or a panel holds no mesh (an empty 3D figure says nothing).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not panels:
        raise ValueError("no panel to draw")
    empty = [name for name, ms in panels.items() if len(ms) == 0]
    if empty:
        raise ValueError(f"no mesh in panel {', '.join(map(repr, empty))}; leave it out")
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), specs=[[{"type": "scene"}] * len(names)],
                        subplot_titles=names, horizontal_spacing=0.02)
    for col, name in enumerate(names, start=1):
        for mesh in panels[name]:
            fig.add_trace(mesh_trace(mesh, voxel_size, name, seed), row=1, col=col)
    axis = dict(showbackground=False, showspikes=False, tickformat=".1f")
    back = 1.0 + CAMERA_STEP_BACK * (len(names) - 1)
    camera = dict(CAMERA, eye={k: v * back for k, v in CAMERA["eye"].items()})
    scene = dict(aspectmode="data", camera=camera, xaxis=dict(title="x (um)", **axis),
                 yaxis=dict(title="y (um)", **axis), zaxis=dict(title="z (um)", **axis))
    if shape is not None and voxel_size is not None:
        lo = -0.5 * np.asarray(voxel_size, float)[::-1] / 1000.0  # x, y, z um; voxel edges
        hi = (np.asarray(shape, float)[::-1] - 0.5) * np.asarray(voxel_size, float)[::-1] / 1000.0
        ratio = (hi - lo) / (hi - lo).max()
        scene.update(aspectmode="manual", aspectratio=dict(zip("xyz", ratio.tolist())))
        for name, a, b in zip(("xaxis", "yaxis", "zaxis"), lo, hi):
            scene[name] = dict(scene[name], range=[float(a), float(b)], autorange=False)
    fig.update_scenes(**scene)
    fig.update_layout(height=height, showlegend=False, margin=dict(l=0, r=0, t=60 if title else 30, b=0),
                      title=title, paper_bgcolor="white", template="plotly_white")
    return fig


def segments_figure(
    panels: Mapping[str, tuple[np.ndarray, Sequence[int]]],
    voxel_size: Sequence[float],
    max_faces: int = 60_000,
    **figure_args,
):
    """Mesh and draw segments: ``{title: (labels (Z, Y, X) integers, ids)}`` -> :func:`mesh_figure`,
    every scene spanning the whole volume.

    ``max_faces`` triangles in all, shared equally by the panels (each panel's meshes are
    decimated to its share). ValueError when a panel's labels lack one of its ids or it has none.
    """
    if not panels:
        raise ValueError("no panel to draw")
    empty = [name for name, (_, ids) in panels.items() if len(ids) == 0]
    if empty:
        raise ValueError(f"no segment in panel {', '.join(map(repr, empty))}; leave it out")
    share = max_faces // len(panels)
    meshed = {name: meshes_mod.segment_meshes(labels, ids, voxel_size, share)
              for name, (labels, ids) in panels.items()}
    shape = np.max([np.shape(labels) for labels, _ in panels.values()], axis=0)
    return mesh_figure(meshed, voxel_size, shape=tuple(int(s) for s in shape), **figure_args)


def static_html(fig) -> str:
    """The figure as an HTML fragment that loads no script itself: the page must provide
    ``Plotly`` (the book adds its own copy of plotly.js to every page that holds a figure)."""
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def show(fig, interactive: bool | None = None):
    """Display ``fig``: the plotly figure itself with a live kernel (JupyterLab, Colab), an HTML
    block for the static book otherwise (``interactive`` None: :func:`neurotut.display.interactive_session`)."""
    from neurotut.display import interactive_session

    if interactive_session() if interactive is None else interactive:
        return fig
    from IPython.display import HTML

    return HTML(static_html(fig))


def plotly_js() -> str:
    """The source of the plotly.js that the installed plotly package draws its figures with."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
