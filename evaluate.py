"""Metrics of a trained beta-VAE on the Fashion-MNIST test set.

    python evaluate.py runs/NAME            # prints a table, writes runs/NAME/eval.json
    python evaluate.py runs/NAME --k 1000   # more importance samples

All numbers are over the whole 10,000-image test set unless a limit is given:
- elbo: reconstruction, KL and total (beta = 1) in nats per image (models.dataset_loss); loss: at the run's beta.
- iwae_nll: importance-weighted bound on -log p(x) with K samples (K = 1 gives the ELBO), on the first
  2,000 test images by default (--iwae-images 10000 for all); iwae_elbo: -ELBO on those same images.
- nll: iwae_nll as a density of [0, 1] pixels (gaussian: plus its constant, minus 784 log 2 for the change of
  variables from [-1, 1]); nll_normalised is false for bernoulli, whose BCE on grey levels is not a density.
- kl_per_dim, active_units (variance of the posterior mean over the test set > 0.01).
- knn_accuracy: 5-nearest-neighbour accuracy of test posterior means against training posterior means.
- mse: squared error per pixel in [0, 1] pixel space, reconstructions with z = posterior mean;
  recon_accuracy: the classifier's accuracy on those reconstructions; both also per class (mse_per_class, ...).
- samplers: for prior, aggregate and class samplers (samplers.py), in the feature space of classifier.py:
  the Fréchet distance between generated and test images, precision and recall (Kynkaanniemi et al. 2019,
  k = 3: precision ~ samples that look real, recall ~ test images the samples cover), the fraction of samples
  the classifier is confident on (max softmax > 0.9), and for the class sampler how often it predicts the
  requested class.
- sanity: the same fd, precision and recall for training images (real: the best a generator can do; fd_real),
  blurred test images and uniform noise.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor
from torch.distributions import Normal

import torch.nn.functional as F

from checkpoint import CheckpointError, load_checkpoint, load_model, unwritable, write_json
from classifier import Classifier, ClassifierError, features_and_probs, load_classifier
from cli import OneLineParser
from data import CLASS_NAMES, DataError, FashionMNISTData, load_fashion_mnist, to_unit_range
from models import (BetaVAE, check_data_range, count_parameters, dataset_loss, kl_per_dimension, map_batches,
                    reconstruction_nll)
from samplers import AggregateSampler, ClassSampler, PriorSampler, check_sizes, posterior_means
from train import TrainConfig

K = 100                 # importance samples of the IWAE bound
IWAE_IMAGES = 2000      # the IWAE uses the first N test images: 10,000 x 100 CNN decodes take minutes here
BATCH_SIZE = 500        # images per forward pass: larger CNN batches page-fault through big conv buffers
SAMPLES = 10000         # generated images per sampler
NEIGHBOURS = 5
PR_NEIGHBOURS = 3       # k of the precision/recall radii
CHUNK = 1000            # rows per torch.cdist call
ACTIVE_THRESHOLD = 0.01
CONFIDENT = 0.9
SEED = 0
EVAL_FILE = "eval.json"
SAMPLER_NAMES = ("prior", "aggregate", "class")
SANITY_NAMES = ("real", "blurred", "noise")
CLASS_KEYS = tuple(name.split("/")[0].split()[-1].lower().replace("-", "") for name in CLASS_NAMES)  # tshirt .. boot


def iwae_nll(model: BetaVAE, images: Tensor, k: int = K, batch_size: int = BATCH_SIZE, seed: int = SEED) -> float:
    """IWAE estimate of -log p(x), nats per image: -log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x).

    With k = 1 it is the single-sample ELBO, drawn with the same noise as models.dataset_loss (same batch_size).
    """
    generator = torch.Generator().manual_seed(seed)
    prior = Normal(0.0, 1.0)

    def log_mean_weight(x: Tensor) -> Tensor:
        mu, logvar = model.encode(x)
        posterior = Normal(mu, torch.exp(0.5 * logvar))
        log_w = torch.empty(k, len(x), dtype=torch.float64)
        for i in range(k):
            z = model.reparameterize(mu, logvar, generator, sample=True)
            log_px_z = -reconstruction_nll(model.decode_logits(z), x, model.likelihood, model.log_scale)
            log_w[i] = log_px_z + (prior.log_prob(z) - posterior.log_prob(z)).sum(1)
        return torch.logsumexp(log_w, 0) - math.log(k)

    return -map_batches(model, log_mean_weight, images, batch_size).mean().item()


def unit_range_nll(nll: float, likelihood: str, pixels: int = 784) -> float:
    """A model's NLL (nats per image) as -log p(x) of [0, 1] pixels: gaussian adds its missing constant
    0.5 log(2 pi) per pixel and the change of variables from [-1, 1] (x = 2y - 1: -log 2 per pixel)."""
    return nll + pixels * (0.5 * math.log(2 * math.pi) - math.log(2)) if likelihood == "gaussian" else nll


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions whose posterior mean varies over the data by more than `threshold`."""
    return int((means.var(0) > threshold).sum())


def knn_accuracy(train_means: Tensor, train_labels: Tensor, test_means: Tensor, test_labels: Tensor,
                 neighbours: int = NEIGHBOURS) -> float:
    """Accuracy of a k-nearest-neighbour classifier of the test means, fitted on the training means."""
    knn = KNeighborsClassifier(n_neighbors=neighbours).fit(train_means.numpy(), train_labels.numpy())
    return float(knn.score(test_means.numpy(), test_labels.numpy()))


def per_class(values: Tensor, labels: Tensor) -> dict[str, float | None]:
    """Mean of `values` (N,) over the images of each class, by class name (None for a class with no images)."""
    sums = torch.zeros(len(CLASS_NAMES), dtype=torch.float64).index_add_(0, labels, values.double())
    counts = torch.bincount(labels, minlength=len(CLASS_NAMES))
    return {name: (s / c).item() if c else None for name, s, c in zip(CLASS_NAMES, sums, counts)}


def reconstruction_quality(model: BetaVAE, classifier: Classifier, images: Tensor, labels: Tensor) -> dict[str, Any]:
    """MSE per pixel in [0, 1] pixel space and the classifier's accuracy on the reconstructions (z = posterior
    mean), over all images and per class."""
    recon = to_unit_range(map_batches(model, lambda x: model(x, sample=False).recon, images, BATCH_SIZE),
                          model.likelihood)
    mse = (recon - to_unit_range(images, model.likelihood)).pow(2).flatten(1).mean(1)
    correct = (features_and_probs(classifier, recon)[1].argmax(1) == labels).float()
    return {"mse": mse.double().mean().item(), "mse_per_class": per_class(mse, labels),
            "recon_accuracy": correct.mean().item(), "recon_accuracy_per_class": per_class(correct, labels)}


def decode_all(model: BetaVAE, z: Tensor, batch_size: int = BATCH_SIZE) -> Tensor:
    """Decoded images in [0, 1] pixel space."""
    return to_unit_range(map_batches(model, model.decode, z, batch_size), model.likelihood).clamp(0, 1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (N, F).

    tr sqrt(cov_a cov_b) is the sum of the square roots of the eigenvalues of cov_a cov_b (real and
    non-negative), as in torchmetrics; unlike scipy's sqrtm it is exact for singular covariances.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    trace_root = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real.clip(min=0)).sum()
    distance = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def knn_radii(features: Tensor, k: int = PR_NEIGHBOURS) -> Tensor:
    """Distance from each feature vector (N, F) to its k-th nearest neighbour among the others."""
    return torch.cat([torch.cdist(part, features).topk(k + 1, dim=1, largest=False).values[:, -1]
                      for part in features.split(CHUNK)])


def covered(points: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Fraction of `points` inside the ball of at least one of `centres` (radius `radii`, one per centre)."""
    inside = [(torch.cdist(part, centres) <= radii).any(1) for part in points.split(CHUNK)]
    return torch.cat(inside).float().mean().item()


def precision_recall(generated: Tensor, real: Tensor, real_radii: Tensor | None = None,
                     k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of generated vs real feature vectors:
    generated inside a real k-NN ball, and real inside a generated k-NN ball."""
    real_radii = knn_radii(real, k) if real_radii is None else real_radii
    return covered(generated, real, real_radii), covered(real, generated, knn_radii(generated, k))


class Reference(NamedTuple):
    """Classifier features of the test images, their k-NN radii, and the sanity rows (see sanity_rows)."""
    features: Tensor
    radii: Tensor
    sanity: dict[str, dict[str, float]]

    @property
    def fd_real(self) -> float:
        return self.sanity["real"]["fd"]


def feature_quality(features: Tensor, features_ref: Tensor, radii_ref: Tensor) -> dict[str, float]:
    """fd, precision and recall of `features` against reference features and their k-NN radii."""
    precision, recall = precision_recall(features, features_ref, radii_ref)
    return {"fd": frechet_distance(features, features_ref), "precision": precision, "recall": recall}


def sample_quality(classifier: Classifier, images: Tensor, reference: Reference,
                   labels: Tensor | None = None) -> dict[str, float]:
    """fd, precision and recall against the reference, the confident fraction, and with `labels` the rate
    classified as them."""
    features, probs = features_and_probs(classifier, images)
    quality = {**feature_quality(features, reference.features, reference.radii),
               "confident": (probs.max(1).values > CONFIDENT).float().mean().item()}
    if labels is not None:
        quality["class_rate"] = (probs.argmax(1) == labels).float().mean().item()
    return quality


def blur(images: Tensor) -> Tensor:
    """Images averaged over 2x2 blocks and scaled back up (bilinear): a mild blur."""
    return F.interpolate(F.avg_pool2d(images, 2), size=images.shape[-2:], mode="bilinear")


def reference_features(classifier: Classifier, data: FashionMNISTData, seed: int = SEED) -> Reference:
    """Features and k-NN radii of data's test images, and the sanity rows: fd, precision and recall of as
    many training images (real), blurred test images and uniform noise."""
    test = to_unit_range(data.test_images, data.likelihood)
    features, _ = features_and_probs(classifier, test)
    radii = knn_radii(features)
    controls = {"real": to_unit_range(data.train_images[:len(test)], data.likelihood), "blurred": blur(test),
                "noise": torch.rand(test.shape, generator=torch.Generator().manual_seed(seed))}
    return Reference(features, radii, {name: feature_quality(features_and_probs(classifier, images)[0], features, radii)
                                       for name, images in controls.items()})


def check_inputs(model: BetaVAE, data: FashionMNISTData, samples: int) -> None:
    """ValueError, before any work, unless the weights are finite and the data large enough for every metric."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise ValueError("the model has non-finite weights")
    if samples < 2 or len(data.test_images) < 2 or len(data.train_images) < NEIGHBOURS:
        raise ValueError(f"evaluation needs >= 2 samples, >= 2 test images and >= {NEIGHBOURS} training images "
                         f"(kNN), got {samples}, {len(data.test_images)} and {len(data.train_images)}")
    check_sizes(data.train_labels)


def evaluate(model: BetaVAE, data: FashionMNISTData, beta: float, k: int = K,
             iwae_images: int | None = IWAE_IMAGES, samples: int = SAMPLES, classifier: Classifier | None = None,
             reference: Reference | None = None, seed: int = SEED) -> dict[str, Any]:
    """All metrics of the module docstring, as plain data; the IWAE uses the first `iwae_images` (None: all).

    `reference` (from reference_features) saves recomputing the test images' features for every run.
    """
    started = time.perf_counter()
    if data.likelihood != model.likelihood:
        raise ValueError(f"data scaled for {data.likelihood!r} but the model's likelihood is {model.likelihood!r}")
    for images in (data.train_images, data.test_images):
        check_data_range(images, model.likelihood)
    check_inputs(model, data, samples)
    classifier = load_classifier() if classifier is None else classifier
    test_x, test_y = data.test_images, data.test_labels
    elbo = dataset_loss(model, test_x, 1.0, batch_size=BATCH_SIZE, seed=seed)
    iwae_x = test_x[:iwae_images]
    iwae_elbo = elbo if len(iwae_x) == len(test_x) else dataset_loss(model, iwae_x, 1.0, batch_size=BATCH_SIZE,
                                                                      seed=seed)
    result: dict[str, Any] = {
        "beta": beta, "elbo": elbo,
        # same noise as the ELBO, so its recon and KL are the ELBO's; only the weight on KL differs
        "loss": elbo["recon"] + beta * elbo["kl"],
        "iwae_nll": iwae_nll(model, iwae_x, k, BATCH_SIZE, seed),
        "nll_normalised": model.likelihood != "bernoulli",
        "iwae_elbo": iwae_elbo["total"],
        "iwae_images": len(iwae_x)}
    result["nll"] = unit_range_nll(result["iwae_nll"], model.likelihood, math.prod(model.image_shape))

    test_means, test_logvars = map_batches(model, model.encode, test_x, BATCH_SIZE)
    kl = kl_per_dimension(test_means, test_logvars).mean(0)
    train_means = posterior_means(model, data.train_images)
    result.update({"kl_per_dim": kl.tolist(), "mean_variance": test_means.var(0).tolist(),
                   "active_units": active_units(test_means),
                   "knn_accuracy": knn_accuracy(train_means, data.train_labels, test_means, test_y),
                   **reconstruction_quality(model, classifier, test_x, test_y)})

    reference = reference_features(classifier, data) if reference is None else reference
    class_z, class_labels = ClassSampler(train_means, data.train_labels).sample_grid(math.ceil(samples / 10), seed)
    codes = {"prior": (PriorSampler(model.latent_dim).sample(samples, seed), None),
             "aggregate": (AggregateSampler(train_means, seed=seed).sample(samples, seed), None),
             "class": (class_z, class_labels)}
    result["samplers"] = {name: sample_quality(classifier, decode_all(model, z), reference, labels)
                          for name, (z, labels) in codes.items()}
    result.update({"sanity": reference.sanity, "fd_real": reference.fd_real, "parameters": count_parameters(model)})
    result.update({"k": k, "samples": samples, "test_images": len(test_x), "train_images": len(data.train_images),
                   "seconds": time.perf_counter() - started})
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """One flat row of the main numbers (for tables); per-class columns are named mse_bag, recon_accuracy_bag, ..."""
    row = {"recon": result["elbo"]["recon"], "kl": result["elbo"]["kl"], "elbo": result["elbo"]["total"],
           "loss": result["loss"], "iwae_nll": result["iwae_nll"], "nll": result["nll"],
           "nll_normalised": result["nll_normalised"], "iwae_elbo": result["iwae_elbo"],
           "active_units": result["active_units"],
           "kl_per_dim": " ".join(f"{v:.2f}" for v in result["kl_per_dim"]),
           "knn_accuracy": result["knn_accuracy"], "mse": result["mse"], "recon_accuracy": result["recon_accuracy"],
           "parameters": result["parameters"]}
    for metric in ("mse", "recon_accuracy"):
        row.update({f"{metric}_{key}": value for key, value in zip(CLASS_KEYS, result[f"{metric}_per_class"].values())})
    for name, quality in {**result["samplers"], **result["sanity"]}.items():
        row.update({f"{key}_{name}": value for key, value in quality.items()})
    row["eval_seconds"] = result["seconds"]
    return row


def format_table(result: dict[str, Any]) -> str:
    """The metrics as aligned `name  value` lines."""
    labels = {
        "recon": "ELBO reconstruction (nats/image)", "kl": "ELBO KL (nats/image)",
        "elbo": "-ELBO, beta = 1 (nats/image)", "loss": f"loss at beta = {result['beta']:g}",
        "iwae_nll": f"IWAE NLL, K = {result['k']}, {result['iwae_images']} images",
        "nll": "IWAE NLL on [0, 1] pixels", "nll_normalised": "  ... of a normalised density",
        "iwae_elbo": f"-ELBO on the same {result['iwae_images']} images", "active_units": "active units",
        "kl_per_dim": "KL per dimension", "knn_accuracy": "kNN accuracy (k = 5)", "mse": "MSE per pixel [0, 1]",
        "recon_accuracy": "classifier accuracy on reconstructions", "parameters": "parameters",
        "eval_seconds": "evaluation time (s)", "class_rate_class": "class samples classified as asked"}
    for key, name in zip(CLASS_KEYS, CLASS_NAMES):
        labels.update({f"mse_{key}": f"  MSE {name}", f"recon_accuracy_{key}": f"  accuracy on reconstructions {name}"})
    for name in SAMPLER_NAMES + SANITY_NAMES:
        kind = "samples" if name in SAMPLER_NAMES else "images"
        labels.update({f"fd_{name}": f"FD {name} {kind}", f"precision_{name}": f"precision {name} {kind}",
                       f"recall_{name}": f"recall {name} {kind}",
                       f"confident_{name}": f"confident (p > {CONFIDENT}) {name}"})
    lines = []
    for key, value in summary(result).items():
        lines.append(f"{labels[key]:<40} {value:.4g}" if isinstance(value, float) else f"{labels[key]:<40} {value}")
    return "\n".join(lines)


def evaluate_run(run: str | Path, data: FashionMNISTData, k: int = K, iwae_images: int | None = IWAE_IMAGES,
                 samples: int = SAMPLES, classifier: Classifier | None = None,
                 reference: Reference | None = None) -> dict[str, Any]:
    """Evaluate a run folder (or checkpoint file) on `data` and write eval.json beside its checkpoint."""
    checkpoint = load_checkpoint(run, TrainConfig)
    model = load_model(run)
    train_config = checkpoint.get("train_config", {})
    result = evaluate(model, data, train_config.get("beta", 1.0), k, iwae_images, samples, classifier, reference)
    result = {"run": str(run), "epoch": checkpoint["epoch"], "config": model.config, **result}
    write_json(eval_path(run), result)
    return result


def eval_path(run: str | Path) -> Path:
    """Where the eval.json of a run folder or checkpoint file goes."""
    return (Path(run) if Path(run).is_dir() else Path(run).parent) / EVAL_FILE


def with_test_limit(data: FashionMNISTData, limit: int | None) -> FashionMNISTData:
    """The same data with only the first `limit` test images (all when None)."""
    return FashionMNISTData(data.train_images, data.train_labels, data.test_images[:limit], data.test_labels[:limit],
                        data.likelihood)


def check_positive(parser: OneLineParser, args: Any, *names: str, high: int = 10 ** 5) -> None:
    """One-line error unless each named option is None or from 1 to `high` (more would not fit in memory)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not 1 <= value <= high:
            parser.error(f"--{name.replace('_', '-')} must be from 1 to {high}, got {value}")


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="evaluate.py", description="Evaluate a trained beta-VAE run; writes RUN/eval.json.")
    p.add_argument("run", help="run folder (runs/NAME) or checkpoint file")
    p.add_argument("--k", type=int, default=K, help=f"importance samples of the IWAE bound (default {K})")
    p.add_argument("--iwae-images", type=int, default=IWAE_IMAGES,
                   help=f"IWAE on the first N test images (default {IWAE_IMAGES}; 10000: all)")
    p.add_argument("--samples", type=int, default=SAMPLES, help=f"generated images per sampler (default {SAMPLES})")
    p.add_argument("--limit", type=int, help="use only the first N training and test images (quick checks)")
    p.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files")
    args = p.parse_args(argv)
    check_positive(p, args, "k", "iwae_images", "samples", "limit")
    if unwritable(eval_path(args.run).parent):
        p.error(f"cannot save {EVAL_FILE}: {unwritable(eval_path(args.run).parent)}")
    try:
        config = load_checkpoint(args.run)["config"]
        classifier = load_classifier()
        data = with_test_limit(load_fashion_mnist(config.get("likelihood", "bernoulli"), args.data_dir, args.limit),
                               args.limit)
        result = evaluate_run(args.run, data, args.k, args.iwae_images, args.samples, classifier)
    except (CheckpointError, ClassifierError, DataError, ValueError) as error:
        p.error(str(error))
    print(f"{args.run} (epoch {result['epoch']}, {config['model']}, {config['likelihood']}, beta {result['beta']:g})")
    print(format_table(result))
    print(f"saved {eval_path(args.run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
