"""Tests of evaluate.py and samplers.py on tiny models and real Fashion-MNIST images."""

import hashlib
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from classifier import features_and_probs, load_classifier
from config import EvalConfig, TrainConfig
from data import batches
from evaluate import evaluate, summary
from evaluate import main as evaluate_main
from metrics import active_units, frechet_distance, iwae_nll
from models import EVAL_BATCH_SIZE, FCVAE, count_parameters
from objectives import dataset_loss, reconstruction_nll
from quality import SAMPLER_NAMES, SANITY_NAMES, reference_features
from runs import EVAL_FILE
from samplers import AggregateSampler, ClassSampler, PriorSampler, decode, interpolate, posterior_means
from train import fit

QUALITY = {"fd", "precision", "recall", "density", "coverage"}
MIX = {"class_entropy", "class_kl_uniform", "unsure", "confident"}


@pytest.fixture(scope="module")
def trained(small_fmnist):
    """A small FC VAE trained for two epochs on 2,000 images."""
    torch.manual_seed(0)
    model = FCVAE(latent_dim=3, hidden=(128, 64))
    fit(model, small_fmnist, TrainConfig(beta=1.0, epochs=2), progress=False, log=lambda line: None)
    return model.eval()


@pytest.fixture(scope="module")
def test_features(fmnist):
    """Classifier features of the first 4,000 test images."""
    features, _ = features_and_probs(load_classifier(), fmnist.test_images[:4000])
    return features


# ---------------------------------------------------------------------------------------------- IWAE
def test_iwae_with_one_sample_is_the_elbo(trained, small_fmnist):
    x = small_fmnist.test_images
    generator = torch.Generator().manual_seed(0)
    elbo = 0.0  # single-sample ELBO with a Monte Carlo KL, written independently with torch.distributions
    with torch.no_grad():
        for xb in batches(x, EVAL_BATCH_SIZE, shuffle=False):
            mu, logvar = trained.encode(xb)
            q = Normal(mu, torch.exp(0.5 * logvar))
            z = mu + q.scale * torch.randn(mu.shape, generator=generator)
            recon = reconstruction_nll(trained.decode_logits(z), xb, trained.likelihood)
            elbo += (recon + q.log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)).sum().item()
    iwae = iwae_nll(trained, x, k=1, batch_size=EVAL_BATCH_SIZE, seed=0)
    assert iwae == pytest.approx(elbo / len(x), rel=1e-5)
    # and models.dataset_loss (closed-form KL, the same noise) agrees up to the KL's Monte Carlo error
    loss = dataset_loss(trained, x, batch_size=EVAL_BATCH_SIZE, seed=0)
    assert set(loss) == {"recon", "kl"} and iwae == pytest.approx(loss["recon"] + loss["kl"], abs=0.5)
    assert iwae_nll(trained, x, k=1, batch_size=EVAL_BATCH_SIZE, seed=1) != iwae


def test_iwae_bound_is_no_worse_than_the_elbo(trained, small_fmnist):
    x = small_fmnist.test_images[:500]
    elbo = sum(dataset_loss(trained, x).values())
    iwae_10, iwae_100 = (iwae_nll(trained, x, k=k, batch_size=EVAL_BATCH_SIZE) for k in (10, 100))
    assert iwae_100 < iwae_10 < elbo
    assert elbo - iwae_100 < 0.1 * elbo  # a tighter bound, not a different quantity


# ---------------------------------------------------------------------------------------------- latent metrics
def test_active_units_counts_a_collapsed_dimension_as_inactive(fmnist):
    torch.manual_seed(0)
    model = FCVAE(latent_dim=3, hidden=(32,)).eval()
    head = model.encoder[-1]  # rows 0..2: the mean, rows 3..5: the log-variance
    with torch.no_grad():
        head.weight[0] = 0.0
        head.bias[0] = 0.7  # the mean of dimension 0 is 0.7 for every image
        head.weight[1:3] *= 50.0
    means = posterior_means(model, fmnist.test_images)
    assert torch.allclose(means[:, 0], torch.full((len(means),), 0.7))
    assert active_units(means) == 2
    assert active_units(torch.tensor([[0.0, 1.0], [0.05, -1.0], [0.1, 0.0]])) == 1


def test_evaluate_reports_every_metric(trained, small_fmnist):
    data = small_fmnist.limited(test=1000)  # sanity sets: 1,000 images each
    result = evaluate(trained, data, beta=1.0, config=EvalConfig(k=5, samples=500, iwae_images=500))
    assert result["elbo"]["total"] == pytest.approx(result["elbo"]["recon"] + result["elbo"]["kl"])
    assert result["loss"] == pytest.approx(result["elbo"]["total"])  # beta = 1
    assert result["iwae_nll"] < result["iwae_elbo"] and result["iwae_images"] == 500
    assert sum(result["kl_per_dim"]) == pytest.approx(result["elbo"]["kl"], rel=1e-5)
    assert 0 <= result["active_units"] <= 3
    assert 0.3 < result["knn_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    assert 0.0 < result["mse"] < 0.1
    assert (result["k"], result["samples"], result["test_images"], result["train_images"]) == (5, 500, 1000, 2000)
    assert set(result["samplers"]) == set(SAMPLER_NAMES) and set(result["sanity"]) == set(SANITY_NAMES)
    assert set(result["sanity_recon"]) == {"real", "one_class"}
    for name, quality in result["samplers"].items():
        assert set(quality) == QUALITY | MIX | {f"{key}_recon" for key in QUALITY} | (
            {"class_rate"} if name == "class" else set()
        )
    assert 0.0 <= result["samplers"]["class"]["class_rate"] <= 1.0  # this tiny model draws blobs
    assert all(quality["fd"] > result["fd_real"] for quality in result["samplers"].values())
    assert result["nll"] == result["iwae_nll"] and result["nll_normalised"] is False  # bernoulli: not a density
    assert result["parameters"] == count_parameters(trained)
    real, one_class, blurred, noise = (result["sanity"][name] for name in SANITY_NAMES)
    assert result["fd_real"] == real["fd"]
    assert real["precision"] > blurred["precision"] and real["recall"] > blurred["recall"] >= noise["recall"]
    assert real["coverage"] > one_class["coverage"] and real["coverage"] > noise["coverage"]
    assert real["class_entropy"] > 2.0 > 0.5 > one_class["class_entropy"]
    recon_real, recon_one_class = result["sanity_recon"]["real"], result["sanity_recon"]["one_class"]
    assert recon_real["coverage"] > recon_one_class["coverage"]
    for quality in [*result["samplers"].values(), *result["sanity"].values(), *result["sanity_recon"].values()]:
        assert all(0.0 <= quality[key] <= 1.0 for key in ("precision", "recall", "coverage"))
        assert quality["density"] >= 0.0 and quality["fd"] >= 0.0
        assert quality["recall"] < real["recall"] or quality is real or quality is recon_real  # 2 epochs: less
    for quality in [*result["samplers"].values(), *result["sanity"].values()]:
        assert 0.0 <= quality["class_entropy"] <= math.log(10) + 1e-9
        assert quality["class_kl_uniform"] == pytest.approx(math.log(10) - quality["class_entropy"])
        assert 0.0 <= quality["unsure"] <= 1.0 and 0.0 <= quality["confident"] <= 1.0
    assert len(result["mse_per_class"]) == len(result["recon_accuracy_per_class"]) == 10
    json.dumps(result, allow_nan=False)  # plain, finite data: eval.json can hold it
    row = summary(result)
    assert row["mse_bag"] == result["mse_per_class"]["Bag"]
    assert row["precision_prior"] == result["samplers"]["prior"]["precision"]
    assert row["coverage_recon_aggregate"] == result["samplers"]["aggregate"]["coverage_recon"]
    assert row["class_entropy_one_class"] == one_class["class_entropy"]
    assert row["coverage_recon_one_class"] == recon_one_class["coverage"]
    assert row["recall_noise"] == noise["recall"] and row["parameters"] == result["parameters"]
    assert all(not isinstance(value, (dict, list)) for value in row.values())


def test_evaluate_with_a_reference_computes_the_same_numbers(trained, small_fmnist):
    data = small_fmnist.limited(train=500, test=300)
    classifier, config = load_classifier(), EvalConfig(k=2, iwae_images=100, samples=50)
    fresh = evaluate(trained, data, 1.0, config, classifier)
    given = evaluate(trained, data, 1.0, config, classifier, reference_features(classifier, data))

    def drop(result):
        return {k: v for k, v in result.items() if k != "seconds"}

    assert drop(fresh) == drop(given)


def test_evaluate_command_writes_eval_json_keyed_by_the_checkpoint(tmp_path, small_fmnist, capsys):
    run = tmp_path / "run"
    model = FCVAE(hidden=(32,))
    fit(
        model,
        small_fmnist,
        TrainConfig(epochs=1, batch_size=200, train_limit=400),
        out_dir=run,
        progress=False,
        log=lambda line: None,
    )
    assert (
        evaluate_main(
            [
                str(run / "checkpoint.pt"),
                "--k",
                "2",
                "--iwae-images",
                "50",
                "--samples",
                "20",
                "--eval-limit",
                "200",
                "--train-limit",
                "400",
                "--batch-size",
                "100",
            ]
        )
        == 0
    )
    result = json.loads((run / EVAL_FILE).read_text())
    assert result["checkpoint_sha256"] == hashlib.sha256((run / "checkpoint.pt").read_bytes()).hexdigest()
    assert result["epoch"] == 1 and result["config"] == model.plain_config()
    assert (result["k"], result["iwae_images"], result["samples"], result["eval_limit"], result["batch_size"]) == (
        2,
        50,
        20,
        200,
        100,
    )
    assert (result["test_images"], result["train_images"]) == (200, 400)
    printed = capsys.readouterr().out.splitlines()  # a short summary with units; eval.json holds everything
    assert len(printed) <= 25 and printed[-1].startswith(f"every metric: {run / EVAL_FILE}")
    assert any("nats/image" in line for line in printed) and any(line.split()[:1] == ["MSE"] for line in printed)


def test_evaluate_command_reports_a_missing_run_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no checkpoint" in error


# ---------------------------------------------------------------------------------------------- Fréchet distance
def test_frechet_distance_of_a_set_with_itself_is_zero(test_features):
    assert frechet_distance(test_features, test_features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_separates_real_from_noise_and_blur(fmnist, test_features):
    classifier = load_classifier()
    x = fmnist.test_images
    halves = frechet_distance(test_features[::2], test_features[1::2])
    noise = frechet_distance(
        features_and_probs(classifier, torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)))[0],
        test_features,
    )
    blurred = F.interpolate(F.avg_pool2d(x[:2000], 4), size=28, mode="bilinear")  # 7x7, scaled back up
    blur = frechet_distance(features_and_probs(classifier, blurred)[0], test_features)
    assert halves < 0.05 * blur
    assert halves < 0.05 * noise


# ---------------------------------------------------------------------------------------------- samplers
def test_samplers_return_the_requested_shapes(trained, small_fmnist):
    means = posterior_means(trained, small_fmnist.train_images)
    assert means.shape == (2000, 3)
    for sampler in (PriorSampler(3), AggregateSampler(means, n_components=5)):
        z = sampler.sample(17, seed=1)
        assert z.shape == (17, 3) and z.dtype == torch.float32
        assert torch.equal(z, sampler.sample(17, seed=1)) and not torch.equal(z, sampler.sample(17, seed=2))
    by_class = ClassSampler(means, small_fmnist.train_labels)
    assert by_class.sample(6, label=4).shape == (6, 3)
    z, labels = by_class.sample_grid(per_class=4)
    assert z.shape == (40, 3) and z.dtype == torch.float32
    assert labels.tolist() == [c for c in range(10) for _ in range(4)]
    decoded = decode(trained, z, batch_size=7)
    assert decoded.shape == (40, 1, 28, 28) and 0.0 <= decoded.min() and decoded.max() <= 1.0
    torch.testing.assert_close(decoded, trained.decode(z), rtol=1e-5, atol=1e-6)  # batching changes only rounding
    images = interpolate(trained, small_fmnist.test_images[0], small_fmnist.test_images[1], steps=7)
    assert images.shape == (7, 1, 28, 28)
    ends = trained.decode(posterior_means(trained, small_fmnist.test_images[:2]))
    assert torch.allclose(images[[0, -1]], ends, atol=1e-6)


def test_class_samples_are_drawn_near_their_class_mean():
    generator = torch.Generator().manual_seed(0)
    centres = 5.0 * torch.randn(10, 3, generator=generator)
    labels = torch.arange(10).repeat(300)
    means = centres[labels] + 0.3 * torch.randn(3000, 3, generator=generator)
    sampler = ClassSampler(means, labels)
    for label in range(10):
        z = sampler.sample(500, label, seed=label)
        assert torch.allclose(z.mean(0), centres[label], atol=0.1)
        assert (torch.cdist(z, centres).argmin(1) == label).float().mean() > 0.99


def test_evaluation_needs_enough_images_for_the_balls_and_the_knn():
    from evaluate import check_data_sizes
    from metrics import DC_NEIGHBOURS, NEIGHBOURS

    least = max(DC_NEIGHBOURS + 1, NEIGHBOURS)
    check_data_sizes(least, DC_NEIGHBOURS + 1)
    for train_images, test_images in ((least - 1, 100), (100, DC_NEIGHBOURS)):
        with pytest.raises(ValueError, match=f"evaluation needs >= {DC_NEIGHBOURS + 1} test and training images"):
            check_data_sizes(train_images, test_images)
    with pytest.raises(ValueError, match="samples must be >= 10"):
        EvalConfig(samples=3)
    with pytest.raises(ValueError, match="eval_limit must be >= 10"):
        EvalConfig(eval_limit=1)


# ---------------------------------------------------------------------------------------------- the shapes dataset
@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A tiny FC trained for one epoch on 3,000 shapes images (a random 3,000: every factor value appears)."""
    from data import load_dataset

    run = tmp_path_factory.mktemp("shapes") / "run"
    config = TrainConfig(epochs=1, batch_size=100, train_limit=3000, dataset="shapes", beta=4.0)
    fit(FCVAE(hidden=(32,), latent_dim=10), load_dataset("shapes"), config, out_dir=run, progress=False, log=print)
    return run


def test_a_shapes_run_is_evaluated_with_the_disentanglement_metrics_and_without_the_classifier(shapes_run, capsys):
    args = [str(shapes_run), "--train-limit", "3000", "--eval-limit", "500", "--iwae-images", "50", "--k", "2"]
    assert evaluate_main(args) == 0
    result = json.loads((shapes_run / EVAL_FILE).read_text())
    scores = result["disentanglement"]
    assert scores["factor_names"] == ["shape", "scale", "orientation", "x", "y"] and scores["points"] == 3000
    assert 0.0 <= scores["mig"] <= 1.0 and 0.0 <= scores["factor_vae"] <= 1.0 and scores["factor_vae_chance"] == 0.2
    assert "samplers" not in result and "classifier_sha256" not in result and result["dataset"] == "shapes"
    assert list(result["mse_per_class"]) == ["square", "ellipse", "heart"]
    row = summary(result)
    assert row["mig"] == scores["mig"] and row["mse_heart"] == result["mse_per_class"]["heart"]
    out = capsys.readouterr().out
    assert "MIG" in out and "FactorVAE score" in out and "FD" not in out


def test_the_disentanglement_option_prints_only_the_scores_and_refuses_fashion_mnist_in_one_line(
    shapes_run, tmp_path, small_fmnist, capsys
):
    assert evaluate_main([str(shapes_run), "--disentanglement", "--train-limit", "2000"]) == 0
    out = capsys.readouterr().out
    assert "on 2,000 images of shapes" in out and "MIG" in out and "reconstruction" not in out
    run = tmp_path / "fmnist"
    fit(FCVAE(hidden=(8,)), small_fmnist, TrainConfig(epochs=1, batch_size=500), out_dir=run, progress=False)
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(run), "--disentanglement", "--train-limit", "500"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "fashion-mnist has no known factors: disentanglement cannot be measured on it" in err


def test_a_latent_size_smaller_than_the_factors_is_allowed_and_said(tmp_path, capsys, monkeypatch):
    from train import main

    args = ["--dataset", "shapes", "--latent-dim", "3", "--hidden", "8", "--epochs", "1", "--train-limit", "500"]
    assert main([*args, "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "note: latent_dim 3 < the 5 factors of shapes" in capsys.readouterr().out
