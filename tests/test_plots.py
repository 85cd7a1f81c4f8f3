"""The per-model figures: titles naming the model, images shown in [0, 1] whatever the likelihood; the shapes
dataset's figures: each factor varied alone, and every latent coordinate traversed and named by its factor."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import plots
from fashion_mnist import CLASS_NAMES
from latent_view import central_range
from models import ModelConfig, build_model
from samplers import decode
from shapes import FACTORS, SIZE, generate

matplotlib.use("Agg")


@pytest.fixture(scope="module", params=["fc", "cnn"])
def tiny(request):
    config = ModelConfig(model=request.param, hidden=(16,), channels=(4, 4), likelihood="gaussian")
    images = torch.rand(20, 1, 28, 28)  # every likelihood takes images in [0, 1]
    return build_model(config, seed=0).eval(), images, torch.arange(20) % 10


def test_every_per_model_figure_names_the_model_and_shows_images_in_unit_range(tiny):
    model, images, labels = tiny
    name = model.config.model.upper()
    z = torch.randn(20, model.latent_dim)
    means = torch.randn(50, model.latent_dim)
    figures = [
        plots.plot_samples(model, z),
        plots.plot_reconstructions(model, images, labels, CLASS_NAMES, per_class=2),
        plots.plot_latent_projections(means, torch.arange(50) % 10, CLASS_NAMES, name=name),
        plots.plot_latent_map(model, means, steps=5),
        plots.plot_traversal(model, steps=5),
        plots.plot_samplers(model, z, z, z, CLASS_NAMES),
        plots.plot_interpolation(model, images, labels, CLASS_NAMES, [(0, 1)], steps=3),
        plots.plot_curves(
            [{"epoch": 1, "train": {"recon": 2.0, "kl": 1.0}, "test": {"recon": 2.5, "kl": 1.1}}], name=name
        ),
    ]
    for fig in figures:
        assert fig.get_suptitle().startswith(f"{name}: "), fig.get_suptitle()
    real = figures[1].axes[1].images[0].get_array()  # the real test images, as they are
    assert real.min() >= 0 and real.max() <= 1 and abs(real[1:29, 1:29] - images[0, 0].numpy()).max() < 1e-6
    decoded = figures[0].axes[0].images[0].get_array()  # gaussian: tanh mapped to [0, 1]
    assert decoded.min() >= 0 and decoded.max() <= 1
    assert (
        plots.plot_curves([{"epoch": 1, "train": {"recon": 2, "kl": 1}, "test": {"recon": 2, "kl": 1}}]).get_suptitle()
        == "training curves"
    )  # the old call still works
    plt.close("all")


def tile(ax, row: int, column: int) -> np.ndarray:
    """The image at (row, column) of a grid that plots.grids drew on `ax`."""
    top, left = 1 + row * plots.TILE, 1 + column * plots.TILE
    return ax.images[0].get_array()[top : top + 28, left : left + 28]


def test_the_shape_factors_figure_varies_one_factor_per_row():
    images = generate()[0]
    fig = plots.plot_shape_factors(images, zoom=1)
    (ax,) = fig.axes
    names = [label.get_text() for label in ax.get_yticklabels()]
    assert names[:3] == ["shape", "shape at scale 0.5", "scale 0.5 to 1"] and names[-1].startswith("y ")
    grid = images.reshape(*(len(factor.values) for factor in FACTORS), SIZE, SIZE)
    mosaic, cell = ax.images[0].get_array(), SIZE + 2
    for column, image in enumerate(grid[:, 3, 0, 7, 7]):  # the first row: each shape, scale 0.8, upright, centred
        assert (mosaic[1 : SIZE + 1, column * cell + 1 : (column + 1) * cell - 1] == image).all()
    for column, image in enumerate(grid[2, 3, 0, :, 7]):  # the row of x: the heart moved along x
        assert (mosaic[6 * cell + 1 : 7 * cell - 1, column * cell + 1 : (column + 1) * cell - 1] == image).all()
    plt.close("all")


def test_the_factor_traversal_moves_each_coordinate_over_its_range_in_order_of_kl(tiny):
    model = tiny[0]
    means = torch.randn(200, model.latent_dim) * torch.tensor([1.0, 0.01, 2.0])
    kl = torch.tensor([0.5, 0.001, 2.0])  # z3 carries most, z2 nothing
    information = np.array([[0.1, 0.7, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.2, 0.9]])
    names = [factor.name for factor in FACTORS]
    fig = plots.plot_factor_traversal(model, means, kl, information, names, means[0], steps=5)
    ax = fig.axes[0]
    rows = [label.get_text() for label in ax.get_yticklabels()]
    assert [row.split()[:2] for row in rows] == [["$z_{3}$", "y"], ["$z_{1}$", "scale"], ["$z_{2}$", "inactive"]]
    assert rows[0].endswith("y 0.90, x 0.20  (KL 2.00)") and rows[1].endswith("scale 0.70, shape 0.10  (KL 0.50)")
    low, high = central_range(means)
    for row, d in enumerate((2, 0, 1)):
        for column, value in ((0, low[d]), (4, high[d])):  # the ends: the 1st and 99th percentiles
            z = means[0].clone()
            z[d] = value
            assert np.abs(tile(ax, row, column) - decode(model, z[None])[0, 0].numpy()).max() < 1e-5
    assert fig.get_suptitle().startswith(f"{model.config.model.upper()}: ")
    plt.close("all")
