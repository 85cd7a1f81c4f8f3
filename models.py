"""Beta-VAE models for 28x28 grey images: their settings (ModelConfig) and the two families, FC and CNN.

FCVAE (fully connected) and CNNVAE (convolutional) share one interface: encode, reparameterize, decode, forward;
each keeps the ModelConfig it was built from (model.config) and its Likelihood (model.likelihood, likelihoods.py).
FAMILIES maps a family's name to its class, which knows its label and the settings that shape it. The losses are in
objectives.py.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from cli import check_range, setting
from likelihoods import LIKELIHOODS

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
NORMS = {"none": (), "batch": (nn.BatchNorm1d, nn.BatchNorm2d)}  # after a linear layer, after a convolution
IMAGE_SHAPE = (1, 28, 28)
EVAL_BATCH_SIZE = 500  # images per forward pass outside training
MAX_PARAMETERS = 2**28  # 1 GiB of float32 weights (4 GiB with Adam's state and the gradients)


class VAEOutput(NamedTuple):
    """What forward returns. `logits` is the decoder output before the output activation."""

    recon: Tensor  # reconstruction in [0, 1]: likelihood.mean(logits)
    logits: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor
    log_scale: Tensor | None = None  # sigma: the learned log standard deviation of the pixels; else None


class BetaVAE(nn.Module):
    """Shared interface; subclasses build self.encoder (x -> 2 * latent_dim) and self.decoder (z -> logits)."""

    encoder: nn.Module
    decoder: nn.Module
    family: ClassVar[str]  # its name in FAMILIES and in ModelConfig.model
    label: ClassVar[str]  # in words, for titles
    widths: ClassVar[tuple[str, ...]]  # the ModelConfig settings that shape this family (the others do not apply)

    def __init__(self, config: ModelConfig | None, image_shape: tuple[int, int, int], settings: dict[str, Any]) -> None:
        super().__init__()
        self.config = replace(config or ModelConfig(), model=self.family, **settings)
        self.latent_dim = self.config.latent_dim
        self.likelihood = LIKELIHOODS[self.config.likelihood]
        self.image_shape = tuple(image_shape)
        self.log_scale = nn.Parameter(torch.zeros(())) if self.likelihood.learns_scale else None

    def plain_config(self) -> dict[str, Any]:
        """The settings as plain data (ModelConfig.as_dict and image_shape), as checkpoints store them."""
        return {**self.config.as_dict(), "image_shape": list(self.image_shape)}

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def reparameterize(
        self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None, sample: bool | None = None
    ) -> Tensor:
        """z = mu + sigma * eps; returns mu in eval mode unless sample=True. eps is drawn on the generator's device
        (the CPU for train.fit's) and moved to mu's: the same seed gives the same noise on every device."""
        if not (self.training if sample is None else sample):
            return mu
        eps = torch.randn(
            mu.shape, generator=generator, dtype=mu.dtype, device=mu.device if generator is None else generator.device
        ).to(mu.device)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Images in [0, 1], (B, *image_shape)."""
        return self.likelihood.mean(self.decode_logits(z))

    def forward(self, x: Tensor, generator: torch.Generator | None = None, sample: bool | None = None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, sample)
        logits = self.decode_logits(z)
        return VAEOutput(self.likelihood.mean(logits), logits, mu, logvar, z, self.log_scale)


def norm_and_activation(width: int, norm: str, activation: str, dims: int) -> list[nn.Module]:
    """The layers after a hidden linear (dims 1) or convolutional (dims 2) layer."""
    return [layer(width) for layer in NORMS[norm][dims - 1 : dims]] + [ACTIVATIONS[activation]()]


class FCVAE(BetaVAE):
    """Fully connected beta-VAE: pixels -> hidden layers -> (mu, logvar); mirrored decoder.
    FCVAE(config) or FCVAE(hidden=(64,), ...): settings override the config's (default ModelConfig())."""

    family, label, widths = "fc", "fully connected", ("hidden",)

    def __init__(
        self, config: ModelConfig | None = None, image_shape: tuple[int, int, int] = IMAGE_SHAPE, **settings: Any
    ) -> None:
        super().__init__(config, image_shape, settings)
        norm, activation = self.config.norm, self.config.activation
        n_pixels = math.prod(image_shape)
        encoder: list[nn.Module] = [nn.Flatten()]
        width = n_pixels
        for h in self.config.hidden:
            encoder += [nn.Linear(width, h), *norm_and_activation(h, norm, activation, 1)]
            width = h
        self.encoder = nn.Sequential(*encoder, nn.Linear(width, 2 * self.latent_dim))
        decoder: list[nn.Module] = []
        width = self.latent_dim
        for h in reversed(self.config.hidden):
            decoder += [nn.Linear(width, h), *norm_and_activation(h, norm, activation, 1)]
            width = h
        self.decoder = nn.Sequential(*decoder, nn.Linear(width, n_pixels), nn.Unflatten(1, tuple(image_shape)))


class CNNVAE(BetaVAE):
    """Convolutional beta-VAE: convolutions (the first two with stride 2: 28 -> 14 -> 7, further ones 3x3 stride 1),
    a linear layer to (mu, logvar); the decoder mirrors it (transposed convolutions where the encoder strides).
    Image sides must be divisible by 4 (by 2 with one convolution)."""

    family, label, widths = "cnn", "convolutional", ("channels", "decoder_channels", "kernel_size")

    def __init__(
        self, config: ModelConfig | None = None, image_shape: tuple[int, int, int] = IMAGE_SHAPE, **settings: Any
    ) -> None:
        super().__init__(config, image_shape, settings)
        channels, norm, activation, k = (
            self.config.channels,
            self.config.norm,
            self.config.activation,
            self.config.kernel_size,
        )
        in_channels, height, width = image_shape
        strides = [2 if i < 2 else 1 for i in range(len(channels))]
        down = 2 ** strides.count(2)
        if height % down or width % down:
            raise ValueError(f"CNNVAE needs image sides divisible by {down}, got {height}x{width}")
        pad = (k - 1) // 2  # stride 2 with this padding halves even sides for any k
        encoder: list[nn.Module] = []
        for c_in, c_out, stride in zip((in_channels, *channels), channels, strides):
            conv = nn.Conv2d(c_in, c_out, k, 2, pad) if stride == 2 else nn.Conv2d(c_in, c_out, 3, padding=1)
            encoder += [conv, *norm_and_activation(c_out, norm, activation, 2)]
        features = channels[-1] * (height // down) * (width // down)
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(features, 2 * self.latent_dim))
        mirror = self.config.decoder_channels or channels  # the decoder runs these backwards
        feature_shape = (mirror[-1], height // down, width // down)
        decoder: list[nn.Module] = [
            nn.Linear(self.latent_dim, math.prod(feature_shape)),
            ACTIVATIONS[activation](),
            nn.Unflatten(1, feature_shape),
        ]
        sides = list(zip((in_channels, *mirror), mirror, strides))
        for i, (c_out, c_in, stride) in reversed(list(enumerate(sides))):
            if stride == 2:  # output_padding makes 7 -> 14 -> 28 exact for odd kernels too
                decoder.append(nn.ConvTranspose2d(c_in, c_out, k, 2, pad, output_padding=2 + 2 * pad - k))
            else:
                decoder.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            decoder += norm_and_activation(c_out, norm, activation, 2) if i > 0 else []
        self.decoder = nn.Sequential(*decoder)


FAMILIES: dict[str, type[BetaVAE]] = {each.family: each for each in (FCVAE, CNNVAE)}
WIDTHS = tuple(dict.fromkeys(name for family in FAMILIES.values() for name in family.widths))


@dataclass(frozen=True)
class ModelConfig:
    """Everything build_model needs, as plain data."""

    model: str = setting("fc", "family: fc (fully connected) or cnn (convolutional)", choices=tuple(FAMILIES))
    latent_dim: int = setting(3, "latent dimensions")
    likelihood: str = setting(
        "bernoulli",
        "decoder likelihood: bernoulli, gaussian, continuous_bernoulli or sigma (docs/results.md compares them)",
        choices=tuple(LIKELIHOODS),
    )
    hidden: tuple[int, ...] = setting((512, 256), "fc: widths of the hidden layers, input side first")
    channels: tuple[int, ...] = setting(
        (32, 32),
        "cnn: channels per convolution, input side first; the first two have stride 2 (28 -> 14 -> 7), further ones "
        "stride 1",
    )
    decoder_channels: tuple[int, ...] = setting(
        (), "cnn: the decoder's own channels, input side first, as many as channels (empty: mirror channels)"
    )
    kernel_size: int = setting(4, "cnn: kernel size of the two stride-2 convolutions (stride-1 ones use 3)")
    norm: str = setting("none", "normalisation after each hidden layer: none or batch", choices=tuple(NORMS))
    activation: str = setting("relu", "activation of the hidden layers", choices=tuple(ACTIVATIONS))

    def __post_init__(self) -> None:
        for name, choices in (
            ("model", FAMILIES),
            ("likelihood", LIKELIHOODS),
            ("norm", NORMS),
            ("activation", ACTIVATIONS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
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

    @property
    def family(self) -> type[BetaVAE]:
        """The model class of this family."""
        return FAMILIES[self.model]

    def as_dict(self) -> dict[str, Any]:
        """The settings the family uses (fc: hidden; cnn: channels, kernel_size), lists for tuples.
        decoder_channels, kernel_size, norm and activation appear only when not at their defaults."""
        unused = set(WIDTHS) - set(self.family.widths)
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


def build_model(config: ModelConfig | dict[str, Any], seed: int | None = None) -> BetaVAE:
    """The model a config describes (a ModelConfig, or the plain data of model.plain_config() as checkpoints store
    it); with `seed`, its weights are initialised from that seed without touching the global random state.
    ValueError, before allocating anything, for a model over MAX_PARAMETERS."""
    image_shape = IMAGE_SHAPE
    if not isinstance(config, ModelConfig):
        config = dict(config)
        image_shape = tuple(config.pop("image_shape", IMAGE_SHAPE))
        config = ModelConfig.from_dict(config)
    size = architecture_size(config, image_shape)
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"{size:,} parameters are too many (at most {MAX_PARAMETERS:,}): choose smaller hidden, "
            f"channels or latent_dim"
        )
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return config.family(config, image_shape)


@torch.no_grad()
def map_batches(model: nn.Module, fn: Callable[[Tensor], Any], x: Tensor, batch_size: int = EVAL_BATCH_SIZE) -> Any:
    """fn over consecutive batches of x (moved to the model's device), in eval mode and without gradients,
    restoring the model's mode; the results on the CPU, concatenated (tuples element by element)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        outputs = [fn(batch.to(device)) for batch in x.split(batch_size)]
    finally:
        model.train(was_training)
    if isinstance(outputs[0], tuple):
        return tuple(torch.cat([part.cpu() for part in parts]) for parts in zip(*outputs))
    return torch.cat([output.cpu() for output in outputs])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=1024)
def architecture_size(config: ModelConfig, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> int:
    """Parameters of the model `config` describes, counted on the meta device without allocating them."""
    with torch.device("meta"):
        return count_parameters(config.family(config, image_shape))
