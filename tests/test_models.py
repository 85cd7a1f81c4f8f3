import math

import pytest
import torch

from config import TrainConfig
from data import Dataset
from likelihoods import LIKELIHOODS
from models import CNNVAE, FCVAE, ModelConfig, build_model, count_parameters
from objectives import dataset_loss, dataset_scaled_beta, kl_per_dimension, objective, reconstruction_nll
from samplers import PriorSampler


def data_for(likelihood, n=8):
    """Images in [0, 1], the range every likelihood takes."""
    return torch.rand(n, 1, 28, 28)


def h_loss(output, x, beta=1.0, likelihood=LIKELIHOODS["bernoulli"]):
    """beta-VAE H's loss terms (objectives.BetaH) of a forward output."""
    return objective(TrainConfig(beta=beta), len(x)).loss(output, x, likelihood, 0.0)


@pytest.mark.parametrize("cls", [FCVAE, CNNVAE])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_shapes_and_output_range(cls, likelihood):
    model = cls(latent_dim=5, likelihood=likelihood)
    x = data_for(likelihood)
    out = model(x)
    assert out.recon.shape == out.logits.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (8, 5)
    assert out.recon.min() >= 0.0 and out.recon.max() <= 1.0
    assert model.decode(PriorSampler(5).sample(4)).shape == (4, 1, 28, 28)
    assert model.decode(torch.zeros(2, 5)).shape == (2, 1, 28, 28)


def test_fc_parameter_count_follows_layer_sizes():
    sizes = [784, 512, 256]
    linear = lambda a, b: a * b + b  # noqa: E731
    expected = (
        sum(linear(a, b) for a, b in zip(sizes, sizes[1:]))
        + linear(256, 6)
        + linear(3, 256)
        + linear(256, 512)
        + linear(512, 784)
    )
    assert count_parameters(FCVAE()) == expected


def test_cnn_uses_at_most_ten_percent_of_fc_parameters():
    assert count_parameters(CNNVAE()) <= 0.10 * count_parameters(FCVAE())


def test_reparameterize_returns_mean_in_eval_mode_and_samples_in_training():
    model = FCVAE()
    mu, logvar = torch.randn(4, 3), torch.zeros(4, 3)
    model.eval()
    assert torch.equal(model.reparameterize(mu, logvar), mu)
    assert not torch.equal(model.reparameterize(mu, logvar, sample=True), mu)
    model.train()
    assert not torch.equal(model.reparameterize(mu, logvar), mu)


def test_seed_makes_sampling_and_initialisation_reproducible():
    model = CNNVAE()
    a = model.decode(PriorSampler(3).sample(3, seed=1))
    b = model.decode(PriorSampler(3).sample(3, seed=1))
    assert torch.equal(a, b)
    state = torch.get_rng_state()
    first, second = build_model(ModelConfig(model="cnn"), seed=4), build_model(ModelConfig(model="cnn"), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    assert torch.equal(state, torch.get_rng_state())  # the global random state is left alone


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[0.3, -0.7, -2.0]])
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).mean(0)
    torch.testing.assert_close(kl_per_dimension(mu, logvar), monte_carlo, atol=0.02, rtol=0.02)


def fake_output(logits, mu, logvar):
    from models import VAEOutput

    return VAEOutput(torch.sigmoid(logits), logits, mu, logvar, mu)


def test_bernoulli_loss_equals_hand_computation():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]]).view(2, 1, 1, 2)
    x = torch.tensor([[1.0, 0.25], [0.0, 1.0]]).view(2, 1, 1, 2)
    mu, logvar = torch.tensor([[1.0], [0.0]]), torch.tensor([[0.0], [math.log(4.0)]])

    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    recon = ((bce(0.0, 1.0) + bce(2.0, 0.25)) + (bce(-1.0, 0.0) + bce(0.5, 1.0))) / 2
    kl = (0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 4 - 1 - math.log(4.0))) / 2
    terms = h_loss(fake_output(logits, mu, logvar), x, 0.3)
    assert terms.recon.item() == pytest.approx(recon, rel=1e-6)
    assert terms.kl.item() == pytest.approx(kl, rel=1e-6)
    assert terms.total.item() == pytest.approx(recon + 0.3 * kl, rel=1e-6)


def test_gaussian_loss_is_half_squared_error_of_tanh_output_on_images_mapped_to_minus_one_one():
    logits = torch.tensor([0.2, -0.4, 1.0]).view(1, 1, 1, 3)
    x = torch.tensor([0.0, 0.5, 0.75]).view(1, 1, 1, 3)  # -1, 0 and 0.5 on tanh's range
    expected = 0.5 * sum((math.tanh(lo) - t) ** 2 for lo, t in zip([0.2, -0.4, 1.0], [-1.0, 0.0, 0.5]))
    assert reconstruction_nll(logits, x, LIKELIHOODS["gaussian"]).item() == pytest.approx(expected, rel=1e-6)


def test_beta_scales_only_the_kl_term_and_the_dataset_scaling_is_a_beta():
    torch.manual_seed(0)
    model, x = FCVAE(), torch.rand(16, 1, 28, 28)
    out = model(x, generator=torch.Generator().manual_seed(0))
    low, high = h_loss(out, x, 0.1), h_loss(out, x, 2.0)
    assert torch.equal(low.recon, high.recon) and torch.equal(low.kl, high.kl)
    torch.testing.assert_close(high.total - low.total, 1.9 * low.kl, atol=1e-3, rtol=1e-3)  # float32 near 540
    scaled = h_loss(out, x, dataset_scaled_beta(1.0, 128, 60000)).total
    torch.testing.assert_close(scaled, low.recon + 128 / 60000 * low.kl)
    assert h_loss(out, x, 0.0).total.item() == pytest.approx(low.recon.item())


def test_bernoulli_loss_is_finite_for_extreme_logits():
    logits = torch.tensor([100.0, -100.0]).view(1, 1, 1, 2)
    x = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    terms = h_loss(fake_output(logits, torch.zeros(1, 1), torch.zeros(1, 1)), x)
    assert math.isfinite(terms.total.item()) and terms.recon.item() == pytest.approx(200.0)


@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf")])
def test_negative_beta_is_an_error(beta):
    with pytest.raises(ValueError, match="beta"):
        TrainConfig(beta=beta)


def test_a_dataset_refuses_images_outside_zero_one_for_every_likelihood_takes_them_there():
    unit, signed = torch.rand(4, 1, 28, 28), 2 * torch.rand(4, 1, 28, 28) - 1
    labels, names = torch.zeros(4, dtype=torch.long), ("a",)
    with pytest.raises(ValueError, match=r"test images must lie in \[0, 1\]"):
        Dataset("x", unit, labels, signed, labels, names)
    assert Dataset("x", unit, labels, unit, labels, names).image_shape == (1, 28, 28)


def test_build_model_rebuilds_from_plain_config():
    for model in (FCVAE(latent_dim=4, hidden=(64,)), CNNVAE(likelihood="gaussian", channels=(8, 16))):
        rebuilt = build_model(model.config)
        assert type(rebuilt) is type(model) and rebuilt.config == model.config
        assert count_parameters(rebuilt) == count_parameters(model)
    with pytest.raises(ValueError, match="unknown model"):
        build_model({"model": "rnn"})
    for model in (FCVAE(latent_dim=4, hidden=(64,)), CNNVAE(likelihood="sigma", channels=(8, 16), kernel_size=3)):
        plain = model.plain_config()
        assert plain["image_shape"] == [1, 28, 28] and isinstance(model.config, ModelConfig)
        rebuilt = build_model(plain)
        assert rebuilt.config == model.config and rebuilt.plain_config() == plain
    with pytest.raises(ValueError, match="unknown model settings"):
        build_model({"model": "fc", "widths": [3]})


def test_settings_given_to_a_model_override_its_config():
    model = FCVAE(ModelConfig(latent_dim=5, likelihood="gaussian"), hidden=(32,))
    assert model.config == ModelConfig(latent_dim=5, likelihood="gaussian", hidden=(32,))
    assert (model.latent_dim, model.likelihood.name) == (5, "gaussian")
    assert CNNVAE(ModelConfig(model="fc"), channels=(8, 8)).config.model == "cnn"  # the class decides the kind
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        FCVAE(latent_dim=0)


def test_a_model_over_the_parameter_limit_is_refused_before_allocating():
    import resource
    import time

    from models import MAX_PARAMETERS, architecture_size

    huge = ModelConfig(hidden=(65536, 65536))  # the config itself is valid: the size is build_model's to check
    assert architecture_size(huge) > MAX_PARAMETERS
    peak, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    with pytest.raises(ValueError, match=r"parameters are too many \(at most 268,435,456\)"):
        build_model(huge)
    assert time.monotonic() - started < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 256 * 1024  # KiB: nothing allocated
    for config in (ModelConfig(), ModelConfig(model="cnn", channels=(8, 16, 16))):
        assert architecture_size(config) == count_parameters(build_model(config))


def test_dataset_loss_is_recon_and_kl_drawn_from_its_seed():
    torch.manual_seed(0)
    model, x = FCVAE(hidden=(32,)).train(), torch.rand(30, 1, 28, 28)
    loss = dataset_loss(model, x, batch_size=7, seed=1)
    assert set(loss) == {"recon", "kl"} and model.training  # the mode is restored
    assert loss == dataset_loss(model, x, batch_size=7, seed=1) != dataset_loss(model, x, batch_size=7, seed=2)
    out = model(x, generator=torch.Generator().manual_seed(1), sample=True)  # one batch: the same noise
    terms = h_loss(out, x, 1.0)
    assert dataset_loss(model, x, batch_size=30, seed=1) == {
        "recon": pytest.approx(terms.recon.item(), rel=1e-5),
        "kl": pytest.approx(terms.kl.item(), rel=1e-5),
    }
