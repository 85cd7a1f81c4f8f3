"""Fashion-MNIST from the four official IDX files (Xiao et al. 2017): 70,000 28x28 grey images of clothing, 10 classes.

Where the files come from, first found wins:
1. the `data_dir` argument, or the FASHION_MNIST_DIR environment variable;
2. ./data next to this file (also torchvision's layout data/FashionMNIST/raw);
3. /usr/share/datasets/fashion-mnist (Debian/Ubuntu package `dataset-fashion-mnist`);
4. torchvision's download into ./data.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import zlib
from pathlib import Path

import numpy as np

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60000, "test": 10000}
REPO_DATA_DIR = Path(__file__).resolve().parent / "data"
CLASSIFIER_WEIGHTS = Path(__file__).resolve().parent / "assets" / "fmnist_classifier.pt"  # classifier.py's
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


def load_splits(data_dir: str | Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images, labels), "test": (images, labels)} as uint8 arrays (N, 28, 28) and (N,)."""
    directory = find_data_dir(data_dir)
    return {
        split: load_split(find_file(directory, images), find_file(directory, labels), COUNTS[split])
        for split, (images, labels) in FILES.items()
    }
