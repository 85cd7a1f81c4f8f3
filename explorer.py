"""The latent space by hand, for the notebooks: a plotly scatter of the test images' posterior means (rotate, zoom,
hover, click a point to jump to it), coloured by class or by a known factor, a slider per latent coordinate decoding
z live and a button to a class's mean; what it shows is a LatentView (latent_view.py). Widgets need a live kernel;
the cell's next output, a static picture, is what GitHub or an HTML export shows."""

from __future__ import annotations

import io
import itertools
import math

import ipywidgets as widgets
import torch
from IPython.display import display
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from latent_scatter import class_markers, scatter
from latent_view import LatentView, as_view
from models import BetaVAE
from plots import colour_key, colour_scatter
from samplers import decode, finite_decodes

IMAGE_SIZE = 140  # pixels of the decoded and the clicked image (28 x 5)
CONTROLS = (330, 600)  # pixels of the column beside the scatter: at least (fits a notebook 820 px wide), at most
STEPS = 500  # at least as many slider steps over a coordinate's range: finer than a pixel of track
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


def static_figure(view: LatentView, z: Tensor, decoded: Tensor, colour_by: str = "class") -> Figure:
    """The view's projections on each pair of its shown dimensions (one strip plot for one dimension), z marked, the
    image decoded from z and a key to the colours: a small matplotlib Figure (no pyplot, so nothing else is shown)."""
    dims, colouring = view.dims, view.colouring(colour_by)
    pairs = list(itertools.combinations(dims, 2)) or [(dims[0], None)]
    fig = Figure(figsize=(2.5 * len(pairs) + 3.3, 3.1), dpi=90, layout="constrained")  # 8 points: 10 px
    axes = fig.subplots(1, len(pairs) + 1, width_ratios=[1] * len(pairs) + [0.75], squeeze=False)[0]
    ranges, means, names = dict(zip(dims, view.ranges(dims))), view.means.numpy(), view.class_names
    for ax, (i, j) in zip(axes, pairs):
        colour_scatter(ax, means[:, i], means[:, j] if j is not None else view.strip().numpy(), colouring)
        ax.plot(z[i], z[j] if j is not None else -1, "D", ms=8, mfc="white", mec="black", mew=2)
        ax.set(xlim=ranges[i], xlabel=f"z{i + 1}", ylabel=f"z{j + 1}" if j is not None else "class")
        ax.set_ylim(ranges[j] if j is not None else (len(names) - 0.5, -1.5))
        ax.tick_params(labelsize=8)
        if j is None:
            ax.set_yticks(range(len(names)), names)
    axes[-1].imshow(decoded[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
    axes[-1].set(xticks=[], yticks=[], title="decoded z (◆)")
    colour_key(fig, colouring, list(axes[:-1]), fontsize=8)
    fig.suptitle("the latent explorer when the cell ran: run the notebook for the live widgets", fontsize=10)
    return fig


def static_png(view: LatentView, z: Tensor, decoded: Tensor, colour_by: str = "class") -> bytes:
    """static_figure as PNG bytes, at its own size."""
    static_figure(view, z, decoded, colour_by).savefig(buffer := io.BytesIO(), format="png")
    return buffer.getvalue()


def caption(*lines: str) -> str:
    """Lines of text centred under one another: an image's caption, as HTML."""
    return f'<div style="text-align: center; line-height: 1.3">{"<br>".join(lines)}</div>'


class LatentExplorer(widgets.Box):
    """The scatter and, beside it (under it when the notebook is narrow), the image decoded from the sliders' z next
    to the last clicked test image (when `images` are given), a slider per latent coordinate (over the view's range;
    its value can be typed in), a class menu with a button that moves the sliders to a class's mean, and, where the
    data has known factors, a menu to colour the points by one. Takes a LatentView, or posterior means with their
    labels and class names (the notebooks' call)."""

    def __init__(
        self,
        model: BetaVAE,
        view: LatentView | Tensor,
        labels: Tensor | None = None,
        class_names: tuple[str, ...] = (),
        images: Tensor | None = None,
    ) -> None:
        self.model, self.view = model, as_view(view, labels, class_names)
        if images is not None and len(images) != len(self.view):
            raise ValueError(f"{len(images)} images for {len(self.view)} posterior means: give one per test image")
        self.images, self.dims, self.colour_by = images, self.view.dims, "class"
        classes = sorted(self.view.class_means)
        finite_decodes(
            model,
            torch.stack([self.view.start, *(self.view.class_means[c] for c in classes)]),
            "the start or the class means",
        )
        look = dict(
            style=dict(description_width="24px"),
            layout=dict(width="100%"),
            tooltip="drag, or click the value and type a number",
        )
        self.sliders = [
            widgets.FloatSlider(**slider_range(*span), description=f"z{d + 1}", **look)
            for d, span in enumerate(self.view.ranges())
        ]
        self.moving = False  # True while several sliders move at once: decode once, at the end
        for slider in self.sliders:
            slider.observe(self.on_slide, names="value")
        framed = dict(format="png", width=IMAGE_SIZE, height=IMAGE_SIZE, layout=widgets.Layout(border="1px solid #999"))
        self.image, self.picked = widgets.Image(**framed), widgets.Image(value=png(PLACEHOLDER), **framed)
        captioned = dict(layout=widgets.Layout(width=f"{IMAGE_SIZE + 20}px"))
        self.z_label, self.picked_label = widgets.HTML(**captioned), widgets.HTML(caption("click a point"), **captioned)
        self.classes = widgets.Dropdown(
            options=[(self.view.class_names[c], c) for c in classes], description="class", layout=dict(width="175px")
        )
        self.button = widgets.Button(
            description="go to class mean",
            tooltip="move the sliders to the class's mean",
            layout=widgets.Layout(width="145px"),
        )
        self.button.on_click(lambda _: self.go_to_class(self.classes.value))
        self.colours = widgets.Dropdown(
            options=[(colouring.name, key) for key, colouring in self.view.colourings.items()],
            description="colour",
            layout=dict(width="175px"),
        )
        self.colours.observe(lambda change: self.colour(change.new), names="value")
        self.figure = scatter(self.view, self.view.colouring("class"))
        for trace in self.figure.data[:-1]:
            trace.on_click(self.on_point_click)
        self.move_to(self.view.start.tolist(), "the medians")
        pairs = [(self.z_label, self.image), (self.picked_label, self.picked)][: 1 if images is None else 2]
        shown = [widgets.VBox(pair, layout=dict(align_items="center")) for pair in pairs]
        menus = [widgets.HBox([self.classes, self.button])] + [self.colours][: len(self.view.colourings) > 1]
        least, most = CONTROLS
        controls = widgets.VBox(
            [widgets.HBox(shown), *self.sliders, *menus],
            layout=dict(margin="0 0 0 8px", flex=f"1 1 {least}px", max_width=f"{most}px"),
        )
        super().__init__([self.figure, controls], layout=dict(flex_flow="row wrap", align_items="flex-start"))

    def z(self) -> Tensor:
        """The latent code the sliders show, (latent_dim,)."""
        return torch.tensor([slider.value for slider in self.sliders])

    def decoded(self) -> Tensor:
        """The image decoded from the sliders' z, (1, 28, 28) in [0, 1]."""
        return decode(self.model, self.z()[None])[0]

    def colour(self, key: str) -> None:
        """Colour the scatter's points by a key of the view's colourings (the menu does this)."""
        colouring = self.view.colouring(key)
        with self.figure.batch_update():
            for trace, marker in zip(self.figure.data[:-1], class_markers(self.view, colouring)):
                trace.marker.update(marker)
            self.figure.layout.showlegend = colouring.by_class  # as scatter() has it
        self.colour_by = key

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
        if label not in self.view.class_means:
            name = self.view.class_names[label]
            raise ValueError(f"no posterior mean of class {label} ({name}) in the data: no class mean")
        self.move_to(self.view.class_means[label].tolist(), f"class mean of {self.view.class_names[label]}")
        self.picked.value, self.picked_label.value = png(PLACEHOLDER), caption("click a point")

    def go_to_image(self, index: int) -> None:
        """Move the sliders to test image `index`'s posterior mean, and show that image."""
        self.move_to(self.view.means[index].tolist(), f"mean of test image {index}")
        if self.images is not None:
            self.picked.value = png(self.images[index].float())
            name = self.view.class_names[int(self.view.labels[index])]
            self.picked_label.value = caption(f"test image {index}", name)

    def on_point_click(self, trace, points, state) -> None:
        """plotly's click callback, called for every trace: go to the clicked point of this one, if any."""
        if points.point_inds:
            self.go_to_image(int(trace.customdata[points.point_inds[0]]))

    def outputs(self) -> list[dict]:
        """The cell's outputs: the widget view (for a live kernel), then its static picture (what exports show)."""
        still = static_png(self.view, self.z(), self.decoded(), self.colour_by)
        return [{**super()._repr_mimebundle_(), "text/plain": PLAIN_TEXT}, {"image/png": still, "text/plain": PICTURE}]

    def _ipython_display_(self) -> None:
        """Displayed, the explorer is its outputs."""
        display(*self.outputs(), raw=True)


def main(argv: list[str] | None = None) -> int:
    """`python explorer.py RUN --html OUT.html`: the explorer of a run as one self-contained web page (webpage.py)."""
    from cli import OneLineParser
    from webpage import ERRORS, POINTS, TargetError, write_page

    parser = OneLineParser(prog="explorer.py", description="Write a run's explorer as one self-contained web page.")
    parser.add_argument("run", help="run folder (or its checkpoint.pt)")
    parser.add_argument(
        "--html", required=True, metavar="OUT.html", help="the page to write: a new file, or a page written before"
    )
    parser.add_argument("--points", type=int, default=POINTS, help=f"test images in the scatter (default {POINTS})")
    parser.add_argument("--data-dir", help="folder of the dataset's files (default: found automatically)")
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error(f"--points must be >= 1, got {args.points}")
    try:
        write_page(args.run, args.html, args.points, args.data_dir)
    except TargetError as error:  # nothing is replaced but a page written before
        parser.error(str(error))
    except ERRORS as error:  # each names its file or setting
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
