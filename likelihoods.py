"""The decoder likelihoods, one class each: its output activation (logits -> a picture in [0, 1]), its per-pixel
negative log-likelihood of images in [0, 1], and that output step for the web page's decoder. A name becomes its
object once, where a setting enters (`likelihood(name)`).

bernoulli: sigmoid, BCE from logits; not a density on grey levels. gaussian: tanh on [-1, 1] (the original's MSE +
tanh): the images are mapped there inside its methods, 0.5 * squared error (unit variance, constant dropped).
continuous_bernoulli: its normalised density (Loaiza-Ganem & Cunningham 2019); pictures are its mean. sigma: a
Gaussian with sigmoid mean and one learned scale (Rybkin et al. 2021). docs/likelihoods.md compares them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import ContinuousBernoulli as ContinuousBernoulliDistribution
from torch.distributions import Normal


class Likelihood:
    """p(x | logits) for images x in [0, 1]; the subclasses below are the four the project offers."""

    name = ""
    density = True  # a normalised density of the pixels, so its NLL compares across likelihoods
    learns_scale = False  # the model carries one learned log standard deviation (sigma)
    output_steps: tuple[dict, ...] = ({"op": "sigmoid"},)  # mean() as the web page's decoder runs it (webpage.py)

    def mean(self, logits: Tensor) -> Tensor:
        """Decoder logits -> the picture, in [0, 1]."""
        return torch.sigmoid(logits)

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        """Negative log-likelihood per pixel of images x in [0, 1], shape of x."""
        raise NotImplementedError

    def unit_range_nll(self, nll: float, pixels: int) -> float:
        """An NLL in nats/image as a density of [0, 1] pixels (already one for all but gaussian)."""
        return nll

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
    """Unit-variance Gaussian on images mapped to [-1, 1] (y = 2x - 1), with a tanh mean."""

    name = "gaussian"
    output_steps = ({"op": "tanh"}, {"op": "affine", "scale": 0.5, "shift": 0.5})

    def mean(self, logits: Tensor) -> Tensor:
        return (torch.tanh(logits) + 1) / 2

    def nll(self, logits: Tensor, x: Tensor, log_scale: Tensor | None = None) -> Tensor:
        return 0.5 * (torch.tanh(logits) - (x * 2 - 1)).pow(2)

    def unit_range_nll(self, nll: float, pixels: int) -> float:
        """Adds the dropped 0.5 * log(2 pi) per pixel, then moves [-1, 1] to [0, 1] (p_X = 2 p_Y per pixel)."""
        return nll + pixels * (0.5 * math.log(2 * math.pi) - math.log(2))


class ContinuousBernoulli(Likelihood):
    name = "continuous_bernoulli"
    output_steps = ({"op": "continuous_bernoulli_mean"},)

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
