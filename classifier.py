"""A small CNN classifier of Fashion-MNIST, the feature extractor of the sample-quality metrics.

evaluate.py uses its penultimate layer (FEATURES values per image) for the Fréchet distance and
its softmax for confidence and class-conditional rates. Trained once, with a fixed seed:

    python classifier.py     # a few minutes on a laptop CPU; about 91 % test accuracy;
                             # writes assets/fmnist_classifier.pt (420 KiB)
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from checkpoint import atomic_write
from cli import OneLineParser
from data import DataError, batches, load_fashion_mnist
from models import map_batches

WEIGHTS = Path(__file__).resolve().parent / "assets" / "fmnist_classifier.pt"
FEATURES = 64
EPOCHS = 6
BATCH_SIZE = 128
LR = 1e-3
SEED = 0
MIN_ACCURACY = 0.90
PIXEL_MEAN, PIXEL_STD = 0.286, 0.353  # of the Fashion-MNIST training images in [0, 1]


class ClassifierError(Exception):
    """The classifier weights are missing or do not fit; the message says how to make them."""


class Classifier(nn.Module):
    """Two conv/batch-norm/pool blocks, a FEATURES-wide hidden layer, a linear head. Input: images in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features((x - PIXEL_MEAN) / PIXEL_STD))


def features_and_probs(classifier: Classifier, images: Tensor, batch_size: int = 250) -> tuple[Tensor, Tensor]:
    """Penultimate-layer features (N, FEATURES) and softmax probabilities (N, 10) of images in [0, 1]."""
    def features_probs(x: Tensor) -> tuple[Tensor, Tensor]:
        h = classifier.features((x - PIXEL_MEAN) / PIXEL_STD)
        return h, F.softmax(classifier.head(h), dim=1)
    return map_batches(classifier, features_probs, images, batch_size)


def accuracy(classifier: Classifier, images: Tensor, labels: Tensor) -> float:
    _, probs = features_and_probs(classifier, images)
    return (probs.argmax(1) == labels).float().mean().item()


def train_classifier(images: Tensor, labels: Tensor, epochs: int = EPOCHS, seed: int = SEED,
                     log=print) -> Classifier:
    """Train with Adam (cosine learning-rate decay) and cross-entropy, reproducibly from `seed`."""
    torch.manual_seed(seed)
    classifier = Classifier()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=LR)
    steps = epochs * math.ceil(len(images) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        classifier.train()
        started, total = time.perf_counter(), 0.0
        order = torch.randperm(len(images), generator=generator)
        for index in batches(order, BATCH_SIZE, shuffle=False):
            loss = F.cross_entropy(classifier(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        log(f"epoch {epoch}/{epochs}  loss {total / len(images):.4f}  {time.perf_counter() - started:.1f}s")
    return classifier.eval()


def load_classifier(path: str | Path = WEIGHTS) -> Classifier:
    """The trained classifier (weights_only load); ClassifierError says how to make missing or stale weights."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path}: no classifier weights; train them with: python classifier.py")
    classifier = Classifier()
    try:
        classifier.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state"])
    except Exception as error:  # unreadable, unsafe, or from another architecture
        raise ClassifierError(f"{path}: not weights of this classifier ({type(error).__name__}); "
                              f"retrain them with: python classifier.py") from None
    return classifier.eval()


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="classifier.py", description="Train the Fashion-MNIST classifier used by evaluate.py.")
    p.add_argument("--out", default=str(WEIGHTS), help="weights file (default assets/fmnist_classifier.pt)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args(argv)
    try:
        data = load_fashion_mnist("bernoulli")
    except DataError as error:
        p.error(str(error))
    classifier = train_classifier(data.train_images, data.train_labels, args.epochs, args.seed)
    test_accuracy = accuracy(classifier, data.test_images, data.test_labels)
    print(f"test accuracy {test_accuracy:.4f}")
    if test_accuracy < MIN_ACCURACY:
        print(f"classifier.py: error: test accuracy below {MIN_ACCURACY:.0%}; weights not saved", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {"state": classifier.state_dict(), "test_accuracy": test_accuracy, "epochs": args.epochs,
             "seed": args.seed}
    atomic_write(out, lambda f: torch.save(state, f))
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
