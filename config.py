"""Every setting of the project, written once: the model, training and evaluation settings as frozen dataclasses.

Each field carries its default and a one-line doc; cli.add_options turns a class into command-line options.
Invalid values raise ValueError on construction, so they are checked once, where they enter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from likelihoods import LIKELIHOODS
from likelihoods import likelihood as check_likelihood

MODEL_KINDS = ("fc", "cnn")
ACTIVATION_NAMES = ("relu", "elu", "silu")
NORMS = ("none", "batch")
IMAGE_SHAPE = (1, 28, 28)


def setting(default: Any, doc: str, **argparse_options: Any) -> Any:
    """A dataclass field with its one-line doc (the --help text) and extra argparse options (e.g. choices)."""
    return dataclasses.field(default=default, metadata={"doc": doc, **argparse_options})


def check_range(
    name: str, value: Any, low: float, high: float = float("inf"), strict: bool = False, integer: bool = False
) -> None:
    """ValueError unless low <= value < high (low < value with strict), finite, and an int if `integer`."""
    kind_ok = (
        isinstance(value, int) and not isinstance(value, bool)
        if integer
        else isinstance(value, (int, float)) and not isinstance(value, bool)
    )
    if not kind_ok or not ((low < value) if strict else (low <= value)) or not value < high:
        what = f"an integer below {high:.0f}" if integer else "finite"
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g} ({what}), got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything models.build_model needs, as plain data."""

    model: str = setting("fc", "architecture: fc (fully connected) or cnn (convolutional)", choices=MODEL_KINDS)
    latent_dim: int = setting(3, "latent dimensions")
    likelihood: str = setting(
        "bernoulli",
        "decoder likelihood: bernoulli, gaussian, continuous_bernoulli or sigma (docs/results.md compares them)",
        choices=tuple(LIKELIHOODS),
    )
    hidden: tuple[int, ...] = setting((512, 256), "fc: widths of the hidden layers, input side first")
    channels: tuple[int, ...] = setting(
        (32, 32),
        "cnn: channels per convolution, input side first; the first two "
        "have stride 2 (28 -> 14 -> 7), further ones stride 1",
    )
    decoder_channels: tuple[int, ...] = setting(
        (), "cnn: the decoder's own channels, input side first, as many as channels (empty: mirror channels)"
    )
    kernel_size: int = setting(4, "cnn: kernel size of the two stride-2 convolutions (stride-1 ones use 3)")
    norm: str = setting("none", "normalisation after each hidden layer: none or batch", choices=NORMS)
    activation: str = setting("relu", "activation of the hidden layers", choices=ACTIVATION_NAMES)

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODEL_KINDS)}")
        check_likelihood(self.likelihood)
        check_range("latent_dim", self.latent_dim, 1, 4096, integer=True)
        for name in ("hidden", "channels", "decoder_channels"):  # decoder_channels may be empty: the mirror
            widths = getattr(self, name)
            if not (widths or name == "decoder_channels") or not all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 65536 for w in widths
            ):
                raise ValueError(f"{name} must be integers >= 1 (up to 65536), got {list(widths)}")
        if self.decoder_channels and len(self.decoder_channels) != len(self.channels):
            raise ValueError(
                f"decoder_channels must be {len(self.channels)} integers >= 1 (as many as channels), "
                f"got {list(self.decoder_channels)}"
            )
        check_range("kernel_size", self.kernel_size, 1, 7, integer=True)
        for name, choices in (("norm", NORMS), ("activation", ACTIVATION_NAMES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")

    def as_dict(self) -> dict[str, Any]:
        """The settings the chosen architecture uses (fc: hidden; cnn: channels, kernel_size), lists for tuples.
        decoder_channels, kernel_size, norm and activation appear only when not at their defaults."""
        unused = ("channels", "decoder_channels", "kernel_size") if self.model == "fc" else ("hidden",)
        optional = {
            name: ModelConfig.__dataclass_fields__[name].default
            for name in ("decoder_channels", "kernel_size", "norm", "activation")
        }
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
            if key not in unused and not (key in optional and value == optional[key])
        }

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> ModelConfig:
        """The config of as_dict's plain data (lists for tuples); ValueError for unknown or invalid settings."""
        unknown = set(settings) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        return cls(**{key: tuple(v) if isinstance(v, list) else v for key, v in settings.items()})


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting and its default."""

    beta: float = setting(
        0.1,
        "weight of the KL term, >= 0; the original's 'KL scaled by dataset size' "
        "is beta * batch_size / train images (models.dataset_scaled_beta)",
    )
    epochs: int = setting(20, "train to this epoch")
    batch_size: int = setting(128, "images per optimizer step")
    lr: float = setting(1e-3, "Adam learning rate")
    seed: int = setting(0, "seed of the weights, the shuffling and the reparameterization noise")
    train_limit: int | None = setting(None, "train on the first N training images only (default: all 60,000)")
    capacity: float | None = setting(
        None,
        "beta-VAE 'B' (Burgess et al.): target KL C_max in nats; the loss is "
        "recon + gamma * |KL - C| and beta is not used (default: off)",
    )
    capacity_epochs: int = setting(10, "epochs over which C rises linearly from 0 to C_max")
    gamma: float = setting(100.0, "weight of |KL - C| when capacity is set")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "capacity_epochs"):
            check_range(name, getattr(self, name), 1, 10**9, integer=True)
        if self.train_limit is not None:
            check_range("train_limit", self.train_limit, 1, 10**9, integer=True)
        check_range("seed", self.seed, 0, 2**63, integer=True)
        check_range("lr", self.lr, 0, strict=True)
        for name in ("beta", "gamma") + (("capacity",) if self.capacity is not None else ()):
            check_range(name, getattr(self, name), 0)
        defaults = TrainConfig.__dataclass_fields__
        if self.capacity is None and (self.gamma, self.capacity_epochs) != (
            defaults["gamma"].default,
            defaults["capacity_epochs"].default,
        ):
            raise ValueError("gamma and capacity_epochs only apply with capacity (beta-VAE B): set capacity too")


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation settings (evaluate.py, the sweeps); recorded with every evaluation."""

    k: int = setting(100, "importance samples of the IWAE bound")
    iwae_images: int = setting(2000, "the IWAE bound on the first N test images (10000: all)")
    samples: int = setting(
        10000,
        "generated images per sampler (>= 10: one per class, and more than the k = 3 of the precision/recall balls)",
    )
    eval_limit: int | None = setting(None, "evaluate on the first N test images only (>= 10; default all)")
    batch_size: int = setting(500, "images per forward pass")
    seed: int = setting(0, "seed of the samples and the ELBO's noise")

    def __post_init__(self) -> None:
        for name, low in (("k", 1), ("iwae_images", 1), ("samples", 10), ("batch_size", 1)):
            check_range(name, getattr(self, name), low, 10**5 + 1, integer=True)
        if self.eval_limit is not None:
            check_range("eval_limit", self.eval_limit, 10, 10**5 + 1, integer=True)
        check_range("seed", self.seed, 0, 2**63, integer=True)
