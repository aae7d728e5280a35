"""The book's one plotting style: matplotlib for static figures, plotly for 3-D and trajectories.

Call :func:`use_style` once per notebook. Introduced in ``notebooks/helix``.

Plotly figures are written for the offline book: their HTML output calls the ``Plotly`` that the
book's own pages load once (``_static/plotly.min.js``), never a CDN, and they carry plotly's JSON
mimetype too, which JupyterLab, VS Code and Colab draw by themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch
from plotly.io._base_renderers import MimetypeRenderer
from plotly.subplots import make_subplots

CLASS_COLORS = ("#8c8c8c", "#f28e2b")
"""Class 0 (gray) and class 1 (orange), as in the paper's toy figures."""
SEARCH_COLORS = {"x": "#d62728", "z": "#2ca02c"}
"""Search in X (red) and in Z (green)."""
ACCENT = "#1f77b4"
BOOK_RENDERER = "latentcf_book"


class BookHtmlRenderer(MimetypeRenderer):
    """``text/html`` of a figure that draws with the page's own ``Plotly``: no plotly.js, no MathJax, no CDN."""

    def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
        html = pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                           default_width="100%", default_height=525, validate=False)
        return {"text/html": html}


pio.renderers[BOOK_RENDERER] = BookHtmlRenderer()


def use_style() -> None:
    """Set matplotlib defaults and make plotly figures render in notebooks and in the offline HTML book.

    On Colab plotly keeps its own renderer; elsewhere figures carry plotly's JSON mimetype (drawn by
    JupyterLab and VS Code) and HTML for the book, which loads plotly.js once from its static files.
    """
    plt.rcParams.update({"figure.dpi": 110, "figure.figsize": (6.0, 3.6), "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
                         "font.size": 10})
    if "google.colab" not in sys.modules:
        pio.renderers.default = f"plotly_mimetype+{BOOK_RENDERER}"


def _np(points: torch.Tensor | np.ndarray) -> np.ndarray:
    return points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)


def scatter3d(points, name: str, color: str, size: float = 2.0, opacity: float = 0.6) -> go.Scatter3d:
    """A 3-D point cloud. ``points: (N, 3)``."""
    p = _np(points)
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=name,
                        marker={"size": size, "color": color, "opacity": opacity})


def line3d(points, name: str, color: str, width: float = 4.0, show_legend: bool = True,
           group: str | None = None) -> go.Scatter3d:
    """A 3-D polyline such as a search trajectory. ``points: (T, 3)``."""
    p = _np(points)
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="lines", name=name,
                        line={"color": color, "width": width}, showlegend=show_legend, legendgroup=group)


def parallelepiped(origin, edges, color: str, name: str, show_legend: bool = False) -> go.Mesh3d:
    """The solid spanned by three edge vectors at ``origin``. ``origin: (3,)``, ``edges: (3, 3)`` (rows)."""
    o, e = _np(origin), _np(edges)
    corners = np.array([o + i * e[0] + j * e[1] + k * e[2]
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 5, 7], [4, 7, 6], [0, 1, 5], [0, 5, 4],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 3, 7], [1, 7, 5]])
    return go.Mesh3d(x=corners[:, 0], y=corners[:, 1], z=corners[:, 2], i=faces[:, 0], j=faces[:, 1],
                     k=faces[:, 2], color=color, opacity=0.7, name=name, showlegend=show_legend,
                     flatshading=True)


def figure3d(traces: Sequence[go.BaseTraceType], title: str, height: int = 520) -> go.Figure:
    """One interactive 3-D scene with equal axis scaling."""
    figure = go.Figure(list(traces))
    figure.update_layout(title=title, height=height, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                         scene={"aspectmode": "data"}, legend={"itemsizing": "constant"})
    return figure


def panels3d(panels: dict[str, Sequence[go.BaseTraceType]], height: int = 420) -> go.Figure:
    """Side-by-side 3-D scenes, one per ``{title: traces}`` entry."""
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels),
                           specs=[[{"type": "scene"}] * len(panels)])
    for col, traces in enumerate(panels.values(), start=1):
        for trace in traces:
            figure.add_trace(trace, row=1, col=col)
    figure.update_layout(height=height, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                         legend={"itemsizing": "constant"})
    figure.update_scenes(aspectmode="cube")
    return figure


def loss_curves(histories: dict[str, Sequence[float]], ylabel: str = "training loss",
                validations: dict[str, dict] | None = None) -> plt.Figure:
    """Training losses per step, one panel per model.

    ``validations[name]``, where given, is the training info of :func:`latentcf.core.training.fit`
    with a validation: its held-out losses are drawn as dots and the step of the weights kept as a
    dashed line in the panel ``name``.
    """
    figure, axes = plt.subplots(1, len(histories), figsize=(3.6 * len(histories), 3.0), squeeze=False)
    for ax, (name, values) in zip(axes[0], histories.items()):
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values), color=ACCENT, lw=0.8, label="training batch")
        validation = (validations or {}).get(name)
        if validation is not None:
            ax.plot(validation["val_step"], validation["val_loss"], "o", ms=2.5, color="#d62728", label="held out")
            ax.axvline(validation["best_step"], color="#555555", ls="--", lw=0.8, label="weights kept")
            ax.legend(fontsize=7)
        ax.set(title=name, xlabel="step", ylabel=ylabel)
    figure.tight_layout()
    return figure


def boxplot(groups: dict[str, np.ndarray | torch.Tensor], ylabel: str, xlabel: str = "",
            log: bool = False) -> plt.Figure:
    """One box per group (1.5 IQR whiskers, outliers as circles, the median in red)."""
    figure, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.boxplot([_np(v) for v in groups.values()], tick_labels=list(groups), patch_artist=True,
               boxprops={"facecolor": "#cfe2f3"}, medianprops={"color": "#d62728", "lw": 2})
    ax.set(ylabel=ylabel, xlabel=xlabel, yscale="log" if log else "linear")
    figure.tight_layout()
    return figure


QUADRANT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
"""Classes 0-3 of the LeapFactual square toy (blue, orange, green, red), the colours of its Fig. 4."""


def class_regions(ax: plt.Axes, boxes: Sequence[Sequence[float]], colors: Sequence[str],
                  height: float | None = None, alpha: float = 0.12) -> None:
    """Axis-aligned class regions ``(x0, y0, x1, y1)``.

    Shaded on a 2-D axis; outlined at ``z = height`` on a matplotlib 3-D axis.
    """
    for (x0, y0, x1, y1), color in zip(boxes, colors):
        if height is None:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, color=color, alpha=alpha, lw=0))
        else:
            ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], height, color=color, lw=1.0)


def paths3d(ax: plt.Axes, paths, colors: Sequence[str] | str, **line_style) -> None:
    """Many polylines in a matplotlib 3-D axis at once. ``paths: (T, B, 3)``, ``colors``: one or ``B``."""
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    segments = _np(paths).transpose(1, 0, 2)
    ax.add_collection3d(Line3DCollection(segments, colors=colors, **line_style))


def leap_panel3d(ax: plt.Axes, lift_paths, land_paths, start_colors: Sequence[str],
                 end_colors: Sequence[str] | str, title: str) -> None:
    """One LEAP drawn in ``(x, y, t)`` with ``t`` vertical, as in Fig. 4 of LeapFactual.

    ``lift_paths: (T, B, 3)`` from ``t = 1`` to ``t = 0`` (dashed, hollow start markers);
    ``land_paths: (T, B, 3)`` from ``t = 0`` to ``t = 1`` (solid, filled end markers).
    """
    lift_np, land_np = _np(lift_paths), _np(land_paths)
    paths3d(ax, lift_np, start_colors, linestyles="--", linewidths=0.8)
    paths3d(ax, land_np, end_colors, linewidths=0.8)
    ax.scatter(*lift_np[0].T, facecolors="none", edgecolors=start_colors, s=30, depthshade=False)
    ax.scatter(*land_np[0].T, color="black", s=6, depthshade=False)
    ax.scatter(*land_np[-1].T, color=end_colors, s=30, depthshade=False)
    ax.set(title=title, xlabel="x", ylabel="y", zlabel="t", xlim=(-0.5, 0.5), ylim=(-0.5, 0.5), zlim=(0, 1))
    ax.view_init(elev=18, azim=-65)


def _grid_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(B, H, W)`` grey or ``(B, H, W, 3)`` colour arrays for ``imshow``; uint8 scaled to [0, 1]."""
    array = _np(images)
    if array.dtype == np.uint8:
        array = array / 255.0
    if array.ndim == 4 and array.shape[1] == 3:
        return array.transpose(0, 2, 3, 1).clip(0, 1)
    return array.reshape(len(array), *array.shape[-2:])


def image_grid(rows: dict[str, torch.Tensor | np.ndarray], column_titles: Sequence[str] | None = None,
               cmap: str = "gray", vmin: float = 0.0, vmax: float = 1.0, size: float = 0.9,
               colorbar: bool = False) -> plt.Figure:
    """Images in a grid, one row per ``{row label: images}`` entry.

    ``images``: grey ``(B, H, W)`` or ``(B, 1, H, W)``, or colour ``(B, 3, H, W)``; floats in [0, 1] or
    uint8. For a signed grey difference map pass ``cmap="RdBu_r", vmin=-1, vmax=1, colorbar=True``.
    Rows without images stay blank (a dry run's two-step models may find no counterfactual to show).
    """
    arrays = {label: _grid_images(images) for label, images in rows.items()}
    n_cols = max(1, *(len(images) for images in arrays.values()))
    figure, axes = plt.subplots(len(arrays), n_cols, figsize=(size * n_cols + 0.9, size * len(arrays) + 0.3),
                                squeeze=False)
    for row, (label, images) in zip(axes, arrays.items()):
        for col, ax in enumerate(row):
            ax.set_axis_off()
            if col < len(images):
                shown = ax.imshow(images[col], cmap=cmap, vmin=vmin, vmax=vmax)
        row[0].text(-0.08, 0.5, label, transform=row[0].transAxes, ha="right", va="center")
    for ax, title in zip(axes[0], column_titles or []):
        ax.set_title(title)
    if colorbar and any(len(images) for images in arrays.values()):
        figure.colorbar(shown, ax=axes, shrink=0.8)
    return figure


def labelled_scatter_panels(points: dict[str, dict[str, float]], y: tuple[str, str],
                            panels: Sequence[tuple[str, str]], colors: dict[str, str], height: int = 460) -> go.Figure:
    """Side-by-side 2-D scatter panels, one point per entry of ``points``, every value in the hover text.

    ``points``: ``{label: {column: value}}``; ``y`` and each of ``panels`` are ``(column, axis title)``: every
    panel plots ``y`` against its own column (a Pareto view: one quality against several costs). The legend,
    below the panels, names the points.
    """
    figure = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03)
    for label, values in points.items():
        hover = "<br>".join(f"{column}: {value:.4g}" for column, value in values.items())
        for col, (x_column, _) in enumerate(panels, start=1):
            figure.add_trace(go.Scatter(x=[values[x_column]], y=[values[y[0]]], mode="markers", name=label,
                                        legendgroup=label, showlegend=col == 1,
                                        marker={"size": 12, "color": colors[label], "line": {"width": 1}},
                                        hovertext=f"<b>{label}</b><br>{hover}", hoverinfo="text"),
                             row=1, col=col)
    for col, (_, title) in enumerate(panels, start=1):
        figure.update_xaxes(title_text=title, row=1, col=col)
    figure.update_yaxes(title_text=y[1], row=1, col=1)
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 20, "b": 10},
                         legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0})
    return figure
