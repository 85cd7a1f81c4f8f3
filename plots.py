"""Every figure of the notebooks and lab/, each a matplotlib Figure (written with `save`). A colour means one thing
everywhere: FAMILY_COLORS the model family, LIKELIHOOD_COLORS (and LIKELIHOOD_STYLES in line plots) the likelihood."""
from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from data import CLASS_NAMES, to_unit_range
from models import BetaVAE
from samplers import central_range, decode, interpolate, posterior_means, top_dimensions

IMG_DIR = Path(__file__).resolve().parent / "img"
DPI = 100  # with save's palette, keeps every saved PNG under 300 KB
FAMILY_COLORS = {"fc": "#0072B2", "cnn": "#D55E00"}  # blue, vermillion: hues no likelihood uses
LIKELIHOOD_COLORS = {"bernoulli": "#009E73", "gaussian": "#CC79A7", "continuous_bernoulli": "#E6AB02",
                     "sigma": "#666666"}  # green, pink, gold, grey
LIKELIHOOD_STYLES = {"bernoulli": "o-", "gaussian": "s--", "continuous_bernoulli": "^:", "sigma": "D-."}
TILE = 29  # pixels from one image of a grid to the next: 28 and make_grid's padding
OFFSETS = [(5, 5), (5, -5), (-5, 5), (-5, -5), (5, 14), (5, -14), (-5, 14), (-5, -14), (0, 24), (0, -24)]  # points


def save(fig: Figure, name: str, enabled: bool = True, folder: Path = IMG_DIR) -> None:
    """Save `fig` as FOLDER/NAME when enabled (the notebooks' save_figures): RGB, or a palette where lossless."""
    if enabled:
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(buffer := io.BytesIO(), format="png", dpi=DPI, bbox_inches="tight")
        image = Image.open(buffer).convert("RGB")
        (image if image.getcolors(256) is None else image.quantize(256)).save(folder / name, optimize=True)


def cell(value) -> tuple[float, float]:
    """A study cell (mean, std or None), or a plain number, as (mean, std) with std 0 where unknown."""
    return (value[0], value[1] or 0) if isinstance(value, tuple) else (value, 0)


def curves(rows: list[dict], metrics: list[tuple[str, str]], line: Callable, x: Callable, style: Callable,
           ncols: int, size: tuple[float, float], legend: bool = True, **settings) -> tuple[Figure, list]:
    """A panel per metric (key, title) present, with Axes.set(**settings): a curve (mean ± std) per line(row)."""
    metrics = [(k, t) for k, t in metrics if any(not math.isnan(cell(r.get(k, math.nan))[0]) for r in rows)]
    if not metrics:
        raise ValueError("the rows hold none of the metrics to plot")
    ncols, nrows = min(len(metrics), ncols), math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows + 0.9), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(len(metrics))]
    for ax, (key, title) in zip(axes, metrics):
        for value in sorted({line(row) for row in rows}):
            points = sorted(((x(r), *cell(r[key])) for r in rows if line(r) == value and key in r), key=lambda p: p[0])
            xs, means, stds = zip(*points) if points else ((), (), ())
            ax.errorbar(list(xs), list(means), yerr=list(stds), capsize=3, **style(value))
        ax.set(title=title, **settings)
        ax.minorticks_off()  # log axes: the major ticks suffice
    if legend:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    return fig, axes


def label_points(fig: Figure, jobs: list[tuple]) -> None:
    """Label points per job (axes, points, texts, points to avoid, colours), each at its first clear OFFSETS place."""
    fig.draw_without_rendering()
    for ax, points, texts, avoid, colors in jobs:
        pad, frame, placed = 7 * fig.dpi / 72, ax.get_window_extent(), []  # 7 points: clear of big markers too
        marks = [Bbox.from_extents(*(xy - pad), *(xy + pad)) for xy in map(ax.transData.transform, [*points, *avoid])]
        paths = [ln.get_transform().transform_path(ln.get_path()) for ln in ax.lines if ln.get_linestyle() != "None"]
        for i, (point, text, color) in enumerate(zip(points, texts, colors)):
            for dx, dy in OFFSETS:
                label = ax.annotate(text, point, textcoords="offset points", xytext=(dx, dy), fontsize=7, color=color,
                                    va=("top", "bottom")[dy > 0], ha="left" if dx > 0 else "right" if dx else "center")
                box, others = label.get_window_extent().padded(1), placed + marks[:i] + marks[i + 1:]
                clear = frame.count_contains([box.p0, box.p1]) == 2 and not any(map(box.overlaps, others)) and not any(
                    path.intersects_bbox(box, filled=False) for path in paths)
                if clear or (dx, dy) == OFFSETS[-1]:
                    break
                label.remove()
            placed.append(box)


def grids(model: BetaVAE, panels: list[tuple[Tensor, int, str]], title: str, figsize: tuple[float, float],
          rows: tuple[int, Sequence[str]] = (0, ())) -> tuple[Figure, list]:
    """Image grids side by side, each (images in [0, 1], columns, title); rows: (panel, names of its grid rows)."""
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, layout="constrained", squeeze=False)
    for ax, (images, nrow, name) in zip(axes[0], panels):
        tiles = make_grid(images.clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
        ax.imshow(tiles[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set(title=name, xticks=[], yticks=[])
    axes[0, rows[0]].set_yticks([(i + 0.5) * TILE for i in range(len(rows[1]))], rows[1])
    fig.suptitle(f"{model.config.model.upper()}: {title}")  # the family: FC or CNN
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


def plot_reconstructions(model: BetaVAE, images: Tensor, labels: Tensor, per_class: int = 6) -> Figure:
    """Reconstructions (left) beside the real test images (right): the first `per_class` of each class, a row each."""
    x = images[torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(CLASS_NAMES))])]
    return grids(model, [(decode(model, posterior_means(model, x)), per_class, "reconstructions"),
                         (to_unit_range(x, model.likelihood), per_class, "real test images")],
                 "test images and their reconstructions", (10, 8.3), (0, CLASS_NAMES))[0]


def plot_samples(model: BetaVAE, z: Tensor, nrow: int = 10, title: str = "samples, z ~ N(0, I)") -> Figure:
    """A grid of images decoded from the latent codes z."""
    return grids(model, [(decode(model, z), nrow, "")], title, (6, 6.2))[0]


def class_scatter(ax, x, y, labels: Tensor, seed: int = 0) -> None:
    """Points coloured by class, drawn in a random order so that no class hides the others."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    ax.scatter(x[order], y[order], c=plt.cm.tab10(labels[order].numpy()), s=2, alpha=0.5, lw=0, rasterized=True)


def plot_latent_projections(means: Tensor, labels: Tensor, name: str | None = None) -> Figure:
    """Posterior means coloured by class: 2-d projections of the three most varying dimensions (1-d: strips)."""
    dims, n, z = top_dimensions(means, 3), len(means), means.numpy()
    pairs = list(itertools.combinations(dims, 2)) or [(0, None)]  # latent_dim 1: a strip per class
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.3 * len(pairs) + 1.6, 4.3), layout="constrained", squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        jitter = torch.rand(n, generator=torch.Generator().manual_seed(0)).numpy() * 0.6 - 0.3
        class_scatter(ax, z[:, i], labels.numpy() + jitter if j is None else z[:, j], labels)
        ax.set(xlabel=f"$z_{{{i + 1}}}$", ylabel="" if j is None else f"$z_{{{j + 1}}}$")
    if pairs[0][1] is None:
        ax.set(yticks=range(len(CLASS_NAMES)), yticklabels=CLASS_NAMES, ylim=(len(CLASS_NAMES) - 0.5, -0.5))
    else:
        handles = [Line2D([], [], ls="", marker="o", color=plt.get_cmap("tab10")(c)) for c in range(len(CLASS_NAMES))]
        fig.legend(handles, CLASS_NAMES, loc="outside right center", frameon=False)
    most = f" (the 3 of {means.shape[1]} dimensions that vary most)" if means.shape[1] > 3 else ""
    fig.suptitle(f"{name + ': ' if name else ''}posterior means of {n:,} test images{most}")
    return fig


def plot_latent_map(model: BetaVAE, means: Tensor, dims: Sequence[int] = (0, 1), steps: int = 15) -> Figure:
    """Images decoded over two latent dimensions' 1st to 99th percentiles, the others at their median."""
    dims = list(dims)[:model.latent_dim]
    ranges = torch.stack(central_range(means), 1).tolist()  # the y axis runs down: the top row has the largest value
    axes = [torch.linspace(*ranges[d][::1 if k == 0 else -1], steps) for k, d in enumerate(dims)]
    z = means.median(0).values.repeat(steps ** len(dims), 1)
    z[:, dims] = torch.cartesian_prod(*reversed(axes)).reshape(-1, len(dims)).flip(1)
    others = "" if model.latent_dim == len(dims) else ", the others at their median"
    fig, (ax,) = grids(model, [(decode(model, z), steps, "")], "decoded images over the latent space" + others,
                       (9, 9.3 if len(dims) == 2 else 1.8))
    for axis, values, d in zip((ax.xaxis, ax.yaxis), axes, dims):
        axis.set_ticks([(i + 0.5) * TILE for i in range(0, steps, 2)], [f"{v:.1f}" for v in values[::2].tolist()])
        axis.set_label_text(f"$z_{{{d + 1}}}$")
    return fig


def plot_traversal(model: BetaVAE, steps: int = 11, span: float = 3.0) -> Figure:
    """One row per latent dimension: that dimension from -span to span, the others held at 0."""
    values = torch.linspace(-span, span, steps)
    z = torch.eye(model.latent_dim)[:, None, :] * values[None, :, None]  # z[d, i] = values[i] in dimension d
    fig, (ax,) = grids(model, [(decode(model, z.flatten(0, 1)), steps, "")], "latent traversals (others at 0)",
                       (steps * 0.8, model.latent_dim * 0.9 + 0.9), (0, [f"$z_{d + 1}$" for d in range(len(z))]))
    ax.set_xticks([(i + 0.5) * TILE for i in range(steps)], [f"{round(v, 1) + 0:.1f}" for v in values.tolist()])
    return fig


def plot_samplers(model: BetaVAE, prior_z: Tensor, aggregate_z: Tensor, class_z: Tensor, nrow: int = 10) -> Figure:
    """Samples from the prior, the aggregate posterior and the per-class Gaussians, side by side."""
    return grids(model, [(decode(model, z), nrow, t) for z, t in zip((prior_z, aggregate_z, class_z), ("prior N(0, I)",
        "aggregate posterior (mixture)", "class-conditional"))], "samples by sampler", (15, 5.9), (2, CLASS_NAMES))[0]


def plot_interpolation(model: BetaVAE, images: Tensor, labels: Tensor, pairs: Sequence[tuple[int, int]],
                       steps: int = 10) -> Figure:
    """Per pair of classes: decoded images between the first test image of each (the real ones at the ends)."""
    ends = [(images[labels == a][0], images[labels == b][0]) for a, b in pairs]
    rows = torch.cat([torch.cat([x_a[None], interpolate(model, x_a, x_b, steps), x_b[None]]) for x_a, x_b in ends])
    return grids(model, [(to_unit_range(rows, model.likelihood), steps + 2, "")],
                 "interpolation between posterior means (first and last column: the real images)",
                 (12, 1.2 * len(pairs) + 0.8), (0, [f"{CLASS_NAMES[a]} → {CLASS_NAMES[b]}" for a, b in pairs]))[0]


def plot_sweep(rows: list[dict], sampler_names: Sequence[str]) -> dict[str, Figure]:
    """A sweep's figures from its table rows (one per beta, plain numbers): rate_distortion, knn and fd."""
    fd = [{**row, "sampler": name, "fd": row[f"fd_{name}"]} for row in rows for name in sampler_names]
    style = lambda name: {"fmt": ("o-", "s--", "^:")[sampler_names.index(name) % 3] if name else "o-",  # noqa: E731
                          "color": FAMILY_COLORS.get(rows[0].get("model"), "black"), "label": name}
    return {"rate_distortion": plot_rate_distortion([{"model": "", **row} for row in rows]),
            "knn": curves(rows, [("knn_accuracy", "class separation: kNN accuracy (k = 5)")], lambda r: "",
                          lambda r: r["beta"], style, 1, (5, 3.6), False, xscale="log", xlabel="β")[0],
            "fd": curves(fd, [("fd", f"FD to test images (training images: {rows[0]['fd_real']:.2g})")],
                         lambda r: r["sampler"], lambda r: r["beta"], style, 1, (5, 3.6), xscale="log", xlabel="β")[0]}


def family_line(key: tuple[str, str], fmt: str) -> dict:
    """errorbar keywords of a line in the colour of family key[0], labelled "FC 512x256" (key[1]: "512x256")."""
    return {"fmt": fmt, "color": FAMILY_COLORS[key[0]], "label": f"{key[0].upper()} {key[1].replace('_', ' ')}"}


def plot_frontier(rows: list[dict], marked: Sequence[dict] = ()) -> Figure:
    """Test reconstruction and MSE against parameters, a labelled line per family, `marked` designs as big markers."""
    metrics = [("recon", "test reconstruction (nats/image)"), ("mse", "test MSE per pixel")]
    fig, axes = curves(rows, metrics, lambda r: r["model"], lambda r: cell(r["parameters"])[0],
                       lambda family: family_line((family, ""), "o-"), 2, (5, 3.7), False, xscale="log",
                       xlabel="parameters", xmargin=0.12, ymargin=0.12)
    spot = lambda row, key: (cell(row["parameters"])[0], cell(row[key])[0])  # noqa: E731
    for (ax, (key, _)), (row, marker) in itertools.product(zip(axes, metrics), zip(marked, "*Pdv")):
        ax.errorbar(*spot(row, key), yerr=cell(row[key])[1], markersize=11, mec="black", capsize=3,
                    **family_line((row["model"], row["architecture"]), marker))
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2 + len(marked), frameon=False,
               title="labels: FC hidden widths; CNN channels, kN: kernel size N of the two stride-2 convolutions")
    label_points(fig, [(ax, [spot(r, key) for r in rows], [r["architecture"] for r in rows], [spot(r, key) for r in
                        marked], [FAMILY_COLORS[r["model"]] for r in rows]) for ax, (key, _) in zip(axes, metrics)])
    return fig


def plot_betas(rows: list[dict]) -> Figure:
    """MSE, kNN accuracy, KL and prior samples' FD against beta, a line per family (colour) and likelihood (style)."""
    return curves(rows, [("mse", "MSE per pixel [0, 1]"), ("knn_accuracy", "kNN accuracy (class separation)"),
                         ("kl", "KL (nats/image)"), ("fd_prior", "FD, prior samples")],
                  lambda r: (r["model"], r["likelihood"]), lambda r: r["beta"],
                  lambda key: family_line(key, LIKELIHOOD_STYLES[key[1]]), 2, (4, 2.8), xscale="log", xlabel="β")[0]


def plot_likelihoods(rows: list[dict]) -> Figure:
    """The likelihoods side by side on the common measures, a group per family and beta (mean ± std over seeds)."""
    newer = any(key in row for row in rows for key in ("coverage_aggregate", "class_entropy_aggregate"))
    metrics = [("mse", "MSE per pixel [0, 1]"), ("knn_accuracy", "kNN accuracy"), ("fd_aggregate", "FD, aggregate"),
               ("precision_aggregate", "precision, aggregate"), ("coverage_aggregate", "coverage, aggregate"),
               ("class_entropy_aggregate", "class entropy, aggregate"), ("recall_aggregate", "recall, aggregate")][
                   :6 + (not newer)]  # recall: near 0 for every model; shown only without the newer measures
    groups, names = sorted({(r["model"], r["beta"]) for r in rows}), sorted({r["likelihood"] for r in rows})
    x = lambda r: groups.index((r["model"], r["beta"])) + (names.index(r["likelihood"]) + 0.5) / len(names) * 0.7 - 0.35
    fig, axes = curves(rows, metrics, lambda r: r["likelihood"], x, lambda name: {
        "fmt": LIKELIHOOD_STYLES[name][0], "label": name.replace("_", " "), "color": LIKELIHOOD_COLORS[name]}, 3,
        (2.7, 2.3), xticks=range(len(groups)), xticklabels=[f"{m.upper()}\nβ={b:g}" for m, b in groups])
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        for tick, (family, _) in zip(ax.get_xticklabels(), groups):
            tick.set_color(FAMILY_COLORS[family])
    return fig


def plot_latent_dims(rows: list[dict], title: str = "latent width vs quality (bernoulli, beta 0.1, 20 epochs)"
                     ) -> Figure:
    """Each metric against latent_dim, a line per family (colour) and architecture (style: the largest solid)."""
    size = {(r["model"], r["architecture"]): cell(r.get("parameters", 0))[0] for r in rows}  # any latent_dim's
    rank = {k: sorted((o for o in size if o[0] == k[0]), key=lambda o: (-size[o], o[1])).index(k) for k in size}
    style = lambda k: family_line((k[0], k[1] + f" ({size[k] / 1e3:,.0f}k)" * bool(size[k])),  # noqa: E731
                                  "o" + ("-", "--", ":", "-.")[rank[k] % 4])
    dims = sorted({r["latent_dim"] for r in rows})  # on a log scale, ticks at each
    fig, axes = curves(rows, [("recon", "test reconstruction (nats/image)"), ("mse", "MSE per pixel [0, 1]"),
                              ("knn_accuracy", "kNN accuracy"), ("fd_prior", "FD, prior samples"),
                              ("fd_aggregate", "FD, aggregate samples")], lambda r: (r["model"], r["architecture"]),
                       lambda r: r["latent_dim"], style, 3, (3, 2.6), xscale="log", xticks=dims,
                       xticklabels=[str(d) for d in dims], xlabel="latent dimensions")
    fig.suptitle(title)
    return fig


def plot_rate_distortion(rows: list[dict]) -> Figure:
    """Test reconstruction against KL per family: beta-VAE H runs (no capacity) and B runs (one point per gamma)."""
    families = sorted({row["model"] for row in rows})
    capacities = any(row.get("capacity") is not None for row in rows)  # beta-VAE B runs
    fig = Figure(figsize=(4.6 * len(families), 4.4), layout="constrained")
    axes, jobs = fig.subplots(1, len(families), squeeze=False)[0], []
    for ax, family in zip(axes, families):
        color = FAMILY_COLORS.get(family, "black")
        h = sorted((r for r in rows if r["model"] == family and r.get("capacity") is None), key=lambda r: cell(r["kl"]))
        b = [r for r in rows if r["model"] == family and r.get("capacity") is not None]
        for runs, fmt, face in ((h, "o-", None), (b, "s", "white")):
            if runs:
                kl, dkl, recon, drecon = zip(*[(*cell(r["kl"]), *cell(r["recon"])) for r in runs])
                ax.errorbar(kl, recon, drecon, dkl, fmt, mfc=face, capsize=3, color=color)
        texts = [f"β={r['beta']:g}" if "beta" in r else "" for r in h] + [", ".join(
            f"{s}={r[k]:g}" for s, k in (("γ", "gamma"), ("C", "capacity")) if r.get(k) is not None) for r in b]
        jobs.append((ax, [(cell(r["kl"])[0], cell(r["recon"])[0]) for r in h + b], texts, (), [color] * len(texts)))
        ax.set(title=family.upper(), xlabel="rate: test KL (nats/image)", ylabel="distortion: test recon (nats/image)")
        ax.margins(0.15)
    keys = [(Line2D([], [], color="grey", marker="o"), "β-VAE H: a point per β"), (Line2D(
        [], [], color="grey", marker="s", ls="", mfc="white"), "β-VAE B: capacity C, weight γ")]
    fig.legend(*zip(*keys[:1 + capacities]), loc="outside lower center", ncols=2)
    fig.suptitle("rate-distortion on the test set")
    label_points(fig, jobs)
    return fig
