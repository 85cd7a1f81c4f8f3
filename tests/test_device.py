"""Device handling, checked as far as a CPU can: noise and shuffling are drawn on their generator's device (the
CPU) and moved, so a CUDA tensor never meets a CPU generator and a seed gives the same numbers everywhere; the
command lines refuse a device this machine lacks in one line. docs/performance.md says what ran on a GPU."""

import functools

import pytest
import torch
from conftest import run_main, tiny_fit

import evaluate
import metrics
from data import batches
from models import FCVAE
from objectives import dataset_loss


def strict(draw):
    """torch's rule on CUDA, enforced on every device: a generator only draws onto its own device."""

    @functools.wraps(draw)
    def checked(*args, generator=None, device=None, **kwargs):
        if generator is not None and torch.device(device or "cpu") != generator.device:
            raise RuntimeError(f"a {generator.device} generator drawing onto {device}")
        return draw(*args, generator=generator, device=device, **kwargs)

    return checked


@pytest.fixture
def generators_keep_to_their_device(monkeypatch):
    for name in ("randn", "rand", "randperm"):
        monkeypatch.setattr(torch, name, strict(getattr(torch, name)))


def test_noise_and_order_for_another_device_are_drawn_on_the_cpu_and_moved(generators_keep_to_their_device):
    model, mu = FCVAE(hidden=(8,)), torch.zeros(4, 3, device="meta")  # meta: a device that is not the generator's
    z = model.reparameterize(mu, mu, torch.Generator().manual_seed(0), sample=True)
    assert z.device.type == "meta" and z.shape == mu.shape
    batch = next(batches(torch.zeros(10, 1, 28, 28, device="meta"), 4, torch.Generator().manual_seed(0)))
    assert batch.device.type == "meta" and batch.shape == (4, 1, 28, 28)
    with pytest.raises(RuntimeError, match="generator"):  # the rule bites: drawing straight onto meta
        torch.randn(2, generator=torch.Generator(), device="meta")


def test_training_and_evaluation_draw_every_number_on_their_generator_device(
    generators_keep_to_their_device, tiny_data
):
    model, history = tiny_fit(tiny_data)
    assert history[-1]["test"]["recon"] > 0
    assert dataset_loss(model, tiny_data.test_images[:50])["kl"] >= 0
    assert metrics.iwae_nll(model, tiny_data.test_images[:20], k=3, batch_size=10) > 0


def test_the_noise_is_the_generator_s_own_sequence():
    """Same seed, same noise: what reparameterize adds is exactly the generator's next standard normals."""
    model, zeros = FCVAE(hidden=(8,)), torch.zeros(5, 3)
    z = model.reparameterize(zeros, zeros, torch.Generator().manual_seed(7), sample=True)
    torch.testing.assert_close(z, torch.randn(5, 3, generator=torch.Generator().manual_seed(7)), rtol=0, atol=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot be shown")
def test_a_device_this_machine_lacks_is_refused_in_one_line(tmp_path, capsys):
    code, err = run_main(["--model", "fc", "--device", "cuda", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "cuda is not available on this machine" in err and len(err.strip().splitlines()) <= 2
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as stop:
        evaluate.main([str(tmp_path), "--device", "cuda"])
    assert stop.value.code == 2 and "--device cuda is not available" in capsys.readouterr().err
