"""The continuous Bernoulli and sigma likelihoods, the [0, 1] NLL, precision/recall, per-class errors and the
architecture options."""

import math

import pytest
import torch
from torch.distributions import Normal

from checkpoint import load_checkpoint
from config import EvalConfig, TrainConfig
from evaluate import evaluate
from fashion_mnist import CLASS_NAMES
from likelihoods import LIKELIHOODS
from metrics import knn_radii, per_class, precision_recall
from models import CNNVAE, FCVAE, ModelConfig, VAEOutput, build_model, count_parameters
from objectives import objective, reconstruction_nll
from quality import reconstructions
from train import main


def closed_form_cb_log_density(logit: float, x: float) -> float:
    """log C(l) + x log sigmoid(l) + (1 - x) log sigmoid(-l), with C(l) = l / tanh(l / 2) (2 at l = 0), in float64."""
    log_c = math.log(2.0) if logit == 0 else math.log(logit / math.tanh(logit / 2))
    log_sigmoid = lambda v: -math.log1p(math.exp(-v))  # noqa: E731
    return log_c + x * log_sigmoid(logit) + (1 - x) * log_sigmoid(-logit)


@pytest.mark.parametrize(
    "logits",
    [
        [0.0, 1e-6, -2e-4, 9e-4, -9e-4],  # |logit| < 1e-3: torch's Taylor branch
        [-8.0, -3.0, -0.5, 0.7, 4.0, 10.0],
    ],
)  # the exact expression
def test_continuous_bernoulli_density_equals_the_closed_form(logits):
    x = torch.tensor([0.0, 0.1, 0.5, 0.93, 1.0])
    grid_logits, grid_x = torch.meshgrid(torch.tensor(logits), x, indexing="ij")
    nll = reconstruction_nll(grid_logits.reshape(1, -1), grid_x.reshape(1, -1), LIKELIHOODS["continuous_bernoulli"])
    expected = -sum(
        closed_form_cb_log_density(lo, v) for lo, v in zip(grid_logits.flatten().tolist(), grid_x.flatten().tolist())
    )
    assert nll.item() == pytest.approx(expected, abs=1e-4 * len(grid_x.flatten()), rel=1e-5)


def test_continuous_bernoulli_pictures_are_its_mean_not_sigmoid():
    logits = torch.tensor([-30.0, -3.0, 0.0, 1e-4, 2.0, 30.0])
    mean = LIKELIHOODS["continuous_bernoulli"].mean(logits)
    lam = torch.sigmoid(logits.double())
    closed = lam / (2 * lam - 1) + 1 / (2 * torch.atanh(1 - 2 * lam))  # the mean for lambda != 1/2
    torch.testing.assert_close(mean[1:5:3].double(), closed[1:5:3], atol=1e-5, rtol=1e-5)
    assert mean[2] == 0.5 and torch.all(mean.diff() > 0) and 0 < mean.min() and mean.max() < 1
    assert not torch.allclose(mean, torch.sigmoid(logits), atol=0.01)


def test_sigma_nll_equals_a_hand_computation():
    logits = torch.tensor([[0.0, 2.0, -1.0]]).view(1, 1, 1, 3)
    x = torch.tensor([[0.2, 1.0, 0.0]]).view(1, 1, 1, 3)
    log_scale = torch.tensor(math.log(0.3))
    expected = sum(
        0.5 * ((v - 1 / (1 + math.exp(-lo))) / 0.3) ** 2 + math.log(0.3) + 0.5 * math.log(2 * math.pi)
        for lo, v in zip([0.0, 2.0, -1.0], [0.2, 1.0, 0.0])
    )
    assert reconstruction_nll(logits, x, LIKELIHOODS["sigma"], log_scale).item() == pytest.approx(expected, abs=1e-5)
    zeros = torch.zeros(1, 2)
    output = VAEOutput(torch.sigmoid(logits), logits, zeros, zeros, zeros, log_scale)
    terms = objective(TrainConfig(beta=0.5), 1).loss(output, x, LIKELIHOODS["sigma"], 0.0)
    assert terms.recon.item() == pytest.approx(expected, abs=1e-5)


def test_sigma_scale_is_one_learned_parameter_only_for_sigma():
    sigma, other = FCVAE(likelihood="sigma"), FCVAE(likelihood="continuous_bernoulli")
    assert sigma.log_scale.shape == () and sigma.log_scale.requires_grad and sigma.log_scale.item() == 0.0
    assert other.log_scale is None and count_parameters(sigma) == count_parameters(other) + 1
    x = torch.rand(4, 1, 28, 28)
    objective(TrainConfig(beta=1.0), 4).loss(sigma(x), x, LIKELIHOODS["sigma"], 0.0).total.backward()
    assert sigma.log_scale.grad is not None and sigma.log_scale.grad != 0


def test_gaussian_nll_on_the_unit_pixel_scale_is_the_density_of_the_rescaled_data():
    torch.manual_seed(0)
    logits, x = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28)  # images in [0, 1], as every likelihood takes
    nll = reconstruction_nll(logits, x, LIKELIHOODS["gaussian"])  # on [-1, 1], where its tanh mean lives
    on_unit = Normal((torch.tanh(logits) + 1) / 2, 0.5).log_prob(x).flatten(1).sum(1).neg()
    for a, b in zip(nll.tolist(), on_unit.tolist()):
        assert LIKELIHOODS["gaussian"].unit_range_nll(a, 784) == pytest.approx(b, rel=1e-5)
    assert (
        LIKELIHOODS["sigma"].unit_range_nll(123.0, 784)
        == LIKELIHOODS["continuous_bernoulli"].unit_range_nll(123.0, 784)
        == 123.0
    )


# ---------------------------------------------------------------------------------------------- precision and recall
def test_precision_and_recall_are_one_for_identical_sets_and_fall_with_a_shift():
    torch.manual_seed(0)
    real = torch.randn(1500, 8)
    assert precision_recall(real, real) == (1.0, 1.0)
    radii = knn_radii(real)
    assert torch.equal(radii, torch.cdist(real, real).sort(1).values[:, 3])  # the 3rd neighbour, itself excluded
    scores = [precision_recall(real + shift, real, radii) for shift in (0.5, 1.0, 2.0)]
    for (p_near, r_near), (p_far, r_far) in zip(scores, scores[1:]):
        assert p_far < p_near < 1.0 and r_far < r_near < 1.0
    other = torch.randn(1500, 8)  # another sample of the same distribution: high, not perfect
    assert all(0.8 < v < 1.0 for v in precision_recall(other, real, radii))


def test_per_class_mse_weighted_by_class_sizes_is_the_overall_mse(fmnist):
    torch.manual_seed(0)
    model = FCVAE(hidden=(32,)).eval()
    images, labels = fmnist.test_images[:700], fmnist.test_labels[:700]
    mse = (reconstructions(model, images, 500) - images).pow(2).flatten(1).mean(1)
    by_class = per_class(mse, labels, CLASS_NAMES)
    counts = torch.bincount(labels, minlength=10).tolist()
    assert list(by_class) == list(CLASS_NAMES)
    weighted = sum(n * v for n, v in zip(counts, by_class.values())) / len(labels)
    assert weighted == pytest.approx(mse.double().mean().item(), rel=1e-6)
    bags = images[labels == 8]
    assert by_class["Bag"] == pytest.approx((model(bags, sample=False).recon - bags).pow(2).mean().item(), rel=1e-5)
    assert per_class(mse[:3], labels[:3], CLASS_NAMES)["Bag"] is None


# ---------------------------------------------------------------------------------------------- training and evaluating
@pytest.mark.parametrize("likelihood", ["continuous_bernoulli", "sigma"])
def test_new_likelihood_trains_from_the_command_line_and_resumes_bit_exact(likelihood, tmp_path, loaded_once):
    common = ["--likelihood", likelihood, "--hidden", "64", "--train-limit", "2000", "--no-progress"]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "resumed")]) == 0
    assert main(["--resume", str(tmp_path / "resumed"), "--epochs", "2", "--no-progress"]) == 0
    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "resumed")
    assert straight["config"]["likelihood"] == likelihood and resumed["epoch"] == 2
    assert straight["model_state"].keys() == resumed["model_state"].keys()
    assert all(torch.equal(v, resumed["model_state"][k]) for k, v in straight["model_state"].items())
    assert [h["train"] for h in straight["history"]] == [h["train"] for h in resumed["history"]]
    if likelihood == "sigma":  # the scale is learned (Adam moves it about lr per step from 0)
        assert -0.1 < straight["model_state"]["log_scale"] < -0.01


@pytest.mark.parametrize("likelihood", ["gaussian", "continuous_bernoulli", "sigma"])
def test_evaluate_reports_a_normalised_nll_for_each_likelihood(likelihood, loaded_once):
    data = loaded_once("fashion-mnist", limit=500).limited(test=300)  # the same images for every likelihood
    torch.manual_seed(0)
    model = FCVAE(hidden=(32,), likelihood=likelihood)
    result = evaluate(model, data, beta=1.0, config=EvalConfig(k=2, iwae_images=100, samples=200))
    assert result["nll_normalised"] and math.isfinite(result["nll"])
    shift = result["nll"] - result["iwae_nll"]
    assert shift == pytest.approx(784 * (0.5 * math.log(2 * math.pi) - math.log(2)) if likelihood == "gaussian" else 0)
    assert 0.0 <= result["mse"] <= 1.0


# ---------------------------------------------------------------------------------------------- architectures
def test_default_models_keep_their_layers_and_parameter_counts():
    assert count_parameters(CNNVAE()) == 49_575 and count_parameters(FCVAE()) == 1_069_590
    assert ModelConfig(model="cnn").as_dict() == {
        "model": "cnn",
        "latent_dim": 3,
        "likelihood": "bernoulli",
        "channels": [32, 32],
    }  # what older checkpoints hold
    old = {"model": "cnn", "latent_dim": 3, "likelihood": "bernoulli", "channels": [32, 32], "image_shape": [1, 28, 28]}
    assert build_model(old).plain_config() == old and build_model(old).config == ModelConfig(model="cnn")


@pytest.mark.parametrize("channels", [(8,), (8, 16), (8, 16, 16), (4, 8, 8, 8)])
@pytest.mark.parametrize("kernel_size", [3, 4, 5])
def test_cnn_of_any_depth_and_kernel_reconstructs_28x28(channels, kernel_size):
    model = CNNVAE(latent_dim=2, channels=channels, kernel_size=kernel_size, norm="batch", activation="elu")
    out = model(torch.rand(3, 1, 28, 28))
    assert out.recon.shape == (3, 1, 28, 28) and out.mu.shape == (3, 2)
    convolutions = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == list(channels)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 2 * len(channels) - 1
    rebuilt = build_model(model.config)
    assert rebuilt.config == model.config and count_parameters(rebuilt) == count_parameters(model)


def test_wider_models_have_more_parameters():
    assert count_parameters(FCVAE(hidden=(400,))) < count_parameters(FCVAE(hidden=(400, 400)))
    assert count_parameters(CNNVAE(channels=(16, 32))) < count_parameters(CNNVAE(channels=(16, 32, 32)))


@pytest.mark.parametrize("channels, decoder_channels", [((8, 8), (24, 16)), ((8, 8, 8), (4, 16, 32))])
def test_cnn_decoder_can_have_its_own_channels(channels, decoder_channels):
    model = CNNVAE(latent_dim=2, channels=channels, decoder_channels=decoder_channels)
    assert model(torch.rand(3, 1, 28, 28)).recon.shape == (3, 1, 28, 28)
    encoder = [m.out_channels for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    decoder = [m.in_channels for m in model.decoder if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert encoder == list(channels) and decoder == list(reversed(decoder_channels))
    assert count_parameters(model) > count_parameters(CNNVAE(latent_dim=2, channels=channels))
    assert build_model(model.config).config == model.config
    assert model.config.decoder_channels == decoder_channels
    assert model.plain_config()["decoder_channels"] == list(decoder_channels)


def test_decoder_channels_default_mirrors_the_encoder_and_must_match_its_depth():
    assert "decoder_channels" not in ModelConfig(model="cnn").as_dict()  # older checkpoints still match
    torch.manual_seed(0)
    mirrored = CNNVAE(channels=(8, 16), decoder_channels=(8, 16))
    torch.manual_seed(0)
    default = CNNVAE(channels=(8, 16))
    assert all(torch.equal(a, b) for a, b in zip(mirrored.state_dict().values(), default.state_dict().values()))
    with pytest.raises(ValueError, match="decoder_channels must be 2 integers"):
        ModelConfig(model="cnn", channels=(8, 16), decoder_channels=(8, 16, 16))


def test_a_copied_model_keeps_the_one_likelihood_object_of_its_name():
    import copy
    import pickle

    model = FCVAE(hidden=(8,), likelihood="sigma")
    assert copy.deepcopy(model).likelihood is model.likelihood is pickle.loads(pickle.dumps(model.likelihood))
