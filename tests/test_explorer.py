"""The latent explorer (driven from Python, no display) and the static latent figures, for 1, 2, 3 and 5 latent dims."""
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

import plots
from data import to_unit_range
from explorer import IMAGE_SIZE, LatentExplorer
from models import FCVAE
from samplers import central_range, posterior_means, top_dimensions
from train import fit


@pytest.fixture(scope="module", params=[1, 2, 3, 5])
def trained(request, small_fmnist):
    """A small FC VAE trained for one epoch on 2,000 images, its test posterior means and labels."""
    torch.manual_seed(0)
    model = FCVAE(latent_dim=request.param, hidden=(128, 64))
    fit(model, small_fmnist, beta=0.1, epochs=1, progress=False, log=lambda line: None)
    return model.eval(), posterior_means(model, small_fmnist.test_images), small_fmnist.test_labels


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_top_dimensions_are_the_ones_that_vary_most():
    means = torch.randn(1000, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 0.1, 3.0, 0.2, 2.0])
    assert top_dimensions(means) == [0, 2, 4]
    assert top_dimensions(means[:, :2]) == [0, 1]


def test_moving_a_slider_decodes_its_z_into_the_image(trained):
    model, means, labels = trained
    explorer = LatentExplorer(model, means, labels)
    assert len(explorer.sliders) == model.latent_dim
    low, high = central_range(means)
    assert [s.min for s in explorer.sliders] == pytest.approx(low.tolist())
    assert [s.max for s in explorer.sliders] == pytest.approx(high.tolist())
    before = explorer.image.value
    slider = explorer.sliders[-1]
    slider.value = slider.max
    assert explorer.image.value != before
    image = pixels(explorer.image.value)
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE)
    expected = to_unit_range(model.decode(explorer.z()[None]).detach(), model.likelihood)[0, 0].numpy() * 255
    assert np.abs(image[::IMAGE_SIZE // 28, ::IMAGE_SIZE // 28] - expected).max() <= 1  # the z the sliders show
    marker = explorer.figure.data[-1]  # the scatter marks the sliders' z
    coordinates = [marker.x, marker.y, getattr(marker, "z", None)]
    if model.latent_dim - 1 in explorer.dims:
        assert coordinates[explorer.dims.index(model.latent_dim - 1)][0] == pytest.approx(slider.max)


def test_the_class_button_moves_the_sliders_to_the_class_mean(trained):
    model, means, labels = trained
    explorer = LatentExplorer(model, means, labels)
    explorer.classes.value = 7
    explorer.button.click()
    target = means[labels == 7].mean(0)
    assert explorer.z().tolist() == pytest.approx(torch.clamp(target, *central_range(means)).tolist(), abs=1e-5)


def test_the_scatter_fits_the_latent_size(trained):
    model, means, labels = trained
    figure = LatentExplorer(model, means, labels).figure
    assert len(figure.data) == 11  # ten classes and the slider marker
    assert figure.data[0].type == ("scatter3d" if model.latent_dim >= 3 else "scattergl")
    assert sum(len(trace.x) for trace in figure.data[:10]) == len(means)
    assert ("3 of 5" in figure.layout.title.text) == (model.latent_dim == 5)


def test_latent_figures_build(trained):
    model, means, labels = trained
    fig = plots.plot_latent_projections(means, labels)
    assert len(fig.axes) == {1: 1, 2: 1, 3: 3, 5: 3}[model.latent_dim]
    assert ("3 of 5" in fig._suptitle.get_text()) == (model.latent_dim == 5)
    plt.close(fig)
    fig = plots.plot_latent_map(model, means, steps=7)
    rows = 1 if model.latent_dim == 1 else 7
    assert fig.axes[0].images[0].get_array().shape == (rows * 29 + 1, 7 * 29 + 1)
    plt.close(fig)
