"""The latent explorer as one self-contained web page that anyone can open, no Python needed: the scatter of the
test images' posterior means (plotly.js, embedded), one slider per latent coordinate and the image the decoder
makes of that z, computed in the browser by a plain JavaScript forward pass (assets/explorer_page.js) over the
run's own decoder weights, embedded as base64 float32 with the config and the checkpoint's sha256.
`python explorer.py RUN --html OUT.html` writes it; nothing on the page asks the network for anything."""

from __future__ import annotations

import base64
import gzip
import html
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
from files import WriteError, first_bytes, kind_of, write_text
from latent_view import LatentView
from models import ACTIVATIONS as MODEL_ACTIVATIONS
from models import IMAGE_SHAPE, BetaVAE
from runs import RunFolder, note
from samplers import finite_decodes, posterior_means

ASSETS = Path(__file__).resolve().parent / "assets"
TEMPLATE, SCRIPT = ASSETS / "explorer_page.html", ASSETS / "explorer_page.js"
POINTS = 3000  # test images in the scatter, each with its picture: about 0.6 MB of the page per 1,000
FORMAT = 2  # of page_data; 2: the layer plan ends with the output steps, colourings, class means null when absent
MARKER = b"Written by `python explorer.py RUN --html OUT.html` (webpage.py)"  # in the first KB of every page
ZIP_MAGIC = b"PK\x03\x04"  # how a checkpoint (torch.save's zip) starts
LARGE = 50_000_000  # bytes of a page above which write_page warns (about 9 M decoder parameters at 3,000 points)
WHY_LARGE = (
    "GitHub warns above 50 MB and refuses files over 100 MB, and a browser parses all of it before the first image"
)
ACTIVATIONS = {layer: name for name, layer in MODEL_ACTIVATIONS.items()}  # models.ACTIVATIONS, turned round
RUNS = "Linear, Conv2d, ConvTranspose2d, BatchNorm, ReLU, ELU (alpha 1) and SiLU layers"


class PageError(ValueError):
    """A model the page cannot show or run; the message is one line."""


class TargetError(ValueError):
    """A path the page must not be written to (check_target); the message is one line."""


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


def check_model(model: BetaVAE) -> list[dict[str, Any]]:
    """The page's layer plan of the model: its decoder's layers, then its likelihood's output steps (sigmoid; tanh
    and an affine map; the continuous Bernoulli's mean), which the JavaScript runs op by op. PageError unless the page
    can show the model: a 3-d scatter of the codes of 28 x 28 grey images and a decoder it can run."""
    if model.latent_dim < 3:
        raise PageError(
            f"the web page shows a 3-d scatter of the codes: latent_dim must be >= 3, got "
            f"{model.latent_dim} (use the notebook explorer)"
        )
    if tuple(model.image_shape) != IMAGE_SHAPE:
        raise PageError(f"the web page shows images of shape {IMAGE_SHAPE}, the model makes {model.image_shape}")
    return [*layer_plan(model.decoder), *(dict(step) for step in model.likelihood.output_steps)]


def check_outputs(model: BetaVAE, view: LatentView, shown: int) -> None:
    """ValueError unless the decoder gives finite pixels at the start, the class means and every point shown."""
    z = torch.stack([view.start, *view.class_means.values(), *view.means[:shown]])
    finite_decodes(model, z, "the page's start, class means or scatter points")


def page_data(
    model: BetaVAE,
    plan: list[dict[str, Any]],
    view: LatentView,
    images: Tensor,
    checkpoint_sha256: str,
    points: int = POINTS,
    about: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the page embeds: the decoder (config, layer plan from check_model, weights), the view of the test
    `images`' posterior means (shown dimensions, ranges, start, class means, colourings) and the first `points` of
    the means with their pictures and colourings."""
    if len(images) != len(view):
        raise ValueError(f"{len(images)} images for {len(view)} posterior means: give one per test image")
    shown = min(points, len(view))
    check_outputs(model, view, shown)
    pictures = (images[:shown].clamp(0, 1) * 255).round().to(torch.uint8)
    state = {key: value.float() for key, value in model.decoder.state_dict().items() if value.is_floating_point()}
    return {
        "format": FORMAT,
        "sha256": checkpoint_sha256,
        "config": model.plain_config(),
        "about": about or {},
        "layers": plan,
        "weights": {key: {"shape": list(value.shape), "float32": packed(value)} for key, value in state.items()},
        "class_names": list(view.class_names),
        "test_images": len(view),
        "dims": view.dims,
        "low": view.low.tolist(),
        "high": view.high.tolist(),
        "start": view.start.tolist(),
        "class_means": [
            view.class_means[c].tolist() if c in view.class_means else None for c in range(len(view.class_names))
        ],
        "colourings": [
            {"key": key, "name": colouring.name, "levels": colouring.levels, "by_class": colouring.by_class}
            for key, colouring in view.colourings.items()
        ],
        "points": {
            "count": shown,
            "means": packed(view.means[:shown]),
            "labels": packed(view.labels[:shown].to(torch.uint8)),
            "colourings": {key: packed(c.values[:shown].to(torch.uint8)) for key, c in view.colourings.items()},
            "images_gzip": packed(pictures.flatten(), compress=True),
        },
    }


def script_json(data: dict[str, Any]) -> str:
    """`data` as JSON that is inert inside an HTML <script> element: ASCII, with every <, > and & (which appear only
    in strings) as \\u escapes, so that no text in it (</script>, <!--, <script) can end or change the element."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_html(
    model: BetaVAE,
    view: LatentView,
    images: Tensor,
    checkpoint_sha256: str,
    points: int = POINTS,
    about: dict[str, Any] | None = None,
    plan: list[dict[str, Any]] | None = None,
) -> str:
    """The whole page as one string: template, page_data as JSON, plotly.js (gzipped, base64) and the script. `plan`:
    the model's check_model, when the caller has it already (it is made once per page)."""
    plan = check_model(model) if plan is None else plan
    data = page_data(model, plan, view, images, checkpoint_sha256, points, about)
    parts = {
        "TITLE": html.escape(f"{model.label} beta-VAE"),
        "DATA": script_json(data),
        "PLOTLY": packed(np.frombuffer(get_plotlyjs().encode(), np.uint8), compress=True),
        "SCRIPT": SCRIPT.read_text(),
    }
    return re.sub(r"__(TITLE|DATA|PLOTLY|SCRIPT)__", lambda match: parts[match[1]], TEMPLATE.read_text())


def embedded_data(page: str) -> dict[str, Any]:
    """page_data as a page embeds it (the test reads the committed pages with this)."""
    found = re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', page, re.S)
    if not found:
        raise PageError("no explorer data in this page")
    return json.loads(found[1])


def embedded_weights(data: dict[str, Any]) -> dict[str, Tensor]:
    """The decoder's weights a page embeds, as a state_dict (float32 tensors)."""
    return {
        key: torch.from_numpy(np.frombuffer(base64.b64decode(entry["float32"]), "<f4").copy()).reshape(entry["shape"])
        for key, entry in data["weights"].items()
    }


def check_target(out: str | Path) -> None:
    """TargetError unless `out` is a new file or a page written here before (MARKER in its first KB): nothing else,
    a checkpoint, a folder, a device or a FIFO, is ever replaced."""
    anything_else = "the page is written only to a new file or over a page explorer.py wrote"
    if str(out) == "":
        raise TargetError(f"--html '' is not a file name: {anything_else}")
    try:
        kind = kind_of(out)
    except OSError as error:  # a file where a folder should be, a name too long
        raise TargetError(f"--html {out}: {error.strerror}") from None
    if kind not in (None, "file"):
        raise TargetError(f"--html {out} is a {kind}: {anything_else}")
    if kind == "file":
        try:
            head = first_bytes(out)
        except OSError as error:
            raise TargetError(f"--html {out} cannot be read ({error.strerror}): {anything_else}") from None
        if MARKER not in head:
            what = "a checkpoint" if head.startswith(ZIP_MAGIC) else "a file explorer.py did not write"
            raise TargetError(f"--html {out} is {what}: not replaced ({anything_else})")


def write_page(
    run: str | Path, out: str | Path, points: int = POINTS, data_dir: str | Path | None = None, log=note
) -> Path:
    """The page of a run folder (or checkpoint file), written to `out` (check_target) atomically; its size and path
    printed, and a line through `log` before writing a page over LARGE bytes."""
    check_target(out)
    run = RunFolder(run)
    model = run.model()
    plan = check_model(model)
    data = load_dataset(run.train_config.dataset, data_dir)
    view = LatentView.of(posterior_means(model, data.test_images), data)
    about = {"run": run.path.name, "epoch": run.epoch, **run.checkpoint["train_config"]}
    page = page_html(model, view, data.test_images, run.sha256(), points, about, plan)
    if len(page) > LARGE:
        log(f"{out}: the page is {len(page) / 1e6:,.1f} MB ({WHY_LARGE}); writing it anyway")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_target(out)  # again: the work above takes seconds to minutes, and something may have appeared there
    write_text(out, page)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB, {min(points, len(view)):,} test images in the scatter")
    return out
