"""The objectives: beta-VAE "H", capacity-controlled "B" (Burgess et al. 2018: loss, ramp, exactness, resume) and
beta-TCVAE (Chen et al. 2018: the total correlation estimate on cases with a known answer, the loss, training)."""

import math

import pytest
import torch

from checkpoint import load_checkpoint
from config import TrainConfig
from likelihoods import LIKELIHOODS
from models import FCVAE, VAEOutput
from objectives import OBJECTIVES, BetaH, BetaTC, CapacityB, LossTerms, objective, total_correlation
from train import TrainingError, fit, prepare_training, train_epoch


def h_loss(output, x, beta):
    return objective(TrainConfig(beta=beta), len(x)).loss(output, x, LIKELIHOODS["bernoulli"], 0.0)


QUIET = {"progress": False, "log": lambda line: None}


def test_loss_is_recon_plus_gamma_times_distance_of_kl_to_capacity():
    torch.manual_seed(0)
    logits, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    output = VAEOutput(torch.sigmoid(logits), logits, mu, logvar, mu)
    plain = h_loss(output, x, 1.0)
    for capacity in (0.0, plain.kl.item() / 2, plain.kl.item() * 2):
        goal = objective(TrainConfig(capacity=capacity, capacity_epochs=1), len(x))  # C reached after one epoch
        terms = goal.loss(output, x, LIKELIHOODS["bernoulli"], 1.0)
        assert terms.recon == plain.recon and terms.kl == plain.kl
        expected = plain.recon.item() + 100.0 * abs(plain.kl.item() - capacity)
        assert terms.total.item() == pytest.approx(expected, rel=1e-6)


def test_target_capacity_rises_linearly_then_holds():
    goal = objective(TrainConfig(capacity=20.0, capacity_epochs=4, objective="B"), 100)
    assert isinstance(goal, CapacityB) and (goal.capacity, goal.capacity_epochs, goal.gamma) == (20.0, 4, 100.0)
    assert [goal.target(e) for e in (0, 1, 2, 3.5, 4, 9)] == [0.0, 5.0, 10.0, 17.5, 20.0, 20.0]
    assert [goal.epoch_notes(e) for e in (1, 4)] == [{"capacity": 5.0}, {"capacity": 20.0}]
    assert objective(TrainConfig(), 100).epoch_notes(3) == {}
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        TrainConfig(capacity=-1.0, objective="B")
    with pytest.raises(ValueError, match="capacity_epochs must be >= 1"):
        TrainConfig(capacity=5.0, capacity_epochs=0, objective="B")


def test_each_objective_is_chosen_once_from_the_config_and_owns_its_settings():
    assert [
        type(objective(TrainConfig(objective=name, capacity=c), 10))
        for name, c in (("H", None), ("B", 5.0), ("TC", None))
    ] == [BetaH, CapacityB, BetaTC]
    assert TrainConfig(capacity=5.0).objective == "B"  # given without an objective: the one it implies
    assert TrainConfig.from_dict({"beta": 0.1, "capacity": 5.0, "train_images": 10}).objective == "B"  # saved so
    assert TrainConfig.from_dict({"beta": 0.1, "capacity": None}).objective == "H"
    with pytest.raises(ValueError, match="capacity must be given for objective B"):
        TrainConfig(objective="B")
    with pytest.raises(ValueError, match="gamma only apply with objective B, not TC"):
        TrainConfig(objective="TC", gamma=3.0)
    with pytest.raises(ValueError, match="capacity only apply with objective B, not H"):
        TrainConfig(objective="H", capacity=3.0)
    with pytest.raises(ValueError, match="unknown objective 'Z'; choose one of H, B, TC"):
        TrainConfig(objective="Z")
    assert set(OBJECTIVES) == {"H", "B", "TC"}


def test_the_objective_total_is_the_loss_it_trains():
    torch.manual_seed(0)
    logits, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    output = VAEOutput(torch.sigmoid(logits), logits, mu, logvar, mu)
    for goal in (
        objective(TrainConfig(beta=0.3), 4),
        objective(TrainConfig(capacity=6.0, capacity_epochs=3, gamma=10.0), 4),
    ):
        for epochs_done in (0.5, 2.0, 7.0):
            terms = goal.loss(output, x, LIKELIHOODS["bernoulli"], epochs_done)
            total = goal.total(terms.recon.item(), terms.kl.item(), epochs_done)
            assert terms.total.item() == pytest.approx(total, rel=1e-6)
    assert objective(TrainConfig(beta=0.3), 4).total(100.0, 10.0, 1) == pytest.approx(103.0)
    capacity = objective(TrainConfig(capacity=6.0, capacity_epochs=3, gamma=10.0), 4)
    assert capacity.total(100.0, 10.0, 1.5) == pytest.approx(170.0)


def test_with_capacity_off_the_epoch_is_the_beta_vae_step(small_fmnist):
    images = small_fmnist.train_images[:256]
    config = TrainConfig(beta=0.5, batch_size=128)
    results = []
    for manual in (False, True):
        torch.manual_seed(1)
        model = FCVAE(hidden=(32,))
        optimizer, generator = prepare_training(model, config.lr), torch.Generator().manual_seed(0)
        if not manual:
            goal = objective(config, len(images))
            results.append(train_epoch(model, optimizer, images, goal, config, generator)["total"])
            continue
        total = 0.0
        for index in torch.randperm(256, generator=generator).split(128):  # as data.batches draws them
            x = images[index]
            terms = h_loss(model(x, generator=generator), x, 0.5)
            optimizer.zero_grad()
            terms.total.backward()
            optimizer.step()
            total += terms.total.item() * len(x)
        results.append(total / 256)
    assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_a_small_run_ends_near_its_target_capacity(small_fmnist):
    torch.manual_seed(0)
    history = fit(
        FCVAE(hidden=(128,)),
        small_fmnist,
        TrainConfig(capacity=6.0, capacity_epochs=3, epochs=8, batch_size=64),
        **QUIET,
    )
    assert [h["capacity"] for h in history] == [2.0, 4.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
    # gamma * |KL - C| keeps the batch KL near C; the test KL of single epochs swings by about a nat, so the
    # tolerance is on the mean of the last three epochs: 1 nat on the test set, 0.5 nats on the training set
    last = history[-3:]
    assert sum(h["test"]["kl"] for h in last) / 3 == pytest.approx(6.0, abs=1.0)
    assert sum(h["train"]["kl"] for h in last) / 3 == pytest.approx(6.0, abs=0.5)


def test_resume_in_the_middle_of_the_ramp_is_bit_exact(tmp_path, small_fmnist):
    def run(epochs, out_dir=None, checkpoint=None):
        torch.manual_seed(2)
        model = FCVAE(hidden=(32,))
        config = TrainConfig(capacity=8.0, capacity_epochs=3, epochs=epochs, batch_size=100, seed=2)
        history = fit(model, small_fmnist, config, out_dir=out_dir, checkpoint=checkpoint, **QUIET)
        return model, history

    straight, straight_history = run(3)
    run(1, out_dir=tmp_path)
    resumed, resumed_history = run(3, out_dir=tmp_path, checkpoint=load_checkpoint(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))

    def strip(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert strip(resumed_history) == strip(straight_history)
    assert [h["capacity"] for h in resumed_history] == pytest.approx([8 / 3, 16 / 3, 8.0])


def test_a_non_finite_capacity_loss_suggests_a_smaller_gamma_not_beta(small_fmnist, monkeypatch):
    real_loss = CapacityB.loss

    def nan_loss(self, output, x, *args):
        terms = real_loss(self, output, x, *args)
        return LossTerms(terms.recon, terms.kl, terms.total * float("nan"))

    monkeypatch.setattr(CapacityB, "loss", nan_loss)
    with pytest.raises(TrainingError, match=r"non-finite total loss at epoch 1, step 1") as error:
        fit(FCVAE(hidden=(16,)), small_fmnist, TrainConfig(capacity=5.0, gamma=30.0, epochs=1), **QUIET)
    assert "a smaller gamma (gamma=30)" in str(error.value) and "beta" not in str(error.value)


def aggregate_sample(correlation, n=3000, sigma=0.3, seed=0):
    """z, mu, logvar of n images whose posteriors (std sigma) are about means from a 2-d standard Gaussian with this
    correlation: the aggregate posterior is the Gaussian of covariance [[1 + s2, r], [r, 1 + s2]], s2 = sigma^2, and
    its total correlation is -0.5 log(1 - (r / (1 + s2))^2)."""
    generator = torch.Generator().manual_seed(seed)
    a, b = (torch.randn(n, generator=generator, dtype=torch.float64) for _ in range(2))
    mu = torch.stack([a, correlation * a + math.sqrt(1 - correlation**2) * b], 1)
    logvar = torch.full_like(mu, 2 * math.log(sigma))
    truth = -0.5 * math.log(1 - (correlation / (1 + sigma**2)) ** 2)
    return mu + sigma * torch.randn(mu.shape, generator=generator, dtype=torch.float64), mu, logvar, truth


@pytest.mark.parametrize("correlation", [0.0, 0.6, 0.9])
def test_the_total_correlation_estimate_finds_a_known_answer_on_a_large_batch(correlation):
    z, mu, logvar, truth = aggregate_sample(correlation)
    assert total_correlation(z, mu, logvar).item() == pytest.approx(truth, abs=0.03)


def test_the_estimate_is_biased_upward_on_small_batches_with_narrow_posteriors():
    """Each image sees only the batch: with posteriors narrower than the batch's spacing, each density is its own
    image's, and independent coordinates read as correlated (by up to (D - 1) log M)."""
    z, mu, logvar, truth = aggregate_sample(0.0, n=2000, sigma=0.02)
    batches = [total_correlation(z[i : i + 64], mu[i : i + 64], logvar[i : i + 64]).item() for i in range(0, 2000, 64)]
    assert truth == 0.0 and sum(batches) / len(batches) > 1.0 > total_correlation(z, mu, logvar).item()


def test_the_tc_objective_adds_beta_minus_one_times_the_total_correlation_to_the_elbo():
    torch.manual_seed(0)
    logits, x = torch.randn(16, 1, 28, 28), torch.rand(16, 1, 28, 28)
    mu, logvar = torch.randn(16, 4), torch.randn(16, 4) * 0.1
    z = mu + torch.randn(16, 4) * (0.5 * logvar).exp()
    output = VAEOutput(torch.sigmoid(logits), logits, mu, logvar, z)
    plain = h_loss(output, x, 1.0)
    goal = objective(TrainConfig(objective="TC", beta=6.0), 1000)
    terms = goal.loss(output, x, LIKELIHOODS["bernoulli"], 0.5)
    tc = total_correlation(z, mu, logvar)
    assert terms.recon == plain.recon and terms.kl == plain.kl
    assert terms.total.item() == pytest.approx((plain.total + 5.0 * tc).item(), rel=1e-6)
    assert objective(TrainConfig(objective="TC", beta=1.0), 1000).loss(
        output, x, LIKELIHOODS["bernoulli"], 0
    ).total == (plain.total)
    assert goal.total(100.0, 10.0, 1) == 110.0  # its per-epoch test total: the ELBO's (TC needs training batches)


def test_a_tc_run_trains_resumes_bit_exactly_and_names_its_objective(tmp_path, small_fmnist):
    config = TrainConfig(objective="TC", beta=4.0, epochs=2, batch_size=100)
    torch.manual_seed(0)
    straight = fit(FCVAE(hidden=(32,)), small_fmnist, config, **QUIET)
    torch.manual_seed(0)
    fit(
        FCVAE(hidden=(32,)),
        small_fmnist,
        TrainConfig(objective="TC", beta=4.0, epochs=1, batch_size=100),
        out_dir=tmp_path,
        **QUIET,
    )
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["train_config"]["objective"] == "TC"
    torch.manual_seed(0)
    resumed = fit(FCVAE(hidden=(32,)), small_fmnist, config, out_dir=tmp_path, checkpoint=checkpoint, **QUIET)
    assert [h["train"] for h in resumed] == [h["train"] for h in straight]
    assert all(math.isfinite(h["train"]["total"]) for h in straight)
