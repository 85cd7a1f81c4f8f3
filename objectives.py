"""What training minimises: the loss terms, and one class per objective, each owning its schedule and its terms.

Convention (pythae's): reconstruction summed over pixels, KL summed over latent dimensions, both averaged over the
batch, in nats per image.
- BetaH (Higgins et al. 2017), "H": recon + beta * KL.
- CapacityB (Burgess et al. 2018), "B": recon + gamma * |KL - C|, C rising linearly to `capacity`.
- BetaTC (Chen et al. 2018, beta-TCVAE): recon + KL + (beta - 1) * TC, the total correlation of the aggregate
  posterior estimated on each batch (minibatch-weighted sampling, up to a constant). Its mutual-information and
  dimension-wise KL terms keep weight 1, so with them the KL is the closed-form one.
An objective is chosen once, from the training config (`objective(config, train_images)`); a new objective is one new
class in OBJECTIVES. Losses are pure arithmetic: inputs are validated where they enter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from cli import check_range
from likelihoods import Likelihood
from models import EVAL_BATCH_SIZE, BetaVAE, VAEOutput, map_batches

if TYPE_CHECKING:
    from config import TrainConfig


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


def recon_and_kl(output: VAEOutput, x: Tensor, likelihood: Likelihood) -> tuple[Tensor, Tensor]:
    """The batch means of the reconstruction NLL and of the KL, for a model's forward output."""
    recon = reconstruction_nll(output.logits, x, likelihood, output.log_scale).mean()
    kl = kl_per_dimension(output.mu, output.logvar).sum(1).mean()
    return recon, kl


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


def dataset_scaled_beta(beta: float, batch_size: int, train_images: int = 60000) -> float:
    """The effective beta of the original's 'KL scaled by dataset size' (KL * batch / N): only another beta."""
    return beta * batch_size / train_images


def total_correlation(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Minibatch estimate of TC = E[log q(z) - sum_d log q(z_d)], q(z) the aggregate posterior, from one sample
    z_i ~ q(z | x_i) per image of a batch: each density is the mean of q(z_i | x_j) over the batch's images.
    Chen et al.'s minibatch-weighted sampling weighs each term 1/(N M) instead of 1/M (N images, M in the batch):
    that shifts TC by the constant (D - 1) log N, which changes no gradient; without it the value reads as a TC
    (about 0 for independent coordinates on a large batch, biased upward on small ones)."""
    log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]).pow(2) / logvar[None].exp())
    log_batch = math.log(len(z))  # log q(z_i | x_j) for every pair: (M, M, D)
    joint = torch.logsumexp(log_q.sum(2), dim=1) - log_batch
    marginals = (torch.logsumexp(log_q, dim=1) - log_batch).sum(1)
    return (joint - marginals).mean()


class Objective:
    """The loss of a training step and the total of the test losses; subclasses set `name` and their settings."""

    name: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()  # the TrainConfig fields only this objective uses
    run_tag: ClassVar[str] = ""  # added to run names where the settings do not already name the objective
    weight: ClassVar[str] = "beta"  # the setting to lower when the loss diverges

    def __init__(self, config: TrainConfig, train_images: int) -> None:
        self.beta = config.beta

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        """ValueError when a TrainConfig cannot use this objective (called as the config is made)."""

    def loss(self, output: VAEOutput, x: Tensor, likelihood: Likelihood, epochs_done: float) -> LossTerms:
        """The batch's loss terms; `epochs_done` counts fractions of epochs (for schedules)."""
        recon, kl = recon_and_kl(output, x, likelihood)
        return LossTerms(recon, kl, recon + self.beta * kl)

    def total(self, recon: float, kl: float, epochs_done: float) -> float:
        """The objective's total for loss terms already averaged over a dataset (the per-epoch test loss)."""
        return recon + self.beta * kl

    def epoch_notes(self, epochs_done: int) -> dict[str, float]:
        """What the training history records besides the losses at the end of an epoch."""
        return {}


class BetaH(Objective):
    """beta-VAE "H": recon + beta * KL."""

    name = "H"


class CapacityB(Objective):
    """beta-VAE "B": recon + gamma * |KL - C|, C rising linearly from 0 to `capacity` over `capacity_epochs`."""

    name, settings, weight = "B", ("capacity", "capacity_epochs", "gamma"), "gamma"

    def __init__(self, config: TrainConfig, train_images: int) -> None:
        super().__init__(config, train_images)
        self.capacity, self.capacity_epochs, self.gamma = config.capacity, config.capacity_epochs, config.gamma

    @classmethod
    def check(cls, config: TrainConfig) -> None:
        if config.capacity is None:
            raise ValueError("capacity must be given for objective B: the KL in nats it trains towards")
        check_range("capacity", config.capacity, 0)

    def target(self, epochs_done: float) -> float:
        """C after `epochs_done` epochs (fractions count)."""
        return self.capacity * min(1.0, epochs_done / self.capacity_epochs)

    def loss(self, output: VAEOutput, x: Tensor, likelihood: Likelihood, epochs_done: float) -> LossTerms:
        recon, kl = recon_and_kl(output, x, likelihood)
        return LossTerms(recon, kl, recon + self.gamma * (kl - self.target(epochs_done)).abs())

    def total(self, recon: float, kl: float, epochs_done: float) -> float:
        return recon + self.gamma * abs(kl - self.target(epochs_done))

    def epoch_notes(self, epochs_done: int) -> dict[str, float]:
        return {"capacity": self.target(epochs_done)}  # the target the KL is pulled to at the epoch's end


class BetaTC(Objective):
    """beta-TCVAE: recon + KL + (beta - 1) * TC, TC estimated on each batch (total_correlation). The per-epoch test
    total is recon + KL (TC needs batches drawn from the training set)."""

    name, run_tag = "TC", "-objectiveTC"

    def loss(self, output: VAEOutput, x: Tensor, likelihood: Likelihood, epochs_done: float) -> LossTerms:
        recon, kl = recon_and_kl(output, x, likelihood)
        tc = total_correlation(output.z, output.mu, output.logvar)
        return LossTerms(recon, kl, recon + kl + (self.beta - 1.0) * tc)

    def total(self, recon: float, kl: float, epochs_done: float) -> float:
        return recon + kl


OBJECTIVES: dict[str, type[Objective]] = {each.name: each for each in (BetaH, CapacityB, BetaTC)}


def objective(config: TrainConfig, train_images: int) -> Objective:
    """The objective a TrainConfig chooses, for training on `train_images` images."""
    return OBJECTIVES[config.objective](config, train_images)


def implied_objective(settings: dict[str, Any]) -> str:
    """The objective of training settings saved before they named one: B where a capacity was set, else H."""
    return CapacityB.name if settings.get("capacity") is not None else BetaH.name
