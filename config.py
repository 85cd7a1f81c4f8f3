"""The training and evaluation settings as frozen dataclasses (the model's, ModelConfig, are in models.py).

Each field carries its default and a one-line doc; cli.add_options turns a class into command-line options.
Invalid values raise ValueError on construction, so they are checked once, where they enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cli import check_range, setting
from data import DATASETS
from objectives import OBJECTIVES, implied_objective


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting and its default."""

    beta: float = setting(
        0.1,
        "weight of the KL term, >= 0 (TC: of the total correlation); the original's 'KL scaled by dataset size' is "
        "beta * batch_size / train images (objectives.dataset_scaled_beta)",
    )
    objective: str | None = setting(
        None,
        "H: recon + beta * KL (Higgins et al.); B: recon + gamma * |KL - C|, C rising to capacity (Burgess et al.); "
        "TC: beta-TCVAE, recon + KL + (beta - 1) * total correlation (Chen et al.) (default H; B when capacity is "
        "given)",
        choices=tuple(OBJECTIVES),
    )
    dataset: str = setting(
        "fashion-mnist", "the images: fashion-mnist, or shapes (made here, with known factors)", choices=tuple(DATASETS)
    )
    epochs: int = setting(20, "train to this epoch")
    batch_size: int = setting(128, "images per optimizer step")
    lr: float = setting(1e-3, "Adam learning rate")
    seed: int = setting(0, "seed of the weights, the shuffling and the reparameterization noise")
    train_limit: int | None = setting(None, "train on the first N training images only (default: all)")
    capacity: float | None = setting(None, "objective B: the KL in nats that C rises to (C_max)")
    capacity_epochs: int = setting(10, "objective B: epochs over which C rises linearly from 0 to capacity")
    gamma: float = setting(100.0, "objective B: weight of |KL - C|")

    def __post_init__(self) -> None:
        if self.objective is None:  # the one the settings imply
            object.__setattr__(self, "objective", implied_objective({"capacity": self.capacity}))
        for name, choices in (("objective", OBJECTIVES), ("dataset", DATASETS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        for name in ("epochs", "batch_size", "capacity_epochs"):
            check_range(name, getattr(self, name), 1, 10**9, integer=True)
        if self.train_limit is not None:
            check_range("train_limit", self.train_limit, 1, 10**9, integer=True)
        check_range("seed", self.seed, 0, 2**63, integer=True)
        check_range("lr", self.lr, 0, strict=True)
        for name in ("beta", "gamma"):
            check_range(name, getattr(self, name), 0)
        fields, chosen = TrainConfig.__dataclass_fields__, OBJECTIVES[self.objective]
        for other in OBJECTIVES.values():
            off_default = [name for name in other.settings if getattr(self, name) != fields[name].default]
            if other is not chosen and off_default:
                raise ValueError(
                    f"{', '.join(off_default)} only apply with objective {other.name}, not {chosen.name}: "
                    f"set objective {other.name} too"
                )
        chosen.check(self)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> TrainConfig:
        """The config of saved training settings (a checkpoint's train_config: its train_images is left out); those
        saved before the objective was named get the one they imply. TypeError for an unknown setting."""
        return cls(**{key: value for key, value in settings.items() if key != "train_images"})


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation settings (evaluate.py, the sweeps); recorded with every evaluation."""

    k: int = setting(100, "importance samples of the IWAE bound")
    iwae_images: int = setting(2000, "the IWAE bound on the first N test images (10000: all)")
    samples: int = setting(
        10000,
        "generated images per sampler (>= 10: one per class, and more than the k = 3 of the precision/recall balls)",
    )
    eval_limit: int | None = setting(None, "evaluate on the first N test images only (>= 10; default all)")
    batch_size: int = setting(500, "images per forward pass")
    seed: int = setting(0, "seed of the samples and the ELBO's noise")

    def __post_init__(self) -> None:
        for name, low in (("k", 1), ("iwae_images", 1), ("samples", 10), ("batch_size", 1)):
            check_range(name, getattr(self, name), low, 10**5 + 1, integer=True)
        if self.eval_limit is not None:
            check_range("eval_limit", self.eval_limit, 10, 10**5 + 1, integer=True)
        check_range("seed", self.seed, 0, 2**63, integer=True)
