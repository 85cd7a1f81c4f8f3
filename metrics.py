"""The metrics, as pure functions of tensors (and a model for the IWAE bound); evaluate.py puts them together.

- iwae_nll: importance-weighted bound on -log p(x) (Likelihood.unit_range_nll: as a density of [0, 1] pixels).
- active_units, knn_accuracy: the latent space.
- frechet_distance; precision_recall (Kynkaanniemi et al. 2019); density_coverage (Naeem et al. 2020): generated
  vs real feature vectors (in evaluate.py: the features of the project classifier).
- class_mix: the class histogram the classifier gives a set of images: its entropy, KL from uniform, unsure share.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor
from torch.distributions import Normal

from models import BetaVAE, map_batches
from objectives import reconstruction_nll

NEIGHBOURS = 5  # k of the kNN classifier on posterior means
PR_NEIGHBOURS = 3  # k of the precision/recall balls (Kynkaanniemi et al.)
DC_NEIGHBOURS = 5  # k of the density/coverage balls (Naeem et al.'s default)
CHUNK = 1000  # rows per torch.cdist call
ACTIVE_THRESHOLD = 0.01
UNSURE = 0.5  # a sample is "unsure" (not clearly a garment) below this top class probability


def iwae_nll(model: BetaVAE, images: Tensor, k: int, batch_size: int, seed: int = 0) -> float:
    """IWAE estimate of -log p(x), nats per image: -log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).
    With k = 1 it is the single-sample ELBO, drawn with the same noise as models.dataset_loss (same batch_size)."""
    generator = torch.Generator().manual_seed(seed)
    prior = Normal(0.0, 1.0)

    def log_mean_weight(x: Tensor) -> Tensor:
        mu, logvar = model.encode(x)
        posterior = Normal(mu, torch.exp(0.5 * logvar))
        log_w = torch.empty(k, len(x), dtype=torch.float64, device=x.device)
        for i in range(k):
            z = model.reparameterize(mu, logvar, generator, sample=True)
            log_px_z = -reconstruction_nll(model.decode_logits(z), x, model.likelihood, model.log_scale)
            log_w[i] = log_px_z + (prior.log_prob(z) - posterior.log_prob(z)).sum(1)
        return torch.logsumexp(log_w, 0) - math.log(k)

    return -map_batches(model, log_mean_weight, images, batch_size).mean().item()


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions whose posterior mean varies over the data by more than `threshold`."""
    return int((means.var(0) > threshold).sum())


def knn_accuracy(
    train_means: Tensor, train_labels: Tensor, test_means: Tensor, test_labels: Tensor, neighbours: int = NEIGHBOURS
) -> float:
    """Accuracy of a k-nearest-neighbour classifier of the test means, fitted on the training means."""
    knn = KNeighborsClassifier(n_neighbors=neighbours).fit(train_means.numpy(), train_labels.numpy())
    return float(knn.score(test_means.numpy(), test_labels.numpy()))


def per_class(values: Tensor, labels: Tensor, class_names: tuple[str, ...]) -> dict[str, float | None]:
    """Mean of `values` (N,) over the images of each class, by class name (None for a class with no images)."""
    sums = torch.zeros(len(class_names), dtype=torch.float64).index_add_(0, labels, values.double())
    counts = torch.bincount(labels, minlength=len(class_names))
    return {name: (s / c).item() if c else None for name, s, c in zip(class_names, sums, counts)}


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (N, F).
    tr sqrt(cov_a cov_b) is the sum of the square roots of the eigenvalues of cov_a cov_b (real and
    non-negative), as in torchmetrics; unlike scipy's sqrtm it is exact for singular covariances."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    trace_root = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)).sum()
    distance = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def knn_radii(features: Tensor, k: int = PR_NEIGHBOURS) -> Tensor:
    """Distance from each feature vector (N, F) to its k-th nearest neighbour among the others."""
    return torch.cat(
        [torch.cdist(part, features).topk(k + 1, dim=1, largest=False).values[:, -1] for part in features.split(CHUNK)]
    )


def ball_counts(points: Tensor, centres: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """For each point, how many centre balls hold it (M,); for each centre, whether any point is in its ball (N,)."""
    counts, hit = [], torch.zeros(len(centres), dtype=torch.bool)
    for part in points.split(CHUNK):
        inside = torch.cdist(part, centres) <= radii
        counts.append(inside.sum(1))
        hit |= inside.any(0)
    return torch.cat(counts), hit


def precision_recall(
    generated: Tensor, real: Tensor, real_radii: Tensor | None = None, k: int = PR_NEIGHBOURS
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of generated vs real feature vectors:
    generated inside a real k-NN ball, and real inside a generated k-NN ball."""
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    precision = (ball_counts(generated, real, real_radii)[0] > 0).float().mean().item()
    recall = (ball_counts(real, generated, knn_radii(generated, k))[0] > 0).float().mean().item()
    return precision, recall


def density_coverage(
    generated: Tensor, real: Tensor, real_radii: Tensor | None = None, k: int = DC_NEIGHBOURS
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), with k-NN balls around the real vectors only: density, the mean
    number of real balls holding a generated vector, over k (1 for a generator like the data; can exceed 1);
    coverage, the share of real vectors whose ball holds at least one generated vector."""
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    counts, hit = ball_counts(generated, real, real_radii)
    return counts.double().mean().item() / k, hit.float().mean().item()


def class_mix(probs: Tensor, unsure: float = UNSURE) -> dict[str, float]:
    """The classifier's view of a set of images, from its softmax outputs (N, C): the entropy of the histogram of
    predicted classes (nats; log C when every class is equally common, 0 for one class), its KL from uniform,
    and the share of images whose top probability is below `unsure`."""
    share = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / len(probs)
    entropy = -(share[share > 0] * share[share > 0].log()).sum().item() + 0.0  # + 0.0: no -0.0
    return {
        "class_entropy": entropy,
        "class_kl_uniform": math.log(probs.shape[1]) - entropy,
        "unsure": (probs.max(1).values < unsure).float().mean().item(),
    }
