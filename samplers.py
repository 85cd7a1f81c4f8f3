"""Ways to choose latent codes z for the decoder, and a figure comparing them.

- PriorSampler:     z ~ N(0, I), the VAE's prior.
- AggregateSampler: z from a Gaussian mixture fitted to the training set's posterior means
                    (an estimate of the aggregate posterior, where the decoder was trained).
- ClassSampler:     z from one Gaussian per class, fitted to that class's posterior means.
- interpolate:      decoded images along the line between two images' posterior means.
All samplers return float32 tensors (n, latent_dim); decode them with model.decode(z).

    python samplers.py runs/sweep/fc-bernoulli-z3-beta0.1 --name fc
    # -> img/fc_sampler_comparison.png and img/fc_latent_interpolation.png
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.mixture import GaussianMixture
from torch import Tensor
from torchvision.utils import make_grid

from data import DataError, batches, load_fashion_mnist, to_unit_range
from models import BetaVAE
from train import CheckpointError, OneLineParser, load_model

if TYPE_CHECKING:
    from matplotlib.axes import Axes

N_COMPONENTS = 10   # Gaussian mixture components of the aggregate sampler
BATCH_SIZE = 500
GRID = 10           # figures: GRID x GRID samples per sampler
STEPS = 10          # figures: images per interpolation row


@torch.no_grad()
def posterior_means(model: BetaVAE, images: Tensor, batch_size: int = BATCH_SIZE) -> Tensor:
    """Posterior means mu(x) of every image, (N, latent_dim), computed in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    means = [model.encode(x.to(device))[0].cpu() for x in batches(images, batch_size, shuffle=False)]
    model.train(was_training)
    return torch.cat(means).float()


class PriorSampler:
    """z ~ N(0, I)."""

    def __init__(self, latent_dim: int) -> None:
        self.latent_dim = latent_dim

    def sample(self, n: int, seed: int = 0) -> Tensor:
        return torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))


class AggregateSampler:
    """z from a Gaussian mixture (full covariances) fitted to training posterior means."""

    def __init__(self, means: Tensor, n_components: int = N_COMPONENTS, seed: int = 0) -> None:
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


@torch.no_grad()
def interpolate(model: BetaVAE, x_a: Tensor, x_b: Tensor, steps: int = STEPS) -> Tensor:
    """`steps` decoded images (steps, C, H, W) from mu(x_a) to mu(x_b), both ends included."""
    ends = posterior_means(model, torch.stack([x_a.reshape(model.image_shape), x_b.reshape(model.image_shape)]))
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return model.decode((1 - t) * ends[0] + t * ends[1])


# ---------------------------------------------------------------------------------------------- figures
def show_grid(ax: Axes, images: Tensor, likelihood: str, nrow: int, title: str) -> None:
    """Draw images (in the likelihood's data range) as one grey grid of `nrow` columns on `ax`."""
    grid = make_grid(to_unit_range(images, likelihood).clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="samplers.py", description="Save sampler-comparison and interpolation figures for a run.")
    p.add_argument("run", help="run folder (or checkpoint file)")
    p.add_argument("--name", required=True, help="figure name prefix, e.g. fc -> img/fc_sampler_comparison.png")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        model = load_model(args.run)
        data = load_fashion_mnist(model.likelihood)
    except (CheckpointError, DataError) as error:
        p.error(str(error))
    import plots  # the notebooks' figures; plots imports this module

    means = posterior_means(model, data.train_images)
    prior_z = PriorSampler(model.latent_dim).sample(GRID * GRID, args.seed)
    aggregate_z = AggregateSampler(means, seed=args.seed).sample(GRID * GRID, args.seed)
    class_z, _ = ClassSampler(means, data.train_labels).sample_grid(GRID, args.seed)
    pairs = [(c, c + 5) for c in range(5)]  # a test image of class c to one of class c + 5 (T-shirt/top -> sandal, ...)
    figures = {
        "sampler_comparison": plots.plot_samplers(model, prior_z, aggregate_z, class_z, GRID),
        "latent_interpolation": plots.plot_interpolation(model, data.test_images, data.test_labels, pairs, STEPS)}
    for kind, fig in figures.items():
        plots.save(fig, f"{args.name}_{kind}.png")
        print(f"saved {plots.IMG_DIR / f'{args.name}_{kind}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
