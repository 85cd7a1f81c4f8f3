"""study.py: grouping over seeds, the difference rule, which run folders count, and the beta figure."""
import json

import pytest

import plots
import study


def run(model="fc", seed=0, mse=0.02, **config):
    return {"model": model, "likelihood": "bernoulli", "beta": 0.1, "seed": seed, "capacity": None, "mse": mse,
            **config}


def test_grouped_gives_mean_and_sample_std_over_seeds():
    rows = study.grouped([run(seed=0, mse=1.0), run(seed=1, mse=2.0), run(seed=2, mse=3.0), run("cnn", mse=5.0)],
                         ["model"], ["mse"])
    by_model = {row["model"]: row for row in rows}
    assert by_model["fc"]["seeds"] == 3 and by_model["fc"]["mse"] == (2.0, 1.0)
    assert by_model["cnn"]["mse"] == (5.0, None)


def test_a_difference_is_called_only_beyond_twice_the_larger_std_with_two_seeds_each():
    assert study.differs((1.0, 0.1), (1.3, 0.1))
    assert not study.differs((1.0, 0.1), (1.15, 0.1))
    assert not study.differs((1.0, 0.01), (1.3, 0.2))  # the larger std decides
    assert not study.differs((1.0, None), (5.0, 0.1))  # one seed: no call


def test_comparison_rows_pair_settings_that_differ_in_one_field():
    rows = study.grouped([run(seed=s, mse=1.0 + 0.01 * s) for s in range(3)]
                         + [run("cnn", seed=s, mse=2.0 + 0.01 * s) for s in range(3)], ["model", "beta"], ["mse"])
    [row] = study.comparison_rows(rows, "model", "fc", "cnn", ["mse"])
    assert row["verdict"] == "cnn higher" and row["seeds"] == "3/3" and row["beta"] == 0.1


def test_the_dataset_scaled_comparison_pairs_beta_0_0021_with_0_1_per_model_on_bernoulli_defaults_only():
    runs = [run(model, seed=s, beta=beta, mse=(2.0 if model == "fc" and beta == 0.1 else 1.0) + 0.01 * s,
                default_architecture=True)
            for model in ("fc", "cnn") for beta in (study.SCALED_BETA, 0.1) for s in range(3)]
    runs += [run(beta=study.SCALED_BETA, likelihood="gaussian", mse=9.0, default_architecture=True),
             run(beta=study.SCALED_BETA, mse=9.0, default_architecture=False), run(beta=0.01, default_architecture=True)]
    part = study.PARTS["dataset-scaled"]
    rows = study.grouped(study.selected(runs, part), part["group"], ["mse"])
    compared = study.comparison_rows(rows, "beta", study.SCALED_BETA, 0.1, ["mse"])
    assert [(row["model"], row["seeds"], row["verdict"]) for row in compared] == [
        ("cnn", "3/3", "no difference called"), ("fc", "3/3", "0.1 higher")]


def test_only_finished_evaluated_full_data_runs_are_loaded_with_their_architecture(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "summary", lambda result: {"mse": result["mse"]})
    def folder(name, epochs_done, evaluated_epoch, **config):
        path = tmp_path / name
        path.mkdir()
        config = {"model": "fc", "latent_dim": 3, "hidden": [512, 256], "epochs": 2, "train_limit": None, **config}
        epochs = [{"test": {"recon": 250.0 - epoch}} for epoch in range(1, epochs_done + 1)]
        (path / "metrics.json").write_text(json.dumps({"config": config, "epochs": epochs}))
        if evaluated_epoch is not None:
            (path / "eval.json").write_text(json.dumps({"epoch": evaluated_epoch, "mse": 0.5, "mse_per_class": {}}))
    folder("done", 2, 2)
    folder("unfinished", 1, 1)
    folder("stale-eval", 2, 1)
    folder("not-evaluated", 2, None)
    folder("other-width", 2, 2, hidden=[64])
    folder("few-images", 2, 2, train_limit=500)
    folder("cnn-design", 10, 10, model="cnn", channels=[24, 24], decoder_channels=[40, 40], norm="batch", epochs=10)
    runs = {r["run"]: r for r in study.load_runs(tmp_path)}
    assert sorted(runs) == ["cnn-design", "done", "other-width"]
    assert runs["done"]["default_architecture"] and not runs["other-width"]["default_architecture"]
    assert runs["other-width"]["architecture"] == "64" and runs["done"]["recon_epoch10"] is None
    assert runs["cnn-design"]["architecture"] == "24x24 k4 decoder 40x40 batch"
    assert runs["cnn-design"]["recon_epoch10"] == 240.0 and not runs["cnn-design"]["default_architecture"]


def test_architecture_parts_keep_designs_within_the_budget_and_judge_them_against_the_fc_default():
    runs = [run("cnn", seed=s, mse=0.020 + 0.001 * s, architecture="a", parameters=50_000, epochs=20, latent_dim=3)
            for s in range(3)]
    runs += [run("cnn", architecture="big", parameters=60_000, epochs=20, latent_dim=3)]
    runs += [run(seed=s, mse=0.030 + 0.0001 * s, architecture="512x256", parameters=1_069_590, epochs=20, latent_dim=3)
             for s in range(3)]
    assert {r["architecture"] for r in study.selected(runs, study.ARCHITECTURE_PARTS["cnn-designs"])} == {"a"}
    rows = study.arranged(runs, "cnn-best", ["a", "512x256", "big"])
    assert [(r["model"], r["architecture"], r["seeds"]) for r in rows] == [
        ("cnn", "a", 3), ("cnn", "big", 1), ("fc", "512x256", 3)]
    judged = [study.with_verdicts(r, {"default_fc": rows[-1]}, columns=("mse",)) for r in rows]
    assert [r["mse_vs_default_fc"] for r in judged] == ["lower", "no difference called", "-"]


def test_a_missing_runs_folder_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        study.main(["--runs-dir", str(tmp_path / "missing"), "--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_the_beta_figure_draws_one_curve_per_model_and_likelihood_in_beta_order():
    cells = {"mse": 0.02, "knn_accuracy": 0.7, "kl": 10.0, "fd_prior": 100.0}
    rows = [{"model": model, "likelihood": likelihood, "beta": beta,
             **{key: (value * beta, None) for key, value in cells.items()}}
            for model in ("fc", "cnn") for likelihood in ("bernoulli", "gaussian") for beta in (4.0, 0.1, 1.0)]
    axes = plots.plot_betas(rows).axes[:4]
    for ax, value in zip(axes, cells.values()):
        curves = {container.get_label(): container.lines[0] for container in ax.containers}
        assert sorted(curves) == ["CNN bernoulli", "CNN gaussian", "FC bernoulli", "FC gaussian"]
        assert all(list(line.get_xdata()) == [0.1, 1.0, 4.0] for line in curves.values())
        assert all(list(line.get_ydata()) == [value * b for b in (0.1, 1.0, 4.0)] for line in curves.values())
