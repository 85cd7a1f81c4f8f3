"""lab/train_classifier.py: the committed classifier weights are never replaced unasked."""

import pytest


def test_retraining_the_classifier_never_replaces_its_weights_unasked(tmp_path, capsys):
    from lab import train_classifier

    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"the committed weights")
    with pytest.raises(SystemExit) as stop:
        train_classifier.main(["--out", str(weights), "--epochs", "1"])
    assert stop.value.code == 2 and "--force" in capsys.readouterr().err
    assert weights.read_bytes() == b"the committed weights"
