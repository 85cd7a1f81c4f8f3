"""The study's and the sweeps' figures, from their table rows (cells as (mean, std) or plain numbers). A colour means
one thing in every figure: FAMILY_COLORS the model family, LIKELIHOOD_COLORS (and LIKELIHOOD_STYLES) the likelihood."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

FAMILY_COLORS = {"fc": "#0072B2", "cnn": "#D55E00"}  # blue, vermillion: hues no likelihood uses
LIKELIHOOD_COLORS = {
    "bernoulli": "#009E73",
    "gaussian": "#CC79A7",
    "continuous_bernoulli": "#E6AB02",
    "sigma": "#666666",
}  # green, pink, gold, grey
LIKELIHOOD_STYLES = {"bernoulli": "o-", "gaussian": "s--", "continuous_bernoulli": "^:", "sigma": "D-."}
OFFSETS = [(5, 5), (5, -5), (-5, 5), (-5, -5), (5, 14), (5, -14), (-5, 14), (-5, -14), (0, 24), (0, -24)]  # points


def mean_std(value) -> tuple[float, float]:
    """A study cell (mean, std or None), or a plain number, as (mean, std) with std 0 where unknown."""
    return (value[0], value[1] or 0) if isinstance(value, tuple) else (value, 0)


def curves(
    rows: list[dict],
    metrics: list[tuple[str, str]],
    line: Callable,
    x: Callable,
    style: Callable,
    ncols: int,
    size: tuple[float, float],
    legend: bool = True,
    **settings,
) -> tuple[Figure, list]:
    """A panel per metric (key, title) present, with Axes.set(**settings): a curve (mean ± std) per line(row)."""
    metrics = [(k, t) for k, t in metrics if any(not math.isnan(mean_std(r.get(k, math.nan))[0]) for r in rows)]
    if not metrics:
        raise ValueError("the rows hold none of the metrics to plot")
    ncols, nrows = min(len(metrics), ncols), math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows + 0.9), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(len(metrics))]
    for ax, (key, title) in zip(axes, metrics):
        for value in sorted({line(row) for row in rows}):
            points = sorted(
                ((x(r), *mean_std(r[key])) for r in rows if line(r) == value and key in r), key=lambda p: p[0]
            )
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
                label = ax.annotate(
                    text,
                    point,
                    textcoords="offset points",
                    xytext=(dx, dy),
                    fontsize=7,
                    color=color,
                    va=("top", "bottom")[dy > 0],
                    ha="left" if dx > 0 else "right" if dx else "center",
                )
                box, others = label.get_window_extent().padded(1), placed + marks[:i] + marks[i + 1 :]
                clear = (
                    frame.count_contains([box.p0, box.p1]) == 2
                    and not any(map(box.overlaps, others))
                    and not any(path.intersects_bbox(box, filled=False) for path in paths)
                )
                if clear or (dx, dy) == OFFSETS[-1]:
                    break
                label.remove()
            placed.append(box)


def plot_sweep(rows: list[dict], sampler_names: Sequence[str]) -> dict[str, Figure]:
    """A sweep's figures from its table rows (one per beta, plain numbers): rate_distortion, knn and fd."""
    fd = [{**row, "sampler": name, "fd": row[f"fd_{name}"]} for row in rows for name in sampler_names]

    def style(name: str) -> dict:
        return {
            "fmt": ("o-", "s--", "^:")[sampler_names.index(name) % 3] if name else "o-",
            "color": FAMILY_COLORS.get(rows[0].get("model"), "black"),
            "label": name,
        }

    return {
        "rate_distortion": plot_rate_distortion([{"model": "", **row} for row in rows]),
        "knn": curves(
            rows,
            [("knn_accuracy", "class separation: kNN accuracy (k = 5)")],
            lambda r: "",
            lambda r: r["beta"],
            style,
            1,
            (5, 3.6),
            False,
            xscale="log",
            xlabel="β",
        )[0],
        "fd": curves(
            fd,
            [("fd", f"FD to test images (training images: {rows[0]['fd_real']:.2g})")],
            lambda r: r["sampler"],
            lambda r: r["beta"],
            style,
            1,
            (5, 3.6),
            xscale="log",
            xlabel="β",
        )[0],
    }


def family_line(key: tuple[str, str], fmt: str) -> dict:
    """errorbar keywords of a line in the colour of family key[0], labelled "FC 512x256" (key[1]: "512x256")."""
    return {"fmt": fmt, "color": FAMILY_COLORS[key[0]], "label": f"{key[0].upper()} {key[1].replace('_', ' ')}"}


def plot_frontier(rows: list[dict], marked: Sequence[dict] = ()) -> Figure:
    """Test reconstruction and MSE against parameters, a labelled line per family, `marked` designs as big markers."""
    metrics = [("recon", "test reconstruction (nats/image)"), ("mse", "test MSE per pixel")]
    fig, axes = curves(
        rows,
        metrics,
        lambda r: r["model"],
        lambda r: mean_std(r["parameters"])[0],
        lambda family: family_line((family, ""), "o-"),
        2,
        (5, 3.7),
        False,
        xscale="log",
        xlabel="parameters",
        xmargin=0.12,
        ymargin=0.12,
    )
    spot = lambda row, key: (mean_std(row["parameters"])[0], mean_std(row[key])[0])  # noqa: E731
    for (ax, (key, _)), (row, marker) in itertools.product(zip(axes, metrics), zip(marked, "*Pdv")):
        ax.errorbar(
            *spot(row, key),
            yerr=mean_std(row[key])[1],
            markersize=11,
            mec="black",
            capsize=3,
            **family_line((row["model"], row["architecture"]), marker),
        )
    fig.legend(
        *axes[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=2 + len(marked),
        frameon=False,
        title="labels: FC hidden widths; CNN channels, kN: kernel size N of the two stride-2 convolutions",
    )
    label_points(
        fig,
        [
            (
                ax,
                [spot(r, key) for r in rows],
                [r["architecture"] for r in rows],
                [spot(r, key) for r in marked],
                [FAMILY_COLORS[r["model"]] for r in rows],
            )
            for ax, (key, _) in zip(axes, metrics)
        ],
    )
    return fig


def plot_betas(rows: list[dict]) -> Figure:
    """MSE, kNN accuracy, KL and prior samples' FD against beta, a line per family (colour) and likelihood (style)."""
    return curves(
        rows,
        [
            ("mse", "MSE per pixel [0, 1]"),
            ("knn_accuracy", "kNN accuracy (class separation)"),
            ("kl", "KL (nats/image)"),
            ("fd_prior", "FD, prior samples"),
        ],
        lambda r: (r["model"], r["likelihood"]),
        lambda r: r["beta"],
        lambda key: family_line(key, LIKELIHOOD_STYLES[key[1]]),
        2,
        (4, 2.8),
        xscale="log",
        xlabel="β",
    )[0]


def plot_likelihoods(rows: list[dict]) -> Figure:
    """The likelihoods side by side on the common measures, a group per family and beta (mean ± std over seeds)."""
    newer = any(key in row for row in rows for key in ("coverage_aggregate", "class_entropy_aggregate"))
    metrics = [
        ("mse", "MSE per pixel [0, 1]"),
        ("knn_accuracy", "kNN accuracy"),
        ("fd_aggregate", "FD, aggregate"),
        ("precision_aggregate", "precision, aggregate"),
        ("coverage_aggregate", "coverage, aggregate"),
        ("class_entropy_aggregate", "class entropy, aggregate"),
        ("recall_aggregate", "recall, aggregate"),
    ][: 6 + (not newer)]  # recall: near 0 for every model; shown only without the newer measures
    groups, names = sorted({(r["model"], r["beta"]) for r in rows}), sorted({r["likelihood"] for r in rows})

    def x(r: dict) -> float:
        return groups.index((r["model"], r["beta"])) + (names.index(r["likelihood"]) + 0.5) / len(names) * 0.7 - 0.35

    fig, axes = curves(
        rows,
        metrics,
        lambda r: r["likelihood"],
        x,
        lambda name: {
            "fmt": LIKELIHOOD_STYLES[name][0],
            "label": name.replace("_", " "),
            "color": LIKELIHOOD_COLORS[name],
        },
        3,
        (2.7, 2.3),
        xticks=range(len(groups)),
        xticklabels=[f"{m.upper()}\nβ={b:g}" for m, b in groups],
    )
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        for tick, (family, _) in zip(ax.get_xticklabels(), groups):
            tick.set_color(FAMILY_COLORS[family])
    return fig


def plot_latent_dims(
    rows: list[dict], title: str = "latent width vs quality (bernoulli, beta 0.1, 20 epochs)"
) -> Figure:
    """Each metric against latent_dim, a line per family (colour) and architecture (style: the largest solid)."""
    counts: dict[tuple, list[float]] = {}  # each line's parameter counts: they grow with latent_dim
    for r in rows:
        counts.setdefault((r["model"], r["architecture"]), []).append(mean_std(r.get("parameters", 0))[0])
    size = {k: max(v) for k, v in counts.items()}
    label = {k: " to ".join(dict.fromkeys(f"{c / 1e3:.0f}k" for c in (min(v), max(v)))) for k, v in counts.items()}
    rank = {k: sorted((o for o in size if o[0] == k[0]), key=lambda o: (-size[o], o[1])).index(k) for k in size}

    def style(k: tuple) -> dict:
        return family_line((k[0], k[1] + f" ({label[k]})" * bool(size[k])), "o" + ("-", "--", ":", "-.")[rank[k] % 4])

    dims = sorted({r["latent_dim"] for r in rows})  # on a log scale, ticks at each
    fig, axes = curves(
        rows,
        [
            ("recon", "test reconstruction (nats/image)"),
            ("mse", "MSE per pixel [0, 1]"),
            ("knn_accuracy", "kNN accuracy"),
            ("fd_prior", "FD, prior samples"),
            ("fd_aggregate", "FD, aggregate samples"),
        ],
        lambda r: (r["model"], r["architecture"]),
        lambda r: r["latent_dim"],
        style,
        3,
        (3, 2.6),
        xscale="log",
        xticks=dims,
        xticklabels=[str(d) for d in dims],
        xlabel="latent dimensions",
    )
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
        h = sorted(
            (r for r in rows if r["model"] == family and r.get("capacity") is None), key=lambda r: mean_std(r["kl"])
        )
        b = [r for r in rows if r["model"] == family and r.get("capacity") is not None]
        for runs, fmt, face in ((h, "o-", None), (b, "s", "white")):
            if runs:
                kl, dkl, recon, drecon = zip(*[(*mean_std(r["kl"]), *mean_std(r["recon"])) for r in runs])
                ax.errorbar(kl, recon, drecon, dkl, fmt, mfc=face, capsize=3, color=color)
        texts = [f"β={r['beta']:g}" if "beta" in r else "" for r in h] + [
            ", ".join(f"{s}={r[k]:g}" for s, k in (("γ", "gamma"), ("C", "capacity")) if r.get(k) is not None)
            for r in b
        ]
        points = [(mean_std(r["kl"])[0], mean_std(r["recon"])[0]) for r in h + b]
        jobs.append((ax, points, texts, (), [color] * len(texts)))
        ax.set(title=family.upper(), xlabel="rate: test KL (nats/image)", ylabel="distortion: test recon (nats/image)")
        ax.margins(0.15)
    keys = [
        (Line2D([], [], color="grey", marker="o"), "β-VAE H: a point per β"),
        (Line2D([], [], color="grey", marker="s", ls="", mfc="white"), "β-VAE B: capacity C, weight γ"),
    ]
    fig.legend(*zip(*keys[: 1 + capacities]), loc="outside lower center", ncols=2)
    fig.suptitle("rate-distortion on the test set")
    label_points(fig, jobs)
    return fig
