"""Ways to choose latent codes z for the decoder.

- PriorSampler:     z ~ N(0, I), the VAE's prior.
- AggregateSampler: z from a Gaussian mixture fitted to the training set's posterior means
                    (an estimate of the aggregate posterior, where the decoder was trained).
- ClassSampler:     z from one Gaussian per class, fitted to that class's posterior means.
- interpolate:      decoded images along the line between two images' posterior means.
All samplers return float32 tensors (n, latent_dim); decode them with model.decode(z).
The figures that show them are in plots.py.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import Tensor

from models import EVAL_BATCH_SIZE, BetaVAE, map_batches

N_COMPONENTS = 10  # Gaussian mixture components of the aggregate sampler
STEPS = 10  # images per interpolation


def posterior_means(model: BetaVAE, images: Tensor) -> Tensor:
    """Posterior means mu(x) of every image, (N, latent_dim), computed in eval mode; ValueError if not finite."""
    means = map_batches(model, lambda x: model.encode(x)[0], images).float()
    if not torch.isfinite(means).all():
        raise ValueError("the model gives non-finite posterior means (are its weights finite?)")
    return means


def decode(model: BetaVAE, z: Tensor, batch_size: int = EVAL_BATCH_SIZE) -> Tensor:
    """Images decoded from latent codes z, in [0, 1] pixel space (eval mode)."""
    return map_batches(model, model.decode, z, batch_size).clamp(0, 1)


def finite_decodes(model: BetaVAE, z: Tensor, where: str) -> Tensor:
    """Images decoded from latent codes z, in [0, 1]; ValueError, naming `where` z came from, if the decoder gives a
    NaN or infinite pixel for any (finite weights can overflow)."""
    images = map_batches(model, model.decode, z)
    if not torch.isfinite(images).all():
        raise ValueError(
            f"the model's decoder gives non-finite pixels (NaN or infinite) at {where}: it cannot be shown"
        )
    return images.clamp(0, 1)


def check_sizes(labels: Tensor, n_components: int = N_COMPONENTS) -> None:
    """ValueError unless samplers can be fitted to codes with these labels: at least `n_components` codes for
    the mixture and two per class for the class Gaussians."""
    counts = torch.bincount(torch.as_tensor(labels))
    if len(labels) < n_components:
        raise ValueError(f"{len(labels)} training images are too few for the {n_components}-component mixture")
    if (counts == 1).any():
        raise ValueError(
            f"class {int((counts == 1).nonzero()[0])} has a single training image; the class sampler "
            f"needs two or more per class"
        )


class PriorSampler:
    """z ~ N(0, I)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    def sample(self, n: int, seed: int = 0) -> Tensor:
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))


class AggregateSampler:
    """z from a Gaussian mixture (full covariances) fitted to training posterior means."""

    def __init__(self, means: Tensor, n_components: int = N_COMPONENTS, seed: int = 0) -> None:
        check_sizes(torch.zeros(len(means), dtype=torch.long), n_components)
        self.mixture = GaussianMixture(n_components, covariance_type="full", random_state=seed)
        self.mixture.fit(np.asarray(means, dtype=np.float64))

    def sample(self, n: int, seed: int = 0) -> Tensor:
        self.mixture.set_params(random_state=seed)  # GaussianMixture.sample draws from its random_state
        z, _ = self.mixture.sample(n)
        z = z[np.random.default_rng(seed).permutation(n)]  # sample() returns them grouped by component
        return torch.from_numpy(z).float()


class ClassSampler:
    """z from one Gaussian (mean, full covariance) per class, fitted to that class's posterior means."""

    def __init__(self, means: Tensor, labels: Tensor) -> None:
        check_sizes(labels, n_components=0)
        means, labels = np.asarray(means, dtype=np.float64), np.asarray(labels)
        self.classes = [int(c) for c in np.unique(labels)]
        self.means = {c: means[labels == c].mean(0) for c in self.classes}
        self.covariances = {c: np.atleast_2d(np.cov(means[labels == c], rowvar=False)) for c in self.classes}

    def sample(self, n: int, label: int, seed: int = 0) -> Tensor:
        if label not in self.means:
            raise ValueError(f"no class {label}; the sampler knows classes {self.classes}")
        rng = np.random.default_rng([seed, label])
        return torch.from_numpy(rng.multivariate_normal(self.means[label], self.covariances[label], n)).float()

    def sample_grid(self, per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """`per_class` codes for every class, class after class (one grid row per class), and their labels."""
        z = torch.cat([self.sample(per_class, c, seed) for c in self.classes])
        labels = torch.tensor(self.classes).repeat_interleave(per_class)
        return z, labels


def interpolate(model: BetaVAE, x_a: Tensor, x_b: Tensor, steps: int = STEPS) -> Tensor:
    """`steps` decoded images (steps, C, H, W) from mu(x_a) to mu(x_b), both ends included."""
    ends = posterior_means(model, torch.stack([x_a.reshape(model.image_shape), x_b.reshape(model.image_shape)]))
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return map_batches(model, model.decode, (1 - t) * ends[0] + t * ends[1])


if __name__ == "__main__":
    raise SystemExit("samplers.py is a library, not a command: evaluate.py and the notebooks use it")
