"""The notebook explorer's plotly scatter of a LatentView: one trace per class (click the legend to hide one),
coloured by class or by a known factor, and a last trace marking the sliders' z."""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
import torch

from latent_view import Colouring, LatentView

COLORS = plotly.colors.qualitative.D3  # matplotlib's tab10, as in plots.py
FIGURE_SIZE = 480  # pixels of the scatter, width and height: leaves room for the controls beside it
Z_MARKER = dict(symbol="diamond", color="white", line=dict(color="black", width=3))  # no emoji font needed


def class_markers(view: LatentView, colouring: Colouring) -> list[dict]:
    """The marker of each class's trace: the class's colour, or a colour per point from the factor's value index
    (one colour bar, on the first trace)."""
    if colouring.by_class:
        return [dict(size=2, color=COLORS[c % len(COLORS)], showscale=False) for c in range(len(view.class_names))]
    scale = dict(colorscale="Viridis", cmin=0, cmax=max(colouring.levels - 1, 1))
    bar = dict(title=dict(text=colouring.name, side="right"), x=0, xanchor="left", len=0.5, thickness=12)
    return [
        dict(size=2, color=colouring.values[view.labels == c].numpy(), showscale=c == 0, colorbar=bar, **scale)
        for c in range(len(view.class_names))
    ]


def scatter(view: LatentView, colouring: Colouring) -> go.FigureWidget:
    """One trace per class (click the legend to hide one) on the view's shown dimensions, and a last trace marking z:
    3-d for three dimensions, 2-d for two, a strip per class for one."""
    dims, traces = view.dims, []
    for c, (name, marker) in enumerate(zip(view.class_names, class_markers(view, colouring))):
        index = torch.nonzero(view.labels == c).flatten()
        xyz = (
            [view.means[index, d] for d in dims] if len(dims) > 1 else [view.means[index, dims[0]], view.strip()[index]]
        )
        style = dict(
            name=name,
            mode="markers",
            customdata=index.numpy(),
            marker=marker,
            hovertemplate=f"{name}<br>image %{{customdata}} (click: go there)<extra></extra>",
        )
        xyz = [coordinate.numpy() for coordinate in xyz]
        traces.append(
            go.Scatter3d(**dict(zip("xyz", xyz)), **style)
            if len(dims) == 3
            else go.Scattergl(x=xyz[0], y=xyz[1], **style)
        )
    marker = dict(
        name="z (sliders)", mode="markers", hoverinfo="skip", marker=dict(**Z_MARKER, size=14 if len(dims) == 3 else 16)
    )
    traces.append(go.Scatter3d(x=[0], y=[0], z=[0], **marker) if len(dims) == 3 else go.Scatter(x=[0], y=[0], **marker))
    most = f"<br>the {len(dims)} of {view.latent_dim} dimensions that vary most" if view.latent_dim > len(dims) else ""
    titles, ranges = [f"z{d + 1}" for d in dims], view.ranges(dims)
    layout = dict(
        title=dict(text=f"posterior means of {len(view):,} test images{most}", font_size=14, x=0.01, xanchor="left"),
        modebar=dict(orientation="v"),  # down the right edge, clear of the title
        width=FIGURE_SIZE,
        height=FIGURE_SIZE + 40,
        margin=dict(l=0, r=0, t=50 if most else 30, b=0),
        legend=dict(itemsizing="constant", orientation="h", y=0, yanchor="top", font_size=11),
        showlegend=colouring.by_class,  # by a factor, the legend would show each class in its first point's colour
    )
    if len(dims) == 3:
        layout["scene"] = dict(
            aspectmode="cube",
            **{
                f"{axis}axis": dict(title=title, range=span, showspikes=False)
                for axis, title, span in zip("xyz", titles, ranges)
            },
        )
    elif len(dims) == 2:
        layout.update(xaxis=dict(title=titles[0], range=ranges[0]), yaxis=dict(title=titles[1], range=ranges[1]))
    else:
        layout.update(
            xaxis=dict(title=titles[0], range=ranges[0]),
            yaxis=dict(tickvals=list(range(len(view.class_names))), ticktext=view.class_names, autorange="reversed"),
        )
    return go.FigureWidget(traces, layout)
