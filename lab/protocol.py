"""The protocol a study table's runs follow: how many epochs, on every training image, evaluated in full (the
EvalConfig defaults on all 10,000 test images). A run made otherwise is left out of the table, and a record is not
replaced by a run with fewer epochs or a smaller evaluation unless asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import EvalConfig, TrainConfig
from fashion_mnist import COUNTS

# what a run's size is measured by, and how each is said ("epochs 1 < 20")
WORDS = {
    "epochs": "epochs {}",
    "train_images": "trained on {} training images",
    "test_images": "eval on {} test images",
    "k": "k {}",
    "iwae_images": "IWAE bound on {} test images",
    "samples": "{} samples per sampler",
}


def facts(record: dict[str, Any]) -> dict[str, int]:
    """A (checked) record's size on each of WORDS, and the epochs its config asked for."""
    evaluation = record["eval"]
    return {
        "epochs": len(record["epochs"]),
        **{name: evaluation[name] for name in WORDS if name != "epochs"},
        "configured_epochs": record["config"]["epochs"],
    }


def said(name: str, value: int, sign: str, wanted: int) -> str:
    return f"{WORDS[name].format(f'{value:,}')} {sign} {wanted:,}"


def smaller(new: dict[str, int], old: dict[str, int]) -> list[str]:
    """Where a run (its facts) is smaller than another: 'epochs 1 < 20', 'eval on 100 test images < 10,000'."""
    return [said(name, new[name], "<", old[name]) for name in WORDS if new[name] < old[name]]


@dataclass(frozen=True)
class Protocol:
    """A table's runs: trained `epochs` epochs (or more, `at_least`) on all training images, evaluated in full."""

    epochs: int = TrainConfig.epochs
    at_least: bool = False
    train_images: int = COUNTS["train"]
    test_images: int = COUNTS["test"]
    k: int = EvalConfig.k
    iwae_images: int = EvalConfig.iwae_images
    samples: int = EvalConfig.samples

    def misses(self, run: dict[str, int]) -> list[str]:
        """Where a run (its facts) is outside the protocol, each in a few words; [] when it follows it."""
        why = []
        for name in WORDS:
            value, wanted = run[name], getattr(self, name)
            if value != wanted and not (name == "epochs" and self.at_least and value > wanted):
                why.append(said(name, value, "<" if value < wanted else ">", wanted))
        if run["epochs"] < run["configured_epochs"]:
            why.append(f"stopped after {run['epochs']} of its {run['configured_epochs']} epochs")
        return why

    def __str__(self) -> str:
        return (
            f"{self.epochs} epochs{' or more' * self.at_least} on all {self.train_images:,} training images, "
            f"evaluated on all {self.test_images:,} test images with evaluate.py's defaults (k {self.k}, IWAE bound "
            f"on {self.iwae_images:,} test images, {self.samples:,} samples per sampler)"
        )


FULL = Protocol()  # every table but the CNN design screen
SCREEN = Protocol(epochs=10, at_least=True)  # the design screen reads each run's test reconstruction at epoch 10
