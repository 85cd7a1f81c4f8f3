"""Train the Fashion-MNIST classifier that evaluate.py uses as its feature extractor (classifier.py), once:

python -m lab.train_classifier --force   # replaces assets/fmnist_classifier.pt if test accuracy >= MIN_ACCURACY
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from classifier import WEIGHTS, Classifier, features_and_probs
from cli import OneLineParser
from data import DataError, batches, load_dataset
from files import WriteError, atomic_write

EPOCHS = 6
BATCH_SIZE = 128
LR = 1e-3
SEED = 0
MIN_ACCURACY = 0.90


def accuracy(classifier: Classifier, images: Tensor, labels: Tensor) -> float:
    _, probs = features_and_probs(classifier, images)
    return (probs.argmax(1) == labels).float().mean().item()


def train_classifier(images: Tensor, labels: Tensor, epochs: int = EPOCHS, seed: int = SEED, log=print) -> Classifier:
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


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(
        prog="lab.train_classifier", description="Train the Fashion-MNIST classifier used by evaluate.py."
    )
    p.add_argument("--out", default=str(WEIGHTS), help="weights file (default assets/fmnist_classifier.pt)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing weights file (every eval.json made "
        "with the old weights is then evaluated again by a sweep)",
    )
    args = p.parse_args(argv)
    if Path(args.out).exists() and not args.force:
        p.error(f"{args.out} exists: the metrics of every evaluation rest on it; pass --force to replace it, or --out")
    try:
        data = load_dataset("fashion-mnist")
    except DataError as error:
        p.error(str(error))
    classifier = train_classifier(data.train_images, data.train_labels, args.epochs, args.seed)
    test_accuracy = accuracy(classifier, data.test_images, data.test_labels)
    print(f"test accuracy {test_accuracy:.4f}")
    if test_accuracy < MIN_ACCURACY:
        print(
            f"lab.train_classifier: error: test accuracy below {MIN_ACCURACY:.0%}; weights not saved", file=sys.stderr
        )
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {"state": classifier.state_dict(), "test_accuracy": test_accuracy, "epochs": args.epochs, "seed": args.seed}
    try:
        atomic_write(out, lambda f: torch.save(state, f))
    except WriteError as error:
        p.error(str(error))
    print(f"saved {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
