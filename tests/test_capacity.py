"""Capacity-controlled training, beta-VAE "B" (Burgess et al. 2018): loss, ramp, exactness and resume."""

import pytest
import torch

import models
from checkpoint import load_checkpoint
from config import TrainConfig
from likelihoods import LIKELIHOODS
from models import FCVAE, LossTerms, Objective, VAEOutput, beta_vae_loss, capacity_loss
from train import TrainingError, fit, prepare_training, train_epoch

QUIET = {"progress": False, "log": lambda line: None}


def test_loss_is_recon_plus_gamma_times_distance_of_kl_to_capacity():
    torch.manual_seed(0)
    logits, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    output = VAEOutput(torch.sigmoid(logits), logits, mu, logvar, mu)
    plain = beta_vae_loss(output, x, beta=1.0)
    for capacity in (0.0, plain.kl.item() / 2, plain.kl.item() * 2):
        terms = capacity_loss(output, x, gamma=100.0, capacity=capacity)
        assert terms.recon == plain.recon and terms.kl == plain.kl
        expected = plain.recon.item() + 100.0 * abs(plain.kl.item() - capacity)
        assert terms.total.item() == pytest.approx(expected, rel=1e-6)


def test_target_capacity_rises_linearly_then_holds():
    goal = Objective.of(TrainConfig(capacity=20.0, capacity_epochs=4))
    assert goal == Objective(beta=0.1, capacity=20.0, capacity_epochs=4, gamma=100.0)
    assert [goal.target(e) for e in (0, 1, 2, 3.5, 4, 9)] == [0.0, 5.0, 10.0, 17.5, 20.0, 20.0]
    assert Objective.of(TrainConfig()).target(3) is None
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        TrainConfig(capacity=-1.0)
    with pytest.raises(ValueError, match="capacity_epochs must be >= 1"):
        TrainConfig(capacity=5.0, capacity_epochs=0)


def test_the_objective_total_is_the_loss_it_trains():
    torch.manual_seed(0)
    logits, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    output = VAEOutput(torch.sigmoid(logits), logits, mu, logvar, mu)
    for goal in (
        Objective.of(TrainConfig(beta=0.3)),
        Objective.of(TrainConfig(capacity=6.0, capacity_epochs=3, gamma=10.0)),
    ):
        for epochs_done in (0.5, 2.0, 7.0):
            terms = goal.loss(output, x, LIKELIHOODS["bernoulli"], epochs_done)
            total = goal.total(terms.recon.item(), terms.kl.item(), epochs_done)
            assert terms.total.item() == pytest.approx(total, rel=1e-6)
    assert Objective.of(TrainConfig(beta=0.3)).total(100.0, 10.0, 1) == pytest.approx(103.0)
    capacity = Objective.of(TrainConfig(capacity=6.0, capacity_epochs=3, gamma=10.0))
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
            results.append(train_epoch(model, optimizer, images, config, generator)["total"])
            continue
        total = 0.0
        for index in torch.randperm(256, generator=generator).split(128):  # as data.batches draws them
            x = images[index]
            terms = beta_vae_loss(model(x, generator=generator), x, 0.5)
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
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(resumed_history) == strip(straight_history)
    assert [h["capacity"] for h in resumed_history] == pytest.approx([8 / 3, 16 / 3, 8.0])


def test_a_non_finite_capacity_loss_suggests_a_smaller_gamma_not_beta(small_fmnist, monkeypatch):
    real_loss = models.capacity_loss

    def nan_loss(output, x, *args, **kwargs):
        terms = real_loss(output, x, *args, **kwargs)
        return LossTerms(terms.recon, terms.kl, terms.total * float("nan"))

    monkeypatch.setattr(models, "capacity_loss", nan_loss)
    with pytest.raises(TrainingError, match=r"non-finite total loss at epoch 1, step 1") as error:
        fit(FCVAE(hidden=(16,)), small_fmnist, TrainConfig(capacity=5.0, gamma=30.0, epochs=1), **QUIET)
    assert "a smaller gamma (gamma=30)" in str(error.value) and "beta" not in str(error.value)
