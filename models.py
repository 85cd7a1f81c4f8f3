"""Beta-VAE models for 28x28 grey images, and their losses.

FCVAE (fully connected) and CNNVAE (convolutional) share one interface: encode, reparameterize, decode, forward;
each keeps the ModelConfig it was built from (model.config) and its Likelihood (model.likelihood, likelihoods.py).
Loss convention (pythae's): reconstruction summed over pixels, KL summed over latent dimensions, both averaged over
the batch; total = recon + beta * KL. Losses are pure arithmetic: inputs are validated where they enter.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from config import IMAGE_SHAPE, ModelConfig, TrainConfig
from likelihoods import LIKELIHOODS, Likelihood

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
EVAL_BATCH_SIZE = 500  # images per forward pass outside training
MAX_PARAMETERS = 2**28  # 1 GiB of float32 weights (4 GiB with Adam's state and the gradients)


class VAEOutput(NamedTuple):
    """What forward returns. `logits` is the decoder output before the output activation."""

    recon: Tensor  # reconstruction in data space: likelihood.mean(logits)
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


def reconstruction_nll(logits: Tensor, x: Tensor, likelihood: Likelihood, log_scale: Tensor | None = None) -> Tensor:
    """Per-image negative log-likelihood of x given decoder logits, summed over pixels: shape (B,)."""
    return likelihood.nll(logits, x, log_scale).flatten(1).sum(1)


def kl_per_dimension(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension: shape (B, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def beta_vae_loss(
    output: VAEOutput, x: Tensor, beta: float = 1.0, likelihood: Likelihood = LIKELIHOODS["bernoulli"]
) -> LossTerms:
    """Beta-VAE loss: total = recon + beta * KL, terms averaged over the batch (no validation: see module doc)."""
    recon = reconstruction_nll(output.logits, x, likelihood, output.log_scale).mean()
    kl = kl_per_dimension(output.mu, output.logvar).sum(1).mean()
    return LossTerms(recon, kl, recon + beta * kl)


def dataset_scaled_beta(beta: float, batch_size: int, train_images: int = 60000) -> float:
    """The effective beta of the original's 'KL scaled by dataset size' (KL * batch / N): only another beta."""
    return beta * batch_size / train_images


def capacity_loss(
    output: VAEOutput,
    x: Tensor,
    gamma: float,
    capacity: float | Tensor,
    likelihood: Likelihood = LIKELIHOODS["bernoulli"],
) -> LossTerms:
    """Burgess et al. (2018), "beta-VAE B": total = recon + gamma * |KL - capacity|, terms averaged over the batch."""
    recon, kl, _ = beta_vae_loss(output, x, 0.0, likelihood)
    return LossTerms(recon, kl, recon + gamma * (kl - capacity).abs())


@dataclass(frozen=True)
class Objective:
    """What training minimises: recon + beta * KL, or with `capacity` the "B" objective recon + gamma * |KL - C|,
    C rising linearly from 0 to capacity over capacity_epochs: the settings of a TrainConfig (Objective.of)."""

    beta: float
    capacity: float | None
    capacity_epochs: int
    gamma: float

    @classmethod
    def of(cls, config: TrainConfig) -> Objective:
        return cls(config.beta, config.capacity, config.capacity_epochs, config.gamma)

    def target(self, epochs_done: float) -> float | None:
        """C after `epochs_done` epochs (fractions count); None without capacity."""
        return None if self.capacity is None else self.capacity * min(1.0, epochs_done / self.capacity_epochs)

    def loss(self, output: VAEOutput, x: Tensor, likelihood: Likelihood, epochs_done: float) -> LossTerms:
        if self.capacity is None:
            return beta_vae_loss(output, x, self.beta, likelihood)
        return capacity_loss(output, x, self.gamma, self.target(epochs_done), likelihood)

    def total(self, recon: float, kl: float, epochs_done: float) -> float:
        """The objective's total for loss terms already averaged (the per-epoch test loss)."""
        if self.capacity is None:
            return recon + self.beta * kl
        return recon + self.gamma * abs(kl - self.target(epochs_done))


class BetaVAE(nn.Module):
    """Shared interface; subclasses build self.encoder (x -> 2 * latent_dim) and self.decoder (z -> logits)."""

    encoder: nn.Module
    decoder: nn.Module
    kind: str

    def __init__(self, config: ModelConfig | None, image_shape: tuple[int, int, int], settings: dict[str, Any]) -> None:
        super().__init__()
        self.config = replace(config or ModelConfig(), model=self.kind, **settings)
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
        """Images in data space, (B, *image_shape)."""
        return self.likelihood.mean(self.decode_logits(z))

    def forward(self, x: Tensor, generator: torch.Generator | None = None, sample: bool | None = None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, sample)
        logits = self.decode_logits(z)
        return VAEOutput(self.likelihood.mean(logits), logits, mu, logvar, z, self.log_scale)


def norm_and_activation(width: int, norm: str, activation: str, dims: int) -> list[nn.Module]:
    """The layers after a hidden linear (dims 1) or convolutional (dims 2) layer."""
    norms = [] if norm == "none" else [(nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(width)]
    return norms + [ACTIVATIONS[activation]()]


class FCVAE(BetaVAE):
    """Fully connected beta-VAE: pixels -> hidden layers -> (mu, logvar); mirrored decoder.
    FCVAE(config) or FCVAE(hidden=(64,), ...): settings override the config's (default ModelConfig())."""

    kind = "fc"

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

    kind = "cnn"

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


MODELS = {"fc": FCVAE, "cnn": CNNVAE}


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
        return MODELS[config.model](config, image_shape)


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


def dataset_loss(model: BetaVAE, images: Tensor, batch_size: int = EVAL_BATCH_SIZE, seed: int = 0) -> dict[str, float]:
    """Mean recon and KL of `images` (nats per image), z drawn batch by batch from `seed`: batch_size changes z."""
    generator = torch.Generator().manual_seed(seed)

    def per_image(x: Tensor) -> Tensor:
        output = model(x, generator=generator, sample=True)
        recon = reconstruction_nll(output.logits, x, model.likelihood, output.log_scale)
        kl = kl_per_dimension(output.mu, output.logvar).sum(1)
        return torch.stack([recon, kl], 1).double()

    recon, kl = map_batches(model, per_image, images, batch_size).mean(0).tolist()
    return {"recon": recon, "kl": kl}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=1024)
def architecture_size(config: ModelConfig, image_shape: tuple[int, int, int] = IMAGE_SHAPE) -> int:
    """Parameters of the model `config` describes, counted on the meta device without allocating them."""
    with torch.device("meta"):
        return count_parameters(MODELS[config.model](config, image_shape))
