"""The study's runs as rows and its rules: a record's row, the runs each table takes (its settings, then its
protocol: lab/protocol.py), mean and std over seeds, the difference rule, and A-vs-B comparisons."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pandas as pd

from evaluate import summary
from lab.protocol import facts
from lab.records import CLASSIFIER_SHA256, RecordError
from models import ModelConfig
from objectives import OBJECTIVES, implied_objective

EXACT = {
    "mean": lambda v: statistics.fmean(v.dropna()) if v.count() else np.nan,  # pandas' own mean and std
    "std": lambda v: statistics.stdev(v.dropna()) if v.count() > 1 else np.nan,
}  # differ in the last digit
FACTOR_SCORES = {"mig": "mig_per_factor", "informativeness": "dci_informativeness_per_factor"}  # column: record field
ONE_SEED = "not called (one seed)"  # the verdict where a side has no std


def architecture(config: dict[str, Any]) -> str:
    """A run's architecture in a few words: "512x256", "32x32 k4", "24x24 k4 decoder 40x40 batch elu"."""
    c = ModelConfig.from_dict({k: v for k, v in config.items() if k in ModelConfig.__dataclass_fields__})
    widths = c.family.widths  # the first: the layers' widths
    words = ["x".join(map(str, getattr(c, widths[0])))]
    words += [f"k{c.kernel_size}"] * ("kernel_size" in widths)
    words += ["decoder " + "x".join(map(str, c.decoder_channels))] if c.decoder_channels else []
    off_default = ((c.norm, ModelConfig.norm), (c.activation, ModelConfig.activation))
    return " ".join(words + [v for v, d in off_default if v != d])


def factor_columns(scores: dict[str, Any] | None) -> dict[str, float]:
    """A run's per-factor scores (FACTOR_SCORES) as columns "mig shape", "informativeness shape", ..."""
    if scores is None:  # a dataset without known factors
        return {}
    names = scores["factor_names"]
    return {f"{key} {name}": v for key, field in FACTOR_SCORES.items() for name, v in zip(names, scores[field])}


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record's settings and summary row, its architecture and whether that is the family's default, and its
    size (lab.protocol.facts: epochs, training images, the evaluation's)."""
    config, epochs, evaluation = record["config"], record["epochs"], record["eval"]
    name = architecture(config)
    default = name == architecture({"model": config["model"]}) and config.get("latent_dim") == ModelConfig.latent_dim
    used = OBJECTIVES[config.get("objective") or implied_objective(config)].settings
    unused = {name: None for each in OBJECTIVES.values() for name in each.settings if name not in used}
    return {
        **config,
        **unused,
        **summary(evaluation),
        "architecture": name,
        "default_architecture": default,
        **{f"class {c}": v for c, v in evaluation["mse_per_class"].items()},
        **factor_columns(evaluation.get("disentanglement")),
        "run": record["name"],
        "classifier": evaluation.get("classifier_sha256", CLASSIFIER_SHA256),
        "recon_epoch10": epochs[9]["test"]["recon"] if len(epochs) >= 10 else None,
        "facts": facts(record),
    }


def selected(runs: pd.DataFrame, part: dict[str, Any]) -> pd.DataFrame:
    """The runs a part uses: its `where` settings (a tuple: any of) and, if given, its architectures."""
    where = {"dataset": (None, "fashion-mnist"), **part["where"]}  # Fashion-MNIST's unless the part names another
    where["architecture"] = tuple(part.get("architectures", runs.architecture))
    settings = runs.reindex(columns=[*where])  # a setting no run has: None
    keep = [
        settings[k].isin(v) | settings[k].isna() & (None in v)
        for k, v in ((k, v if isinstance(v, tuple) else (v,)) for k, v in where.items())
    ]
    return runs[np.logical_and.reduce(keep)]


class Picker:
    """Each table's runs: those its part selects that follow the part's protocol; the others are remembered, per
    run, with the tables they are left out of and why."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.runs, self.left_out = runs, {}

    def __call__(self, part: dict[str, Any], *tables: str) -> pd.DataFrame:
        chosen = selected(self.runs, part)
        misses = [", ".join(part["protocol"].misses(run)) for run in chosen.facts]
        for run, why in zip(chosen.run, misses):
            if why:
                self.left_out.setdefault(run, {}).setdefault(why, []).extend(f"study-{t}" for t in tables)
        return chosen[np.array([not why for why in misses], dtype=bool)]


def left_out_lines(left_out: dict[str, dict[str, list[str]]], where: dict[str, str]) -> list[str]:
    """One line per run that tables left out (Picker.left_out): where it is, which tables, and why."""
    return [
        f"{where[run]}: left out of " + "; ".join(f"{', '.join(tables)} ({why})" for why, tables in out.items())
        for run, out in sorted(left_out.items())
    ]


def grouped(runs: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per setting of `keys`: seeds, and each column's mean and std over them (statistics' exact ones); a
    RecordError if the runs were evaluated with different classifier weights."""
    if runs.classifier.nunique() > 1:
        raise RecordError(
            "one table takes runs evaluated with different classifier weights: "
            + "; ".join(
                f"{sha[:12]} ({len(group)}: {', '.join(group.run[:3])}{', ...' * (len(group) > 3)})"
                for sha, group in runs.groupby("classifier")
            )
        )
    stats = {f"{c}_{s}": (c, f) for c in columns for s, f in EXACT.items()}
    return (
        runs.reindex(columns=keys + columns)
        .groupby(keys, dropna=False)
        .agg(seeds=(keys[0], "size"), **stats)
        .reset_index()
    )


def unless_one_seed(rows: pd.DataFrame, *sides: str) -> pd.Series:
    """Comparison rows' verdicts, ONE_SEED where a side (its column prefix) has no std."""
    missing = np.logical_or.reduce([rows[f"{side}_std"].isna() for side in sides])
    return rows.verdict.mask(missing, ONE_SEED)


def verdict(a: tuple, b: tuple, a_lower: str, b_lower: str) -> Any:
    """The study's rule on (mean, std) of numbers or columns: a call only when both have a std (>= 2 seeds) and the
    means differ by more than twice the larger."""
    called = np.abs(a[0] - b[0]) > 2 * np.maximum(a[1], b[1])
    return np.where(called, np.where(a[0] < b[0], a_lower, b_lower), "no difference called").tolist()


def stat(table: pd.DataFrame, name: str, suffix: str = "") -> tuple[pd.Series, pd.Series]:
    return table[f"{name}_mean{suffix}"], table[f"{name}_std{suffix}"]


def seeds(table: pd.DataFrame, a: str, b: str) -> pd.Series:  # "3/2": the seeds of A and of B
    return table[f"seeds{a}"].astype(str) + "/" + table[f"seeds{b}"].astype(str)


def comparison_rows(
    table: pd.DataFrame, field: str, a: Any, b: Any, columns: list[str], sides: tuple[str, str] | None = None
) -> pd.DataFrame:
    """A vs B (rows that differ only in `field`) on every column, with the study's verdict; each side's columns
    named after its value (or `sides`)."""
    same = [k for k in table.columns[: list(table.columns).index("seeds")] if k != field]
    pairs = table[table[field] == a].merge(table[table[field] == b], on=same, suffixes=("_a", "_b"))
    rows = [
        pairs[same].assign(
            metric=c,
            **{f"{v}_{s}": pairs[f"{c}_{s}_{x}"] for v, x in zip(sides or (a, b), "ab") for s in ("mean", "std")},
            seeds=seeds(pairs, "_a", "_b"),
            verdict=verdict(stat(pairs, c, "_a"), stat(pairs, c, "_b"), f"{b} higher", f"{a} higher"),
        )
        for c in columns
    ]
    return pd.concat(rows).sort_index(kind="stable")  # each pair's metrics together
