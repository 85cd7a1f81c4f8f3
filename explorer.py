"""The latent space by hand, for the notebooks: a plotly scatter of the test images' posterior means (rotate, zoom,
hover, click a point to jump to it), a slider per latent coordinate decoding z live and a button to a class's mean.
Widgets need a live kernel; the cell's next output, a static picture, is what GitHub or an HTML export shows."""

from __future__ import annotations

import io
import itertools
import math

import ipywidgets as widgets
import plotly.colors
import plotly.graph_objects as go
import torch
from IPython.display import display
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from models import BetaVAE, map_batches
from plots import class_legend, class_scatter
from samplers import central_range, top_dimensions

COLORS = plotly.colors.qualitative.D3  # matplotlib's tab10, as in plots.py
IMAGE_SIZE = 140  # pixels of the decoded and the clicked image (28 x 5)
FIGURE_SIZE = 480  # pixels of the scatter, width and height: leaves room for the controls beside it
CONTROLS = (330, 600)  # pixels of the column beside the scatter: at least (fits a notebook 820 px wide), at most
STEPS = 500  # at least as many slider steps over the 1st-99th percentile: finer than a pixel of track
MARGIN = 0.1  # of an axis's 1st-99th percentile span, added on each side of it
Z_MARKER = dict(symbol="diamond", color="white", line=dict(color="black", width=3))  # no emoji font needed
PLAIN_TEXT = "LatentExplorer: needs a live kernel; its static picture is the next output"
PICTURE = "the LatentExplorer's static picture"
PLACEHOLDER = torch.full((1, 28, 28), 0.9)  # light grey: no test image picked


def png(image: Tensor, size: int = IMAGE_SIZE) -> bytes:
    """A (1, H, W) image in [0, 1] as PNG bytes, enlarged to size x size without smoothing."""
    pixels = (image[0].clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(pixels).resize((size, size), Image.NEAREST).save(buffer := io.BytesIO(), format="png")
    return buffer.getvalue()


def slider_range(low: float, high: float) -> dict[str, float]:
    """A slider's min, max, step and readout: a power of ten for the step, at most (high - low) / STEPS, the ends on
    its multiples, and as many decimals in the value shown."""
    step = 10.0 ** (power := math.floor(math.log10(max(high - low, 1e-6) / STEPS)))
    return dict(
        min=round(math.floor(low / step) * step, -power),
        max=round(math.ceil(high / step) * step, -power),
        step=step,
        readout_format=f".{max(0, -power)}f",
    )


def axis_ranges(means: Tensor, dims: list[int], margin: float = MARGIN) -> list[list[float]]:
    """One [low, high] per plotted dimension: its 1st-99th percentile widened by `margin` of that span on each side.
    Outliers do not stretch the view, and in a cube (aspectmode 'cube') the axes get the same length on screen."""
    low, high = (bound[dims] for bound in central_range(means))
    pad = (high - low).clamp(min=1e-6) * margin
    return [[a, b] for a, b in zip((low - pad).tolist(), (high + pad).tolist())]


def scatter(means: Tensor, labels: Tensor, dims: list[int], class_names: tuple[str, ...]) -> go.FigureWidget:
    """One trace per class (click the legend to hide one) on the given dimensions, and a last trace marking z:
    3-d for three dimensions, 2-d for two, a strip per class for one."""
    n, latent_dim = means.shape
    jitter = torch.rand(n, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3
    traces = []
    for c, name in enumerate(class_names):
        index = torch.nonzero(labels == c).flatten()
        xyz = [means[index, d] for d in dims] if len(dims) > 1 else [means[index, dims[0]], c + jitter[index]]
        xyz = [coordinate.numpy() for coordinate in xyz]
        style = dict(
            name=name,
            mode="markers",
            customdata=index.numpy(),
            marker=dict(size=2, color=COLORS[c]),
            hovertemplate=f"{name}<br>image %{{customdata}} (click: go there)<extra></extra>",
        )
        traces.append(
            go.Scatter3d(**dict(zip("xyz", xyz)), **style)
            if len(dims) == 3
            else go.Scattergl(x=xyz[0], y=xyz[1], **style)
        )
    marker = dict(
        name="z (sliders)", mode="markers", hoverinfo="skip", marker=dict(**Z_MARKER, size=14 if len(dims) == 3 else 16)
    )
    traces.append(go.Scatter3d(x=[0], y=[0], z=[0], **marker) if len(dims) == 3 else go.Scatter(x=[0], y=[0], **marker))
    most = f"<br>the 3 of {latent_dim} dimensions that vary most" if latent_dim > 3 else ""
    titles, ranges = [f"z{d + 1}" for d in dims], axis_ranges(means, dims)
    layout = dict(
        title=dict(text=f"posterior means of {n:,} test images{most}", font_size=14, x=0.01, xanchor="left"),
        modebar=dict(orientation="v"),  # down the right edge, clear of the title
        width=FIGURE_SIZE,
        height=FIGURE_SIZE + 40,
        margin=dict(l=0, r=0, t=50 if most else 30, b=0),
        legend=dict(itemsizing="constant", orientation="h", y=0, yanchor="top", font_size=11),
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
            yaxis=dict(tickvals=list(range(len(class_names))), ticktext=class_names, autorange="reversed"),
        )
    return go.FigureWidget(traces, layout)


def static_figure(
    means: Tensor, labels: Tensor, dims: list[int], z: Tensor, decoded: Tensor, class_names: tuple[str, ...]
) -> Figure:
    """The scatter's projections on each pair of dimensions (one strip plot for one dimension), z marked, the image
    decoded from z and a class legend: a small matplotlib Figure (no pyplot, so nothing else is shown)."""
    pairs = list(itertools.combinations(dims, 2)) or [(dims[0], None)]
    fig = Figure(figsize=(2.5 * len(pairs) + 3.3, 3.1), dpi=90, layout="constrained")  # 8 points: 10 px
    axes = fig.subplots(1, len(pairs) + 1, width_ratios=[1] * len(pairs) + [0.75], squeeze=False)[0]
    ranges = dict(zip(dims, axis_ranges(means, dims)))
    strip = labels.float() + torch.rand(len(labels), generator=torch.Generator().manual_seed(0)) * 0.6 - 0.3
    for ax, (i, j) in zip(axes, pairs):
        class_scatter(ax, means[:, i].numpy(), means[:, j].numpy() if j is not None else strip.numpy(), labels)
        ax.plot(z[i], z[j] if j is not None else -1, "D", ms=8, mfc="white", mec="black", mew=2)
        ax.set(xlim=ranges[i], xlabel=f"z{i + 1}", ylabel=f"z{j + 1}" if j is not None else "class")
        ax.set_ylim(ranges[j] if j is not None else (len(class_names) - 0.5, -1.5))
        ax.tick_params(labelsize=8)
        if j is None:
            ax.set_yticks(range(len(class_names)), class_names)
    axes[-1].imshow(decoded[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    axes[-1].set(xticks=[], yticks=[], title="decoded z (◆)")
    class_legend(fig, class_names, fontsize=8)
    fig.suptitle("the latent explorer when the cell ran: run the notebook for the live widgets", fontsize=10)
    return fig


def static_png(
    means: Tensor, labels: Tensor, dims: list[int], z: Tensor, decoded: Tensor, class_names: tuple[str, ...]
) -> bytes:
    """static_figure as PNG bytes, at its own size."""
    static_figure(means, labels, dims, z, decoded, class_names).savefig(buffer := io.BytesIO(), format="png")
    return buffer.getvalue()


def caption(*lines: str) -> str:
    """Lines of text centred under one another: an image's caption, as HTML."""
    return f'<div style="text-align: center; line-height: 1.3">{"<br>".join(lines)}</div>'


class LatentExplorer(widgets.Box):
    """The scatter and, beside it (under it when the notebook is narrow), the image decoded from the sliders' z next
    to the last clicked test image (when `images` are given), a slider per latent coordinate (1st-99th percentile of
    the means; its value can be typed in), and a class menu with a button that moves the sliders to a class's mean."""

    def __init__(
        self,
        model: BetaVAE,
        means: Tensor,
        labels: Tensor,
        class_names: tuple[str, ...],
        images: Tensor | None = None,
    ) -> None:
        for name, values in (("labels", labels), ("images", images)):
            if values is not None and len(values) != len(means):
                raise ValueError(f"{len(values)} {name} for {len(means)} posterior means: give one per test image")
        self.model, self.means, self.labels, self.images = model, means.float(), labels, images
        self.class_names = tuple(class_names)
        self.dims = top_dimensions(self.means, 3)
        look = dict(
            style=dict(description_width="24px"),
            layout=dict(width="100%"),
            tooltip="drag, or click the value and type a number",
        )
        self.sliders = [
            widgets.FloatSlider(**slider_range(*span), description=f"z{d + 1}", **look)
            for d, span in enumerate(zip(*(bound.tolist() for bound in central_range(self.means))))
        ]
        self.moving = False  # True while several sliders move at once: decode once, at the end
        for slider in self.sliders:
            slider.observe(self.on_slide, names="value")
        framed = dict(format="png", width=IMAGE_SIZE, height=IMAGE_SIZE, layout=widgets.Layout(border="1px solid #999"))
        self.image, self.picked = widgets.Image(**framed), widgets.Image(value=png(PLACEHOLDER), **framed)
        captioned = dict(layout=widgets.Layout(width=f"{IMAGE_SIZE + 20}px"))
        self.z_label, self.picked_label = widgets.HTML(**captioned), widgets.HTML(caption("click a point"), **captioned)
        self.classes = widgets.Dropdown(
            options=[(self.class_names[c], c) for c in sorted(set(labels.tolist()))],
            description="class",
            layout=dict(width="175px"),
        )
        self.button = widgets.Button(
            description="go to class mean",
            tooltip="move the sliders to the class's mean",
            layout=widgets.Layout(width="145px"),
        )
        self.button.on_click(lambda _: self.go_to_class(self.classes.value))
        self.figure = scatter(self.means, labels, self.dims, self.class_names)
        for trace in self.figure.data[:-1]:
            trace.on_click(self.on_point_click)
        self.move_to(self.means.median(0).values.tolist(), "the medians")
        pairs = [(self.z_label, self.image), (self.picked_label, self.picked)][: 1 if images is None else 2]
        shown = [widgets.VBox(pair, layout=dict(align_items="center")) for pair in pairs]
        least, most = CONTROLS
        controls = widgets.VBox(
            [widgets.HBox(shown), *self.sliders, widgets.HBox([self.classes, self.button])],
            layout=dict(margin="0 0 0 8px", flex=f"1 1 {least}px", max_width=f"{most}px"),
        )
        super().__init__([self.figure, controls], layout=dict(flex_flow="row wrap", align_items="flex-start"))

    def z(self) -> Tensor:
        """The latent code the sliders show, (latent_dim,)."""
        return torch.tensor([slider.value for slider in self.sliders])

    def decoded(self) -> Tensor:
        """The image decoded from the sliders' z, (1, 28, 28) in [0, 1]."""
        return map_batches(self.model, self.model.decode, self.z()[None])[0]

    def update(self, source: str = "the sliders") -> None:
        """Decode the sliders' z into the image, caption it with where z came from, and move the scatter's marker."""
        z = self.z()
        self.image.value = png(self.decoded())
        self.z_label.value = caption("decoded z (◆)", source)
        marker = self.figure.data[-1]
        with self.figure.batch_update():
            if len(self.dims) == 3:
                marker.x, marker.y, marker.z = ([z[d].item()] for d in self.dims)
            else:
                marker.x, marker.y = [z[self.dims[0]].item()], [z[self.dims[1]].item() if len(self.dims) == 2 else -1]

    def on_slide(self, change) -> None:
        """A slider moved: decode, unless several move at once or the browser echoes a value less than a step off."""
        if not self.moving and abs(change.new - change.old) > change.owner.step / 2:
            self.update("the sliders")

    def move_to(self, z: list[float], source: str) -> None:
        """Set every slider (each keeps to its range and steps), then decode once."""
        self.moving = True
        try:
            for slider, value in zip(self.sliders, z):
                slider.value = round(value, -round(math.log10(slider.step)))
        finally:
            self.moving = False
        self.update(source)

    def go_to_class(self, label: int) -> None:
        """Move the sliders to the mean of the class's posterior means; the picked test image is cleared."""
        if not (chosen := self.labels == label).any():
            raise ValueError(
                f"no posterior mean of class {label} ({self.class_names[label]}) in the data: no class mean"
            )
        self.move_to(self.means[chosen].mean(0).tolist(), f"class mean of {self.class_names[label]}")
        self.picked.value, self.picked_label.value = png(PLACEHOLDER), caption("click a point")

    def go_to_image(self, index: int) -> None:
        """Move the sliders to test image `index`'s posterior mean, and show that image."""
        self.move_to(self.means[index].tolist(), f"mean of test image {index}")
        if self.images is not None:
            self.picked.value = png(self.images[index].float())
            self.picked_label.value = caption(f"test image {index}", self.class_names[int(self.labels[index])])

    def on_point_click(self, trace, points, state) -> None:
        """plotly's click callback, called for every trace: go to the clicked point of this one, if any."""
        if points.point_inds:
            self.go_to_image(int(trace.customdata[points.point_inds[0]]))

    def outputs(self) -> list[dict]:
        """The cell's outputs: the widget view (for a live kernel), then its static picture (what exports show)."""
        still = static_png(self.means, self.labels, self.dims, self.z(), self.decoded(), self.class_names)
        return [{**super()._repr_mimebundle_(), "text/plain": PLAIN_TEXT}, {"image/png": still, "text/plain": PICTURE}]

    def _ipython_display_(self) -> None:
        """Displayed, the explorer is its outputs."""
        display(*self.outputs(), raw=True)


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
