"""The datasets, chosen by name (DATASETS): images in [0, 1] as in-memory tensors, labels, and known factors where the
dataset has them. Training, evaluation, the notebooks and the explorer take a Dataset without knowing which it is.

- fashion-mnist: 60,000 training and 10,000 test images of clothing, 10 classes (fashion_mnist.py).
- shapes: 70,560 images of a square, an ellipse or a heart with known factors (shape, scale, orientation, x, y),
  every combination once (shapes.py, made here), in a fixed random order. Models train on all of them, as in the
  disentanglement literature; the "test" images are the first 10,000 (no held-out split); the labels are the shapes.
Batches are cut from tensors: no per-image PIL transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import fashion_mnist
import shapes
from fashion_mnist import DataError

__all__ = ["DATASETS", "DataError", "Dataset", "batches", "load_dataset"]
SHAPES_TEST = 10_000  # shapes: the images evaluated as its test set


@dataclass(frozen=True)
class Dataset:
    """Images as float tensors (N, 1, H, W) in [0, 1]; labels int64 (N,), naming class_names; for a dataset with known
    factors of variation, their names and each image's value indices (N, K)."""

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    class_names: tuple[str, ...]
    factor_names: tuple[str, ...] = ()
    train_factors: Tensor | None = None
    test_factors: Tensor | None = None
    classifier_weights: Path | None = None  # a classifier of its classes, for sample quality (quality.py)

    def __post_init__(self) -> None:
        """ValueError unless images, labels and factors agree in number and the pixels lie in [0, 1]."""
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            factors = getattr(self, f"{split}_factors")
            if len(images) != len(labels) or (factors is not None and len(factors) != len(images)):
                raise ValueError(f"{self.name}: {len(images)} {split} images but {len(labels)} labels")
            if images.numel() and not (0.0 <= float(images.min()) and float(images.max()) <= 1.0):
                raise ValueError(f"{self.name}: {split} images must lie in [0, 1]")

    @property
    def has_factors(self) -> bool:
        """Whether each image comes with the known factors that made it (disentanglement can be measured)."""
        return self.train_factors is not None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def limited(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The same data with only the first `train` training and `test` test images (None: all)."""

        def cut(values: Tensor | None, n: int | None) -> Tensor | None:
            return None if values is None else values[:n]

        return replace(
            self,
            **{f"train_{part}": cut(getattr(self, f"train_{part}"), train) for part in ("images", "labels", "factors")},
            **{f"test_{part}": cut(getattr(self, f"test_{part}"), test) for part in ("images", "labels", "factors")},
        )


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 images (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)


def labels_tensor(labels: np.ndarray) -> Tensor:
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))


def load_fashion_mnist(data_dir: str | Path | None = None) -> Dataset:
    """Fashion-MNIST's training and test sets (fashion_mnist.py finds the files)."""
    splits = fashion_mnist.load_splits(data_dir)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    return Dataset(
        "fashion-mnist",
        to_tensor(train_x),
        labels_tensor(train_y),
        to_tensor(test_x),
        labels_tensor(test_y),
        fashion_mnist.CLASS_NAMES,
        classifier_weights=fashion_mnist.CLASSIFIER_WEIGHTS,
    )


def load_shapes(data_dir: str | Path | None = None) -> Dataset:
    """The shapes dataset (made and cached in `data_dir`, default ./data, on first use), every image for training in
    a fixed random order (so that the first N are a random N), and the first SHAPES_TEST of them as the test set."""
    images, factors = shapes.load_shapes(None if data_dir is None else Path(data_dir))
    order = np.random.default_rng(0).permutation(len(images))
    images, factors = to_tensor(images[order]), torch.from_numpy(factors[order])
    names = tuple(factor.name for factor in shapes.FACTORS)
    test = slice(SHAPES_TEST)
    return Dataset(
        "shapes",
        images,
        factors[:, 0],
        images[test],
        factors[test, 0],
        shapes.SHAPE_NAMES,
        names,
        factors,
        factors[test],
    )


DATASETS: dict[str, Callable[[str | Path | None], Dataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "shapes": load_shapes,
}


def load_dataset(name: str = "fashion-mnist", data_dir: str | Path | None = None, limit: int | None = None) -> Dataset:
    """The dataset of this name; `limit` keeps the first N training images (the test set stays whole).
    ValueError for an unknown name or limit, DataError for missing or corrupt files."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    data = DATASETS[name](data_dir)
    return data if limit is None else data.limited(train=limit)


def batches(
    images: Tensor, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[Tensor]:
    """Mini-batches cut from an in-memory tensor, in a random order drawn from `generator` if shuffle."""
    n = len(images)
    order = torch.randperm(n, generator=generator).to(images.device) if shuffle else None  # drawn on the CPU
    for start in range(0, n, batch_size):
        yield images[order[start : start + batch_size]] if shuffle else images[start : start + batch_size]
