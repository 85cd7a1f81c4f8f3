"""The decoder likelihoods, one class each: its data range, output activation (logits -> data space) and per-pixel
negative log-likelihood. A name becomes its object once, where a setting enters (`likelihood(name)`).

bernoulli: sigmoid, BCE from logits, data in [0, 1]; not a density on grey levels. gaussian: tanh, 0.5 * squared
error (unit variance, constant dropped), data in [-1, 1]. continuous_bernoulli: its normalised density
(Loaiza-Ganem & Cunningham 2019); pictures are its mean. sigma: a Gaussian with sigmoid mean and one learned scale
(Rybkin et al. 2021). docs/likelihoods.md compares them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import ContinuousBernoulli as ContinuousBernoulliDistribution
from torch.distributions import Normal


class Likelihood:
    """p(x | logits) for images; the subclasses below are the four the project offers."""

    name = ""
    data_range = (0.0, 1.0)  # where the data lives: to_tensor scales [0, 1] pixels to it
    density = True  # a normalised density of the pixels, so its NLL compares across likelihoods
    learns_scale = False  # the model carries one learned log standard deviation (sigma)

    def mean(self, logits: Tensor) -> Tensor:
        """Decoder logits -> the picture in data space."""
        return torch.sigmoid(logits)

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        """Negative log-likelihood per pixel, shape of x."""
        raise NotImplementedError

    def unit_range_nll(self, nll: float, pixels: int) -> float:
        """An NLL in nats/image as a density of [0, 1] pixels (the data's own range for all but gaussian)."""
        return nll

    def check(self, low: float, high: float) -> str | None:
        """Why data with these extremes cannot be this likelihood's, or None."""
        lo, hi = self.data_range
        if low < lo - 1e-6 or high > hi + 1e-6:
            return f"{self} likelihood needs data in [{lo:g}, {hi:g}], got values in [{low:.3g}, {high:.3g}]"
        return None

    def __reduce__(self) -> tuple:  # a copy (pickle, deepcopy) is the one object of its name
        return likelihood, (self.name,)

    def __repr__(self) -> str:
        return repr(self.name)

    def __str__(self) -> str:
        return self.name


class Bernoulli(Likelihood):
    name, density = "bernoulli", False

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none")


class Gaussian(Likelihood):
    name, data_range = "gaussian", (-1.0, 1.0)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.tanh(logits)

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        return 0.5 * (torch.tanh(logits) - x).pow(2)

    def unit_range_nll(self, nll: float, pixels: int) -> float:
        """Adds the dropped 0.5 * log(2 pi) per pixel, then moves [-1, 1] to [0, 1] (p_Y = 2 p_X per pixel)."""
        return nll + pixels * (0.5 * math.log(2 * math.pi) - math.log(2))

    def check(self, low: float, high: float) -> str | None:
        if low >= 0.0 and high <= 1.0:
            return (
                "gaussian likelihood (tanh output) needs data scaled to [-1, 1], but these images have no "
                "negative values: they look like [0, 1] data"
            )
        return super().check(low, high)


class ContinuousBernoulli(Likelihood):
    name = "continuous_bernoulli"

    def mean(self, logits: Tensor) -> Tensor:
        return ContinuousBernoulliDistribution(logits=logits, validate_args=False).mean

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        return -ContinuousBernoulliDistribution(logits=logits, validate_args=False).log_prob(x)


class Sigma(Likelihood):
    name, learns_scale = "sigma", True

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        return -Normal(torch.sigmoid(logits), log_scale.exp(), validate_args=False).log_prob(x)


LIKELIHOODS = {each.name: each for each in (Bernoulli(), Gaussian(), ContinuousBernoulli(), Sigma())}


def likelihood(name: str | Likelihood) -> Likelihood:
    """The likelihood of this name (a Likelihood passes through); ValueError naming the choices."""
    if isinstance(name, Likelihood):
        return name
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name]
