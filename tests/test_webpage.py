"""The explorer's web page without a browser: one self-contained file that loads nothing from the network, with the
run's config, checkpoint sha256 and decoder weights embedded; refusals and command-line errors in one line.
(lab/tests/test_explorer_page.py opens the pages in Chromium and checks the decoder that runs there.)"""

import re

import pytest
import torch
from torch import nn

import explorer
import webpage
from checkpoint import CHECKPOINT, save_checkpoint
from files import sha256
from models import CNNVAE, FCVAE, build_model

NETWORK_LOADS = re.compile(  # an address the browser would fetch: src=, href=, <link>, CSS @import and url()
    r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//|<link\b|@import|url\(\s*["']?(https?:)?//""", re.I
)


def run_with(tmp_path, model, name="run"):
    """A run folder holding `model`'s checkpoint."""
    (tmp_path / name).mkdir()
    save_checkpoint(tmp_path / name / CHECKPOINT, model)
    return tmp_path / name


def cli(args, capsys):
    """(exit status, stderr) of `python explorer.py ARGS`."""
    try:
        code = explorer.main([str(arg) for arg in args])
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def test_the_command_writes_one_self_contained_page_with_the_run_embedded(tmp_path, capsys):
    model = build_model({"model": "cnn", "channels": [4, 6]}, seed=0).eval()
    run = run_with(tmp_path, model)
    out = tmp_path / "pages" / "cnn.html"
    assert cli([run, "--html", out, "--points", 40], capsys) == (0, "")
    assert [path.name for path in out.parent.iterdir()] == ["cnn.html"]
    html = out.read_text()
    assert not NETWORK_LOADS.search(html), NETWORK_LOADS.search(html)
    assert "<script src" not in html and html.count("<script") == 3
    data = webpage.embedded_data(html)
    assert data["sha256"] == sha256(run / CHECKPOINT) and re.fullmatch(r"[0-9a-f]{64}", data["sha256"])
    assert data["config"] == model.plain_config() and data["points"]["count"] == 40 and data["test_images"] == 10000
    weights = webpage.embedded_weights(data)
    assert weights.keys() == model.decoder.state_dict().keys()
    assert all(torch.equal(weights[key], value) for key, value in model.decoder.state_dict().items())
    assert out.stat().st_size < 3e6  # plotly.js gzipped (~2 MB in base64) and a small decoder


def test_the_layer_plan_names_every_weight_the_forward_pass_reads():
    model = FCVAE(hidden=(8, 4), norm="batch", activation="silu")
    plan = webpage.layer_plan(model.decoder)
    assert [layer["op"] for layer in plan] == [
        "linear",
        "batchnorm",
        "silu",
        "linear",
        "batchnorm",
        "silu",
        "linear",
        "reshape",
    ]
    named = {layer[key] for layer in plan for key in ("weight", "bias", "mean", "var") if layer.get(key)}
    assert named == {key for key in model.decoder.state_dict() if not key.endswith("num_batches_tracked")}
    convolutions = [
        layer
        for layer in webpage.layer_plan(CNNVAE(channels=(4, 4, 4), kernel_size=5).decoder)
        if layer["op"].startswith("conv")
    ]
    assert [(layer["op"], layer["kernel"], layer["stride"], layer["output_padding"]) for layer in convolutions] == [
        ("conv", 3, 1, 0),
        ("convT", 5, 2, 1),
        ("convT", 5, 2, 1),
    ]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda model: build_model({"latent_dim": 2, "hidden": [8]}), "latent_dim must be >= 3"),
        (lambda model: model.decoder.append(nn.Dropout()) and model, "cannot run the decoder's layer 4 (Dropout)"),
        (lambda model: model.decoder.insert(1, nn.ELU(alpha=0.5)) and model, "cannot run the decoder's layer 1 (ELU)"),
        (lambda model: model.decoder.append(nn.Sequential(nn.ReLU())) and model, "decoder's layer 4 (Sequential)"),
    ],
)
def test_a_model_the_page_cannot_run_is_refused_in_one_line(tmp_path, capsys, change, words):
    model = change(FCVAE(hidden=(8,)))
    with pytest.raises(webpage.PageError, match=re.escape(words)) as refusal:
        webpage.check_model(model)
    assert "\n" not in str(refusal.value)
    if model.latent_dim == 2:  # a checkpoint holds a config, so only a config can be refused from the command line
        code, err = cli([run_with(tmp_path, model), "--html", tmp_path / "x.html"], capsys)
        assert code == 1 and err.count("\n") == 1 and words in err and not (tmp_path / "x.html").exists()


def test_the_command_reports_a_missing_run_or_a_bad_option_in_one_line(tmp_path, capsys):
    code, err = cli([tmp_path / "nothing", "--html", tmp_path / "x.html"], capsys)
    assert code == 1 and err.count("\n") == 1 and "nothing" in err and "no checkpoint" in err
    for args in ([tmp_path / "nothing"], [tmp_path, "--html", tmp_path / "x.html", "--points", 0]):
        code, err = cli(args, capsys)
        assert code == 2 and err.count("\n") == 1 and not err.startswith("usage:")
    assert list(tmp_path.iterdir()) == []
