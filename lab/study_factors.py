"""The disentanglement study: what beta does to the representation on the shapes dataset (known factors), over three
seeds, beside the published numbers (docs/disentanglement.md). Its parts, their derived tables and its figures;
lab/study_tables.py puts them with the others.

- shapes: every setting (family, objective, beta, capacity) with MIG, the FactorVAE score, DCI, reconstruction, KL.
- shapes-betas-verdicts: beta-VAE H at each beta > 1 against beta 1, per family: does MIG (and the FactorVAE score)
  rise, and what does it cost in reconstruction.
- shapes-tc-vs-h, shapes-b-vs-h: beta-TCVAE and B against H at the same reconstruction (H's scores interpolated
  between the two betas whose reconstructions bracket theirs).
- shapes-cnn-vs-fc: the two families at each setting.
- shapes-per-factor: each setting's MIG and DCI informativeness per factor: which factors a code carries alone,
  which it carries mixed, and which not at all (informativeness at chance).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from data import SHAPES_TEST
from lab.figures import FAMILY_COLORS, mean_std
from lab.protocol import Protocol
from lab.study_rows import EXACT, FACTOR_SCORES, ONE_SEED, comparison_rows, unless_one_seed, verdict
from models import FAMILIES, ModelConfig
from objectives import BetaH, BetaTC, CapacityB, Objective
from shapes import FACTORS

EPOCHS = 20  # the CPU budget's choice: MIG still rises after it (results/shapes-epochs-*.md, docs/disentanglement.md)
BETAS = (1, 2, 4, 8, 16)  # beta-VAE H
TC_BETAS = (4, 8)  # beta-TCVAE
# beta-VAE B: C rises to its target over 15 of the 20 epochs; 20 nats (the first choice) is above the plain VAE's
# rate, so it pulls the KL up; 5 nats is below it, near beta 4's rate (docs/disentanglement.md)
CAPACITIES, CAPACITY_EPOCHS, GAMMA = (20.0, 5.0), 15, 100.0
SCORES = ["mig", "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness"]
PROTOCOL = Protocol(epochs=EPOCHS, train_images=math.prod(len(f.values) for f in FACTORS), test_images=SHAPES_TEST)
SWEEP = (
    f"python -m lab.sweep --model fc cnn --latent-dim 10 --seeds 0 1 2 --set dataset=shapes --epochs {EPOCHS} "
    "--no-progress"
)
COMMANDS = [
    f"{SWEEP} --study shapes-h --betas {' '.join(map(str, BETAS))}",
    f"{SWEEP} --study shapes-tc --betas {' '.join(map(str, TC_BETAS))} --set objective={BetaTC.name}",
    *(
        f"{SWEEP} --study shapes-b{'' if c == CAPACITIES[0] else f'{c:g}'} --betas 1 --set objective={CapacityB.name} "
        f"--set capacity={c:g} --set capacity_epochs={CAPACITY_EPOCHS} --set gamma={GAMMA:g}"
        for c in CAPACITIES
    ),
]
PART = {
    "title": f"disentanglement on the shapes dataset: MIG, FactorVAE score, DCI, reconstruction and KL (latent_dim "
    f"10, default architectures, {EPOCHS} epochs)",
    "commands": COMMANDS,
    "protocol": PROTOCOL,
    "where": {"dataset": "shapes", "latent_dim": 10, "likelihood": ModelConfig.likelihood},
    "architectures": ["512x256", "32x32 k4"],  # the families' defaults
    "group": ["model", "objective", "beta", "capacity"],
    "columns": [*SCORES, "recon", "kl", "mse", "active_units"],
}


def beta_gains(table: pd.DataFrame) -> pd.DataFrame:
    """beta-VAE H at each beta > 1 against beta 1, per family, on MIG, the FactorVAE score and reconstruction: both
    sides, the difference and the study's verdict."""
    h = table[table.objective == BetaH.name].drop(columns=["objective", "capacity"])
    steps = [
        comparison_rows(h, "beta", 1.0, float(b), ["mig", "factor_vae", "recon"], ("beta_1", "at_beta")).assign(beta=b)
        for b in BETAS[1:]
    ]
    if not steps or all(step.empty for step in steps):
        return pd.DataFrame()
    gains = pd.concat(steps).sort_values(["model", "beta"], kind="stable")
    gains["verdict"] = gains.verdict.str.replace("1.0 higher", "beta 1 higher").str.replace(
        r"^(\d+)\.0 higher$", r"beta \1 higher", regex=True
    )
    gains["verdict"] = unless_one_seed(gains, "beta_1", "at_beta")
    columns = ["model", "beta", "metric", "beta_1_mean", "beta_1_std", "at_beta_mean", "at_beta_std", "seeds"]
    return gains.assign(difference=gains.at_beta_mean - gains.beta_1_mean)[[*columns, "difference", "verdict"]]


def matched(table: pd.DataFrame, goal: type[Objective]) -> pd.DataFrame:
    """Each setting of objective `goal` (beta-TCVAE, B) beside H at the same test reconstruction: H's MIG and
    FactorVAE score interpolated linearly in reconstruction between the two H betas that bracket the setting's (their
    std: the larger of the two), with the study's verdict; "-" where no two H betas bracket it."""
    name = goal.name.lower()
    keys = ["model", *(k for k in ("beta", *goal.settings) if k in table.columns)]
    h = table[table.objective == BetaH.name].sort_values("recon_mean")
    rows = []
    for _, row in table[table.objective == goal.name].reset_index(drop=True).iterrows():
        family = h[h.model == row.model]
        below, above = family[family.recon_mean <= row.recon_mean], family[family.recon_mean >= row.recon_mean]
        out = {**{k: row[k] for k in keys}, "seeds": row.seeds, "recon_mean": row.recon_mean}
        for metric in ("mig", "factor_vae"):
            side = (row[f"{metric}_mean"], row[f"{metric}_std"])
            mine = {**out, "metric": metric, f"{name}_mean": side[0], f"{name}_std": side[1]}
            if below.empty or above.empty:
                rows.append({**mine, "verdict": "-"})
                continue
            lo, hi = below.iloc[-1], above.iloc[0]
            share = (
                0.0
                if hi.recon_mean == lo.recon_mean
                else (row.recon_mean - lo.recon_mean) / (hi.recon_mean - lo.recon_mean)
            )
            h_mean = lo[f"{metric}_mean"] + share * (hi[f"{metric}_mean"] - lo[f"{metric}_mean"])
            h_std = max(lo[f"{metric}_std"], hi[f"{metric}_std"])
            rows.append(
                {
                    **mine,
                    "h_same_recon_mean": h_mean,
                    "h_same_recon_std": h_std,
                    "h_betas": f"{lo.beta:g}-{hi.beta:g}",
                    "verdict": ONE_SEED
                    if pd.isna(side[1]) or pd.isna(h_std)
                    else verdict(side, (h_mean, h_std), "H higher", f"{goal.name} higher"),
                }
            )
    return pd.DataFrame(rows)


def family_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """FC vs CNN at each setting on the scores and reconstruction, with the study's verdict."""
    fc, cnn = FAMILIES
    rows = comparison_rows(table, "model", fc, cnn, ["mig", "factor_vae", "dci_disentanglement", "recon"])
    return rows.assign(verdict=unless_one_seed(rows, fc, cnn))


DERIVED = (  # (name, how, title)
    ("shapes-betas-verdicts", beta_gains, "beta-VAE H on the shapes dataset: each beta > 1 against beta 1, per family"),
    (
        "shapes-tc-vs-h",
        partial(matched, goal=BetaTC),
        "beta-TCVAE against beta-VAE H at the same reconstruction (shapes)",
    ),
    (
        "shapes-b-vs-h",
        partial(matched, goal=CapacityB),
        "beta-VAE B against beta-VAE H at the same reconstruction (shapes)",
    ),
    ("shapes-cnn-vs-fc", family_comparison, "FC vs CNN on the shapes dataset, each setting, with the study's verdict"),
)


PER_FACTOR = [f"{key} {factor.name}" for key in FACTOR_SCORES for factor in FACTORS]
PER_FACTOR_TITLE = "MIG and DCI informativeness of each factor on the shapes dataset, each setting"


def per_factor(table: pd.DataFrame) -> pd.DataFrame:
    """The settings' per-factor columns (grouped over seeds) as one row per setting and factor, with the
    informativeness of guessing (1 / the factor's number of values: its values are equally frequent)."""
    keys = [*PART["group"], "seeds"]
    rows = [
        table[keys].assign(
            factor=factor.name,
            **{f"{key}_{s}": table[f"{key} {factor.name}_{s}"] for key in FACTOR_SCORES for s in EXACT},
            chance=1 / len(factor.values),
        )
        for factor in FACTORS
    ]
    return pd.concat(rows).sort_index(kind="stable").reset_index(drop=True) if len(table) else pd.DataFrame()


def marker(row: dict[str, Any]) -> tuple[str, str]:
    """A row's objective as it is drawn: (marker, label)."""
    kind = row.get("objective")
    if kind == CapacityB.name:  # one marker per capacity: "D" for the first, "v" for the second
        shape = "Dv"[CAPACITIES.index(row["capacity"])] if row["capacity"] in CAPACITIES else "D"
        return shape, f"B (C = {row['capacity']:g})"
    return {BetaTC.name: ("s", "beta-TCVAE")}.get(kind, ("o", "beta-VAE H"))


def plot_scores(rows: list[dict[str, Any]]) -> Figure:
    """MIG against beta (mean ± std over seeds) per family, and reconstruction against MIG (the trade-off)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    by_beta, trade = fig.subplots(1, 2)
    for family, color in FAMILY_COLORS.items():
        mine = [r for r in rows if r.get("model") == family]
        for kind in dict.fromkeys(marker(r) for r in mine):
            points = sorted((r for r in mine if marker(r) == kind), key=lambda r: r["beta"])
            mig, recon = zip(*[(mean_std(r["mig"]), mean_std(r["recon"])) for r in points]) if points else ((), ())
            label = f"{family.upper()} {kind[1]}"
            line = "-" if kind[1] == "beta-VAE H" else ""
            by_beta.errorbar(
                [r["beta"] for r in points],
                [m for m, _ in mig],
                yerr=[s for _, s in mig],
                fmt=kind[0] + line,
                color=color,
                capsize=3,
                label=label,
                mfc="white" if line == "" else color,
            )
            trade.errorbar(
                [m for m, _ in mig],
                [m for m, _ in recon],
                xerr=[s for _, s in mig],
                yerr=[s for _, s in recon],
                fmt=kind[0] + line,
                color=color,
                capsize=3,
                mfc="white" if line == "" else color,
            )
    by_beta.set(
        xscale="log",
        xlabel="beta (B: its runs' beta is unused)",
        ylabel="MIG (higher: more disentangled)",
        title="MIG against beta",
    )
    by_beta.set_xticks(BETAS, [f"{b:g}" for b in BETAS])
    by_beta.minorticks_off()
    trade.set(xlabel="MIG", ylabel="test reconstruction, nats (lower: better)", title="the trade-off")
    fig.legend(*by_beta.get_legend_handles_labels(), loc="outside lower center", ncols=3)
    fig.suptitle(f"shapes dataset, latent_dim 10, {EPOCHS} epochs: mean ± std over seeds")
    return fig
