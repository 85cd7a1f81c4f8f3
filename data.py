"""Fashion-MNIST, loaded once from the four official IDX files into in-memory tensors.

Where the files come from, first found wins:
1. the `data_dir` argument, or the FASHION_MNIST_DIR environment variable;
2. ./data next to this file (also torchvision's layout data/FashionMNIST/raw);
3. /usr/share/datasets/fashion-mnist (Debian/Ubuntu package `dataset-fashion-mnist`);
4. torchvision's download into ./data.
Batches are cut from tensors: no per-image PIL transforms.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from likelihoods import Likelihood
from likelihoods import likelihood as find_likelihood

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60000, "test": 10000}
REPO_DATA_DIR = Path(__file__).resolve().parent / "data"
SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_UBYTE = 0x08  # the only element type Fashion-MNIST uses


class DataError(Exception):
    """A data file is missing, corrupt or inconsistent; the message names the file."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not) into a uint8 array, validating its header and size."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({error})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != IDX_UBYTE or ndim not in (1, 3):
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()}, expected 00000801 or 00000803)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(f"{path}: {kind}: {len(raw)} bytes, header says {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_split(
    images_path: str | Path, labels_path: str | Path, count: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) as uint8, checked for consistency (and for `count` images if given)."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected images of shape (N, 28, 28), got {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-d label file, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if count is not None and len(images) != count:
        raise DataError(f"{images_path}: expected {count} images, got {len(images)}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0-9")
    return images, labels


def candidate_dirs(data_dir: str | Path | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    if os.environ.get("FASHION_MNIST_DIR"):
        return [Path(os.environ["FASHION_MNIST_DIR"])]
    return [REPO_DATA_DIR, REPO_DATA_DIR / "FashionMNIST" / "raw", SYSTEM_DATA_DIR]


def complete_dir(directories: list[Path]) -> Path | None:
    for directory in directories:
        if all(find_file(directory, name) for pair in FILES.values() for name in pair):
            return directory
    return None


def download_with_torchvision(timeout: float = 20.0) -> Path | None:
    """Try torchvision's download into ./data; None when it fails (no internet, no torchvision)."""
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST
    except ImportError:
        return None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        for train in (True, False):
            TorchvisionFashionMNIST(str(REPO_DATA_DIR), train=train, download=True)
    except Exception:  # any network or mirror failure: the caller explains what to do
        return None
    finally:
        socket.setdefaulttimeout(previous)
    return complete_dir([REPO_DATA_DIR / "FashionMNIST" / "raw"])


def find_data_dir(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The folder holding the four IDX files; see the module docstring for the search order."""
    directories = candidate_dirs(data_dir)
    download = download and data_dir is None and not os.environ.get("FASHION_MNIST_DIR")
    found = complete_dir(directories) or (download_with_torchvision() if download else None)
    if found is None:
        names = ", ".join(name for pair in FILES.values() for name in pair)
        raise DataError(
            f"Fashion-MNIST not found in {', '.join(map(str, directories))}"
            f"{' and the download failed' if download else ''}. Either "
            f"(1) put the four IDX files ({names}, gzipped or not) in a folder and pass data_dir or set "
            f"FASHION_MNIST_DIR; (2) put them in {REPO_DATA_DIR}; or "
            f"(3) on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist"
        )
    return found


@dataclass
class FashionMNISTData:
    """Images as float tensors (N, 1, 28, 28) scaled to the likelihood's range; labels as int64 (N,)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    likelihood: Likelihood  # or its name

    def __post_init__(self) -> None:
        self.likelihood = find_likelihood(self.likelihood)


def to_tensor(images: np.ndarray, likelihood: Likelihood) -> Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 1, 28, 28) in the likelihood's data range."""
    low, high = likelihood.data_range
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    return x.mul_(high - low).add_(low)


def to_unit_range(x: Tensor, likelihood: Likelihood) -> Tensor:
    """Images in the likelihood's data range -> [0, 1], for plotting and comparisons across likelihoods."""
    low, high = likelihood.data_range
    return (x - low) / (high - low)


def check_data_range(x: Tensor, likelihood: Likelihood) -> None:
    """Called once per dataset: ValueError when x cannot be data of this likelihood (see Likelihood.check)."""
    low, high = map(float, torch.aminmax(x.detach()))
    if problem := likelihood.check(low, high):
        raise ValueError(f"{problem}; load the data with likelihood={likelihood!r}")


def check_data(data: FashionMNISTData, likelihood: Likelihood, train_limit: int | None = None) -> None:
    """ValueError unless `data` was scaled for `likelihood` and its images (training ones up to train_limit) lie in
    its range: once per dataset, where it enters training or evaluation."""
    if data.likelihood is not likelihood:
        raise ValueError(f"data scaled for {data.likelihood!r} but the model's likelihood is {likelihood!r}")
    for images in (data.train_images[:train_limit], data.test_images):
        check_data_range(images, likelihood)


def load_fashion_mnist(
    likelihood: str | Likelihood = "bernoulli", data_dir: str | Path | None = None, limit: int | None = None
) -> FashionMNISTData:
    """Load train and test sets; `limit` keeps the first N training images (the test set stays whole)."""
    likelihood = find_likelihood(likelihood)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    directory = find_data_dir(data_dir)
    splits = {}
    for split, (images_name, labels_name) in FILES.items():
        images, labels = load_split(find_file(directory, images_name), find_file(directory, labels_name), COUNTS[split])
        splits[split] = (to_tensor(images, likelihood), torch.from_numpy(labels.astype(np.int64)))
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    if limit is not None:
        train_x, train_y = train_x[:limit].clone(), train_y[:limit].clone()
    return FashionMNISTData(train_x, train_y, test_x, test_y, likelihood)


def batches(
    images: Tensor, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True
) -> Iterator[Tensor]:
    """Mini-batches cut from an in-memory tensor, in a random order drawn from `generator` if shuffle."""
    n = len(images)
    order = torch.randperm(n, generator=generator).to(images.device) if shuffle else None  # drawn on the CPU
    for start in range(0, n, batch_size):
        yield images[order[start : start + batch_size]] if shuffle else images[start : start + batch_size]
