"""Beta-VAE models for 28x28 grey images and the beta-weighted loss.

Two architectures share one interface (encode, reparameterize, decode, forward, sample):
- FCVAE:  fully connected encoder and decoder.
- CNNVAE: convolutional encoder and decoder with about 5 % of FCVAE's parameters.

Four likelihoods, chosen by one argument:
- "bernoulli":            sigmoid output, binary cross-entropy (from logits), data in [0, 1]; not a density
                          on grey levels.
- "gaussian":             tanh output, squared error (unit-variance Gaussian, no constant), data in [-1, 1].
- "continuous_bernoulli": the continuous Bernoulli density (Loaiza-Ganem & Cunningham 2019), data in [0, 1];
                          pictures are its mean, not sigmoid(logits).
- "sigma":                Gaussian with sigmoid mean and one learned shared scale (the sigma-VAE of Rybkin et al.
                          2021), full negative log-density, data in [0, 1].

Loss convention (as in pythae): reconstruction summed over pixels, KL summed over latent
dimensions, both averaged over the batch; total = recon + beta * KL. The loss is pure arithmetic:
settings and data are validated once where they enter (ModelConfig, TrainConfig, check_data_range).
Importing this module has no side effects.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import ContinuousBernoulli, Normal

from cli import setting

LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli", "sigma")
DATA_RANGE = {"bernoulli": (0.0, 1.0), "gaussian": (-1.0, 1.0), "continuous_bernoulli": (0.0, 1.0), "sigma": (0.0, 1.0)}
ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
NORMS = ("none", "batch")
IMAGE_SHAPE = (1, 28, 28)
EVAL_BATCH_SIZE = 1000  # images per forward pass outside training
MAX_PARAMETERS = 2 ** 28  # 1 GiB of float32 weights (4 GiB with Adam's state and the gradients)


@dataclass(frozen=True)
class ModelConfig:
    """Everything build_model needs, as plain data; invalid values raise ValueError on construction."""
    model: str = setting("fc", "architecture: fc (fully connected) or cnn (convolutional)", choices=("fc", "cnn"))
    latent_dim: int = setting(3, "latent dimensions")
    likelihood: str = setting("bernoulli", "decoder likelihood (see the README's likelihood table)",
                              choices=LIKELIHOODS)
    hidden: tuple[int, ...] = setting((512, 256), "fc: widths of the hidden layers, input side first")
    channels: tuple[int, ...] = setting((32, 32), "cnn: channels per convolution, input side first; the first two "
                                                  "have stride 2 (28 -> 14 -> 7), further ones stride 1")
    decoder_channels: tuple[int, ...] = setting((), "cnn: the decoder's channels, input side first like channels "
                                                    "and as many (default: the same as channels)")
    kernel_size: int = setting(4, "cnn: kernel size of the two stride-2 convolutions (stride-1 ones use 3)")
    norm: str = setting("none", "normalisation after each hidden layer: none or batch", choices=NORMS)
    activation: str = setting("relu", "activation of the hidden layers", choices=tuple(ACTIVATIONS))

    def __post_init__(self) -> None:
        if self.model not in ("fc", "cnn"):
            raise ValueError(f"unknown model {self.model!r}; choose one of fc, cnn")
        check_likelihood(self.likelihood)
        if not (isinstance(self.latent_dim, int) and 1 <= self.latent_dim <= 4096):
            raise ValueError(f"latent_dim must be >= 1 (an integer up to 4096), got {self.latent_dim!r}")
        for name in ("hidden", "channels", "decoder_channels"):  # decoder_channels may be empty: the mirror
            widths = getattr(self, name)
            if not (widths or name == "decoder_channels") or not all(isinstance(w, int) and 1 <= w <= 65536
                                                                     for w in widths):
                raise ValueError(f"{name} must be integers >= 1 (up to 65536), got {list(widths)}")
        if self.decoder_channels and len(self.decoder_channels) != len(self.channels):
            raise ValueError(f"decoder_channels must be {len(self.channels)} integers >= 1 (as many as channels), "
                             f"got {list(self.decoder_channels)}")
        if not (isinstance(self.kernel_size, int) and 1 <= self.kernel_size <= 7):
            raise ValueError(f"kernel_size must be from 1 to 7, got {self.kernel_size!r}")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        size = architecture_size(self)
        if size > MAX_PARAMETERS:
            raise ValueError(f"{size:,} parameters are too many (at most {MAX_PARAMETERS:,}): choose smaller "
                             f"hidden, channels or latent_dim")

    def as_dict(self) -> dict[str, Any]:
        """The settings the chosen architecture uses (fc: hidden; cnn: channels, kernel_size), lists for tuples.
        decoder_channels, kernel_size, norm and activation appear only when not at their defaults, so older
        checkpoints still match."""
        unused = ("channels", "decoder_channels", "kernel_size") if self.model == "fc" else ("hidden",)
        later = {name: ModelConfig.__dataclass_fields__[name].default
                 for name in ("decoder_channels", "kernel_size", "norm", "activation")}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()
                if key not in unused and not (key in later and value == later[key])}


class VAEOutput(NamedTuple):
    """What forward returns. `logits` is the decoder output before the output activation."""
    recon: Tensor   # reconstruction in data space: output_activation(logits)
    logits: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor
    log_scale: Tensor | None = None  # sigma: the learned log standard deviation of the pixels; else None


class LossTerms(NamedTuple):
    """Batch-averaged loss terms, in nats per image."""
    recon: Tensor
    kl: Tensor
    total: Tensor


def check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")


def output_activation(logits: Tensor, likelihood: str) -> Tensor:
    """Map decoder logits to data space: tanh for gaussian, the distribution's mean for continuous_bernoulli,
    sigmoid otherwise."""
    if likelihood == "gaussian":
        return torch.tanh(logits)
    if likelihood == "continuous_bernoulli":
        return ContinuousBernoulli(logits=logits, validate_args=False).mean
    return torch.sigmoid(logits)


def reconstruction_nll(logits: Tensor, x: Tensor, likelihood: str, log_scale: Tensor | None = None) -> Tensor:
    """Per-image negative log-likelihood of x given decoder logits, summed over pixels: shape (B,).

    bernoulli: binary cross-entropy from logits. gaussian: 0.5 * squared error of tanh(logits), the
    unit-variance Gaussian NLL without its constant 0.5 * log(2 pi) per pixel. continuous_bernoulli: its
    negative log-density. sigma: the full Gaussian negative log-density, mean sigmoid(logits), std exp(log_scale).
    """
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        nll = 0.5 * (torch.tanh(logits) - x).pow(2)
    elif likelihood == "continuous_bernoulli":
        nll = -ContinuousBernoulli(logits=logits, validate_args=False).log_prob(x)
    else:
        nll = -Normal(torch.sigmoid(logits), log_scale.exp(), validate_args=False).log_prob(x)
    return nll.flatten(1).sum(1)


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension: shape (B, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def check_data_range(x: Tensor, likelihood: str) -> None:
    """Called once per dataset: ValueError when x is outside the likelihood's data range, or is [0, 1] data given to gaussian."""
    low, high = DATA_RANGE[likelihood]
    x_min, x_max = torch.aminmax(x.detach())
    x_min, x_max = float(x_min), float(x_max)
    if x_min < low - 1e-6 or x_max > high + 1e-6:
        raise ValueError(f"{likelihood} likelihood needs data in [{low:g}, {high:g}], got values in "
                         f"[{x_min:.3g}, {x_max:.3g}]; load the data with likelihood={likelihood!r}")
    if likelihood == "gaussian" and x_min >= 0.0:
        raise ValueError("gaussian likelihood (tanh output) needs data scaled to [-1, 1], but this batch "
                         "has no negative values: it looks like [0, 1] data; load it with likelihood='gaussian'")


def beta_vae_loss(output: VAEOutput, x: Tensor, beta: float = 1.0, likelihood: str = "bernoulli") -> LossTerms:
    """Beta-VAE loss: total = recon + beta * KL, terms averaged over the batch (no validation: see module doc)."""
    recon = reconstruction_nll(output.logits, x, likelihood, output.log_scale).mean()
    kl = kl_per_dimension(output.mu, output.logvar).sum(1).mean()
    return LossTerms(recon, kl, recon + beta * kl)


def dataset_scaled_beta(beta: float, batch_size: int, train_images: int = 60000) -> float:
    """The effective beta of the original write-up's 'KL scaled by dataset size' (KL * batch / N):
    128 / 60,000 = 0.0021 at beta 1. That scaling is only another beta."""
    return beta * batch_size / train_images


def capacity_loss(output: VAEOutput, x: Tensor, gamma: float, capacity: float | Tensor,
                  likelihood: str = "bernoulli") -> LossTerms:
    """Burgess et al. (2018), "beta-VAE B": total = recon + gamma * |KL - capacity|, terms averaged over the batch."""
    recon, kl, _ = beta_vae_loss(output, x, 0.0, likelihood)
    return LossTerms(recon, kl, recon + gamma * (kl - capacity).abs())


class BetaVAE(nn.Module):
    """Shared interface; subclasses build self.encoder (x -> 2 * latent_dim) and self.decoder (z -> logits)."""

    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, latent_dim: int, likelihood: str, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        check_likelihood(likelihood)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.image_shape = tuple(image_shape)
        self.log_scale = nn.Parameter(torch.zeros(())) if likelihood == "sigma" else None
        self.options: dict[str, Any] = {}  # the architecture's own settings, set by the subclass

    @property
    def config(self) -> dict[str, Any]:
        """The settings as plain data (ModelConfig.as_dict and image_shape): build_model rebuilds the model."""
        kind = next(name for name, cls in MODELS.items() if isinstance(self, cls))
        settings = ModelConfig(model=kind, latent_dim=self.latent_dim, likelihood=self.likelihood, **self.options)
        return {**settings.as_dict(), "image_shape": list(self.image_shape)}

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def reparameterize(self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None,
                       sample: bool | None = None) -> Tensor:
        """z = mu + sigma * eps; returns mu in eval mode unless sample=True."""
        if sample is None:
            sample = self.training
        if not sample:
            return mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Images in data space, (B, *image_shape)."""
        return output_activation(self.decode_logits(z), self.likelihood)

    def forward(self, x: Tensor, generator: torch.Generator | None = None, sample: bool | None = None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, sample)
        logits = self.decode_logits(z)
        return VAEOutput(output_activation(logits, self.likelihood), logits, mu, logvar, z, self.log_scale)


def norm_and_activation(width: int, norm: str, activation: str, dims: int) -> list[nn.Module]:
    """The layers after a hidden linear (dims 1) or convolutional (dims 2) layer."""
    norms = [] if norm == "none" else [(nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(width)]
    return norms + [ACTIVATIONS[activation]()]


class FCVAE(BetaVAE):
    """Fully connected beta-VAE: pixels -> hidden layers -> (mu, logvar); mirrored decoder."""

    def __init__(self, latent_dim: int = ModelConfig.latent_dim, likelihood: str = ModelConfig.likelihood,
                 hidden: tuple[int, ...] = ModelConfig.hidden, norm: str = ModelConfig.norm,
                 activation: str = ModelConfig.activation, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__(latent_dim, likelihood, image_shape)
        self.hidden = tuple(hidden)
        self.options = {"hidden": self.hidden, "norm": norm, "activation": activation}
        n_pixels = math.prod(image_shape)
        encoder: list[nn.Module] = [nn.Flatten()]
        width = n_pixels
        for h in self.hidden:
            encoder += [nn.Linear(width, h), *norm_and_activation(h, norm, activation, 1)]
            width = h
        self.encoder = nn.Sequential(*encoder, nn.Linear(width, 2 * latent_dim))
        decoder: list[nn.Module] = []
        width = latent_dim
        for h in reversed(self.hidden):
            decoder += [nn.Linear(width, h), *norm_and_activation(h, norm, activation, 1)]
            width = h
        self.decoder = nn.Sequential(*decoder, nn.Linear(width, n_pixels), nn.Unflatten(1, tuple(image_shape)))


class CNNVAE(BetaVAE):
    """Convolutional beta-VAE: convolutions (the first two with stride 2: 28 -> 14 -> 7, further ones 3x3 stride 1),
    a linear layer to (mu, logvar); the decoder mirrors it (transposed convolutions where the encoder strides).
    Image sides must be divisible by 4 (by 2 with one convolution)."""

    def __init__(self, latent_dim: int = ModelConfig.latent_dim, likelihood: str = ModelConfig.likelihood,
                 channels: tuple[int, ...] = ModelConfig.channels,
                 decoder_channels: tuple[int, ...] = ModelConfig.decoder_channels,
                 kernel_size: int = ModelConfig.kernel_size, norm: str = ModelConfig.norm,
                 activation: str = ModelConfig.activation, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__(latent_dim, likelihood, image_shape)
        self.channels = tuple(channels)
        self.options = {"channels": self.channels, "decoder_channels": tuple(decoder_channels),
                        "kernel_size": kernel_size, "norm": norm, "activation": activation}
        in_channels, height, width = image_shape
        strides = [2 if i < 2 else 1 for i in range(len(self.channels))]
        down = 2 ** strides.count(2)
        if height % down or width % down:
            raise ValueError(f"CNNVAE needs image sides divisible by {down}, got {height}x{width}")
        k, pad = kernel_size, (kernel_size - 1) // 2  # stride 2 with this padding halves even sides for any k
        encoder: list[nn.Module] = []
        for c_in, c_out, stride in zip((in_channels, *self.channels), self.channels, strides):
            conv = nn.Conv2d(c_in, c_out, k, 2, pad) if stride == 2 else nn.Conv2d(c_in, c_out, 3, padding=1)
            encoder += [conv, *norm_and_activation(c_out, norm, activation, 2)]
        features = self.channels[-1] * (height // down) * (width // down)
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(features, 2 * latent_dim))
        mirror = tuple(decoder_channels) or self.channels  # the decoder runs these backwards
        feature_shape = (mirror[-1], height // down, width // down)
        decoder: list[nn.Module] = [nn.Linear(latent_dim, math.prod(feature_shape)), ACTIVATIONS[activation](),
                                    nn.Unflatten(1, feature_shape)]
        sides = list(zip((in_channels, *mirror), mirror, strides))
        for i, (c_out, c_in, stride) in reversed(list(enumerate(sides))):
            if stride == 2:  # output_padding makes 7 -> 14 -> 28 exact for odd kernels too
                decoder.append(nn.ConvTranspose2d(c_in, c_out, k, 2, pad, output_padding=2 + 2 * pad - k))
            else:
                decoder.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            decoder += norm_and_activation(c_out, norm, activation, 2) if i > 0 else []
        self.decoder = nn.Sequential(*decoder)


MODELS = {"fc": FCVAE, "cnn": CNNVAE}


def build_model(config: ModelConfig | dict[str, Any], seed: int | None = None) -> BetaVAE:
    """The model a config describes (a ModelConfig or its plain-data form, as stored in checkpoints);
    with `seed`, its weights are initialised from that seed without touching the global random state."""
    image_shape = IMAGE_SHAPE
    if not isinstance(config, ModelConfig):
        config = dict(config)
        image_shape = tuple(config.pop("image_shape", IMAGE_SHAPE))
        unknown = set(config) - set(ModelConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        config = ModelConfig(**{key: tuple(v) if isinstance(v, list) else v for key, v in config.items()})
    kwargs = {key: getattr(config, key) for key in config.as_dict() if key != "model"}
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return MODELS[config.model](**kwargs, image_shape=image_shape)


@torch.no_grad()
def map_batches(model: nn.Module, fn: Callable[[Tensor], Any], x: Tensor,
                batch_size: int = EVAL_BATCH_SIZE) -> Any:
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


def dataset_loss(model: BetaVAE, images: Tensor, beta: float, batch_size: int = EVAL_BATCH_SIZE,
                 seed: int = 0) -> dict[str, float]:
    """Loss terms averaged over every image of `images` (nats per image), with z sampled from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)

    def per_image(x: Tensor) -> Tensor:
        output = model(x, generator=generator, sample=True)
        recon = reconstruction_nll(output.logits, x, model.likelihood, output.log_scale)
        kl = kl_per_dimension(output.mu, output.logvar).sum(1)
        return torch.stack([recon, kl], 1).double()

    recon, kl = map_batches(model, per_image, images, batch_size).mean(0).tolist()
    return {"recon": recon, "kl": kl, "total": recon + beta * kl}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=1024)
def architecture_size(config: ModelConfig) -> int:
    """Parameters of the model `config` describes, counted on the meta device without allocating them (and
    remembered: a meta build still runs the initialisers, some 30 ms)."""
    with torch.device("meta"):
        return count_parameters(MODELS[config.model](**{k: v for k, v in config.as_dict().items() if k != "model"}))


if __name__ == "__main__":  # python models.py: the parameter counts quoted in the README
    fc, cnn = FCVAE(), CNNVAE()
    print(f"FCVAE  {count_parameters(fc):>9,} parameters")
    print(f"CNNVAE {count_parameters(cnn):>9,} parameters ({count_parameters(cnn) / count_parameters(fc):.1%} of FCVAE)")
