"""The disentanglement study's derived tables (lab/study_factors.py) on a grouped table whose answers are known."""

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest

from lab import study_factors
from lab.study_rows import grouped, run_row
from objectives import BetaTC, CapacityB
from shapes import FACTORS

RUNS = Path(__file__).resolve().parents[2] / "results" / "runs"


def row(model, objective, beta, mig, recon, seeds=3, std=0.01):
    """A grouped row: each metric's mean and std over `seeds` (no std with one seed)."""
    spread = std if seeds > 1 else math.nan
    out = {"model": model, "objective": objective, "beta": float(beta), "capacity": None, "seeds": seeds}
    for name, value in (("mig", mig), ("factor_vae", 0.6), ("dci_disentanglement", mig), ("recon", recon)):
        out.update({f"{name}_mean": value, f"{name}_std": spread})
    return out


@pytest.fixture
def table():
    rows = [row("fc", "H", b, mig, recon) for b, mig, recon in ((1, 0.1, 20), (2, 0.12, 30), (4, 0.3, 40))]
    rows += [row("cnn", "H", b, mig, recon, seeds=1) for b, mig, recon in ((1, 0.05, 18), (4, 0.2, 35))]
    rows += [row("fc", "TC", 4, 0.5, 35), row("cnn", "TC", 4, 0.3, 30, seeds=1)]
    return pd.DataFrame(rows)


def test_beta_gains_set_each_beta_against_beta_1_with_the_studys_rule(table):
    gains = study_factors.beta_gains(table).set_index(["model", "beta", "metric"])
    assert gains.loc[("fc", 4, "mig"), "verdict"] == "beta 4 higher"  # 0.3 vs 0.1, stds 0.01
    assert gains.loc[("fc", 4, "mig"), "difference"] == pytest.approx(0.2)
    assert gains.loc[("fc", 2, "mig"), "verdict"] == "no difference called"  # 0.12 vs 0.10: within 2 x 0.01
    assert gains.loc[("fc", 4, "recon"), "verdict"] == "beta 4 higher"
    assert gains.loc[("cnn", 4, "mig"), "verdict"] == "not called (one seed)"


def test_tc_is_set_beside_h_interpolated_at_its_reconstruction(table):
    matched = study_factors.matched(table, BetaTC).set_index(["model", "metric"])
    fc = matched.loc[("fc", "mig")]
    assert fc.h_betas == "2-4" and fc.h_same_recon_mean == pytest.approx(
        0.12 + 0.5 * (0.3 - 0.12)
    )  # recon 35: half way
    assert fc.verdict == "TC higher"
    assert matched.loc[("cnn", "mig")].verdict == "not called (one seed)"


def test_a_tc_run_outside_the_h_reconstructions_gets_no_verdict(table):
    table.loc[table.objective == "TC", "recon_mean"] = 100.0  # worse than every H beta: nothing brackets it
    assert set(study_factors.matched(table, BetaTC).verdict) == {"-"}


def test_the_family_comparison_pairs_each_setting(table):
    rows = study_factors.family_comparison(table)
    assert set(rows.metric) == {"mig", "factor_vae", "dci_disentanglement", "recon"}
    assert set(rows.verdict) == {"not called (one seed)"}  # the CNN side has one seed
    assert len(rows) == 4 * 3  # beta 1, beta 4 and TC 4 are in both families


def test_the_per_factor_table_is_each_factors_mean_over_the_records_of_a_setting():
    records = [json.loads(path.read_text()) for path in sorted(RUNS.glob("fc-bernoulli-z10-beta8*-datasetshapes.json"))]
    assert len(records) == 3  # seeds 0, 1, 2 of beta-VAE H, beta 8
    runs = pd.DataFrame([run_row(record) for record in records])
    rows = study_factors.per_factor(grouped(runs, study_factors.PART["group"], study_factors.PER_FACTOR))
    assert list(rows.factor) == [factor.name for factor in FACTORS] and set(rows.seeds) == {3}
    for i, factor in enumerate(FACTORS):
        scores = [record["eval"]["disentanglement"] for record in records]
        row = rows.set_index("factor").loc[factor.name]
        assert row.mig_mean == pytest.approx(statistics.mean(s["mig_per_factor"][i] for s in scores))
        assert row.informativeness_std == pytest.approx(
            statistics.stdev(s["dci_informativeness_per_factor"][i] for s in scores)
        )
        assert row.chance == 1 / len(factor.values)


def test_b_is_set_beside_h_at_its_reconstruction_per_capacity(table):
    b = pd.DataFrame(
        [{**row("fc", "B", 1, mig, recon), "capacity": c} for c, mig, recon in ((20, 0.01, 25), (5, 0.5, 35))]
    )
    matched = study_factors.matched(pd.concat([table, b]), CapacityB).set_index(["capacity", "metric"])
    assert matched.loc[(5, "mig")].b_mean == 0.5 and matched.loc[(5, "mig")].h_betas == "2-4"
    assert matched.loc[(5, "mig")].verdict == "B higher"  # 0.5 vs H's 0.21 at recon 35
    assert matched.loc[(20, "mig")].h_same_recon_mean == pytest.approx(0.1 + 0.5 * (0.12 - 0.1))  # recon 25: 1-2
    assert matched.loc[(20, "mig")].verdict == "H higher"
