"""The study's tables: for each, its title, the sweep commands that train its runs, which runs it takes (`where`:
a tuple means any of) and the protocol they follow (lab/protocol.py), how it groups them over seeds and which columns
it shows; and the A-vs-B comparisons."""

from __future__ import annotations

from typing import Any

from config import TrainConfig
from lab.protocol import FULL, SCREEN
from models import FAMILIES, ModelConfig
from objectives import dataset_scaled_beta

SWEEP, SHARED = "python -m lab.sweep", f"--epochs {TrainConfig.epochs} --no-progress"
HEADLINE = [
    "recon",
    "kl",
    "mse",
    "knn_accuracy",
    "fd_prior",
    "fd_aggregate",
    "precision_prior",
    "recall_prior",
    "precision_aggregate",
    "recall_aggregate",
]
SCALED_BETA = round(dataset_scaled_beta(1.0, TrainConfig.batch_size), 4)  # 128 / 60,000 = 0.0021: the KL scaled by N
BETA_STEPS = (4, 2, 1, 0.5, 0.1, 0.01, SCALED_BETA)  # the beta sweep, from the highest
DEFAULT = {
    "beta": TrainConfig.beta,
    "likelihood": ModelConfig.likelihood,
    "capacity": None,
    "latent_dim": ModelConfig.latent_dim,
    "default_architecture": True,
}
ANY_ARCHITECTURE = {k: v for k, v in DEFAULT.items() if k != "default_architecture"}  # a part lists its own
SEEDS = f"{SWEEP} --study seeds --model fc cnn --betas {TrainConfig.beta} --seeds 0 1 2 {SHARED}"
# the diversity measures of claim (b): each on the prior samples, and its sanity rows
DIVERSITY = ["coverage", "density", "recall", "class_entropy", "unsure", "coverage_recon", "recall_recon"]
DIVERSITY_SANITY = ("real", "one_class", "blurred", "noise")
GAMMAS, CAPACITY, H_BETAS = (1, 3, 10, 30, 100), 10.0, (0.1, 0.5, 1.0)  # H_BETAS: beta-VAE H near KL = CAPACITY
BEST_GAMMA = {"fc": 1, "cnn": 10}  # the lowest test reconstruction of each family's one-seed screen: 3 seeds there
FRONTIER = {"fc": ["8", "32x16", "128x64", "512x256"], "cnn": ["12x12 k4", "32x32 k4", "64x80 k4", "160x192 k4"]}
WIDTHS = {"fc": ("32x16", "128x64"), "cnn": ("32x32 k4", "64x80 k4")}  # about 50 k and 200 k parameters
LIKELIHOOD_SEEDS = (
    f"{SWEEP} --study likelihood-seeds --model fc cnn --likelihood gaussian continuous_bernoulli "
    f"sigma --betas 0.1 --seeds 0 1 2 {SHARED}"
)
DATASET_SCALED = f"{SWEEP} --study dataset-scaled --model fc cnn --betas {SCALED_BETA} --seeds 0 1 2 {SHARED}"
H_RATE_SEEDS = f"{SWEEP} --study h-rate-seeds --model fc cnn --betas 0.5 --seeds 1 2 {SHARED}"
BETAS_SEEDS = [
    f"{SWEEP} --study betas-seeds-{m} --model {m} --betas 0.01 1 2 4 --seeds 1 2 {SHARED}" for m in ("cnn", "fc")
]  # seeds 1 and 2 of the bernoulli betas not trained over seeds for other parts
LATENT_SEEDS = (
    f"{SWEEP} --study latent-dims-seeds --model fc cnn --betas 0.1 --latent-dim 3 8 --set "
    f"hidden={WIDTHS['fc'][0]} --seeds 1 2 {SHARED}"
)
LATENT_SEEDS_200K = [
    f"{SWEEP} --study latent-dims-200k-seeds-{m} --model {m} --betas 0.1 --latent-dim 3 8 --set "
    f"{FAMILIES[m].widths[0]}={WIDTHS[m][1].split()[0]} --seeds 1 2 {SHARED}"
    for m in WIDTHS
]  # about 200 k parameters, seeds 1 and 2 (seed 0: the latent-dims commands)
PARTS: dict[str, dict[str, Any]] = {
    "seeds": {
        "title": "headline configurations over seeds (default architectures, beta 0.1)",
        "commands": [SEEDS, LIKELIHOOD_SEEDS],
        "where": {k: v for k, v in DEFAULT.items() if k != "likelihood"},
        "group": ["model", "likelihood", "beta"],
        "columns": HEADLINE + ["parameters"],
    },
    "diversity": {
        "title": "claim (b), diversity: the prior samples' coverage, density, recall and class mix "
        "against the test images, and coverage/recall against the model's own reconstructions "
        "(bernoulli, beta 0.1, default architectures)",
        "commands": [SEEDS],
        "where": DEFAULT,
        "group": ["model", "likelihood", "beta"],
        "columns": [f"{m}_{s}" for s in ("prior", "aggregate") for m in DIVERSITY],
    },
    "latent-dims": {
        "title": "latent width vs quality: each family at about 50 k and 200 k parameters, latent_dim 2-16 "
        "(bernoulli, beta 0.1, 20 epochs)",
        "commands": [
            f"{SWEEP} --study latent-dims-{m} --model {m} --betas 0.1 --latent-dim 2 3 5 8 16 "
            f"--set {FAMILIES[m].widths[0]}="
            f"{','.join(w.split()[0] for w in WIDTHS[m])} {SHARED}"
            for m in WIDTHS
        ]
        + [LATENT_SEEDS, *LATENT_SEEDS_200K, SEEDS],
        "where": {k: v for k, v in DEFAULT.items() if k not in ("latent_dim", "default_architecture")},
        "architectures": [w for m in WIDTHS for w in WIDTHS[m]],
        "group": ["model", "architecture", "latent_dim"],
        "columns": ["parameters", "recon", "mse", "knn_accuracy", "fd_prior", "fd_aggregate", "kl"],
    },
    "capacity-gamma": {
        "title": f"beta-VAE B (capacity C = {CAPACITY:g} reached over 10 epochs) for gamma "
        f"{', '.join(map(str, GAMMAS))}, beside beta-VAE H at the betas that reach about the "
        f"same test KL",
        "commands": [
            f"{SWEEP} --study capacity-gamma --model fc cnn --betas 0.1 --set capacity={CAPACITY:g} --set gamma="
            f"{','.join(map(str, GAMMAS))} {SHARED}",
            f"{SWEEP} --study h-rate --model fc cnn --betas 0.5 1 {SHARED}",
            *[
                f"{SWEEP} --study capacity-seeds-{m} --model {m} --betas 0.1 --set capacity={CAPACITY:g} "
                f"--set gamma={g} --seeds 1 2 {SHARED}"
                for m, g in BEST_GAMMA.items()
            ],
            H_RATE_SEEDS,
            *BETAS_SEEDS,
            SEEDS,
        ],
        "where": {**DEFAULT, "capacity": (None, CAPACITY), "beta": H_BETAS},
        "group": ["model", "capacity", "gamma", "beta"],
        "columns": ["kl", "recon", "mse", "knn_accuracy", "fd_aggregate", "coverage_aggregate"],
    },
}
LIKELIHOOD_NAMES = ("bernoulli", "gaussian", "continuous_bernoulli", "sigma")
PARTS.update(
    {  # the earlier parts: their committed tables stay until records with as many runs replace them
        "betas": {
            "title": "beta sweep over seeds (bernoulli: 0-2; gaussian: 0, and 0-2 at beta 0.1), 20 epochs "
            "(0.0021 = 128 / 60,000: the original's KL scaled by dataset size)",
            "commands": [
                f"{SWEEP} --study betas --model fc cnn --likelihood bernoulli gaussian "
                f"--betas 0.0021 0.01 0.1 0.5 1 2 4 {SHARED}",
                *BETAS_SEEDS,
                SEEDS,
                DATASET_SCALED,
                H_RATE_SEEDS,
                LIKELIHOOD_SEEDS,
            ],
            "where": {"capacity": None, "likelihood": ("bernoulli", "gaussian"), "default_architecture": True},
            "group": ["model", "likelihood", "beta"],
            "columns": [
                "recon",
                "kl",
                "mse",
                "knn_accuracy",
                "active_units",
                "fd_prior",
                "fd_aggregate",
                "precision_prior",
                "recall_prior",
            ],
        },
        "likelihoods": {
            "title": "likelihoods compared on common scales (MSE in [0, 1], kNN, FD, precision/recall) and by "
            "normalised NLL where it exists (nats/image on [0, 1] pixels; bernoulli's is not a density)",
            "commands": [
                f"{SWEEP} --study likelihoods --model fc cnn --likelihood {' '.join(LIKELIHOOD_NAMES)}"
                f" --betas 0.1 1 {SHARED}",
                LIKELIHOOD_SEEDS,
                *BETAS_SEEDS,
                SEEDS,
            ],
            "where": {"capacity": None, "beta": (0.1, 1.0), "default_architecture": True},
            "group": ["model", "likelihood", "beta"],
            "columns": [
                "mse",
                "nll",
                "knn_accuracy",
                "fd_prior",
                "fd_aggregate",
                "precision_prior",
                "recall_prior",
                "precision_aggregate",
                "recall_aggregate",
                "recon_accuracy",
            ],
        },
        "dataset-scaled": {
            "title": "the original's KL scaled by dataset size (beta 128 / 60,000) against beta 0.1 "
            "(bernoulli, default architectures, over seeds)",
            "commands": [SEEDS, DATASET_SCALED],
            "where": {**DEFAULT, "beta": (SCALED_BETA, 0.1)},
            "group": ["model", "likelihood", "beta"],
            "columns": HEADLINE,
        },
        "frontier": {
            "title": "parameters vs reconstruction: each family at about 12 k, 50 k, 200 k and 1 M parameters "
            "(bernoulli, beta 0.1, 20 epochs)",
            "commands": [
                f"{SWEEP} --study frontier-fc --model fc --betas 0.1 --set hidden=8,32x16,128x64 {SHARED}",
                f"{SWEEP} --study frontier-cnn --model cnn --betas 0.1 --set channels=12x12,64x80 {SHARED}",
                f"{SWEEP} --study frontier-cnn-1m --model cnn --betas 0.1 --set channels=160x192 --seeds 0 1 "
                f"--workers 1 {SHARED}",
                LATENT_SEEDS,
                *LATENT_SEEDS_200K,
                SEEDS,
            ],
            "where": ANY_ARCHITECTURE,
            "architectures": FRONTIER["fc"] + FRONTIER["cnn"],
            "group": ["model", "architecture"],
            "columns": ["parameters", "recon", "mse"],
        },
        "capacity": {
            "title": "capacity-controlled training (beta-VAE B, gamma 100, C reached over 10 epochs): KL reached "
            "vs target C",
            "commands": [
                f"{SWEEP} --study capacity --model {m} --betas 0.1 --set capacity={c} {SHARED}"
                for m, c in (("fc", "2,5,10,20"), ("cnn", "5,10"))
            ],
            "where": {
                **{k: v for k, v in DEFAULT.items() if k != "capacity"},
                "capacity": (2.0, 5.0, 10.0, 20.0),
                "gamma": TrainConfig.gamma,
            },
            "group": ["model", "likelihood", "capacity"],
            "columns": ["kl", "recon", "mse", "fd_aggregate", "precision_aggregate", "recall_aggregate"],
        },
    }
)
# the CNN design screen (10 epochs, within 5 % of the default FC's parameters) and its two best over seeds
DESIGN = f"{SWEEP} --study cnn-design-{{}} --model cnn --betas 0.1 --epochs 10 --no-progress --set {{}}"
DESIGNS = {
    "channels": "channels=32x32,16x48,48x24,24x24x24",
    "batch": "norm=batch",
    "elu": "activation=elu",
    "k3": "channels=40x40 --set kernel_size=3",
    "k5": "channels=24x28 --set kernel_size=5",
    "decoder": "channels=24x24 --set decoder_channels=40x40",
    "decoder3": "channels=20x20x20 --set decoder_channels=32x32x32",
}
BUDGET_SHARE = 0.05  # of the default FC's parameters
DESIGN_PARTS: dict[str, dict[str, Any]] = {
    "cnn-designs": {
        "title": "CNN designs within 5 % of the default FC's parameters (at most {budget:,}), bernoulli, "
        "beta 0.1, seed 0: test reconstruction (nats/image) after 10 epochs, best first",
        "commands": [DESIGN.format(name, grid) for name, grid in DESIGNS.items()]
        + ["and any other run within the budget at 10 epochs or more (e.g. the frontier's 12x12)"],
        "where": {**ANY_ARCHITECTURE, "model": "cnn", "seed": 0},
        "protocol": SCREEN,
        "group": ["architecture"],
        "columns": ["parameters", "recon_epoch10"],
    },
    "cnn-best": {
        "title": "the two best CNN designs at 20 epochs over seeds, beside the default FC and CNN "
        "(bernoulli, beta 0.1), with the study's verdicts on reconstruction and MSE against both "
        "defaults",
        "commands": [
            f"{SWEEP} --study cnn-best-{name} --model cnn --betas 0.1 --seeds 0 1 2 {SHARED} --set {DESIGNS[name]}"
            for name in ("decoder3", "k5")
        ]
        + [SEEDS],
        "where": ANY_ARCHITECTURE,
        "protocol": FULL,
        "group": ["model", "architecture"],
        "columns": [
            "recon",
            "mse",
            "kl",
            "knn_accuracy",
            "fd_prior",
            "fd_aggregate",
            "precision_prior",
            "recall_prior",
            "parameters",
        ],
    },
}
for part in PARTS.values():  # every table but the design screen: 20 epochs, all images, the full evaluation
    part["protocol"] = FULL
DEFAULT_PART = {"where": DEFAULT, "protocol": FULL, "commands": [SEEDS]}  # the default runs over seeds
# A vs B on every metric with the study's verdict: (name, part whose rows it pairs, field, A, B, metrics)
COMPARISONS = [
    ("fc-vs-cnn", "seeds", "model", "fc", "cnn", HEADLINE),
    ("bernoulli-vs-gaussian", "seeds", "likelihood", "bernoulli", "gaussian", HEADLINE[2:]),
    ("dataset-scaled-verdicts", "dataset-scaled", "beta", SCALED_BETA, 0.1, HEADLINE),
    ("diversity-verdicts", "diversity", "model", "fc", "cnn", PARTS["diversity"]["columns"]),
]
