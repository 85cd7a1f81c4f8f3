import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import load_fashion_mnist  # noqa: E402


@pytest.fixture(scope="session")
def fmnist():
    """The real Fashion-MNIST, [0, 1] scaling, loaded once per test session."""
    return load_fashion_mnist("bernoulli")


@pytest.fixture(scope="session")
def small_fmnist(fmnist):
    """The first 2,000 training images and the first 2,000 test images: for quick training tests."""
    from data import FashionMNISTData
    return FashionMNISTData(fmnist.train_images[:2000], fmnist.train_labels[:2000],
                        fmnist.test_images[:2000], fmnist.test_labels[:2000], "bernoulli")
