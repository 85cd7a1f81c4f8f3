"""Every figure of the project (notebooks and sweeps); each function returns a matplotlib Figure,
shown inline in a notebook and written with `save`. Nothing in the project imports this module
except the notebooks and the scripts at the top (sweep.py)."""
from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

from data import CLASS_NAMES, to_unit_range
from models import BetaVAE, map_batches
from samplers import central_range, interpolate, top_dimensions

IMG_DIR = Path(__file__).resolve().parent / "img"
DPI = 100  # with write_png, keeps every saved PNG under 300 KB


def save(fig: Figure, name: str, enabled: bool = True, folder: Path = IMG_DIR) -> None:
    """Save `fig` as FOLDER/NAME (img/ by default) when enabled (the notebooks' save_figures)."""
    if enabled:
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        write_png(Image.open(buffer), folder / name)


def write_png(image: Image.Image, path: Path) -> None:
    """Write an opaque figure as RGB, or with a palette where that is lossless (grey image grids): smaller files."""
    image = image.convert("RGB")
    if image.getcolors(256) is not None:
        image = image.quantize(256)
    image.save(path, optimize=True)


def tile_centers(n: int, size: int = 28) -> list[float]:
    """Centres of the first n rows (or columns) of a show_grid image; make_grid pads each image by one pixel."""
    return [(i + 0.5) * (size + 1) for i in range(n)]


def label_rows(ax, names: Sequence[str]) -> None:
    """Name the rows of a show_grid image."""
    ax.set_yticks(tile_centers(len(names)), names)


def grid(ax, images: Tensor, likelihood: str, nrow: int, title: str) -> None:
    """Draw images (in the likelihood's data range) as one grey grid of `nrow` columns on `ax`."""
    tiles = make_grid(to_unit_range(images, likelihood).clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    ax.imshow(tiles[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def decode(model: BetaVAE, z: Tensor) -> Tensor:
    """Decoded images for latent codes z, in eval mode."""
    return map_batches(model, model.decode, z)


def first_of_each_class(labels: Tensor, per_class: int) -> Tensor:
    """Indices of the first `per_class` images of every class, class after class."""
    return torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(CLASS_NAMES))])


def plot_curves(history: list[dict]) -> Figure:
    """Train and test reconstruction loss and KL per epoch (nats per image), and the target C if capacity is on."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
    epochs = [h["epoch"] for h in history]
    for ax, term, title in zip(axes, ("recon", "kl"), ("reconstruction loss", "KL divergence")):
        for split in ("train", "test"):
            ax.plot(epochs, [h[split][term] for h in history], "o-", markersize=3, label=split)
        if term == "kl" and "capacity" in history[0]:  # beta-VAE "B": the target the KL is pulled to
            ax.plot(epochs, [h["capacity"] for h in history], "k--", label="target C")
        ax.set(title=title, xlabel="epoch", ylabel="nats per image")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig


def plot_reconstructions(model: BetaVAE, images: Tensor, labels: Tensor, per_class: int = 6) -> Figure:
    """Reconstructions (left) beside the real test images (right), one row per class."""
    x = images[first_of_each_class(labels, per_class)]
    recon = map_batches(model, lambda batch: model(batch).recon, x)
    fig, axes = plt.subplots(1, 2, figsize=(10, 8), layout="constrained")
    grid(axes[0], recon, model.likelihood, per_class, "reconstructions")
    grid(axes[1], x, model.likelihood, per_class, "real test images")
    label_rows(axes[0], CLASS_NAMES)
    return fig


def plot_samples(model: BetaVAE, z: Tensor, nrow: int = 10, title: str = "samples, z ~ N(0, I)") -> Figure:
    """A grid of images decoded from the latent codes z."""
    fig, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    grid(ax, decode(model, z), model.likelihood, nrow, title)
    return fig


def class_scatter(ax, x, y, labels: Tensor, seed: int = 0) -> None:
    """Points coloured by class, drawn in a random order so that no class hides the others."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    colors = plt.get_cmap("tab10")(labels[order].numpy())
    ax.scatter(x[order], y[order], c=colors, s=2, alpha=0.5, linewidths=0, rasterized=True)


def plot_latent_projections(means: Tensor, labels: Tensor) -> Figure:
    """Posterior means coloured by class, one shared legend: the 2-d projections z1-z2, z1-z3, z2-z3 (beyond
    three dimensions: of the three that vary most); one panel for latent_dim 2, a strip per class for 1."""
    dims, n = top_dimensions(means, 3), len(means)
    z = means.numpy()
    if len(dims) == 1:
        fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
        jitter = torch.rand(n, generator=torch.Generator().manual_seed(0)).numpy() * 0.6 - 0.3
        class_scatter(ax, z[:, 0], labels.numpy() + jitter, labels)
        ax.set(xlabel="$z_1$", ylim=(len(CLASS_NAMES) - 0.5, -0.5))
        ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    else:
        pairs = list(itertools.combinations(dims, 2))
        fig, axes = plt.subplots(1, len(pairs), figsize=(4.3 * len(pairs) + 1.6, 4.3), layout="constrained",
                                 squeeze=False)
        for ax, (i, j) in zip(axes[0], pairs):
            class_scatter(ax, z[:, i], z[:, j], labels)
            ax.set(xlabel=f"$z_{{{i + 1}}}$", ylabel=f"$z_{{{j + 1}}}$")
        handles = [Line2D([], [], ls="", marker="o", color=plt.get_cmap("tab10")(c)) for c in range(len(CLASS_NAMES))]
        fig.legend(handles, CLASS_NAMES, loc="outside right center", frameon=False)
    most = f" (the 3 of {means.shape[1]} dimensions that vary most)" if means.shape[1] > 3 else ""
    fig.suptitle(f"posterior means of {n:,} test images{most}")
    return fig


def plot_latent_map(model: BetaVAE, means: Tensor, dims: Sequence[int] = (0, 1), steps: int = 15) -> Figure:
    """Images decoded on a grid over the plane of two latent dimensions (one row for latent_dim 1), spanning the
    1st to 99th percentile of the posterior means, the other dimensions at their median."""
    dims = list(dims)[:model.latent_dim]
    low, high = central_range(means)
    axes = [torch.linspace(low[d], high[d], steps) for d in dims]
    if len(dims) == 2:
        axes[1] = axes[1].flip(0)  # the top row has the largest value, as on a plot's y axis
    z = means.median(0).values.repeat(steps ** len(dims), 1)
    z[:, dims] = torch.cartesian_prod(*reversed(axes)).reshape(-1, len(dims)).flip(1)
    fig, ax = plt.subplots(figsize=(9, 9.3 if len(dims) == 2 else 1.6), layout="constrained")
    others = "" if model.latent_dim == len(dims) else ", the others at their median"
    grid(ax, decode(model, z), model.likelihood, steps, "decoded images over the latent space" + others)
    ticks = range(0, steps, 2)
    ax.set_xticks([tile_centers(steps)[t] for t in ticks], [f"{axes[0][t]:.1f}" for t in ticks])
    ax.set_xlabel(f"$z_{{{dims[0] + 1}}}$")
    if len(dims) == 2:
        ax.set_yticks([tile_centers(steps)[t] for t in ticks], [f"{axes[1][t]:.1f}" for t in ticks])
        ax.set_ylabel(f"$z_{{{dims[1] + 1}}}$")
    return fig


def plot_traversal(model: BetaVAE, steps: int = 11, span: float = 3.0) -> Figure:
    """One row per latent dimension: that dimension from -span to span, the others held at 0."""
    values = torch.linspace(-span, span, steps)
    z = torch.zeros(model.latent_dim, steps, model.latent_dim)
    for d in range(model.latent_dim):
        z[d, :, d] = values
    fig, ax = plt.subplots(figsize=(steps * 0.8, model.latent_dim * 0.9 + 0.8), layout="constrained")
    grid(ax, decode(model, z.flatten(0, 1)), model.likelihood, steps, "latent traversals (others at 0)")
    label_rows(ax, [f"$z_{d + 1}$" for d in range(model.latent_dim)])
    ax.set_xticks(tile_centers(steps), [f"{round(v, 1) + 0:.1f}" for v in values.tolist()])  # + 0: no "-0.0"
    return fig


def plot_samplers(model: BetaVAE, prior_z: Tensor, aggregate_z: Tensor, class_z: Tensor, nrow: int = 10) -> Figure:
    """Samples from the prior, the aggregate posterior and the per-class Gaussians, side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6), layout="constrained")
    for ax, z, title in zip(axes, (prior_z, aggregate_z, class_z),
                            ("prior N(0, I)", "aggregate posterior (mixture)", "class-conditional")):
        grid(ax, decode(model, z), model.likelihood, nrow, title)
    label_rows(axes[2], CLASS_NAMES)
    return fig


def plot_interpolation(model: BetaVAE, images: Tensor, labels: Tensor, pairs: Sequence[tuple[int, int]],
                       steps: int = 10) -> Figure:
    """Per pair of classes: decoded images between the first test image of each (the real ones at the ends)."""
    rows = []
    for a, b in pairs:
        x_a, x_b = images[labels == a][0], images[labels == b][0]
        rows.append(torch.cat([x_a[None], interpolate(model, x_a, x_b, steps), x_b[None]]))
    fig, ax = plt.subplots(figsize=(12, 1.2 * len(pairs) + 0.8), layout="constrained")
    grid(ax, torch.cat(rows), model.likelihood, steps + 2,
              "interpolation between posterior means (first and last column: the real test images)")
    label_rows(ax, [f"{CLASS_NAMES[a]} → {CLASS_NAMES[b]}" for a, b in pairs])
    return fig


def plot_sweep(rows: list[dict], sampler_names: Sequence[str]) -> dict[str, Figure]:
    """A sweep's figures from its table rows (one per beta): rate_distortion, knn and fd."""
    betas = [row["beta"] for row in rows]
    figures = {name: Figure(figsize=(5, 4), layout="constrained") for name in ("rate_distortion", "knn", "fd")}
    ax = figures["rate_distortion"].subplots()
    ax.plot([row["kl"] for row in rows], [row["recon"] for row in rows], "o-")
    for row in rows:
        ax.annotate(f"β={row['beta']:g}", (row["kl"], row["recon"]), textcoords="offset points", xytext=(4, 4))
    ax.set(xlabel="rate: KL (nats/image)", ylabel="distortion: reconstruction (nats/image)",
           title="rate-distortion (test set)")
    ax = figures["knn"].subplots()
    ax.plot(betas, [row["knn_accuracy"] for row in rows], "o-")
    ax.set(xscale="log", xlabel="β", ylabel="kNN accuracy (k = 5)", title="class separation in latent space")
    ax = figures["fd"].subplots()
    for name, style in zip(sampler_names, ("o-", "s-", "^--")):
        ax.plot(betas, [row[f"fd_{name}"] for row in rows], style, label=name)
    ax.set(xscale="log", xlabel="β", ylabel="Fréchet distance to test images",
           title=f"samples by sampler (training images: {rows[0]['fd_real']:.2g})")
    ax.legend()
    return figures


def plot_frontier(rows: list[dict], marked: Sequence[dict] = ()) -> Figure:
    """Test reconstruction and MSE against parameter count (log scale), one line per family (mean ± std over
    seeds), and the `marked` designs (e.g. the best CNNs of a search) as stars."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, (key, title) in zip(fig.subplots(1, 2), [("recon", "test reconstruction (nats/image)"),
                                                     ("mse", "test MSE per pixel [0, 1]")]):
        for i, model in enumerate(sorted({row["model"] for row in rows})):
            family = [row for row in rows if row["model"] == model]
            ax.errorbar([row["parameters"][0] for row in family], [row[key][0] for row in family],
                        yerr=[row[key][1] or 0 for row in family], fmt="o-", capsize=3, label=model.upper(),
                        color=plt.get_cmap("tab10")(i))
            for row in family:
                ax.annotate(row["architecture"], (row["parameters"][0], row[key][0]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        for j, row in enumerate(marked):  # colours after the families'
            ax.errorbar(row["parameters"][0], row[key][0], yerr=row[key][1] or 0, fmt="*", markersize=12,
                        capsize=3, label=f"CNN {row['architecture']}", color=plt.get_cmap("tab10")(2 + j))
        ax.set(xscale="log", xlabel="parameters", title=title)
    fig.legend(*fig.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2 + len(marked))
    return fig


def plot_betas(rows: list[dict]) -> Figure:
    """The beta sweep's table rows as curves against beta (log scale), one line per model and likelihood:
    reconstruction MSE in [0, 1], kNN accuracy (class separation), KL (rate) and FD of prior samples."""
    metrics = [("mse", "MSE per pixel [0, 1]"), ("knn_accuracy", "kNN accuracy (class separation)"),
               ("kl", "KL (nats/image)"), ("fd_prior", "FD, prior samples")]
    fig = Figure(figsize=(3.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics))
    likelihoods = sorted({row["likelihood"] for row in rows})  # colour: likelihood; line style: model
    for ax, (key, title) in zip(axes, metrics):
        for line in sorted({(row["model"], row["likelihood"]) for row in rows}):
            curve = sorted((row["beta"], row[key]) for row in rows if (row["model"], row["likelihood"]) == line)
            ax.errorbar([beta for beta, _ in curve], [cell[0] for _, cell in curve],
                        yerr=[cell[1] or 0 for _, cell in curve], fmt="o-" if line[0] == "fc" else "s--", capsize=3,
                        label=f"{line[0].upper()} {line[1]}",
                        color=plt.get_cmap("tab10")(likelihoods.index(line[1])))
        ax.set(xscale="log", xlabel="β", title=title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4)
    return fig


def plot_likelihoods(rows: list[dict]) -> Figure:
    """The likelihoods side by side on the common scales (one bar group per model and beta), mean ± std
    over seeds: reconstruction MSE in [0, 1], kNN accuracy, FD of aggregate samples, their precision and recall."""
    metrics = [("mse", "MSE per pixel [0, 1]"), ("knn_accuracy", "kNN accuracy"),
               ("fd_aggregate", "FD, aggregate samples"), ("precision_aggregate", "precision, aggregate"),
               ("recall_aggregate", "recall, aggregate")]
    groups = sorted({(row["model"], row["beta"]) for row in rows})
    likelihoods = sorted({row["likelihood"] for row in rows})
    fig = Figure(figsize=(3.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics))
    width = 0.8 / len(likelihoods)
    for ax, (key, title) in zip(axes, metrics):
        for i, likelihood in enumerate(likelihoods):
            cells = [next((r[key] for r in rows if (r["model"], r["beta"]) == g and r["likelihood"] == likelihood),
                          (float("nan"), None)) for g in groups]
            ax.bar([x + i * width for x in range(len(groups))], [c[0] for c in cells], width,
                   yerr=[c[1] or 0 for c in cells], label=likelihood, color=plt.get_cmap("tab10")(i))
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(groups))], [f"{m} β={b:g}" for m, b in groups])
        ax.set_title(title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(likelihoods))
    return fig
