"""Sample quality in the feature space of a dataset's classifier (classifier.py; Fashion-MNIST's): for the prior,
aggregate and class samplers, FD, precision/recall and density/coverage against the test images, the same four
against the model's reconstructions of the test images (same blur on both sides), and the class mix of the samples;
the classifier's accuracy on the reconstructions. Sanity rows: the same numbers for training images, one class of
training images, blurred test images and noise (and, against the reconstructions, reconstructions of training images
and of one class). evaluate.py adds these to the other metrics for datasets that have a classifier.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import metrics
from classifier import Classifier, features_and_probs
from config import EvalConfig
from data import Dataset
from models import BetaVAE, map_batches
from samplers import AggregateSampler, ClassSampler, PriorSampler, check_sizes, decode

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


def sanity_sets(data: Dataset, seed: int = 0) -> dict[str, Tensor]:
    """The sanity sets, as many images as the test set where the data has them."""
    test, train = data.test_images, data.train_images
    return {
        "real": train[: len(test)],
        "one_class": one_class(train, data.train_labels, len(test)),
        "blurred": blur(test),
        "noise": torch.rand(test.shape, generator=torch.Generator().manual_seed(seed)),
    }


def reference_features(classifier: Classifier, data: Dataset, seed: int = 0) -> tuple[Reference, dict]:
    """The test images' reference, and the sanity rows against it (model-independent: computed once per data)."""
    test = Reference.of(features_and_probs(classifier, data.test_images)[0])
    return test, {name: image_quality(classifier, images, test) for name, images in sanity_sets(data, seed).items()}


def reconstructions(model: BetaVAE, images: Tensor, batch_size: int) -> Tensor:
    """Reconstructions (z = posterior mean), pixels in [0, 1]."""
    return map_batches(model, lambda x: model(x, sample=False).recon, images, batch_size).clamp(0, 1)


def check_quality_inputs(data: Dataset) -> None:
    """ValueError, before any work, unless the samplers and the one-class row can be fitted to the training set."""
    check_sizes(data.train_labels)
    if int((data.train_labels == ONE_CLASS).sum()) <= metrics.PR_NEIGHBOURS:  # its recall needs k-NN balls
        raise ValueError(
            f"the one-class sanity row needs > {metrics.PR_NEIGHBOURS} training images of class "
            f"{ONE_CLASS}, got {int((data.train_labels == ONE_CLASS).sum())}: use more training images"
        )


def sample_quality(
    model: BetaVAE,
    data: Dataset,
    config: EvalConfig,
    classifier: Classifier,
    train_means: Tensor,
    recon: Tensor,
    reference: tuple[Reference, dict] | None = None,
) -> dict[str, Any]:
    """The module docstring's numbers, as plain data, for a model with these training codes and reconstructions of
    the test images. `reference` (from reference_features) saves recomputing the test images' features and the
    sanity rows for every run."""
    test_x, test_y, batch, seed = data.test_images, data.test_labels, config.batch_size, config.seed
    recon_features, recon_probs = features_and_probs(classifier, recon)
    correct = (recon_probs.argmax(1) == test_y).float()
    result: dict[str, Any] = {
        "classifier_sha256": classifier.weights_sha256,
        "recon_accuracy": correct.mean().item(),
        "recon_accuracy_per_class": metrics.per_class(correct, test_y, data.class_names),
    }
    test, sanity = reference_features(classifier, data) if reference is None else reference
    recon_reference = Reference.of(recon_features)
    sets = {
        "real": data.train_images[: len(test_x)],
        "one_class": one_class(data.train_images, data.train_labels, len(test_x)),
    }
    result["sanity_recon"] = {
        name: recon_reference.quality(features_and_probs(classifier, reconstructions(model, images, batch))[0])
        for name, images in sets.items()
    }
    per_class = math.ceil(config.samples / len(data.class_names))
    class_z, class_labels = ClassSampler(train_means, data.train_labels).sample_grid(per_class, seed)
    codes = {
        "prior": (PriorSampler(model.latent_dim).sample(config.samples, seed), None),
        "aggregate": (AggregateSampler(train_means, seed=seed).sample(config.samples, seed), None),
        "class": (class_z, class_labels),
    }
    result["samplers"] = {
        name: image_quality(classifier, decode(model, z, batch), test, recon_reference, labels)
        for name, (z, labels) in codes.items()
    }
    return {**result, "sanity": sanity, "fd_real": sanity["real"]["fd"]}
