"""The latent explorer (driven from Python, no display) and the static latent figures, for 1, 2, 3 and 5 latent dims,
and for a 10-d model of the shapes dataset (colourings by its factors); the LatentView they all draw from."""

import io
import re
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from plotly.callbacks import Points

import plots
from config import TrainConfig
from explorer import CONTROLS, IMAGE_SIZE, PLAIN_TEXT, LatentExplorer, png, static_figure
from fashion_mnist import CLASS_NAMES
from latent_scatter import COLORS
from latent_view import MARGIN, LatentView, central_range, top_dimensions
from models import ModelConfig, build_model
from samplers import posterior_means
from train import fit


@pytest.fixture(scope="module", params=[1, 2, 3, 5])
def trained(request, small_fmnist):
    """A small FC VAE trained for one epoch on 2,000 images, its test posterior means and labels."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=request.param, hidden=(128, 64)), seed=0)
    fit(model, small_fmnist, TrainConfig(beta=0.1, epochs=1), progress=False, log=lambda line: None)
    return model.eval(), posterior_means(model, small_fmnist.test_images), small_fmnist.test_labels


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def on_sliders(explorer: LatentExplorer, z: torch.Tensor):
    """z as the sliders can hold it: each coordinate kept to its slider's range, to within half a step."""
    held = [min(max(value, slider.min), slider.max) for value, slider in zip(z.tolist(), explorer.sliders)]
    return pytest.approx(held, abs=max(slider.step for slider in explorer.sliders) / 2 + 1e-6)


def test_top_dimensions_are_the_ones_that_vary_most():
    means = torch.randn(1000, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 0.1, 3.0, 0.2, 2.0])
    assert top_dimensions(means) == [0, 2, 4]
    assert top_dimensions(means[:, :2]) == [0, 1]


def test_moving_a_slider_decodes_its_z_into_the_image(trained):
    model, means, labels = trained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES)
    assert len(explorer.sliders) == model.latent_dim
    for slider, (lo, hi) in zip(explorer.sliders, explorer.view.ranges()):  # the view's range, in steps
        assert slider.min <= lo < slider.min + slider.step and slider.max - slider.step < hi <= slider.max
    before = explorer.image.value
    slider = explorer.sliders[-1]
    slider.value = slider.max
    assert explorer.image.value != before
    image = pixels(explorer.image.value)
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE)
    expected = model.decode(explorer.z()[None]).detach()[0, 0].numpy() * 255
    assert np.abs(image[:: IMAGE_SIZE // 28, :: IMAGE_SIZE // 28] - expected).max() <= 1  # the z the sliders show
    marker = explorer.figure.data[-1]  # the scatter marks the sliders' z
    coordinates = [marker.x, marker.y, getattr(marker, "z", None)]
    if model.latent_dim - 1 in explorer.dims:
        assert coordinates[explorer.dims.index(model.latent_dim - 1)][0] == pytest.approx(slider.max)


def test_the_class_button_moves_the_sliders_to_the_class_mean(trained):
    model, means, labels = trained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES)
    explorer.classes.value = 7
    explorer.button.click()
    target = means[labels == 7].mean(0)
    assert explorer.z().tolist() == on_sliders(explorer, target)
    assert f"class mean of {CLASS_NAMES[7]}" in explorer.z_label.value


def test_sliders_step_finely_and_show_their_steps(trained):
    model, means, labels = trained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES)
    for slider in explorer.sliders:
        track = CONTROLS[1] - 110  # pixels at most, less the description and the value
        assert (slider.max - slider.min) / slider.step > track  # a step is finer than a pixel of the track
        assert slider.readout and float(format(slider.min + slider.step, slider.readout_format)) == pytest.approx(
            slider.min + slider.step
        )  # the value shown tells one step from the next
    explorer.go_to_class(int(labels[0]))  # on the steps' grid: a short decimal, which the browser keeps as it is
    assert all(
        s.value == round(s.value, 6) and (s.value - s.min) / s.step == pytest.approx(round((s.value - s.min) / s.step))
        for s in explorer.sliders
    )
    slider, before = explorer.sliders[0], explorer.image.value
    slider.value += 1e-12  # the browser echoes the value with a rounding error: still the class mean
    assert explorer.image.value == before and "class mean" in explorer.z_label.value
    slider.value = slider.min  # dragged, or typed into its value
    assert explorer.image.value != before and "the sliders" in explorer.z_label.value


def test_the_scatter_fits_the_latent_size(trained):
    model, means, labels = trained
    figure = LatentExplorer(model, means, labels, CLASS_NAMES).figure
    assert len(figure.data) == 11  # ten classes and the slider marker
    assert figure.data[0].type == ("scatter3d" if model.latent_dim >= 3 else "scattergl")
    assert sum(len(trace.x) for trace in figure.data[:10]) == len(means)
    assert ("3 of 5" in figure.layout.title.text) == (model.latent_dim == 5)


def test_latent_figures_build(trained):
    model, means, labels = trained
    fig = plots.plot_latent_projections(means, labels, CLASS_NAMES)
    assert len(fig.axes) == {1: 1, 2: 1, 3: 3, 5: 3}[model.latent_dim]
    assert ("3 of 5" in fig._suptitle.get_text()) == (model.latent_dim == 5)
    plt.close(fig)
    fig = plots.plot_latent_map(model, means, steps=7)
    rows = 1 if model.latent_dim == 1 else 7
    assert fig.axes[0].images[0].get_array().shape == (rows * 29 + 1, 7 * 29 + 1)
    plt.close(fig)


@pytest.fixture
def untrained():
    """An untrained 3-d FC VAE, 200 fake test images with posterior means whose z2 spans 3x the other axes."""
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(200, 3, generator=generator) * torch.tensor([1.0, 3.0, 1.0])
    means[0] = torch.tensor([50.0, -40.0, 30.0])  # an outlier the view should not be stretched for
    images = torch.rand(200, 1, 28, 28, generator=generator)
    return build_model(ModelConfig(latent_dim=3, hidden=(32,)), seed=0).eval(), means, torch.arange(200) % 10, images


def test_clicking_a_point_moves_the_sliders_to_its_image(untrained):
    model, means, labels, images = untrained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES, images)
    trace, point = explorer.figure.data[7], 3  # the fourth Sneaker
    index = int(trace.customdata[point])
    assert labels[index] == 7
    decoded, picked = explorer.image.value, explorer.picked.value
    state = SimpleNamespace(ctrl=False, alt=False, shift=False, meta=False, button=0, buttons=1)
    for c, other in enumerate(explorer.figure.data):  # as FigureWidget dispatches a plotly_click: to every trace
        other._dispatch_on_click(
            Points(point_inds=[point] if c == 7 else [], xs=[], ys=[], trace_name=other.name, trace_index=c), state
        )
    assert explorer.z().tolist() == on_sliders(explorer, means[index])
    assert explorer.image.value != decoded
    assert explorer.picked.value != picked
    assert explorer.picked.value == png(images[index])
    assert f"test image {index}<br>{CLASS_NAMES[7]}" in explorer.picked_label.value
    assert f"test image {index}" in explorer.z_label.value
    marker = explorer.figure.data[-1]
    assert [marker.x[0], marker.y[0], marker.z[0]] == pytest.approx(explorer.z().tolist(), abs=1e-6)


def test_clicks_without_images_move_the_sliders_only(untrained):
    model, means, labels, _ = untrained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES)
    explorer.on_point_click(explorer.figure.data[2], SimpleNamespace(point_inds=[1]), None)
    index = int(explorer.figure.data[2].customdata[1])
    assert explorer.z().tolist() == on_sliders(explorer, means[index])
    assert "click a point" in explorer.picked_label.value


def test_going_to_a_class_mean_after_a_click_no_longer_shows_the_clicked_image(untrained):
    model, means, labels, images = untrained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES, images)
    blank = explorer.picked.value
    explorer.go_to_image(4)
    assert "test image 4" in explorer.picked_label.value and "test image 4" in explorer.z_label.value
    explorer.go_to_class(int(labels[4]))
    assert explorer.picked.value == blank
    assert "test image" not in explorer.picked_label.value + explorer.z_label.value
    assert f"class mean of {CLASS_NAMES[int(labels[4])]}" in explorer.z_label.value
    explorer.sliders[0].value = explorer.sliders[0].min  # a slider moved by hand: z is no longer the class mean
    assert "class mean" not in explorer.z_label.value


def test_a_class_absent_from_the_data_is_a_clear_error(untrained):
    model, means, labels, images = untrained
    kept = labels != 3
    explorer = LatentExplorer(model, means[kept], labels[kept], CLASS_NAMES, images[kept])
    assert 3 not in [value for _, value in explorer.classes.options]  # the menu offers only the classes present
    before = explorer.z().tolist()
    with pytest.raises(ValueError, match=f"class 3 \\({CLASS_NAMES[3]}\\)") as error:
        explorer.go_to_class(3)
    assert "\n" not in str(error.value)
    assert explorer.z().tolist() == before and not explorer.z().isnan().any()


@pytest.mark.parametrize("offset", [-1, 1])
def test_labels_or_images_of_another_length_are_a_clear_error(untrained, offset):
    model, means, labels, images = untrained
    n = len(means)
    with pytest.raises(ValueError, match=f"^{n + offset} labels for {n} posterior means"):
        LatentExplorer(model, means, torch.arange(n + offset) % 10, CLASS_NAMES)
    with pytest.raises(ValueError, match=f"^{n + offset} images for {n} posterior means"):
        LatentExplorer(model, means, labels, CLASS_NAMES, torch.rand(n + offset, 1, 28, 28))


def test_axis_ranges_frame_the_cloud_in_a_cube(untrained):
    model, means, labels, _ = untrained
    ranges = LatentView(means, labels, CLASS_NAMES).ranges([0, 1, 2])
    low, high = central_range(means)
    for (a, b), lo, hi in zip(ranges, low.tolist(), high.tolist()):
        assert a < lo and hi < b  # the 1st-99th percentile, plus the same share of margin on every axis
        assert (lo - a) / (hi - lo) == pytest.approx(MARGIN) and (b - hi) / (hi - lo) == pytest.approx(MARGIN)
    assert ranges[0][1] < 10  # the outlier at 50 does not stretch the view
    scene = LatentExplorer(model, means, labels, CLASS_NAMES).figure.layout.scene
    assert scene.aspectmode == "cube"  # the same length on screen: z2, three times wider, does not flatten the rest
    shown = [bound for axis in (scene.xaxis, scene.yaxis, scene.zaxis) for bound in axis.range]
    assert shown == pytest.approx([bound for span in ranges for bound in span])


def test_the_layout_wraps_and_marks_z_without_emoji(untrained):
    model, means, labels, images = untrained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES, images)
    assert explorer.layout.flex_flow == "row wrap"
    controls = explorer.children[1]
    assert int(controls.layout.flex.split()[-1].removesuffix("px")) >= 300  # px: the sliders fill it
    assert explorer.figure.layout.width <= 520
    assert explorer.figure.data[-1].marker.symbol == "diamond"  # plotly's 3-d "x" is an emoji glyph


def test_the_output_is_the_widget_then_a_static_picture(trained):
    model, means, labels = trained
    widget, still = LatentExplorer(model, means, labels, CLASS_NAMES).outputs()
    assert "application/vnd.jupyter.widget-view+json" in widget  # a live kernel shows the widget
    assert "image/png" not in widget  # else an export without widget state would show the picture twice
    assert widget["text/plain"] == PLAIN_TEXT and len(PLAIN_TEXT) < 80
    picture = Image.open(io.BytesIO(still["image/png"]))
    assert 300 < picture.width <= 1000 and picture.height <= 300
    assert len(still["image/png"]) < 150_000


def test_the_static_picture_names_the_classes_in_readable_type(trained):
    model, means, labels = trained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES)
    fig = static_figure(explorer.view, explorer.z(), explorer.decoded())
    fig.draw_without_rendering()
    assert [text.get_text() for text in fig.legends[0].get_texts()] == list(CLASS_NAMES)
    texts = [label for ax in fig.axes for label in ax.get_xticklabels() + ax.get_yticklabels() if label.get_text()]
    texts += fig.legends[0].get_texts() + [ax.xaxis.label for ax in fig.axes]
    assert len(texts) > 10
    assert min(text.get_fontsize() * fig.dpi / 72 for text in texts) >= 10  # pixels, at the saved size


def test_one_view_decides_what_every_explorer_and_figure_shows(untrained):
    """The shown dimensions, the ranges, the start, the class means and the strips' jitter are the view's, wherever
    they are drawn: the explorer's scatter and sliders, its static picture, plot_latent_projections."""
    model, means, labels, _ = untrained
    view = LatentView(means, labels, CLASS_NAMES)
    assert view.dims == top_dimensions(means) and view.start.tolist() == means.median(0).values.tolist()
    assert view.class_means[7].tolist() == pytest.approx(means[labels == 7].mean(0).tolist())
    explorer = LatentExplorer(model, view)
    assert explorer.view is view and explorer.z().tolist() == on_sliders(explorer, view.start)
    one = LatentView(means[:, 1:2], labels, CLASS_NAMES)  # one dimension: a strip per class, jittered once
    strips = [
        plots.plot_latent_projections(one).axes[0].collections[0].get_offsets()[:, 1],
        static_figure(one, torch.zeros(1), torch.zeros(1, 28, 28)).axes[0].collections[0].get_offsets()[:, 1],
    ]
    assert np.array_equal(*strips) and sorted(strips[0]) == sorted(one.strip().tolist())
    trace = LatentExplorer(model.__class__(latent_dim=1, hidden=(8,)).eval(), one).figure.data[3]
    assert trace.y.tolist() == one.strip()[torch.tensor(trace.customdata)].tolist()
    plt.close("all")


@pytest.mark.parametrize(
    "means, labels, words",
    [
        (torch.randn(10, 3), torch.arange(9), "9 labels for 10 posterior means"),
        (torch.randn(10, 3), torch.arange(10) + 5, "labels must be integers from 0 to 9"),
        (torch.full((10, 3), float("nan")), torch.arange(10), "posterior means are not finite"),
        (torch.randn(10), torch.arange(10), "(N, latent_dim)"),
    ],
)
def test_a_view_of_bad_means_or_labels_is_one_clear_line(means, labels, words):
    with pytest.raises(ValueError, match=re.escape(words)) as error:
        LatentView(means, labels, CLASS_NAMES)
    assert "\n" not in str(error.value)


def test_a_decoder_whose_outputs_are_not_finite_is_refused_in_one_line(untrained):
    """Finite weights, NaN pictures: a batch norm with a negative running variance (checkpoints allow it)."""
    _, means, labels, _ = untrained
    model = build_model(ModelConfig(latent_dim=3, hidden=(8,), norm="batch"), seed=0).eval()
    model.decoder[1].running_var.fill_(-1.0)
    with pytest.raises(ValueError, match="decoder gives non-finite pixels") as error:
        LatentExplorer(model, means, labels, CLASS_NAMES)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def shapes_view(shapes_data):
    """A tiny untrained 10-d FC model and the view of its codes of the shapes' first 2,000 test images."""
    model = build_model(ModelConfig(latent_dim=10, hidden=(16,)), seed=0).eval()
    data = shapes_data.limited(test=2000)
    return model, LatentView.of(posterior_means(model, data.test_images), data), data


def test_a_shapes_model_explores_ten_coordinates_coloured_by_any_factor(shapes_view):
    model, view, data = shapes_view
    explorer = LatentExplorer(model, view, images=data.test_images)
    assert len(explorer.sliders) == 10 and len(explorer.dims) == 3 and explorer.figure.data[0].type == "scatter3d"
    assert [name for name, _ in explorer.classes.options] == ["square", "ellipse", "heart"]
    assert explorer.colours.options == (
        ("class (shape)", "class"),
        ("scale", "scale"),
        ("orientation", "orientation"),
        ("x", "x"),
        ("y", "y"),
    )
    assert explorer.colours in explorer.children[1].children  # shown: there is more than one colouring
    explorer.colours.value = "orientation"
    for c, trace in enumerate(explorer.figure.data[:3]):  # each point's colour: its orientation's value index
        assert list(trace.marker.color) == data.test_factors[data.test_labels == c, 2].tolist()
        assert trace.marker.showscale == (c == 0) and trace.marker.cmax == 19
    assert explorer.figure.layout.showlegend is False  # it would show each class in its first point's colour
    fig = static_figure(view, explorer.z(), explorer.decoded(), explorer.colour_by)
    assert fig.axes[-1].get_ylabel() == "orientation (value index)"  # a colour bar, not the class legend
    explorer.colours.value = "class"
    assert [trace.marker.color for trace in explorer.figure.data[:3]] == list(COLORS[:3])
    assert explorer.figure.layout.showlegend and not any(trace.marker.showscale for trace in explorer.figure.data)
    explorer.classes.value = 2
    explorer.button.click()
    assert explorer.z().tolist() == on_sliders(explorer, view.class_means[2])
    assert "class mean of heart" in explorer.z_label.value
    plt.close("all")


def test_fashion_mnist_has_no_colour_menu(untrained):
    model, means, labels, images = untrained
    explorer = LatentExplorer(model, means, labels, CLASS_NAMES, images)
    assert explorer.colours not in explorer.children[1].children
