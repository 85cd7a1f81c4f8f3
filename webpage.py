"""The latent explorer as one self-contained web page that anyone can open, no Python needed: the scatter of the
test images' posterior means (plotly.js, embedded), one slider per latent coordinate and the image the decoder
makes of that z, computed in the browser by a plain JavaScript forward pass (assets/explorer_page.js) over the
run's own decoder weights, embedded as base64 float32 with the config and the checkpoint's sha256.
`python explorer.py RUN --html OUT.html` writes it; nothing on the page asks the network for anything."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from plotly.offline import get_plotlyjs
from torch import Tensor, nn

from checkpoint import CheckpointError
from data import DataError, load_dataset
from files import WriteError, write_text
from models import ACTIVATIONS as MODEL_ACTIVATIONS
from models import IMAGE_SHAPE, BetaVAE
from runs import RunFolder
from samplers import central_range, posterior_means, top_dimensions

ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATE, SCRIPT = ASSETS / "explorer_page.html", ASSETS / "explorer_page.js"
POINTS = 3000  # test images in the scatter, each with its picture: about 0.6 MB of the page per 1,000
MARGIN = 0.1  # of an axis's 1st-99th percentile span, added on each side (as in the notebook explorer)
ACTIVATIONS = {layer: name for name, layer in MODEL_ACTIVATIONS.items()}  # models.ACTIVATIONS, turned round
RUNS = "Linear, Conv2d, ConvTranspose2d, BatchNorm, ReLU, ELU (alpha 1) and SiLU layers"


class PageError(ValueError):
    """A model the page cannot show or run; the message is one line."""


ERRORS = (ValueError, CheckpointError, DataError, WriteError, OSError)  # what write_page reports in one line


def packed(array: np.ndarray | Tensor, compress: bool = False) -> str:
    """Base64 of the array's little-endian bytes (float32 or uint8), gzipped first if `compress`."""
    array = np.ascontiguousarray(array.detach().cpu().numpy() if isinstance(array, Tensor) else array)
    raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return base64.b64encode(gzip.compress(raw, 9, mtime=0) if compress else raw).decode("ascii")


def same_along_axes(module: nn.Module, *names: str) -> bool:
    """Whether each named 2-d setting (stride, padding, ...) is the same along both axes."""
    return all(len(set(getattr(module, name))) == 1 for name in names)


def layer_plan(decoder: nn.Module) -> list[dict[str, Any]]:
    """The decoder's layers in order, as the page's forward pass reads them (weights named as in the decoder's
    state_dict); PageError for a layer, or a setting of one, that the JavaScript cannot run."""
    plan = []
    for name, layer in decoder.named_children():
        weights = (
            {"weight": f"{name}.weight", "bias": f"{name}.bias" if layer.bias is not None else None}
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
            else {}
        )
        if isinstance(layer, nn.Linear):
            plan.append({"op": "linear", **weights})
        elif (
            isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))
            and layer.groups == 1
            and layer.padding_mode == "zeros"
            and layer.dilation == (1, 1)
            and not isinstance(layer.padding, str)
            and same_along_axes(layer, "kernel_size", "stride", "padding", "output_padding")
        ):
            transposed = isinstance(layer, nn.ConvTranspose2d)
            plan.append(
                {
                    "op": "convT" if transposed else "conv",
                    **weights,
                    "out_channels": layer.out_channels,
                    "kernel": layer.kernel_size[0],
                    "stride": layer.stride[0],
                    "padding": layer.padding[0],
                    "output_padding": layer.output_padding[0],
                }
            )
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and layer.affine and layer.track_running_stats:
            plan.append(
                {
                    "op": "batchnorm",
                    "weight": f"{name}.weight",
                    "bias": f"{name}.bias",
                    "mean": f"{name}.running_mean",
                    "var": f"{name}.running_var",
                    "eps": layer.eps,
                }
            )
        elif type(layer) in ACTIVATIONS and getattr(layer, "alpha", 1.0) == 1.0:
            plan.append({"op": ACTIVATIONS[type(layer)]})
        elif isinstance(layer, nn.Unflatten):
            plan.append({"op": "reshape", "shape": list(layer.unflattened_size)})
        else:
            kind = type(layer).__name__
            raise PageError(f"the web page cannot run the decoder's layer {name} ({kind}): it runs {RUNS}")
    return plan


def check_model(model: BetaVAE) -> None:
    """PageError unless the page can show the model: a 3-d scatter of Fashion-MNIST codes and a runnable decoder."""
    if model.latent_dim < 3:
        raise PageError(
            f"the web page shows a 3-d scatter of the codes: latent_dim must be >= 3, got "
            f"{model.latent_dim} (use the notebook explorer)"
        )
    if tuple(model.image_shape) != IMAGE_SHAPE:
        raise PageError(f"the web page shows Fashion-MNIST images {IMAGE_SHAPE}, the model makes {model.image_shape}")
    layer_plan(model.decoder)


def page_data(
    model: BetaVAE,
    images: Tensor,
    labels: Tensor,
    class_names: tuple[str, ...],
    checkpoint_sha256: str,
    points: int = POINTS,
    about: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the page embeds: the decoder (config, layer plan, weights), the posterior means of the test `images`
    (in the model's data range), the first `points` of them with their pictures, the class means and the ranges."""
    check_model(model)
    means = posterior_means(model, images)
    shown = min(points, len(images))
    dims = top_dimensions(means, 3)
    low, high = central_range(means)
    pad = (high - low).clamp(min=1e-6) * MARGIN
    pictures = (images[:shown].clamp(0, 1) * 255).round().to(torch.uint8)
    state = {key: value.float() for key, value in model.decoder.state_dict().items() if value.is_floating_point()}
    return {
        "format": 1,
        "sha256": checkpoint_sha256,
        "config": model.plain_config(),
        "about": about or {},
        "layers": layer_plan(model.decoder),
        "weights": {key: {"shape": list(value.shape), "float32": packed(value)} for key, value in state.items()},
        "class_names": list(class_names),
        "test_images": len(images),
        "dims": dims,
        "low": (low - pad).tolist(),
        "high": (high + pad).tolist(),
        "start": means.median(0).values.tolist(),
        "class_means": [means[labels == c].mean(0).tolist() for c in range(len(class_names))],
        "points": {
            "count": shown,
            "means": packed(means[:shown]),
            "labels": packed(labels[:shown].to(torch.uint8)),
            "images_gzip": packed(pictures.flatten(), compress=True),
        },
    }


def page_html(
    model: BetaVAE,
    images: Tensor,
    labels: Tensor,
    class_names: tuple[str, ...],
    checkpoint_sha256: str,
    points: int = POINTS,
    about: dict[str, Any] | None = None,
) -> str:
    """The whole page as one string: template, page_data as JSON, plotly.js (gzipped, base64) and the script."""
    data = page_data(model, images, labels, class_names, checkpoint_sha256, points, about)
    parts = {
        "TITLE": f"{model.label} beta-VAE",
        "DATA": json.dumps(data, separators=(",", ":")).replace("</", "<\\/"),
        "PLOTLY": packed(np.frombuffer(get_plotlyjs().encode(), np.uint8), compress=True),
        "SCRIPT": SCRIPT.read_text(),
    }
    return re.sub(r"__(TITLE|DATA|PLOTLY|SCRIPT)__", lambda match: parts[match[1]], TEMPLATE.read_text())


def embedded_data(html: str) -> dict[str, Any]:
    """page_data as a page embeds it (the test reads the committed pages with this)."""
    found = re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', html, re.S)
    if not found:
        raise PageError("no explorer data in this page")
    return json.loads(found[1])


def embedded_weights(data: dict[str, Any]) -> dict[str, Tensor]:
    """The decoder's weights a page embeds, as a state_dict (float32 tensors)."""
    return {
        key: torch.from_numpy(np.frombuffer(base64.b64decode(entry["float32"]), "<f4").copy()).reshape(entry["shape"])
        for key, entry in data["weights"].items()
    }


def write_page(run: str | Path, out: str | Path, points: int = POINTS, data_dir: str | Path | None = None) -> Path:
    """The page of a run folder (or checkpoint file), written to `out`; its size and path printed."""
    run = RunFolder(run)
    model = run.model()
    check_model(model)
    data = load_dataset(run.train_config.dataset, data_dir)
    about = {"run": run.path.name, "epoch": run.epoch, **run.checkpoint["train_config"]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = page_html(model, data.test_images, data.test_labels, data.class_names, run.sha256(), points, about)
    write_text(out, html)
    print(
        f"{out}: {out.stat().st_size / 1e6:.1f} MB, {min(points, len(data.test_images)):,} test images in the scatter"
    )
    return out
