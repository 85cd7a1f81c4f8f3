"""The study's figures: one colour per family and likelihood, labels that do not overlap, from rows of (mean, std)
cells, partial ones included."""

import csv
import itertools
from pathlib import Path

import matplotlib
import pytest
from matplotlib.colors import to_hex
from matplotlib.text import Annotation

from lab import figures

matplotlib.use("Agg")
RESULTS = Path(__file__).resolve().parents[2] / "results"


def plain(value: str):
    """A CSV field as int, float, None (empty) or the string."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return None if value == "" else value


def read_rows(name: str) -> list[dict]:
    """results/study-NAME.csv as study rows: plain settings, and (mean, std or None) per metric."""
    rows = []
    with open(RESULTS / f"study-{name}.csv") as f:
        for raw in csv.DictReader(f):
            row = {
                key: value if key == "architecture" else plain(value)
                for key, value in raw.items()
                if not key.endswith(("_mean", "_std"))
            }
            row.update(
                {
                    key[:-5]: (float(value), plain(raw[key[:-5] + "_std"]))
                    for key, value in raw.items()
                    if key.endswith("_mean")
                }
            )
            rows.append(row)
    return rows


def family_of(label: str) -> str:
    return label.split()[0].lower()


def lines_by_label(ax) -> dict:
    return {container.get_label(): container.lines[0] for container in ax.containers}


def labels_of(fig) -> list[Annotation]:
    return [text for ax in fig.axes for text in ax.texts if isinstance(text, Annotation)]


def synthetic_dims_rows(metrics=("recon", "mse", "knn_accuracy")):
    sizes = {("fc", "128x64"): 218838, ("fc", "32x16"): 52230, ("cnn", "64x80 k4"): 205303, ("cnn", "32x32 k4"): 49575}
    return [
        {
            "model": model,
            "architecture": arch,
            "latent_dim": dim,
            "seeds": 1 + (dim == 3) * 2,
            "parameters": (size + 10 * dim, 0.0),
            **{m: (dim * 0.1 + size / 1e6, 0.01 if dim == 3 else None) for m in metrics},
        }
        for (model, arch), size in sizes.items()
        for dim in (16, 2, 5, 3, 8)
    ]


def test_latent_dims_draws_a_panel_per_metric_present_and_a_line_per_family_and_architecture():
    fig = figures.plot_latent_dims(synthetic_dims_rows())
    assert len(fig.axes) == 3 and "latent width" in fig.get_suptitle()
    for ax in fig.axes:
        lines = lines_by_label(ax)
        assert sorted(lines) == ["CNN 32x32 k4 (50k)", "CNN 64x80 k4 (205k)", "FC 128x64 (219k)", "FC 32x16 (52k)"]
        assert all(list(line.get_xdata()) == [2, 3, 5, 8, 16] for line in lines.values())
        assert {label: line.get_linestyle() for label, line in lines.items()} == {
            "CNN 32x32 k4 (50k)": "--",
            "CNN 64x80 k4 (205k)": "-",
            "FC 128x64 (219k)": "-",
            "FC 32x16 (52k)": "--",
        }
        assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["2", "3", "5", "8", "16"]
    single = figures.plot_latent_dims(
        [{"model": "fc", "architecture": "512x256", "latent_dim": 3, "mse": (0.02, None)}]
    )
    assert len(single.axes) == 1 and list(lines_by_label(single.axes[0])) == ["FC 512x256"]
    growing = [
        {"model": "cnn", "architecture": "32x32 k4", "latent_dim": dim, "parameters": (size, 0.0), "mse": (0.02, None)}
        for dim, size in ((8, 73105), (2, 44869), (3, 49575))
    ]  # the linear layers grow
    assert list(lines_by_label(figures.plot_latent_dims(growing).axes[0])) == ["CNN 32x32 k4 (45k to 73k)"]
    with pytest.raises(ValueError):
        figures.plot_latent_dims([{"model": "fc", "architecture": "512x256", "latent_dim": 3}])


def rd_rows():
    h = [
        {"model": "fc", "beta": beta, "capacity": None, "kl": (30 / beta**0.5, 0.5), "recon": (240 + beta, None)}
        for beta in (4.0, 0.1, 1.0)
    ]
    b = [
        {
            "model": "fc",
            "beta": 0.1,
            "capacity": 10.0,
            "gamma": gamma,
            "kl": (10.0 + gamma / 100, 0.2),
            "recon": (250 - gamma / 10, 0.3),
        }
        for gamma in (10.0, 100.0)
    ]
    return h + b + [{"model": "cnn", "beta": 0.1, "capacity": None, "kl": (13.0, None), "recon": (244.0, 1.2)}]


def test_rate_distortion_joins_the_beta_runs_in_kl_order_and_marks_the_capacity_runs():
    fig = figures.plot_rate_distortion(rd_rows())
    ((cnn, fc),) = [fig.axes]
    assert (cnn.get_title(), fc.get_title()) == ("CNN", "FC")
    h, b = (container.lines[0] for container in fc.containers)
    assert list(h.get_xdata()) == sorted(h.get_xdata()) and len(h.get_xdata()) == 3 and h.get_linestyle() == "-"
    assert len(b.get_xdata()) == 2 and b.get_linestyle() == "None" and b.get_marker() != h.get_marker()
    assert sorted(t.get_text() for t in fc.texts) == ["β=0.1", "β=1", "β=4", "γ=10, C=10", "γ=100, C=10"]
    assert len(cnn.containers) == 1 and [t.get_text() for t in cnn.texts] == ["β=0.1"]
    assert len(figures.plot_rate_distortion(rd_rows()[-1:]).axes) == 1


@pytest.fixture(scope="module")
def frontier():
    """The frontier figure of the committed rows, the two best CNN designs marked."""
    best = [row for row in read_rows("cnn-best") if row["architecture"] in ("24x28 k5", "20x20x20 k4 decoder 32x32x32")]
    return figures.plot_frontier(read_rows("frontier"), best)


def test_the_family_colours_are_the_same_in_every_study_figure(frontier):
    fc, cnn = figures.FAMILY_COLORS["fc"], figures.FAMILY_COLORS["cnn"]
    assert len({fc, cnn, *figures.LIKELIHOOD_COLORS.values()}) == 6  # no hue means two things
    betas = figures.plot_betas(read_rows("betas"))
    dims = figures.plot_latent_dims(synthetic_dims_rows())
    for fig in (frontier, betas, dims):
        colours = {
            (family_of(label), to_hex(line.get_color()).upper())
            for ax in fig.axes
            for label, line in lines_by_label(ax).items()
        }
        assert colours == {("fc", fc), ("cnn", cnn)}, colours
    rd = figures.plot_rate_distortion(rd_rows())
    assert {(ax.get_title(), to_hex(c.lines[0].get_color()).upper()) for ax in rd.axes for c in ax.containers} == {
        ("FC", fc),
        ("CNN", cnn),
    }


def test_the_likelihood_figure_shows_the_measures_present_in_likelihood_colours():
    rows = read_rows("likelihoods")
    fig = figures.plot_likelihoods(rows)  # no coverage in these rows: recall is shown
    assert [ax.get_title() for ax in fig.axes][-1] == "recall, aggregate" and len(fig.axes) == 5
    for ax in fig.axes:
        assert {label: to_hex(line.get_color()).upper() for label, line in lines_by_label(ax).items()} == {
            name.replace("_", " "): colour for name, colour in figures.LIKELIHOOD_COLORS.items()
        }
    rows = [{**row, "coverage_aggregate": (0.5, None), "class_entropy_aggregate": (2.2, 0.01)} for row in rows]
    titles = [ax.get_title() for ax in figures.plot_likelihoods(rows).axes]
    assert len(titles) == 6 and "recall, aggregate" not in titles and "coverage, aggregate" in titles


def test_the_frontier_labels_do_not_overlap_and_k_is_explained(frontier):
    frontier.draw_without_rendering()  # the layout as saved
    for ax in frontier.axes:
        boxes = [text.get_window_extent() for text in ax.texts]
        assert sorted(text.get_text() for text in ax.texts) == sorted(
            row["architecture"] for row in read_rows("frontier")
        )
        assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
        assert all(ax.get_window_extent().count_contains([box.p0, box.p1]) == 2 for box in boxes)
        assert {to_hex(text.get_color()).upper() for text in ax.texts} == set(figures.FAMILY_COLORS.values())
    assert "kernel size" in frontier.legends[0].get_title().get_text()


def test_the_sweep_figures_take_plain_rows():
    rows = [
        {
            "beta": beta,
            "kl": 20 / beta,
            "recon": 240 + beta,
            "knn_accuracy": 0.7,
            "fd_prior": 100 * beta,
            "fd_aggregate": 50.0,
            "fd_real": 1.0,
        }
        for beta in (0.1, 1.0, 4.0)
    ]
    made = figures.plot_sweep(rows, ("prior", "aggregate"))
    assert sorted(made) == ["fd", "knn", "rate_distortion"]
    assert len(made["fd"].axes[0].containers) == 2 and len(made["rate_distortion"].axes[0].texts) == 3
