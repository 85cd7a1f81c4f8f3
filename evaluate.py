"""Evaluate a trained beta-VAE on the Fashion-MNIST test set; writes RUN/eval.json.

    python evaluate.py runs/NAME            # prints a table, writes runs/NAME/eval.json
    python evaluate.py runs/NAME --k 1000   # more importance samples (options: config.EvalConfig)

The numbers (docs/metrics.md says more): elbo (recon, KL, total at beta 1) and loss (at the run's beta); the IWAE
bound and nll on [0, 1] pixels; KL per dimension, active units, kNN accuracy of the posterior means; MSE and the
classifier's accuracy on reconstructions, overall and per class. Then, for the prior, aggregate and class
samplers, in the project classifier's feature space: FD, precision/recall and density/coverage against the test
images, the same four against the model's reconstructions of the test images (same blur on both sides), and
the class mix of the samples. Sanity rows: the same numbers for training images, one class of training images,
blurred test images and noise (and, against the reconstructions, reconstructions of training images and of
one class).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import metrics
from checkpoint import CHECKPOINT, DIGEST, CheckpointError, load_checkpoint, load_model
from classifier import Classifier, ClassifierError, features_and_probs, load_classifier
from cli import OneLineParser, add_options, given, option_error, unavailable
from config import EvalConfig
from data import DataError, FashionMNISTData, check_data, load_fashion_mnist, to_unit_range
from files import WriteError, sha256, unwritable, write_json
from models import BetaVAE, count_parameters, dataset_loss, kl_per_dimension, map_batches
from samplers import AggregateSampler, ClassSampler, PriorSampler, check_sizes, decode, posterior_means

EVAL_FILE = "eval.json"
SAMPLER_NAMES = ("prior", "aggregate", "class")
SANITY_NAMES = ("real", "one_class", "blurred", "noise")
ONE_CLASS = 1  # Trouser: the one-class sanity row
CONFIDENT = 0.9


class Reference(NamedTuple):
    """Feature vectors of a reference set and their k-NN radii for precision/recall and density/coverage."""

    features: Tensor
    pr_radii: Tensor
    dc_radii: Tensor

    @classmethod
    def of(cls, features: Tensor) -> Reference:
        return cls(
            features,
            metrics.knn_radii(features, metrics.PR_NEIGHBOURS),
            metrics.knn_radii(features, metrics.DC_NEIGHBOURS),
        )

    def quality(self, features: Tensor) -> dict[str, float]:
        """fd, precision, recall, density and coverage of `features` against this reference."""
        precision, recall = metrics.precision_recall(features, self.features, self.pr_radii)
        density, coverage = metrics.density_coverage(features, self.features, self.dc_radii)
        return {
            "fd": metrics.frechet_distance(features, self.features),
            "precision": precision,
            "recall": recall,
            "density": density,
            "coverage": coverage,
        }


def image_quality(
    classifier: Classifier,
    images: Tensor,
    test: Reference,
    recon: Reference | None = None,
    labels: Tensor | None = None,
) -> dict[str, float]:
    """Images in [0, 1] against the test reference (and the reconstructions' with `recon`): the five measures,
    the class mix, the confident share, and with `labels` the rate classified as them."""
    features, probs = features_and_probs(classifier, images)
    quality = {
        **test.quality(features),
        **metrics.class_mix(probs),
        "confident": (probs.max(1).values > CONFIDENT).float().mean().item(),
    }
    if recon is not None:
        quality.update({f"{key}_recon": value for key, value in recon.quality(features).items()})
    if labels is not None:
        quality["class_rate"] = (probs.argmax(1) == labels).float().mean().item()
    return quality


def blur(images: Tensor) -> Tensor:
    """Images averaged over 2x2 blocks and scaled back up (bilinear): a mild blur."""
    return F.interpolate(F.avg_pool2d(images, 2), size=images.shape[-2:], mode="bilinear")


def one_class(images: Tensor, labels: Tensor, count: int) -> Tensor:
    """The first `count` images of class ONE_CLASS: the one-class sanity row."""
    return images[labels == ONE_CLASS][:count]


def sanity_sets(data: FashionMNISTData, seed: int = 0) -> dict[str, Tensor]:
    """The sanity sets in [0, 1], as many images as the test set where the data has them."""
    test = to_unit_range(data.test_images, data.likelihood)
    train = to_unit_range(data.train_images, data.likelihood)
    return {
        "real": train[: len(test)],
        "one_class": one_class(train, data.train_labels, len(test)),
        "blurred": blur(test),
        "noise": torch.rand(test.shape, generator=torch.Generator().manual_seed(seed)),
    }


def reference_features(classifier: Classifier, data: FashionMNISTData, seed: int = 0) -> tuple[Reference, dict]:
    """The test images' reference, and the sanity rows against it (model-independent: computed once per data)."""
    test = Reference.of(features_and_probs(classifier, to_unit_range(data.test_images, data.likelihood))[0])
    return test, {name: image_quality(classifier, images, test) for name, images in sanity_sets(data, seed).items()}


def reconstructions(model: BetaVAE, images: Tensor, batch_size: int) -> Tensor:
    """Reconstructions (z = posterior mean) in [0, 1] pixel space."""
    return to_unit_range(
        map_batches(model, lambda x: model(x, sample=False).recon, images, batch_size), model.likelihood
    ).clamp(0, 1)


def reconstruction_quality(
    model: BetaVAE, classifier: Classifier, images: Tensor, labels: Tensor, recon: Tensor
) -> dict[str, Any]:
    """MSE per pixel in [0, 1] and the classifier's accuracy on the reconstructions `recon`, overall and per class."""
    mse = (recon - to_unit_range(images, model.likelihood)).pow(2).flatten(1).mean(1)
    correct = (features_and_probs(classifier, recon)[1].argmax(1) == labels).float()
    return {
        "mse": mse.double().mean().item(),
        "mse_per_class": metrics.per_class(mse, labels),
        "recon_accuracy": correct.mean().item(),
        "recon_accuracy_per_class": metrics.per_class(correct, labels),
    }


def check_inputs(model: BetaVAE, data: FashionMNISTData, config: EvalConfig) -> None:
    """ValueError, before any work, unless the data suits the model and is large enough for every metric."""
    check_data(data, model.likelihood)
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise ValueError("the model has non-finite weights")
    check_data_sizes(len(data.train_images), len(data.test_images), config)
    check_sizes(data.train_labels)
    if int((data.train_labels == ONE_CLASS).sum()) <= metrics.PR_NEIGHBOURS:  # its recall needs k-NN balls
        raise ValueError(
            f"the one-class sanity row needs > {metrics.PR_NEIGHBOURS} training images of class "
            f"{ONE_CLASS}, got {int((data.train_labels == ONE_CLASS).sum())}: use more training images"
        )


def check_data_sizes(train_images: int, test_images: int, config: EvalConfig) -> None:
    """ValueError unless there are enough images for the k-NN balls and the kNN classifier."""
    least = metrics.DC_NEIGHBOURS + 1
    if test_images < least or train_images < max(least, metrics.NEIGHBOURS):
        raise ValueError(
            f"evaluation needs >= {least} test and training images (k-NN balls), got {test_images} and {train_images}"
        )


def evaluate(
    model: BetaVAE,
    data: FashionMNISTData,
    beta: float,
    config: EvalConfig = EvalConfig(),
    classifier: Classifier | None = None,
    reference: tuple[Reference, dict] | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring, as plain data. `reference` (from reference_features) saves
    recomputing the test images' features and the sanity rows for every run."""
    started = time.perf_counter()
    check_inputs(model, data, config)
    classifier = load_classifier() if classifier is None else classifier
    test_x, test_y, batch, seed = data.test_images, data.test_labels, config.batch_size, config.seed
    elbo = dataset_loss(model, test_x, batch, seed)
    elbo["total"] = elbo["recon"] + elbo["kl"]
    iwae_x = test_x[: config.iwae_images]
    iwae_elbo = elbo if len(iwae_x) == len(test_x) else dataset_loss(model, iwae_x, batch, seed)
    result: dict[str, Any] = {
        "beta": beta,
        "elbo": elbo,
        "classifier_sha256": classifier.weights_sha256,
        "loss": elbo["recon"] + beta * elbo["kl"],  # same noise as the ELBO: only the weight on KL differs
        "iwae_nll": metrics.iwae_nll(model, iwae_x, config.k, batch, seed),
        "nll_normalised": model.likelihood.density,
        "iwae_elbo": iwae_elbo["recon"] + iwae_elbo["kl"],
        "iwae_images": len(iwae_x),
    }
    result["nll"] = model.likelihood.unit_range_nll(result["iwae_nll"], math.prod(model.image_shape))

    test_means, test_logvars = map_batches(model, model.encode, test_x, batch)
    train_means = posterior_means(model, data.train_images)
    recon = reconstructions(model, test_x, batch)
    result.update(
        {
            "kl_per_dim": kl_per_dimension(test_means, test_logvars).mean(0).tolist(),
            "mean_variance": test_means.var(0).tolist(),
            "active_units": metrics.active_units(test_means),
            "knn_accuracy": metrics.knn_accuracy(train_means, data.train_labels, test_means, test_y),
            **reconstruction_quality(model, classifier, test_x, test_y, recon),
        }
    )

    test, sanity = reference_features(classifier, data) if reference is None else reference
    recon_reference = Reference.of(features_and_probs(classifier, recon)[0])
    sets = {
        "real": data.train_images[: len(test_x)],
        "one_class": one_class(data.train_images, data.train_labels, len(test_x)),
    }
    result["sanity_recon"] = {
        name: recon_reference.quality(features_and_probs(classifier, reconstructions(model, images, batch))[0])
        for name, images in sets.items()
    }
    class_z, class_labels = ClassSampler(train_means, data.train_labels).sample_grid(
        math.ceil(config.samples / 10), seed
    )
    codes = {
        "prior": (PriorSampler(model.latent_dim).sample(config.samples, seed), None),
        "aggregate": (AggregateSampler(train_means, seed=seed).sample(config.samples, seed), None),
        "class": (class_z, class_labels),
    }
    result["samplers"] = {
        name: image_quality(classifier, decode(model, z, batch), test, recon_reference, labels)
        for name, (z, labels) in codes.items()
    }
    result.update(
        {
            "sanity": sanity,
            "fd_real": sanity["real"]["fd"],
            "parameters": count_parameters(model),
            **asdict(config),
            "test_images": len(test_x),
            "train_images": len(data.train_images),
            "seconds": time.perf_counter() - started,
        }
    )
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """One flat row of the main numbers (for tables): per-class columns mse_bag, ..., per-sampler ones fd_prior, ...
    and the sanity rows' coverage_real, ... (against the reconstructions: coverage_recon_real, ...)."""
    row = {
        "recon": result["elbo"]["recon"],
        "kl": result["elbo"]["kl"],
        "elbo": result["elbo"]["total"],
        **{key: result[key] for key in ("loss", "iwae_nll", "nll", "nll_normalised", "iwae_elbo", "active_units")},
        "kl_per_dim": " ".join(f"{v:.2f}" for v in result["kl_per_dim"]),
        **{key: result[key] for key in ("knn_accuracy", "mse", "recon_accuracy", "parameters")},
    }
    keys = [name.split("/")[0].split()[-1].lower().replace("-", "") for name in result["mse_per_class"]]
    for metric in ("mse", "recon_accuracy"):
        row.update({f"{metric}_{key}": value for key, value in zip(keys, result[f"{metric}_per_class"].values())})
    for name, quality in {**result["samplers"], **result["sanity"]}.items():
        row.update({f"{key}_{name}": value for key, value in quality.items()})
    for name, quality in result["sanity_recon"].items():
        row.update({f"{key}_recon_{name}": value for key, value in quality.items()})
    row["eval_seconds"] = result.get("seconds")  # not in run records: it measures the machine, not the run
    return row


def headline(result: dict[str, Any]) -> list[str]:
    """The numbers a reader looks at first, one line each, with units (eval.json holds every metric)."""
    row, fd = summary(result), "Frechet distance to the test images (lower: closer)"
    lines = [
        ("reconstruction", f"{row['recon']:.2f} nats/image", "-log p(x|z), z drawn from q(z|x)"),
        ("KL", f"{row['kl']:.2f} nats/image", f"beta {result['beta']:g} weighs it in the loss"),
        (
            "IWAE NLL",
            f"{row['iwae_nll']:.2f} nats/image",
            f"k = {result['k']}" + ("" if row["nll_normalised"] else "; bernoulli: not a density of grey pixels"),
        ),
        ("MSE", f"{row['mse']:.4f}", "per pixel, pixels in [0, 1]"),
        ("recon accuracy", f"{row['recon_accuracy']:.3f}", "reconstructions the classifier labels correctly"),
        ("kNN accuracy", f"{row['knn_accuracy']:.3f}", f"{metrics.NEIGHBOURS}-NN class of test codes: separation"),
        ("active units", f"{row['active_units']} of {len(result['kl_per_dim'])}", "latent dimensions in use"),
    ]
    lines.append(
        (
            "FD",
            " / ".join(f"{row[f'fd_{name}']:.1f}" for name in result["samplers"]),
            f"{' / '.join(result['samplers'])} samples: {fd}",
        )
    )
    lines += [
        ("precision prior", f"{row['precision_prior']:.3f}", "prior samples near a test image (realism)"),
        ("recall prior", f"{row['recall_prior']:.3f}", "test images near a prior sample (variety)"),
        ("coverage prior", f"{row['coverage_prior']:.3f}", "test images with a prior sample in their ball"),
        ("seconds", f"{row['eval_seconds']:.0f}", "the evaluation's own time"),
    ]
    return [f"  {name:<16}{value:>18}   {why}" for name, value, why in lines]


def evaluate_run(
    run: str | Path,
    data: FashionMNISTData,
    config: EvalConfig = EvalConfig(),
    classifier: Classifier | None = None,
    reference: tuple[Reference, dict] | None = None,
    device: str = "cpu",
) -> dict:
    """Evaluate a run folder on `data` (the model on `device`, batch by batch) and write eval.json there, keyed by
    the checkpoint's epoch and digest (and the classifier's digest, in the result)."""
    run = Path(run)
    checkpoint_file = run / CHECKPOINT
    digest = sha256(checkpoint_file)
    checkpoint = load_checkpoint(checkpoint_file)
    model = load_model(checkpoint_file, checkpoint).to(device)  # loaded and validated once
    result = evaluate(model, data, checkpoint["train_config"].get("beta", 1.0), config, classifier, reference)
    result = {
        "run": str(run),
        "epoch": checkpoint["epoch"],
        "checkpoint_sha256": digest,
        "checkpoint_tensor_sha256": checkpoint.get(DIGEST),
        "config": model.plain_config(),
        **result,
    }
    write_json(run / EVAL_FILE, result)
    return result


def with_test_limit(data: FashionMNISTData, limit: int | None) -> FashionMNISTData:
    """The same data with only the first `limit` test images (all when None)."""
    return FashionMNISTData(
        data.train_images, data.train_labels, data.test_images[:limit], data.test_labels[:limit], data.likelihood
    )


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="evaluate.py", description="Evaluate a trained beta-VAE run; writes RUN/eval.json.")
    p.add_argument("run", help="run folder (runs/NAME)")
    add_options(p, EvalConfig)
    p.add_argument("--train-limit", type=int, help="use only the first N training images (quick checks)")
    p.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or mps: where the model runs")
    args = p.parse_args(argv)
    if unavailable(args.device):
        p.error(f"--device {unavailable(args.device)}")
    run = Path(args.run).parent if Path(args.run).is_file() else Path(args.run)
    try:
        config = EvalConfig(**given(args, EvalConfig))
        if args.train_limit is not None and args.train_limit < 1:
            raise ValueError(f"train_limit must be >= 1, got {args.train_limit}")
    except ValueError as error:
        p.error(option_error(error))
    if unwritable(run):
        p.error(f"cannot save {EVAL_FILE}: {unwritable(run)}")
    try:
        model_config = load_checkpoint(run)["config"]
        data = with_test_limit(
            load_fashion_mnist(model_config["likelihood"], args.data_dir, args.train_limit), config.eval_limit
        )
        check_data_sizes(len(data.train_images), len(data.test_images), config)
        result = evaluate_run(run, data, config, load_classifier(), device=args.device)
    except (CheckpointError, ClassifierError, DataError, ValueError, WriteError) as error:
        p.error(str(error))
    print(
        f"{run} (epoch {result['epoch']}, {model_config['model']}, {model_config['likelihood']}, "
        f"beta {result['beta']:g}), on {result['test_images']:,} test images:"
    )
    print("\n".join(headline(result)))
    print(f"every metric: {run / EVAL_FILE} (docs/metrics.md explains each key)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
