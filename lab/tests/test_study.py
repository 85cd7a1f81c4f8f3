"""lab.study: grouping over seeds, the difference rule, which records count, the new parts (diversity with its blur
test, latent width, capacity against H at the same rate), and that no committed table is replaced by less."""

import json
import math
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lab import records, search, study, study_rows, study_tables, sweep, tables
from lab.protocol import FULL, WORDS

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "results" / "runs"
TEMPLATE = json.loads((COMMITTED / "fc-bernoulli-z3-beta2.json").read_text())  # a committed record


def size(epochs=FULL.epochs):
    """lab.protocol.facts of a run of `epochs` epochs, trained and evaluated in full."""
    return {**{name: getattr(FULL, name) for name in WORDS}, "epochs": epochs, "configured_epochs": epochs}


def run(model="fc", seed=0, mse=0.02, **config):
    return {
        "model": model,
        "likelihood": "bernoulli",
        "beta": 0.1,
        "seed": seed,
        "capacity": None,
        "mse": mse,
        "architecture": "512x256" if model == "fc" else "32x32 k4",
        "latent_dim": 3,
        "default_architecture": True,
        "classifier": "weights",
        "run": f"{model}-{seed}",
        "facts": size(config.get("epochs", FULL.epochs)),
        **config,
    }


def runs(*rows):
    return pd.DataFrame(rows)


def test_grouped_gives_mean_and_sample_std_over_seeds():
    table = study_rows.grouped(
        runs(run(seed=0, mse=1.0), run(seed=1, mse=2.0), run(seed=2, mse=3.0), run("cnn", mse=5.0)), ["model"], ["mse"]
    ).set_index("model")
    assert table.seeds.fc == 3 and (table.mse_mean.fc, table.mse_std.fc) == (2.0, 1.0)
    assert table.mse_mean.cnn == 5.0 and pd.isna(table.mse_std.cnn)
    assert list(table.index) == ["cnn", "fc"] and list(table.columns) == ["seeds", "mse_mean", "mse_std"]


def test_one_table_takes_runs_of_one_classifier_only_and_a_record_without_its_digest_is_the_committed_one():
    mixed = runs(run(seed=0), run(seed=1, classifier="retrained"))
    with pytest.raises(records.RecordError, match=r"different classifier weights.*retrained \(1: fc-1\)"):
        study_rows.grouped(mixed, ["model"], ["mse"])
    [record] = records.load_records(ROOT / "results" / "runs")[0][:1]
    evaluation = {k: v for k, v in record["eval"].items() if k != "classifier_sha256"}
    assert study_rows.run_row({**record, "eval": evaluation})["classifier"] == records.CLASSIFIER_SHA256


def test_a_difference_is_called_only_beyond_twice_the_larger_std_with_two_seeds_each():
    call = lambda a, b: study_rows.verdict(a, b, "a lower", "b lower")  # noqa: E731
    assert call((1.0, 0.1), (1.3, 0.1)) == "a lower" and call((1.3, 0.1), (1.0, 0.1)) == "b lower"
    assert call((1.0, 0.1), (1.15, 0.1)) == "no difference called"
    assert call((1.0, 0.01), (1.3, 0.2)) == "no difference called"  # the larger std decides
    assert call((1.0, float("nan")), (5.0, 0.1)) == "no difference called"  # one seed: no std, no call


def test_comparison_rows_pair_settings_that_differ_in_one_field():
    table = study_rows.grouped(
        runs(
            *[run(seed=s, mse=1.0 + 0.01 * s) for s in range(3)],
            *[run("cnn", seed=s, mse=2.0 + 0.01 * s) for s in range(3)],
        ),
        ["model", "beta"],
        ["mse"],
    )
    [row] = study_rows.comparison_rows(table, "model", "fc", "cnn", ["mse"]).to_dict("records")
    assert row["verdict"] == "cnn higher" and row["seeds"] == "3/3" and row["beta"] == 0.1
    assert (row["fc_mean"], row["cnn_mean"]) == pytest.approx((1.01, 2.01))


def test_beta_steps_call_each_step_down_the_bernoulli_sweep_and_not_a_step_with_one_seed():
    def metrics(beta, seed):
        return {"recon": 240.0 + beta + 0.1 * seed, "mse": 0.02, "knn_accuracy": 0.75, "kl": 10 / beta}

    rows = [run(beta=b, seed=s, **metrics(b, s)) for b, seeds in ((4.0, 3), (2.0, 3), (1.0, 1)) for s in range(seeds)]
    table = study_rows.grouped(
        runs(*rows, run(beta=4.0, likelihood="gaussian", **metrics(4.0, 0))),
        ["model", "likelihood", "beta"],
        ["recon", "mse", "knn_accuracy", "kl"],
    )
    steps = study_tables.beta_steps(table).set_index(["step", "metric"])
    assert list(steps.index.unique("step")) == ["4 → 2", "2 → 1"] and set(steps.likelihood) == {"bernoulli"}
    assert steps.to_minus_from["4 → 2", "recon"] == pytest.approx(-2.0) and steps.seeds["4 → 2", "recon"] == "3/3"
    assert (steps.verdict["4 → 2", "recon"], steps.verdict["4 → 2", "kl"]) == ("4 higher", "2 higher")
    assert steps.verdict["4 → 2", "mse"] == "no difference called"
    assert set(steps.verdict["2 → 1"]) == {"not called (one seed)"}


def test_architecture_names_come_from_the_config_defaults():
    assert study_rows.architecture({"model": "fc"}) == "512x256"
    assert study_rows.architecture({"model": "cnn", "channels": [64, 80]}) == "64x80 k4"
    assert (
        study_rows.architecture({"model": "cnn", "channels": [24, 24], "decoder_channels": [40, 40], "norm": "batch"})
        == "24x24 k4 decoder 40x40 batch"
    )


def record(epochs=2, evaluated=2, **config):
    config = {
        "model": "fc",
        "likelihood": "bernoulli",
        "latent_dim": 3,
        "beta": 0.1,
        "seed": 0,
        "epochs": epochs,
        "train_limit": None,
        "train_images": 60000,
        **config,
    }
    evaluation = {k: v for k, v in TEMPLATE["eval"].items() if k != "config"}  # every field a record has
    return {
        "name": search.run_name(config),
        "config": config,
        "parameters": 10,
        "epochs": [{"test": {"recon": 1.0}}] * epochs,
        "eval": {**evaluation, "epoch": evaluated, "mse": 0.5, "beta": config["beta"], "parameters": 10},
    }


def save(folder, content, name=None):
    path = folder / f"{name or content['name']}.json"
    path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    return path


def test_only_complete_finite_records_load_and_each_other_file_is_a_line(tmp_path):
    done = save(tmp_path, record())
    stale, nan = (
        save(tmp_path, record(seed=1, evaluated=1)),
        save(tmp_path, {**record(seed=2), "eval": {"epoch": 2, "mse": math.nan}}),
    )
    garbage, broken = save(tmp_path, "[]", "garbage"), save(tmp_path, '{"name": ', "broken")
    loaded, problems = records.load_records(tmp_path)
    assert [r["name"] for r in loaded] == [done.stem]
    assert sorted(line.split(":")[0] for line in problems) == sorted(map(str, (broken, garbage, nan, stale)))
    row = study_rows.run_row(loaded[0])
    assert row["default_architecture"] and FULL.misses(row["facts"]) == ["epochs 2 < 20"]


def test_a_record_copied_under_another_seed_is_named_and_not_counted(tmp_path):
    """Issue 34, case 1: a copy of seed 1 as seed 7 counted seed 1 twice."""
    original = COMMITTED / "fc-bernoulli-z3-beta0.1-seed1.json"
    kept = shutil.copy(original, tmp_path / original.name)
    copy = shutil.copy(original, tmp_path / "fc-bernoulli-z3-beta0.1-seed7.json")
    loaded, [problem] = records.load_records(tmp_path)
    assert [r["name"] for r in loaded] == [original.stem] and problem.startswith(f"{copy}: named {Path(copy).stem}")
    assert f"settings are those of {original.stem}" in problem
    assert f"the same run (settings and seed) as {kept}" in problem
    (tmp_path / original.name).unlink()
    assert not records.load_records(tmp_path)[0] and "the same run" not in records.load_records(tmp_path)[1][0]


def test_a_record_whose_settings_were_edited_disagrees_with_its_name_and_its_evaluation(tmp_path):
    """Issue 34, case 2: beta set to 3 inside the beta-2 record made a "beta 3" row of the beta-2 numbers."""
    edited = json.loads((COMMITTED / "fc-bernoulli-z3-beta2.json").read_text())
    edited["config"]["beta"] = 3.0
    loaded, [problem] = records.load_records(save(tmp_path, edited).parent)
    assert not loaded and "named fc-bernoulli-z3-beta2, but its settings are those of fc-bernoulli-z3-beta3" in problem
    (tmp_path / "renamed").mkdir()
    renamed = {**edited, "name": "fc-bernoulli-z3-beta3"}  # name, file name and settings agree: the evaluation not
    [problem] = records.load_records(save(tmp_path / "renamed", renamed).parent)[1]
    assert problem.endswith("its evaluation's settings differ: beta")


def test_a_truncated_record_is_named_and_not_read(tmp_path):
    """Issue 34, case 3 (a NaN record: above)."""
    text = (COMMITTED / "fc-bernoulli-z3-beta2.json").read_text()
    loaded, [problem] = records.load_records(save(tmp_path, text[: len(text) // 2], "fc-bernoulli-z3-beta2").parent)
    assert not loaded and problem.startswith(f"{tmp_path / 'fc-bernoulli-z3-beta2.json'}: unreadable")


def test_run_folders_are_read_when_evaluated_and_checked_like_records(tmp_path):
    def folder(name, content):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({k: content[k] for k in ("config", "parameters", "epochs")})
        )
        (tmp_path / name / "eval.json").write_text(json.dumps(content["eval"]))

    folder(record()["name"], record())  # fc-bernoulli-z3-beta0.1: a dot in a folder's name
    folder("fc-bernoulli-z3-beta0.5", record(seed=1))
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "metrics.json").write_text("{}")  # not evaluated yet: not read
    loaded, [problem] = records.load_run_folders(tmp_path)
    assert [r["name"] for r in loaded] == [record()["name"]]
    assert problem.startswith(f"{tmp_path / 'fc-bernoulli-z3-beta0.5'}: named fc-bernoulli-z3-beta0.5, but its")


def test_records_that_are_not_evidence_change_no_table_and_are_named_a_line_each(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    runs_dir, before = results / "runs", {p.name: p.read_bytes() for p in results.glob("study-*")}
    copy = shutil.copy(runs_dir / "fc-bernoulli-z3-beta0.1-seed1.json", runs_dir / "fc-bernoulli-z3-beta0.1-seed7.json")
    edited = json.loads((runs_dir / "fc-bernoulli-z3-beta2.json").read_text())
    save(runs_dir, {**edited, "config": {**edited["config"], "beta": 3.0}})
    truncated = runs_dir / "cnn-gaussian-z3-beta1.json"
    truncated.write_text(truncated.read_text()[:1000])
    assert (
        study.main(["--records-dir", str(runs_dir), "--results-dir", str(results), "--img-dir", str(tmp_path / "img")])
        == 1
    )
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and "no table or figure written (3 problems" in lines[-1]
    assert sorted(line.split(": ")[0] for line in lines[:3]) == sorted(
        map(str, (copy, runs_dir / "fc-bernoulli-z3-beta2.json", truncated))
    )
    assert {p.name: p.read_bytes() for p in results.glob("study-*")} == before and not (tmp_path / "img").exists()


def test_the_blur_test_passes_measures_that_rank_blurred_above_one_class():
    values = {
        "coverage": (0.97, 0.11, 0.03, 0.0),
        "class_entropy": (2.3, 0.07, 2.0, 0.6),
        "density": (1.0, 1.0, 0.3, 0.1),
        "recall": (0.9, 0.1, 0.001, 0.0),
        "unsure": (0.02, 0.01, 0.1, 0.01),
    }
    sanity = {f"{m}_{s}": v for m, row in values.items() for s, v in zip(study_tables.DIVERSITY_SANITY, row)}
    sanity.update(
        {
            "coverage_recon_real": 0.97,
            "coverage_recon_one_class": 0.2,
            "coverage_recon_noise": 0.0,
            "recall_recon_real": 0.96,
            "recall_recon_one_class": 0.6,
            "recall_recon_noise": 0.0,
        }
    )
    table = study_tables.sanity_rows(runs(run(**sanity), run("cnn", **sanity))).set_index("measure")
    assert table.loc["coverage", "blur test"] == "fails" and table.loc["class_entropy", "blur test"] == "passes"
    assert list(table.loc[["recall", "coverage_recon", "recall_recon", "unsure"], "blur test"]) == [
        "fails",
        "passes",
        "passes",
        "-",
    ]
    assert (table.loc["coverage", "blurred_mean"], table.loc["coverage", "blurred_std"]) == (0.03, 0.0)
    assert table.loc["coverage_recon", ["noise_mean", "blurred_mean"]].isna().tolist() == [False, True]


def test_family_gaps_compare_cnn_with_fc_of_the_same_size_per_latent_dim():
    table = study_rows.grouped(
        runs(
            *[
                run(architecture="32x16", latent_dim=d, recon=250.0 - d + 0.1 * s, mse=0.03, seed=s)
                for d in (2, 8)
                for s in range(2)
            ],
            *[
                run("cnn", architecture="32x32 k4", latent_dim=d, recon=245.0 - 2 * d + 0.1 * s, mse=0.03, seed=s)
                for d in (2, 8)
                for s in range(2)
            ],
        ),
        ["model", "architecture", "latent_dim"],
        ["recon", "mse"],
    )
    gaps = study_tables.family_gaps(table).set_index("latent_dim")
    assert gaps.recon_cnn_minus_fc.tolist() == pytest.approx([-7.0, -13.0]) and gaps.seeds.tolist() == ["2/2"] * 2
    assert gaps.recon_verdict[2] == "CNN lower" and gaps.mse_verdict[2] == "no difference called"


def test_capacity_runs_meet_h_at_the_same_kl_by_interpolation():
    nan = math.nan
    h = ((0.1, 13.0, 237.0, 0.2), (0.5, 10.0, 238.0, 0.3), (1.0, 8.0, 240.0, 0.1))
    rows = [
        {
            "model": "fc",
            "capacity": nan,
            "gamma": nan,
            "beta": b,
            "seeds": 2,
            "kl_mean": kl,
            "kl_std": 0.1,
            "recon_mean": recon,
            "recon_std": std,
        }
        for b, kl, recon, std in h
    ]
    rows += [
        {
            "model": "fc",
            "capacity": 10.0,
            "gamma": g,
            "beta": 0.1,
            "seeds": 2,
            "kl_mean": kl,
            "kl_std": 0.1,
            "recon_mean": recon,
            "recon_std": 0.1,
        }
        for g, kl, recon in ((3.0, 9.0, 239.5), (100.0, 20.0, 254.0), (30.0, 10.0, 237.0))
    ]
    matched = study_tables.rate_matched(pd.DataFrame(rows)).set_index("gamma")
    assert matched.h_recon_same_kl_mean[3.0] == pytest.approx(239.0)
    assert matched.b_minus_h_mean[3.0] == pytest.approx(0.5)
    assert matched.h_recon_same_kl_std[3.0] == 0.3 and matched.verdict[3.0] == "no difference called"
    assert matched.h_recon_same_kl_mean[30.0] == 238.0 and matched.verdict[30.0] == "B lower"  # on an H run's KL
    assert pd.isna(matched.h_recon_same_kl_mean[100.0]) and matched.verdict[100.0] == "-"  # no H pair brackets 20


def test_the_design_screen_keeps_runs_in_the_budget_and_sets_its_two_best_against_both_defaults():
    def design(name, parameters, early, seeds=(0,), epochs=20):
        return [
            run(
                "cnn",
                seed=s,
                architecture=name,
                default_architecture=False,
                parameters=parameters,
                recon_epoch10=early,
                recon=105.0 + 0.1 * s,
                mse=0.03,
                epochs=epochs,
            )
            for s in seeds
        ]

    rows = [run(seed=s, parameters=1000, recon=100.0 + s, mse=0.02, epochs=20) for s in range(3)]  # budget: 50
    rows += [
        run("cnn", seed=s, parameters=40, recon=110.0 + s, mse=0.03, epochs=20, recon_epoch10=115.0) for s in range(3)
    ]
    rows += design("a", 45, 112.0, seeds=(0, 1, 2)) + design("b", 48, 113.0, epochs=10) + design("big", 60, 100.0)
    rows += design("short", 30, None, epochs=5)  # fewer than 10 epochs: no epoch-10 reconstruction
    made = study_tables.design_tables(runs(*rows))
    assert made["budget"] == 50
    assert made["cnn-designs"][["architecture", "seeds"]].values.tolist() == [["a", 1], ["b", 1], ["32x32 k4", 1]]
    best = made["cnn-best"].set_index("architecture")
    assert list(best.index) == ["32x32 k4", "a", "512x256"]  # b ran 10 epochs only; smallest first within each family
    assert (best.recon_vs_default_fc["a"], best.recon_vs_default_cnn["a"]) == ("higher", "lower")
    assert best.recon_vs_default_fc["512x256"] == "-" and best.mse_vs_default_cnn["512x256"] == "lower"


def test_a_committed_table_is_not_replaced_by_a_smaller_one_unless_forced(tmp_path):
    table = pd.DataFrame({"model": ["fc", "cnn"], "seeds": [3, 3], "mse_mean": [0.02, 0.03], "mse_std": [0.001] * 2})
    assert "2 rows" in tables.write_part("x", table, "t", ["cmd"], tmp_path, force=False)
    before = (tmp_path / "study-x.md").read_bytes()
    assert "kept (2 rows, 6 seeds committed; the records give 1 rows, 3 seeds" in tables.write_part(
        "x", table[:1], "t", ["cmd"], tmp_path, force=False
    )
    assert "kept" in tables.write_part("x", table.assign(seeds=["1/1", "1"]), "t", ["c"], tmp_path, force=False)
    assert "kept" in tables.write_part("x", table[:0], "t", ["cmd"], tmp_path, force=True)  # nothing never replaces
    assert (tmp_path / "study-x.md").read_bytes() == before
    assert "1 rows" in tables.write_part("x", table[:1], "t", ["cmd"], tmp_path, force=True)


def test_a_table_splits_mean_and_std_into_columns_and_reads_back_as_the_rows_it_was_written_from(tmp_path):
    rows = [
        {
            "model": "fc",
            "architecture": "8",
            "beta": 0.1,
            "capacity": None,
            "seeds": 3,
            "mse": (0.02031, 0.00012),
            "parameters": (1069590.0, 0.0),
        },
        {
            "model": "cnn",
            "architecture": "32x32 k4",
            "beta": 1.0,
            "capacity": 10.0,
            "seeds": 1,
            "mse": (0.0222, None),
            "parameters": (49575.0, None),
        },
    ]
    table = pd.DataFrame(
        [
            {
                k: v
                for key, value in row.items()
                for k, v in (zip((f"{key}_mean", f"{key}_std"), value) if isinstance(value, tuple) else [(key, value)])
            }
            for row in rows
        ]
    )
    csv_path, md_path = tables.write_table(table, tmp_path / "tables" / "frontier", header="# Frontier\n\n")
    assert csv_path.read_text().splitlines() == [
        "model,architecture,beta,capacity,seeds,mse_mean,mse_std,parameters_mean,parameters_std",
        "fc,8,0.1,,3,0.02031,0.00012,1069590.0,0.0",
        "cnn,32x32 k4,1.0,10.0,1,0.0222,,49575.0,",
    ]
    assert md_path.read_text().splitlines()[2:] == [
        "| model | architecture | beta | capacity | seeds | mse | parameters |",
        "|---|---|---|---|---|---|---|",
        "| fc | 8 | 0.1 | None | 3 | 0.0203 ± 0.0001 | 1,069,590 |",
        "| cnn | 32x32 k4 | 1 | 10 | 1 | 0.0222 | 49,575 |",
    ]
    assert study.figure_rows(pd.read_csv(csv_path, dtype={"architecture": str})) == rows
    assert tables.read_table(csv_path.with_suffix(""))[1]["mse_std"] == "" and tables.read_table(tmp_path / "no") == []


def test_a_record_that_replaces_other_numbers_says_so_and_a_smaller_run_replaces_none_unasked(tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "records"
    run_dir.mkdir()

    def finish(recons, seconds=1.0, replace=False, **evaluation):
        epochs = [{"test": {"recon": r}, "seconds": seconds} for r in recons]
        made = record(epochs=len(recons), evaluated=len(recons))
        (run_dir / "metrics.json").write_text(json.dumps({**made, "epochs": epochs}))
        (run_dir / "eval.json").write_text(json.dumps({**made["eval"], "seconds": seconds, **evaluation}))
        return records.write_record(run_dir, out, replace=replace)

    assert finish([3.0, 2.0]) == "" and finish([3.0, 2.0], seconds=9.0) == ""  # new, or the same numbers
    assert "extended its record from 2 to 3 epochs" in finish([3.0, 2.0, 1.0])
    assert "replaced a record with other numbers" in finish([3.0, 2.5, 1.0])
    assert json.loads((out / "run.json").read_text())["epochs"][1]["test"]["recon"] == 2.5
    kept = (out / "run.json").read_bytes()
    with pytest.raises(records.SmallerRun, match=r"run.json: not replaced by a smaller run \(epochs 2 < 3, k 7 < 100"):
        finish([3.0, 2.5], k=7)
    with pytest.raises(records.SmallerRun, match=r"\(eval on 100 test images < 10,000\); --replace-records"):
        finish([3.0, 2.5, 1.0], test_images=100)
    assert (out / "run.json").read_bytes() == kept
    assert "replaced a record made with more (epochs 2 < 3), as --replace-records asked" in finish([3, 2], replace=True)


def test_an_empty_records_folder_changes_no_committed_table(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("runs"))
    before = {p.name: p.read_bytes() for p in results.glob("study-*")}
    (tmp_path / "empty").mkdir()
    assert (
        study.main(
            [
                "--records-dir",
                str(tmp_path / "empty"),
                "--results-dir",
                str(results),
                "--img-dir",
                str(tmp_path / "img"),
                "--no-figures",
            ]
        )
        == 0
    )
    assert {p.name: p.read_bytes() for p in results.glob("study-*")} == before
    assert not (tmp_path / "img").exists()


def test_the_committed_records_regenerate_the_committed_tables_byte_for_byte(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("runs"))
    assert study.main(["--results-dir", str(results), "--img-dir", str(tmp_path / "img")]) == 0
    written = [line for line in capsys.readouterr().out.splitlines() if " rows, " in line]
    made = [line.split(".md:")[0] for line in written]
    assert made, "no table could be made from results/runs"
    assert all(line.endswith(" rows, unchanged") for line in written), written
    for stem in made:
        for suffix in (".md", ".csv"):
            name = Path(stem).name + suffix
            assert (results / name).read_bytes() == (ROOT / "results" / name).read_bytes(), name
    drawn = sorted((tmp_path / "img").glob("*.png"))  # from the records, or the CSVs of kept tables
    assert {p.name for p in drawn} == {
        png for table, (png, _) in study.PLOTTED.items() if (results / f"study-{table}.csv").exists()
    }
    for figure in drawn:
        assert figure.read_bytes() == (ROOT / "img" / figure.name).read_bytes(), figure.name


def test_each_table_names_the_sweep_commands_that_train_every_run_it_takes(tmp_path):
    """A reader reruns a table from its header: every committed record a part selects is a point of its commands."""
    from lab.parts import PARTS
    from lab.search import run_name

    rows = pd.DataFrame([row for row in map(study_rows.run_row, records.load_records(COMMITTED)[0]) if row])
    for name, part in PARTS.items():
        folders = [f"--{kind}-dir={tmp_path}" for kind in ("runs", "results", "img", "records")]  # (parsing tries them)
        grids = [sweep.parse_args(shlex.split(command)[3:] + folders)[1] for command in part["commands"]]
        trained = {run_name(point) for job in grids for point in job.points}
        assert not set(study_rows.selected(rows, part).run) - trained, name


def test_a_missing_records_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--records-dir", str(tmp_path / "missing"), "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_the_figures_of_kept_tables_are_drawn_from_their_committed_csv(tmp_path, capsys):
    results, one = tmp_path / "results", tmp_path / "one"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("runs"))
    one.mkdir()
    shutil.copy(COMMITTED / "fc-bernoulli-z3-beta2.json", one)  # too few runs to replace any table
    assert study.main(["--records-dir", str(one), "--results-dir", str(results), "--img-dir", str(tmp_path)]) == 0
    assert " rows\n" not in capsys.readouterr().out
    drawn = sorted(tmp_path.glob("*.png"))
    assert drawn and all(figure.read_bytes() == (ROOT / "img" / figure.name).read_bytes() for figure in drawn)


def test_a_table_that_the_study_rewrites_says_whether_its_rows_changed(tmp_path):
    """A tool that changes a committed result says so in a line."""
    write_part = tables.write_part
    table = pd.DataFrame({"model": ["fc", "cnn"], "mse_mean": [0.02, 0.03], "mse_std": [0.001, None], "seeds": [3, 1]})
    first = write_part("demo", table, "a demo", ["python -m lab.sweep --model fc"], tmp_path, force=False)
    assert first.endswith("2 rows, CHANGED: 2 rows differ")  # no table before: both rows are new
    assert write_part("demo", table, "a demo", ["python -m lab.sweep --model fc"], tmp_path, False).endswith(
        "2 rows, unchanged"
    )
    assert write_part("demo", table, "a demo", ["python -m lab.sweep --model cnn"], tmp_path, False).endswith(
        "CHANGED: its header only"
    )
    table.loc[1, "mse_mean"] = 0.031
    assert write_part("demo", table, "a demo", ["python -m lab.sweep --model cnn"], tmp_path, False).endswith(
        "CHANGED: 1 rows differ"
    )


# ----------------------------------------------------------------------------------- trust, round five: case 6
def deep(text):
    return '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"


def nested(text):
    record, inner = json.loads(text), []
    for _ in range(200):
        inner = [inner]
    return json.dumps({**record, "eval": {**record["eval"], "notes": inner}})


def digits(count):
    return lambda text: text.replace('"parameters": 1069590', f'"parameters": {"9" * count}', 1)


def edited(change):
    def edit(text):
        record = json.loads(text)
        change(record)
        return json.dumps(record)

    return edit


DAMAGED = [
    ("deep nesting", deep, "unreadable (nested too deeply)"),
    ("nested 200 levels", nested, "nested deeper than 8 levels (a run record nests 4)"),
    ("5000-digit integer", digits(5000), "unreadable (Exceeds the limit (4300 digits) for integer string conversion)"),
    ("4000-digit integer", digits(4000), "holds NaN, infinite or out-of-range numbers"),
    (
        "wrong type",
        edited(lambda r: r["eval"].update(mse_per_class=list(r["eval"]["mse_per_class"].values()))),
        "not a run record ($.eval.mse_per_class: an array, not an object)",
    ),
    (
        "config not an object",
        edited(lambda r: r.update(config="fc")),
        "not a run record ($.config: a string, not an object)",
    ),
    (
        "missing key",
        edited(lambda r: r["eval"].pop("samplers")),
        "not a run record ($.eval: 'samplers' is a required property)",
    ),
]


@pytest.mark.parametrize("damage, line", [case[1:] for case in DAMAGED], ids=[case[0] for case in DAMAGED])
def test_a_damaged_record_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, damage, line):
    """Each was a raw traceback (RecursionError, ValueError, AttributeError, KeyError: 'samplers')."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    shutil.copy(COMMITTED / "fc-bernoulli-z3-beta0.1.json", runs)
    damaged = runs / "fc-bernoulli-z3-beta2.json"
    damaged.write_text(damage((COMMITTED / damaged.name).read_text()))
    args = ["--records-dir", str(runs), "--results-dir", str(results), "--img-dir", str(tmp_path / "img")]
    assert study.main(args) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{damaged}: {line}",
        "lab.study: no table or figure written (1 problems above)",
    ]
    assert not results.exists() and not (tmp_path / "img").exists()


@pytest.mark.parametrize("option", ["--img-dir", "--results-dir"])
def test_an_unwritable_output_folder_is_one_line_before_anything_is_written(tmp_path, capsys, option):
    """--img-dir on a read-only mount wrote the tables, then an OSError traceback (/proc: no one can write there)."""
    folders = {"--results-dir": str(tmp_path / "results"), "--img-dir": str(tmp_path / "img"), option: "/proc/study"}
    with pytest.raises(SystemExit) as exit_info:
        study.main([arg for pair in folders.items() for arg in pair])
    error = capsys.readouterr().err
    assert (
        exit_info.value.code == 2
        and error.startswith(f"lab.study: error: {option} /proc/study is not writable (")
        and error.count("\n") == 1
    )
    assert not list(tmp_path.iterdir())
