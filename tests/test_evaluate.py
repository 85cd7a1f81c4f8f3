"""Tests of evaluate.py and samplers.py on tiny models and real Fashion-MNIST images."""
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from classifier import features_and_probs, load_classifier
from data import batches
from evaluate import BATCH_SIZE, active_units, evaluate, frechet_distance, iwae_nll, main as evaluate_main, summary
from models import FCVAE, count_parameters, reconstruction_nll
from samplers import AggregateSampler, ClassSampler, PriorSampler, interpolate, posterior_means
from models import dataset_loss
from train import fit


@pytest.fixture(scope="module")
def trained(small_fmnist):
    """A small FC VAE trained for two epochs on 2,000 images."""
    torch.manual_seed(0)
    model = FCVAE(latent_dim=3, hidden=(128, 64))
    fit(model, small_fmnist, beta=1.0, epochs=2, progress=False, log=lambda line: None)
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
        for xb in batches(x, BATCH_SIZE, shuffle=False):
            mu, logvar = trained.encode(xb)
            q = Normal(mu, torch.exp(0.5 * logvar))
            z = mu + q.scale * torch.randn(mu.shape, generator=generator)
            recon = reconstruction_nll(trained.decode_logits(z), xb, "bernoulli")
            elbo += (recon + q.log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)).sum().item()
    iwae = iwae_nll(trained, x, k=1)
    assert iwae == pytest.approx(elbo / len(x), rel=1e-5)
    # and train.dataset_loss (closed-form KL, the same noise) agrees up to the KL's Monte Carlo error
    assert iwae == pytest.approx(dataset_loss(trained, x, 1.0, batch_size=BATCH_SIZE)["total"], abs=0.5)


def test_iwae_bound_is_no_worse_than_the_elbo(trained, small_fmnist):
    x = small_fmnist.test_images[:500]
    elbo = dataset_loss(trained, x, 1.0)["total"]
    iwae_10, iwae_100 = iwae_nll(trained, x, k=10), iwae_nll(trained, x, k=100)
    assert iwae_100 < iwae_10 < elbo
    assert elbo - iwae_100 < 0.1 * elbo  # a tighter bound, not a different quantity


# ---------------------------------------------------------------------------------------------- latent metrics
def test_active_units_counts_a_collapsed_dimension_as_inactive(fmnist):
    torch.manual_seed(0)
    model = FCVAE(latent_dim=3, hidden=(32,)).eval()
    head = model.encoder[-1]  # rows 0..2: the mean, rows 3..5: the log-variance
    with torch.no_grad():
        head.weight[0] = 0.0
        head.bias[0] = 0.7    # the mean of dimension 0 is 0.7 for every image
        head.weight[1:3] *= 50.0
    means = posterior_means(model, fmnist.test_images)
    assert torch.allclose(means[:, 0], torch.full((len(means),), 0.7))
    assert active_units(means) == 2
    assert active_units(torch.tensor([[0.0, 1.0], [0.05, -1.0], [0.1, 0.0]])) == 1


def test_evaluate_reports_every_metric(trained, small_fmnist):
    result = evaluate(trained, small_fmnist, beta=1.0, k=5, samples=500)
    assert result["elbo"]["total"] == pytest.approx(result["elbo"]["recon"] + result["elbo"]["kl"])
    assert result["loss"] == pytest.approx(result["elbo"]["total"])  # beta = 1
    assert result["iwae_nll"] < result["elbo"]["total"]
    assert sum(result["kl_per_dim"]) == pytest.approx(result["elbo"]["kl"], rel=1e-5)
    assert 0 <= result["active_units"] <= 3
    assert 0.3 < result["knn_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    assert 0.0 < result["mse"] < 0.1
    assert set(result["samplers"]) == {"prior", "aggregate", "class"}
    assert 0.0 <= result["samplers"]["class"]["class_rate"] <= 1.0  # this tiny model draws blobs
    assert all(quality["fd"] > result["fd_real"] for quality in result["samplers"].values())
    assert 0.0 <= result["samplers"]["prior"]["confident"] <= 1.0
    assert result["nll"] == result["iwae_nll"] and result["nll_normalised"] is False  # bernoulli: not a density
    assert result["parameters"] == count_parameters(trained)
    real, blurred, noise = (result["sanity"][name] for name in ("real", "blurred", "noise"))
    assert result["fd_real"] == real["fd"]
    assert real["precision"] > blurred["precision"] and real["recall"] > blurred["recall"] >= noise["recall"]
    for quality in [*result["samplers"].values(), real, blurred, noise]:
        assert 0.0 <= quality["precision"] <= 1.0 and 0.0 <= quality["recall"] <= 1.0
        assert quality["recall"] < real["recall"] or quality is real  # a 2-epoch model covers less than real images
    assert len(result["mse_per_class"]) == len(result["recon_accuracy_per_class"]) == 10
    row = summary(result)
    assert row["mse_bag"] == result["mse_per_class"]["Bag"]
    assert row["precision_prior"] == result["samplers"]["prior"]["precision"]
    assert row["recall_noise"] == noise["recall"] and row["parameters"] == result["parameters"]


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
    noise = frechet_distance(features_and_probs(classifier, torch.rand(2000, 1, 28, 28,
                                                generator=torch.Generator().manual_seed(0)))[0], test_features)
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
