"""Every table of the study from the runs' rows (lab/study_rows.py): each part of lab/parts.py grouped over seeds,
its A-vs-B comparisons, and the tables computed from them (beta steps, the blur test, CNN minus FC per latent width,
B against H at the same rate, per class, the CNN design screen and its best designs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fashion_mnist import CLASS_NAMES
from lab import study_factors
from lab.parts import (
    BETA_STEPS,
    BUDGET_SHARE,
    COMPARISONS,
    DEFAULT_PART,
    DESIGN_PARTS,
    DIVERSITY,
    DIVERSITY_SANITY,
    PARTS,
    WIDTHS,
)
from lab.study_rows import Picker, architecture, comparison_rows, grouped, seeds, stat, unless_one_seed, verdict
from models import FAMILIES, FCVAE, ModelConfig


def beta_steps(table: pd.DataFrame) -> pd.DataFrame:
    """The beta sweep (bernoulli), each step to the next lower beta on recon, MSE, kNN accuracy and KL: both sides,
    the difference (to minus from) and the study's verdict, "not called (one seed)" where a side has no std."""
    bernoulli = table[table.likelihood == ModelConfig.likelihood]  # the original's likelihood
    steps = pd.concat(
        [
            comparison_rows(bernoulli, "beta", a, b, ["recon", "mse", "knn_accuracy", "kl"], ("from", "to")).assign(
                step=f"{a:g} → {b:g}"
            )
            for a, b in zip(BETA_STEPS, BETA_STEPS[1:])
        ]
    )
    steps = steps.sort_values("model", kind="stable")  # each family's steps together, from the highest beta
    return steps.assign(to_minus_from=steps.to_mean - steps.from_mean, verdict=unless_one_seed(steps, "from", "to"))[
        [
            "model",
            "likelihood",
            "step",
            "metric",
            "from_mean",
            "from_std",
            "to_mean",
            "to_std",
            "to_minus_from",
            "seeds",
            "verdict",
        ]
    ]


def sanity_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per diversity measure, its value for the sanity sets (the same for every run; the model's own for the
    measures against reconstructions, averaged) and whether it passes the blur test: blurred test images (or, against
    reconstructions, reconstructions of training images) above one-class images."""
    means = grouped(runs.assign(all=0), ["all"], [f"{m}_{n}" for m in DIVERSITY for n in DIVERSITY_SANITY]).iloc[0]
    table = pd.DataFrame(
        {
            "measure": DIVERSITY,
            **{
                f"{n}_{s}": [means[f"{m}_{n}_{s}"] for m in DIVERSITY]
                for n in DIVERSITY_SANITY
                for s in ("mean", "std")
            },
        }
    )
    diverse = table.real_mean.where(table.measure.str.endswith("_recon"), table.blurred_mean)
    passes = (diverse > table.one_class_mean) != (table.measure == "unsure")  # unsure: lower is more diverse
    return table.assign(**{"blur test": np.where(table.measure == "unsure", "-", np.where(passes, "passes", "fails"))})


def family_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Latent width: per size (about 50 k, about 200 k) and latent_dim, CNN minus FC on recon and MSE, with verdicts."""
    sizes = pd.DataFrame({"size": ["about 50 k", "about 200 k"], "fc": WIDTHS["fc"], "cnn": WIDTHS["cnn"]})
    pairs = sizes.merge(table.add_suffix("_fc"), left_on="fc", right_on="architecture_fc").merge(
        table.add_suffix("_cnn"), left_on=["cnn", "latent_dim_fc"], right_on=["architecture_cnn", "latent_dim_cnn"]
    )
    return (
        pairs[["size", "latent_dim_fc", "fc", "cnn"]]
        .rename(columns={"latent_dim_fc": "latent_dim"})
        .assign(
            seeds=seeds(pairs, "_fc", "_cnn"),
            **{f"{m}_cnn_minus_fc": pairs[f"{m}_mean_cnn"] - pairs[f"{m}_mean_fc"] for m in ("recon", "mse")},
            **{
                f"{m}_verdict": verdict(stat(pairs, m, "_cnn"), stat(pairs, m, "_fc"), "CNN lower", "FC lower")
                for m in ("recon", "mse")
            },
        )
    )


def rate_matched(table: pd.DataFrame) -> pd.DataFrame:
    """Capacity: each B run (per gamma) beside beta-VAE H at the same test KL, H's recon interpolated linearly in KL
    between the two H runs (betas) whose KL brackets B's (its std: the larger of theirs), with the study's verdict;
    "-" where no H pair brackets it."""
    b = table[table.capacity.notna()].reset_index(drop=True)
    h = table[table.capacity.isna()].sort_values("kl_mean")[["model", "kl_mean", "recon_mean", "recon_std"]]
    lo, hi = (
        pd.merge_asof(
            b[["model", "kl_mean"]].reset_index().sort_values("kl_mean"),
            h.assign(h_kl=h.kl_mean),
            on="kl_mean",
            by="model",
            direction=way,
        )
        .set_index("index")
        .sort_index()
        for way in ("backward", "forward")
    )
    recon = lo.recon_mean + (hi.recon_mean - lo.recon_mean) * (b.kl_mean - lo.h_kl) / (hi.h_kl - lo.h_kl)
    recon = recon.where(lo.h_kl != hi.h_kl, lo.recon_mean)  # B's KL on an H run's
    matched = b[["model", "gamma", "seeds", "kl_mean", "kl_std", "recon_mean", "recon_std"]].assign(
        h_recon_same_kl_mean=recon,
        h_recon_same_kl_std=np.maximum(lo.recon_std, hi.recon_std).where(recon.notna()),
        b_minus_h_mean=b.recon_mean - recon,
        b_minus_h_std=np.nan,
    )
    return matched.assign(
        verdict=np.where(
            recon.isna(), "-", verdict(stat(matched, "recon"), stat(matched, "h_recon_same_kl"), "B lower", "H lower")
        )
    )


def per_class_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-class reconstruction MSE of FC vs CNN (over seeds), with the study's verdict."""
    stats = (
        grouped(runs, ["model"], [f"class {c}" for c in CLASS_NAMES])
        .set_index("model")
        .reindex(list(FAMILIES))
        .fillna({"seeds": 0})
    )
    table = pd.DataFrame(
        {
            "class": CLASS_NAMES,
            **{
                f"{m}_mse_{s}": [stats.at[m, f"class {c}_{s}"] for c in CLASS_NAMES]
                for m in FAMILIES
                for s in ("mean", "std")
            },
        }
    )
    return table.assign(
        seeds=f"{stats.seeds.fc:.0f}/{stats.seeds.cnn:.0f}",
        verdict=verdict(stat(table, "cnn_mse"), stat(table, "fc_mse"), "CNN lower", "FC lower"),
    )


def design_tables(runs: pd.DataFrame, pick: Picker | None = None) -> dict[str, Any]:
    """The CNN design screen (seed 0, within the budget, best first) and its two best designs over seeds beside the
    two defaults, smallest first, each with the study's verdicts on recon and MSE against both defaults; and the
    budget (a share of the default FC's parameters)."""
    screen, finals, pick = DESIGN_PARTS["cnn-designs"], DESIGN_PARTS["cnn-best"], pick or Picker(runs)
    fc = runs.parameters[(runs.model == FCVAE.family) & runs.default_architecture]
    budget = int(BUDGET_SHARE * fc.iloc[0]) if len(fc) else 0
    screened = pick(screen, "cnn-designs")
    screened = screened[(screened.parameters <= budget) & screened.recon_epoch10.notna()]
    designs = grouped(screened, screen["group"], screen["columns"]).sort_values("recon_epoch10_mean", kind="stable")
    names = {model: architecture({"model": model}) for model in FAMILIES}
    best = grouped(
        pick({**finals, "architectures": [*designs.architecture[:2], *names.values()]}, "cnn-best"),
        finals["group"],
        finals["columns"],
    ).sort_values(["model", "parameters_mean"], kind="stable")
    for model, name in names.items():
        default = best[best.architecture == name]
        for column in ("recon", "mse"):
            vs = (
                verdict(stat(best, column), [v.iloc[0] for v in stat(default, column)], "lower", "higher")
                if len(default)
                else "-"
            )
            best[f"{column}_vs_default_{model}"] = np.where(best.architecture == name, "-", vs)
    return {"cnn-designs": designs, "cnn-best": best, "budget": budget}


DERIVED = (  # tables computed from a part's table: (name, how, part, title)
    (
        "latent-dims-verdicts",
        family_gaps,
        "latent-dims",
        "CNN minus FC at equal parameters, per latent_dim (negative: the CNN reconstructs better)",
    ),
    (
        "capacity-vs-h",
        rate_matched,
        "capacity-gamma",
        "beta-VAE B against H at the same test KL (H's recon interpolated between the bracketing betas)",
    ),
    (
        "betas-verdicts",
        beta_steps,
        "betas",
        "each step down the beta sweep (bernoulli) on recon, MSE, kNN accuracy and KL: the higher beta (from), the "
        "next lower (to), their difference and the study's verdict (not called where a side has one seed)",
    ),
)
OF_DEFAULTS = (  # tables of the default runs (bernoulli, beta 0.1, default architectures): (name, how, title)
    (
        "diversity-sanity",
        sanity_rows,
        "the diversity measures on the sanity sets, and whether each passes the blur test (blurred test images "
        "above one-class images)",
    ),
    ("per-class", per_class_rows, "per-class reconstruction MSE in [0, 1] pixels, FC vs CNN (bernoulli, beta 0.1)"),
)


def study_tables(runs: pd.DataFrame) -> tuple[dict[str, tuple[pd.DataFrame, str, list[str], Any]], dict]:
    """Every table of the study from the runs: name -> (table, title, the sweep commands of its runs, its protocol);
    and the runs left out of tables by their protocol (Picker.left_out)."""
    pick, tables = Picker(runs), {}
    for name, part in PARTS.items():
        made_from = [c[0] for c in COMPARISONS if c[1] == name] + [d[0] for d in DERIVED if d[2] == name]
        table = grouped(pick(part, name, *made_from), part["group"], part["columns"])
        tables[name] = (table, part["title"], part["commands"], part["protocol"])
    for name, source, field, a, b, columns in COMPARISONS:
        title = f"{a} vs {b}: {PARTS[source]['title']}, each metric with the study's verdict"
        tables[name] = (comparison_rows(tables[source][0], field, a, b, columns), title, *tables[source][2:])
    for name, make, source, title in DERIVED:
        tables[name] = (make(tables[source][0]), title, *tables[source][2:])
    designs = design_tables(runs, pick)
    for name, part in DESIGN_PARTS.items():
        title = part["title"].format(budget=designs["budget"])
        tables[name] = (designs[name], title, part["commands"], part["protocol"])
    shapes = study_factors.PART
    made_from = [name for name, _, _ in study_factors.DERIVED] + ["shapes-per-factor"]
    picked = pick(shapes, "shapes", *made_from)
    table = grouped(picked, shapes["group"], shapes["columns"])
    tables["shapes"] = (table, shapes["title"], shapes["commands"], shapes["protocol"])
    factors = study_factors.per_factor(grouped(picked, shapes["group"], study_factors.PER_FACTOR))
    tables["shapes-per-factor"] = (factors, study_factors.PER_FACTOR_TITLE, shapes["commands"], shapes["protocol"])
    for name, make, title in study_factors.DERIVED:
        tables[name] = (make(table) if len(table) else pd.DataFrame(), title, shapes["commands"], shapes["protocol"])
    default = pick(DEFAULT_PART, *(name for name, _, _ in OF_DEFAULTS))
    for name, make, title in OF_DEFAULTS:
        table = make(default) if len(default) else pd.DataFrame()
        tables[name] = (table, title, DEFAULT_PART["commands"], DEFAULT_PART["protocol"])
    return tables, pick.left_out
