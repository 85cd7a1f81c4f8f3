"""A small CNN classifier of Fashion-MNIST, the feature extractor of the sample-quality metrics.

evaluate.py uses its penultimate layer (FEATURES values per image) for the Fréchet distance and
its softmax for confidence and class-conditional rates. Trained once, with a fixed seed, by lab/train_classifier.py
(`python -m lab.train_classifier`); the weights are assets/fmnist_classifier.pt.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from checkpoint import load_tensors
from fashion_mnist import CLASSIFIER_WEIGHTS
from files import sha256
from models import EVAL_BATCH_SIZE, map_batches

WEIGHTS = CLASSIFIER_WEIGHTS
FEATURES = 64
PIXEL_MEAN, PIXEL_STD = 0.286, 0.353  # of the Fashion-MNIST training images in [0, 1]


class ClassifierError(Exception):
    """The classifier weights are missing or do not fit; the message says how to make them."""


class Classifier(nn.Module):
    """Two conv/batch-norm/pool blocks, a FEATURES-wide hidden layer, a linear head. Input: images in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 7 * 7, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)
        self.weights_sha256: str | None = None  # of the file load_classifier read: which classifier measured

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features((x - PIXEL_MEAN) / PIXEL_STD))


def features_and_probs(
    classifier: Classifier, images: Tensor, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[Tensor, Tensor]:
    """Penultimate-layer features (N, FEATURES) and softmax probabilities (N, 10) of images in [0, 1]."""

    def features_probs(x: Tensor) -> tuple[Tensor, Tensor]:
        h = classifier.features((x - PIXEL_MEAN) / PIXEL_STD)
        return h, F.softmax(classifier.head(h), dim=1)

    return map_batches(classifier, features_probs, images, batch_size)


def load_classifier(path: str | Path = WEIGHTS) -> Classifier:
    """The trained classifier (weights_only load); ClassifierError says how to make missing or stale weights."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path}: no classifier weights; train them with: python -m lab.train_classifier")
    classifier = Classifier()
    saved = load_tensors(path, ClassifierError)  # refuses zip bombs and pickled objects, in one line
    try:
        classifier.load_state_dict(saved["state"])
    except Exception as error:  # from another architecture
        raise ClassifierError(
            f"{path}: not weights of this classifier ({type(error).__name__}); "
            f"retrain them with: python -m lab.train_classifier --force"
        ) from None
    classifier.weights_sha256 = sha256(path)
    return classifier.eval()
