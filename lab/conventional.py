"""pytorch/examples' VAE (vae/main.py) on Fashion-MNIST, the conventional way: the peer lab.bench times train.py
against. A 784-400-20 model, binary cross-entropy summed over pixels plus the KL (beta 1), batch 128, Adam 1e-3,
torchvision's FashionMNIST with ToTensor through a DataLoader, a test pass over the 10,000 test images per epoch.

    python -m lab.conventional --epochs 2        # or: python lab/conventional.py --epochs 2
    python -m lab.conventional --epochs 2 --device cuda   # model and batches on the GPU, as pytorch/examples' --cuda

It reads the project's IDX files (data.find_data_dir), laid out the way torchvision expects them, and downloads
nothing. Each epoch prints one line of key=value pairs (seconds, and losses in nats per image), e.g.
    epoch=1 train_s=14.2 test_s=0.6 train_loss=280.1 test_loss=262.4
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

if __package__ in (None, ""):  # run as a file: the project's modules sit one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fashion_mnist import FILES, find_data_dir, find_file  # noqa: E402

BATCH_SIZE = 128
# the same model and training as train.py options: what lab.bench and scripts/gpu_check.py time this script against
EXAMPLES = {
    "model": "fc",
    "hidden": 400,
    "latent_dim": 20,
    "beta": 1,
    "epochs": 2,
    "batch_size": BATCH_SIZE,
    "lr": 0.001,
}


class VAE(nn.Module):
    """pytorch/examples' model, as written there."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reconstruction (BCE) plus KL, summed over the batch, as pytorch/examples writes it."""
    recon_x, mu, logvar = model(x)
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def torchvision_root(folder: Path) -> Path:
    """`folder` laid out as torchvision reads Fashion-MNIST (folder/FashionMNIST/raw): symlinks to the project's
    IDX files, or decompressed copies of gzipped ones (torchvision reads only the decompressed files)."""
    source, raw = find_data_dir(download=False), Path(folder) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in (name for pair in FILES.values() for name in pair):
        path, target = find_file(source, name), raw / name
        if target.exists() or target.is_symlink():
            continue
        if path.suffix == ".gz":
            target.write_bytes(gzip.decompress(path.read_bytes()))
        else:
            target.symlink_to(path.resolve())
    return Path(folder)


def loader(root: Path, train: bool, batch_size: int = BATCH_SIZE, limit: int | None = None) -> DataLoader:
    """DataLoader(FashionMNIST(transform=ToTensor())), shuffled for training; `limit`: the first N images only."""
    dataset = datasets.FashionMNIST(str(root), train=train, transform=transforms.ToTensor())
    if limit is not None and limit < len(dataset):
        dataset = Subset(dataset, range(limit))
    return DataLoader(dataset, batch_size=batch_size, shuffle=train)


LossFunction = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: DataLoader,
    loss_fn: LossFunction = loss_function,
    per_batch_mean: bool = False,
    device: str = "cpu",
) -> float:
    """One epoch of pytorch/examples' loop; the mean training loss per image. `per_batch_mean`: loss_fn
    averages over the batch (the project's models) rather than summing. Each batch moves to `device` as it comes."""
    model.train()
    total = 0.0
    for x, _ in batches:
        x = x.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model, x)
        loss.backward()
        total += loss.item() * (len(x) if per_batch_mean else 1)
        optimizer.step()
    return total / len(batches.dataset)


@torch.no_grad()
def test_loss(
    model: nn.Module, batches: DataLoader, loss_fn: LossFunction = loss_function, device: str = "cpu"
) -> float:
    """The loss per test image, z sampled as pytorch/examples' test pass does."""
    model.eval()
    return sum(loss_fn(model, x.to(device)).item() for x, _ in batches) / len(batches.dataset)


def last_epoch(stdout: str) -> dict[str, float]:
    """The key=value pairs of the last line of this script's output."""
    return {key: float(value) for key, value in (pair.split("=") for pair in stdout.strip().splitlines()[-1].split())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab.conventional", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10, as pytorch/examples)")
    p.add_argument("--root", type=Path, help="a folder laid out by torchvision_root (default: a temporary one)")
    p.add_argument("--train-limit", type=int, help="train on the first N images only (default all 60,000)")
    p.add_argument("--test-limit", type=int, help="test on the first N images only (default all 10,000)")
    p.add_argument("--seed", type=int, default=1, help="torch.manual_seed (default 1, as pytorch/examples)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the model and each batch go")
    args = p.parse_args(argv)
    for name in ("epochs", "train_limit", "test_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: cuda is not available on this machine")
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        root = args.root or torchvision_root(Path(folder))
        train_loader, test_loader = (
            loader(root, True, limit=args.train_limit),
            loader(root, False, limit=args.test_limit),
        )
        model = VAE().to(args.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(1, args.epochs + 1):
            started = time.perf_counter()
            train = train_epoch(model, optimizer, train_loader, device=args.device)
            trained = time.perf_counter()
            test = test_loss(model, test_loader, device=args.device)
            print(
                f"epoch={epoch} train_s={trained - started:.3f} test_s={time.perf_counter() - trained:.3f} "
                f"train_loss={train:.4f} test_loss={test:.4f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
