"""The latent space by hand, for the notebooks: a plotly scatter of the test images' posterior means (rotate,
zoom, hover for class and image index) beside one slider per latent coordinate that decodes z live, and a
button that moves the sliders to a class's mean. Needs a live kernel (`jupyter lab`); nothing imports it but
the notebooks."""
from __future__ import annotations

import io

import ipywidgets as widgets
import plotly.colors
import plotly.graph_objects as go
import torch
from PIL import Image
from torch import Tensor

from data import CLASS_NAMES, to_unit_range
from models import BetaVAE, map_batches
from samplers import central_range, top_dimensions

COLORS = plotly.colors.qualitative.D3  # matplotlib's tab10, as in plots.py
IMAGE_SIZE = 196  # pixels of the decoded image (28 x 7)


def png(image: Tensor, size: int = IMAGE_SIZE) -> bytes:
    """A (1, H, W) image in [0, 1] as PNG bytes, enlarged to size x size without smoothing."""
    pixels = (image[0].clamp(0, 1) * 255).round().byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.NEAREST).save(buffer, format="png")
    return buffer.getvalue()


def scatter(means: Tensor, labels: Tensor, dims: list[int]) -> go.FigureWidget:
    """One trace per class (click the legend to hide one) on the given dimensions, and a last trace marking z:
    3-d for three dimensions, 2-d for two, a strip per class for one."""
    n, latent_dim = means.shape
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3
    traces = []
    for c, name in enumerate(CLASS_NAMES):
        index = torch.nonzero(labels == c).flatten()
        xyz = [means[index, d] for d in dims] if len(dims) > 1 else [means[index, dims[0]], c + jitter[index]]
        xyz = [coordinate.numpy() for coordinate in xyz]
        style = dict(name=name, mode="markers", customdata=index.numpy(), marker=dict(size=2, color=COLORS[c]),
                     hovertemplate=f"{name}<br>image %{{customdata}}<extra></extra>")
        traces.append(go.Scatter3d(**dict(zip("xyz", xyz)), **style) if len(dims) == 3
                      else go.Scattergl(x=xyz[0], y=xyz[1], **style))
    marker = dict(name="z (sliders)", mode="markers", hoverinfo="skip",
                  marker=dict(color="black", symbol="x", size=8 if len(dims) == 3 else 12))
    traces.append(go.Scatter3d(x=[0], y=[0], z=[0], **marker) if len(dims) == 3 else go.Scatter(x=[0], y=[0], **marker))
    most = f"; the 3 of {latent_dim} dimensions that vary most" if latent_dim > 3 else ""
    titles = [f"z{d + 1}" for d in dims]
    layout = dict(title=f"posterior means of {n:,} test images{most}", width=640, height=520,
                  margin=dict(l=0, r=0, t=40, b=0), legend=dict(itemsizing="constant"))
    if len(dims) == 3:
        layout["scene"] = dict(xaxis_title=titles[0], yaxis_title=titles[1], zaxis_title=titles[2])
    elif len(dims) == 2:
        layout.update(xaxis_title=titles[0], yaxis_title=titles[1])
    else:
        layout.update(xaxis_title=titles[0], yaxis=dict(tickvals=list(range(len(CLASS_NAMES))), ticktext=CLASS_NAMES,
                                                        autorange="reversed"))
    return go.FigureWidget(traces, layout)


class LatentExplorer(widgets.HBox):
    """The scatter beside the sliders (one per latent coordinate, over the 1st-99th percentile of the means),
    the decoded image, and a class menu with a button that moves the sliders to that class's mean."""

    def __init__(self, model: BetaVAE, means: Tensor, labels: Tensor) -> None:
        self.model, self.means, self.labels = model, means.float(), labels
        self.dims = top_dimensions(self.means, 3)
        low, high = (bound.tolist() for bound in central_range(self.means))
        median = self.means.median(0).values.tolist()
        self.sliders = [widgets.FloatSlider(value=median[d], min=low[d], max=high[d], step=(high[d] - low[d]) / 200,
                                            description=f"z{d + 1}", readout_format=".2f", continuous_update=True)
                        for d in range(model.latent_dim)]
        self.image = widgets.Image(format="png", width=IMAGE_SIZE, height=IMAGE_SIZE)
        self.classes = widgets.Dropdown(options=[(name, c) for c, name in enumerate(CLASS_NAMES)], description="class")
        self.button = widgets.Button(description="go to class mean", tooltip="move the sliders to the class's mean")
        self.button.on_click(lambda _: self.go_to_class(self.classes.value))
        self.figure = scatter(self.means, labels, self.dims)
        for slider in self.sliders:
            slider.observe(lambda _: self.update(), names="value")
        self.update()
        controls = widgets.VBox([self.image, *self.sliders, widgets.HBox([self.classes, self.button])])
        super().__init__([self.figure, controls])

    def z(self) -> Tensor:
        """The latent code the sliders show, (latent_dim,)."""
        return torch.tensor([slider.value for slider in self.sliders])

    def update(self) -> None:
        """Decode the sliders' z into the image, and move the scatter's marker there."""
        z = self.z()
        x = map_batches(self.model, self.model.decode, z[None])[0]
        self.image.value = png(to_unit_range(x, self.model.likelihood))
        marker = self.figure.data[-1]
        with self.figure.batch_update():
            if len(self.dims) == 3:
                marker.x, marker.y, marker.z = ([z[d].item()] for d in self.dims)
            else:
                marker.x, marker.y = [z[self.dims[0]].item()], [z[self.dims[1]].item() if len(self.dims) == 2 else -1]

    def go_to_class(self, label: int) -> None:
        """Set every slider to the mean of the class's posterior means (within the slider's range)."""
        for slider, value in zip(self.sliders, self.means[self.labels == label].mean(0).tolist()):
            slider.value = value
