"""The notebooks' figures, each a matplotlib Figure (written with `save`); the study's are in lab/figures.py."""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor

from latent_view import Colouring, LatentView, as_view, central_range
from models import BetaVAE
from samplers import decode, interpolate, posterior_means
from shapes import FACTORS, SIZE

IMG_DIR = Path(__file__).resolve().parent / "img"
DPI = 100  # with save's palette, keeps every saved PNG under 300 KB
TILE = 29  # pixels from one image of a grid to the next: 28 and make_grid's padding
INACTIVE_KL = 0.01  # nats per image: a latent coordinate with less KL than this carries (almost) nothing


def save(fig: Figure, name: str, enabled: bool = True, folder: Path = IMG_DIR) -> None:
    """Save `fig` as FOLDER/NAME when enabled (the notebooks' save_figures): RGB, or a palette where lossless."""
    if enabled:
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(buffer := io.BytesIO(), format="png", dpi=DPI, bbox_inches="tight")
        image = Image.open(buffer).convert("RGB")
        (image if image.getcolors(256) is None else image.quantize(256)).save(folder / name, optimize=True)


def grids(
    model: BetaVAE,
    panels: list[tuple[Tensor, int, str]],
    title: str,
    figsize: tuple[float, float],
    rows: tuple[int, Sequence[str]] = (0, ()),
) -> tuple[Figure, list]:
    """Image grids side by side, each (images in [0, 1], columns, title); rows: (panel, names of its grid rows)."""
    from torchvision.utils import make_grid  # here: importing torchvision takes seconds, which other figures skip

    fig, axes = plt.subplots(1, len(panels), figsize=figsize, layout="constrained", squeeze=False)
    for ax, (images, nrow, name) in zip(axes[0], panels):
        tiles = make_grid(images.clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
        ax.imshow(tiles[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=name, xticks=[], yticks=[])
    axes[0, rows[0]].set_yticks([(i + 0.5) * TILE for i in range(len(rows[1]))], rows[1])
    fig.suptitle(f"{model.family.upper()}: {title}")  # FC or CNN
    return fig, list(axes[0])


def plot_curves(history: list[dict], name: str | None = None) -> Figure:
    """Train and test reconstruction loss and KL per epoch (nats per image), and the target C if capacity is on."""
    (fig, axes), epochs = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained"), [h["epoch"] for h in history]
    for ax, term, title in zip(axes, ("recon", "kl"), ("reconstruction loss", "KL divergence")):
        for split, style, color in (("train", "o-", "#999999"), ("test", "s-", "black")):
            ax.plot(epochs, [h[split][term] for h in history], style, markersize=3, label=split, color=color)
        if term == "kl" and "capacity" in history[0]:  # beta-VAE "B": the target the KL is pulled to
            ax.plot(epochs, [h["capacity"] for h in history], "k:", label="target C")
        ax.set(title=title, xlabel="epoch", ylabel="nats per image")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.suptitle(f"{name + ': ' if name else ''}training curves")
    return fig


def plot_reconstructions(
    model: BetaVAE, images: Tensor, labels: Tensor, class_names: Sequence[str], per_class: int = 6
) -> Figure:
    """Reconstructions (left) beside the real test images (right): the first `per_class` of each class, a row each."""
    x = images[torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(class_names))])]
    return grids(
        model,
        [
            (decode(model, posterior_means(model, x)), per_class, "reconstructions"),
            (x, per_class, "real test images"),
        ],
        "test images and their reconstructions",
        (10, 0.8 * len(class_names) + 0.3),
        (0, class_names),
    )[0]


def plot_samples(model: BetaVAE, z: Tensor, nrow: int = 10, title: str = "samples, z ~ N(0, I)") -> Figure:
    """A grid of images decoded from the latent codes z."""
    return grids(model, [(decode(model, z), nrow, "")], title, (6, 6.2))[0]


def point_colours(colouring: Colouring) -> np.ndarray:
    """RGBA per point: tab10 by class, viridis over a factor's value indices."""
    values = colouring.values.numpy()
    return plt.cm.tab10(values % 10) if colouring.by_class else plt.cm.viridis(values / max(colouring.levels - 1, 1))


def colour_scatter(ax, x, y, colouring: Colouring, seed: int = 0) -> None:
    """Points coloured by `colouring`, drawn in a random order so that no class or value hides the others."""
    order = torch.randperm(len(colouring.values), generator=torch.Generator().manual_seed(seed)).numpy()
    ax.scatter(x[order], y[order], c=point_colours(colouring)[order], s=2, alpha=0.5, lw=0, rasterized=True)


def colour_key(fig: Figure, colouring: Colouring, axes: list, **options) -> None:
    """To the right of the figure: the classes' colours, or a colour bar of the factor's value indices."""
    if colouring.by_class:
        handles = [
            Line2D([], [], ls="", marker="o", color=plt.get_cmap("tab10")(c % 10)) for c in range(colouring.levels)
        ]
        fig.legend(handles, colouring.names, loc="outside right center", frameon=False, **options)
    else:
        scale = ScalarMappable(Normalize(0, max(colouring.levels - 1, 1)), "viridis")
        bar = fig.colorbar(scale, ax=axes, shrink=0.8, ticks=MaxNLocator(integer=True))
        bar.set_label(f"{colouring.name} (value index)", **options)


def plot_latent_projections(
    view: LatentView | Tensor,
    labels: Tensor | None = None,
    class_names: Sequence[str] = (),
    name: str | None = None,
    colour_by: str = "class",
) -> Figure:
    """Posterior means coloured by class (or by a factor): 2-d projections of the view's shown dimensions (1-d: a
    strip per class). Takes a LatentView, or posterior means with their labels and class names."""
    view = as_view(view, labels, tuple(class_names))
    colouring, z, dims = view.colouring(colour_by), view.means.numpy(), view.dims
    pairs = list(itertools.combinations(dims, 2)) or [(dims[0], None)]  # latent_dim 1: a strip per class
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.3 * len(pairs) + 1.6, 4.3), layout="constrained", squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        colour_scatter(ax, z[:, i], view.strip().numpy() if j is None else z[:, j], colouring)
        ax.set(xlabel=f"$z_{{{i + 1}}}$", ylabel="" if j is None else f"$z_{{{j + 1}}}$")
    if pairs[0][1] is None:
        names = view.class_names
        ax.set(yticks=range(len(names)), yticklabels=names, ylim=(len(names) - 0.5, -0.5))
    if pairs[0][1] is not None or not colouring.by_class:
        colour_key(fig, colouring, list(axes[0]))
    most = f" (the {len(dims)} of {view.latent_dim} dimensions that vary most)" if view.latent_dim > len(dims) else ""
    by = "" if colour_by == "class" else f", coloured by {colouring.name}"
    fig.suptitle(f"{name + ': ' if name else ''}posterior means of {len(view):,} test images{most}{by}")
    return fig


def plot_latent_map(model: BetaVAE, means: Tensor, dims: Sequence[int] = (0, 1), steps: int = 15) -> Figure:
    """Images decoded over two latent dimensions' 1st to 99th percentiles, the others at their median."""
    dims = list(dims)[: model.latent_dim]
    ranges = torch.stack(central_range(means), 1).tolist()  # the y axis runs down: the top row has the largest value
    axes = [torch.linspace(*ranges[d][:: 1 if k == 0 else -1], steps) for k, d in enumerate(dims)]
    z = means.median(0).values.repeat(steps ** len(dims), 1)
    z[:, dims] = torch.cartesian_prod(*reversed(axes)).reshape(-1, len(dims)).flip(1)
    others = "" if model.latent_dim == len(dims) else ", the others at their median"
    fig, (ax,) = grids(
        model,
        [(decode(model, z), steps, "")],
        "decoded images over the latent space" + others,
        (9, 9.3 if len(dims) == 2 else 1.8),
    )
    for axis, values, d in zip((ax.xaxis, ax.yaxis), axes, dims):
        axis.set_ticks([(i + 0.5) * TILE for i in range(0, steps, 2)], [f"{v:.1f}" for v in values[::2].tolist()])
        axis.set_label_text(f"$z_{{{d + 1}}}$")
    return fig


def plot_traversal(model: BetaVAE, steps: int = 11, span: float = 3.0) -> Figure:
    """One row per latent dimension: that dimension from -span to span, the others held at 0."""
    values = torch.linspace(-span, span, steps)
    z = torch.eye(model.latent_dim)[:, None, :] * values[None, :, None]  # z[d, i] = values[i] in dimension d
    fig, (ax,) = grids(
        model,
        [(decode(model, z.flatten(0, 1)), steps, "")],
        "latent traversals (others at 0)",
        (steps * 0.8, model.latent_dim * 0.9 + 0.9),
        (0, [f"$z_{d + 1}$" for d in range(len(z))]),
    )
    ax.set_xticks([(i + 0.5) * TILE for i in range(steps)], [f"{round(v, 1) + 0:.1f}" for v in values.tolist()])
    return fig


def plot_samplers(
    model: BetaVAE, prior_z: Tensor, aggregate_z: Tensor, class_z: Tensor, class_names: Sequence[str], nrow: int = 10
) -> Figure:
    """Samples from the prior, the aggregate posterior and the per-class Gaussians, side by side."""
    return grids(
        model,
        [
            (decode(model, z), nrow, t)
            for z, t in zip(
                (prior_z, aggregate_z, class_z), ("prior N(0, I)", "aggregate posterior (mixture)", "class-conditional")
            )
        ],
        "samples by sampler",
        (15, 5.9),
        (2, class_names),
    )[0]


def plot_interpolation(
    model: BetaVAE,
    images: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    steps: int = 10,
) -> Figure:
    """Per pair of classes: decoded images between the first test image of each (the real ones at the ends)."""
    ends = [(images[labels == a][0], images[labels == b][0]) for a, b in pairs]
    rows = torch.cat([torch.cat([x_a[None], interpolate(model, x_a, x_b, steps), x_b[None]]) for x_a, x_b in ends])
    return grids(
        model,
        [(rows, steps + 2, "")],
        "interpolation between posterior means (first and last column: the real images)",
        (12, 1.2 * len(pairs) + 0.8),
        (0, [f"{class_names[a]} → {class_names[b]}" for a, b in pairs]),
    )[0]


def plot_shape_factors(images: np.ndarray, zoom: int = 2) -> Figure:
    """The shapes dataset, one factor varied per row, the others at a middle value (an upright heart of scale 0.8 at
    the centre; the shape and orientation rows also at scale 0.5 or for each shape). `images`: every image in
    shapes.generate()'s order, (N, 28, 28) uint8; `zoom` screen pixels per image pixel."""
    sizes = [len(factor.values) for factor in FACTORS]
    grid = images.reshape(*sizes, SIZE, SIZE)
    middle = (2, 3, 0, sizes[3] // 2, sizes[4] // 2)  # heart, scale 0.8, upright, centroid at (14.5, 14.5)
    positions = f"{FACTORS[3].values[0]} to {FACTORS[3].values[-1]} px"
    step = np.degrees(FACTORS[2].values[1])
    rows = []
    for name, varied, fixed in (("shape", 0, {}), ("shape at scale 0.5", 0, {1: 0}), ("scale 0.5 to 1", 1, {}),
                                ("orientation, heart", 2, {}), ("orientation, ellipse", 2, {0: 1}),
                                ("orientation, square", 2, {0: 0}), (f"x {positions}", 3, {}),
                                (f"y {positions}", 4, {})):  # fmt: skip
        index: list[int | slice] = [fixed.get(i, value) for i, value in enumerate(middle)]
        index[varied] = slice(None)
        rows.append((name, grid[tuple(index)]))
    cell = SIZE + 2
    mosaic = np.full((len(rows) * cell, max(sizes) * cell), 96, np.uint8)  # grey frames around the images
    for r, (_, row) in enumerate(rows):
        for c, image in enumerate(row):
            mosaic[r * cell + 1 : (r + 1) * cell - 1, c * cell + 1 : (c + 1) * cell - 1] = image
    mosaic = mosaic.repeat(zoom, 0).repeat(zoom, 1)
    left, top = 160, 30  # pixels for the row names and the title
    width, height = mosaic.shape[1] + left, mosaic.shape[0] + top
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((left / width, 0, mosaic.shape[1] / width, mosaic.shape[0] / height))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks([(r + 0.5) * cell * zoom for r in range(len(rows))], [name for name, _ in rows])
    ax.set_xticks([])
    ax.set_frame_on(False)
    title = (f"The shapes dataset, one factor varied per row (orientation in {step:.0f}-degree steps); the others "
             "at a heart of scale 0.8, upright, centred")  # fmt: skip
    fig.text(0.5, 1 - 0.5 * top / height, title, ha="center", va="center")
    return fig


def coordinate_label(d: int, kl: float, information: np.ndarray, factor_names: Sequence[str]) -> str:
    """A traversal row's name: the coordinate, the two factors it carries most with their mutual information (a share
    of the factor's entropy; the first names the row), and its KL; 'inactive' below INACTIVE_KL."""
    if kl < INACTIVE_KL:
        return f"$z_{{{d + 1}}}$  inactive  (KL {kl:.2f})"
    first, second = np.argsort(information)[::-1][:2]
    carried = f"{factor_names[first]} {information[first]:.2f}, {factor_names[second]} {information[second]:.2f}"
    return f"$z_{{{d + 1}}}$  {carried}  (KL {kl:.2f})"


def plot_factor_traversal(
    model: BetaVAE,
    means: Tensor,
    kl: Tensor,
    information: np.ndarray,
    factor_names: Sequence[str],
    start: Tensor,
    steps: int = 11,
) -> Figure:
    """Every latent coordinate, a row each in order of decreasing KL (nats, (D,)): the code `start` (a real image's
    posterior mean) with that coordinate moved over its 1st to 99th percentile of `means`. Each row names the factors
    it carries most by `information`, (D, K) mutual information over each factor's entropy."""
    low, high = central_range(means)
    order = kl.argsort(descending=True).tolist()
    z = start.repeat(len(order), steps, 1)  # z[row, i]: start, the row's coordinate at its i-th value
    for row, d in enumerate(order):
        z[row, :, d] = torch.linspace(low[d].item(), high[d].item(), steps)
    names = [coordinate_label(d, kl[d].item(), information[d], factor_names) for d in order]
    fig, (ax,) = grids(
        model,
        [(decode(model, z.flatten(0, 1)), steps, "")],
        "each latent coordinate traversed from one image's code, in order of KL",
        (steps * 0.75 + 3, len(order) * 0.75 + 0.9),
        (0, names),
    )
    ax.set_xticks([0.5 * TILE, (steps - 0.5) * TILE], ["1st percentile", "99th percentile"])
    ax.set_xlabel("the coordinate's value over the training codes")
    return fig
