"""The latent space by hand, for the notebooks: a plotly scatter of the test images' posterior means (rotate,
zoom, hover for class and image index, click a point to jump to it) beside one slider per latent coordinate
that decodes z live, and a button that moves the sliders to a class's mean. The widgets need a live kernel
(`jupyter lab`); without one (GitHub, nbconvert, a notebook whose widget state was stripped) the output shows a
static picture of the same projections instead. Nothing imports this module but the notebooks."""
from __future__ import annotations

import io
import itertools

import ipywidgets as widgets
import plotly.colors
import plotly.graph_objects as go
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from data import CLASS_NAMES, to_unit_range
from models import BetaVAE, map_batches
from plots import class_scatter
from samplers import central_range, top_dimensions

COLORS = plotly.colors.qualitative.D3  # matplotlib's tab10, as in plots.py
IMAGE_SIZE = 140  # pixels of the decoded and the clicked image (28 x 5)
FIGURE_SIZE = 480  # pixels of the scatter, width and height: leaves room for the controls beside it
SLIDER_WIDTH = "320px"
MARGIN = 0.1  # of an axis's 1st-99th percentile span, added on each side of it
Z_MARKER = dict(symbol="diamond", color="white", line=dict(color="black", width=3))  # no emoji font needed
PLAIN_TEXT = "LatentExplorer: needs a live kernel; static view below"


def png(image: Tensor, size: int = IMAGE_SIZE) -> bytes:
    """A (1, H, W) image in [0, 1] as PNG bytes, enlarged to size x size without smoothing."""
    pixels = (image[0].clamp(0, 1) * 255).round().byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size), Image.NEAREST).save(buffer, format="png")
    return buffer.getvalue()


def axis_ranges(means: Tensor, dims: list[int], margin: float = MARGIN) -> list[list[float]]:
    """One [low, high] per plotted dimension: its 1st-99th percentile widened by `margin` of that span on each
    side. Outliers do not stretch the view, and in a cube (aspectmode 'cube') each axis gets the same length on
    screen, so a cloud three times longer along one axis still fills the box."""
    low, high = (bound[dims] for bound in central_range(means))
    pad = (high - low).clamp(min=1e-6) * margin
    return [[a, b] for a, b in zip((low - pad).tolist(), (high + pad).tolist())]


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
                     hovertemplate=f"{name}<br>image %{{customdata}} (click: go there)<extra></extra>")
        traces.append(go.Scatter3d(**dict(zip("xyz", xyz)), **style) if len(dims) == 3
                      else go.Scattergl(x=xyz[0], y=xyz[1], **style))
    marker = dict(name="z (sliders)", mode="markers", hoverinfo="skip",
                  marker=dict(**Z_MARKER, size=14 if len(dims) == 3 else 16))
    traces.append(go.Scatter3d(x=[0], y=[0], z=[0], **marker) if len(dims) == 3 else go.Scatter(x=[0], y=[0], **marker))
    most = f"<br>the 3 of {latent_dim} dimensions that vary most" if latent_dim > 3 else ""
    titles = [f"z{d + 1}" for d in dims]
    ranges = axis_ranges(means, dims)
    layout = dict(title=dict(text=f"posterior means of {n:,} test images{most}", font_size=14),
                  width=FIGURE_SIZE, height=FIGURE_SIZE + 40, margin=dict(l=0, r=0, t=50 if most else 30, b=0),
                  legend=dict(itemsizing="constant", orientation="h", y=0, yanchor="top", font_size=11))
    if len(dims) == 3:
        layout["scene"] = dict(aspectmode="cube", **{f"{axis}axis": dict(title=title, range=span, showspikes=False)
                                                     for axis, title, span in zip("xyz", titles, ranges)})
    elif len(dims) == 2:
        layout.update(xaxis=dict(title=titles[0], range=ranges[0]), yaxis=dict(title=titles[1], range=ranges[1]))
    else:
        layout.update(xaxis=dict(title=titles[0], range=ranges[0]),
                      yaxis=dict(tickvals=list(range(len(CLASS_NAMES))), ticktext=CLASS_NAMES, autorange="reversed"))
    return go.FigureWidget(traces, layout)


def static_png(means: Tensor, labels: Tensor, dims: list[int], z: Tensor, decoded: Tensor) -> bytes:
    """The scatter's projections on each pair of dimensions (one strip plot for one dimension), z marked, and
    the image decoded from z: PNG bytes of a small matplotlib figure (no pyplot, so nothing else is shown)."""
    pairs = list(itertools.combinations(dims, 2)) or [(dims[0], None)]
    fig = Figure(figsize=(2.6 * len(pairs) + 2.2, 2.9), dpi=72, layout="constrained")
    axes = fig.subplots(1, len(pairs) + 1, width_ratios=[1] * len(pairs) + [0.75], squeeze=False)[0]
    ranges = dict(zip(dims, axis_ranges(means, dims)))
    strip = labels.float() + torch.rand(len(labels), generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3
    for ax, (i, j) in zip(axes, pairs):
        class_scatter(ax, means[:, i].numpy(), means[:, j].numpy() if j is not None else strip.numpy(), labels)
        ax.plot(z[i], z[j] if j is not None else -1, "D", ms=8, mfc="white", mec="black", mew=2)
        ax.set(xlim=ranges[i], xlabel=f"z{i + 1}", ylabel=f"z{j + 1}" if j is not None else "class")
        ax.set_ylim(ranges[j] if j is not None else (len(CLASS_NAMES) - 0.5, -1.5))
        if j is None:
            ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES, fontsize=7)
    axes[-1].imshow(decoded[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    axes[-1].set(xticks=[], yticks=[], title="decoded z (◆)")
    fig.suptitle("static view of the latent explorer: run the notebook for the widgets", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def labelled(label: widgets.Label, image: widgets.Image) -> widgets.VBox:
    """The label above the image."""
    return widgets.VBox([label, image], layout=widgets.Layout(align_items="center"))


class LatentExplorer(widgets.Box):
    """The scatter and, beside it (under it when the notebook is narrow), the image decoded from the sliders'
    z next to the last clicked test image, one slider per latent coordinate (over the 1st-99th percentile of
    the means), and a class menu with a button that moves the sliders to that class's mean. Clicking a point
    moves the sliders to that test image's posterior mean (and shows the image, when `images` are given)."""

    def __init__(self, model: BetaVAE, means: Tensor, labels: Tensor, images: Tensor | None = None) -> None:
        self.model, self.means, self.labels, self.images = model, means.float(), labels, images
        self.dims = top_dimensions(self.means, 3)
        low, high = (bound.tolist() for bound in central_range(self.means))
        median = self.means.median(0).values.tolist()
        self.sliders = [widgets.FloatSlider(value=median[d], min=low[d], max=high[d], step=(high[d] - low[d]) / 200,
                                            description=f"z{d + 1}", readout_format=".2f", continuous_update=True,
                                            layout=widgets.Layout(width=SLIDER_WIDTH))
                        for d in range(model.latent_dim)]
        framed = dict(format="png", width=IMAGE_SIZE, height=IMAGE_SIZE, layout=widgets.Layout(border="1px solid #999"))
        self.image = widgets.Image(**framed)
        self.picked = widgets.Image(value=png(torch.full((1, 28, 28), 0.9)), **framed)
        self.picked_label = widgets.Label("click a point")
        self.classes = widgets.Dropdown(options=[(name, c) for c, name in enumerate(CLASS_NAMES)], description="class",
                                        layout=widgets.Layout(width="175px"))
        self.button = widgets.Button(description="go to class mean", tooltip="move the sliders to the class's mean",
                                     layout=widgets.Layout(width="145px"))
        self.button.on_click(lambda _: self.go_to_class(self.classes.value))
        self.figure = scatter(self.means, labels, self.dims)
        for trace in self.figure.data[:-1]:
            trace.on_click(self.on_point_click)
        self.moving = False  # True while several sliders move at once: decode once, at the end
        for slider in self.sliders:
            slider.observe(lambda _: self.moving or self.update(), names="value")
        self.update()
        images_row = [labelled(widgets.Label("decoded z (◆)"), self.image)]
        if images is not None:
            images_row.append(labelled(self.picked_label, self.picked))
        controls = widgets.VBox([widgets.HBox(images_row), *self.sliders, widgets.HBox([self.classes, self.button])],
                                layout=widgets.Layout(margin="0 0 0 8px"))
        super().__init__([self.figure, controls], layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start",
                                                                       width="100%"))

    def z(self) -> Tensor:
        """The latent code the sliders show, (latent_dim,)."""
        return torch.tensor([slider.value for slider in self.sliders])

    def decoded(self) -> Tensor:
        """The image decoded from the sliders' z, (1, 28, 28) in [0, 1]."""
        x = map_batches(self.model, self.model.decode, self.z()[None])[0]
        return to_unit_range(x, self.model.likelihood)

    def update(self) -> None:
        """Decode the sliders' z into the image, and move the scatter's marker there."""
        z = self.z()
        self.image.value = png(self.decoded())
        marker = self.figure.data[-1]
        with self.figure.batch_update():
            if len(self.dims) == 3:
                marker.x, marker.y, marker.z = ([z[d].item()] for d in self.dims)
            else:
                marker.x, marker.y = [z[self.dims[0]].item()], [z[self.dims[1]].item() if len(self.dims) == 2 else -1]

    def move_to(self, z: list[float]) -> None:
        """Set every slider (each keeps to its range), then decode once."""
        self.moving = True
        try:
            for slider, value in zip(self.sliders, z):
                slider.value = value
        finally:
            self.moving = False
        self.update()

    def go_to_class(self, label: int) -> None:
        """Move the sliders to the mean of the class's posterior means."""
        self.move_to(self.means[self.labels == label].mean(0).tolist())

    def go_to_image(self, index: int) -> None:
        """Move the sliders to test image `index`'s posterior mean, and show that image."""
        self.move_to(self.means[index].tolist())
        if self.images is not None:
            self.picked.value = png(to_unit_range(self.images[index].float(), self.model.likelihood))
            self.picked_label.value = f"test image {index}: {CLASS_NAMES[int(self.labels[index])]}"

    def on_point_click(self, trace, points, state) -> None:
        """plotly's click callback, called for every trace: go to the clicked point of this one, if any."""
        if points.point_inds:
            self.go_to_image(int(trace.customdata[points.point_inds[0]]))

    def _repr_mimebundle_(self, **kwargs) -> dict:
        """The widget view for a live kernel, and a static picture (and a short text) for everything else."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["image/png"] = static_png(self.means, self.labels, self.dims, self.z(), self.decoded())
        bundle["text/plain"] = PLAIN_TEXT
        return bundle


def main(argv: list[str] | None = None) -> int:
    """`python explorer.py RUN --html OUT.html`: the explorer of a run as one self-contained web page (webpage.py)."""
    from cli import OneLineParser
    from webpage import ERRORS, POINTS, write_page
    parser = OneLineParser(prog="explorer.py", description="Write a run's explorer as one self-contained web page.")
    parser.add_argument("run", help="run folder (or its checkpoint.pt)")
    parser.add_argument("--html", required=True, metavar="OUT.html", help="the page to write")
    parser.add_argument("--points", type=int, default=POINTS, help=f"test images in the scatter (default {POINTS})")
    parser.add_argument("--data-dir", help="folder of the Fashion-MNIST files (default: found automatically)")
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error(f"--points must be >= 1, got {args.points}")
    try:
        write_page(args.run, args.html, args.points, args.data_dir)
    except ERRORS as error:  # each names its file or setting
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
