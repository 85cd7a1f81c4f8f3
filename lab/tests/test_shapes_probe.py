"""lab/shapes_probe.py: orientation is scored modulo each shape's symmetry, and the factor figure stays small."""

import numpy as np
import pytest

from shapes import generate


def rows_by_factor(predicted, true):
    from lab.shapes_probe import accuracy_rows

    return {row["factor"]: row for row in accuracy_rows(predicted, true)}


def test_orientation_counts_right_modulo_the_shape_s_symmetry():
    true = np.array(list(np.ndindex(3, 1, 20, 1, 1)))  # every shape at every orientation
    quarter_turn, half_turn = true.copy(), true.copy()
    quarter_turn[:, 2] = (true[:, 2] + 5) % 20
    half_turn[:, 2] = (true[:, 2] + 10) % 20
    quarter = rows_by_factor(quarter_turn, true)
    assert quarter["orientation, squares"]["accuracy modulo symmetry"] == 1
    assert quarter["orientation, ellipses"]["accuracy modulo symmetry"] == 0
    assert quarter["orientation, hearts"]["accuracy modulo symmetry"] == 0
    half = rows_by_factor(half_turn, true)
    assert half["orientation, ellipses"]["accuracy modulo symmetry"] == 1
    assert half["orientation"]["probe accuracy"] == 0 and half["orientation"]["accuracy modulo symmetry"] == 2 / 3
    assert half["shape"]["probe accuracy"] == half["shape"]["accuracy modulo symmetry"] == 1
    assert [row["values"] for row in half.values()] == ["3", "6", "20", "20 (5 distinct)", "20 (10 distinct)",
                                                        "20 (20 distinct)", "14", "14"]  # fmt: skip


def test_the_factor_figure_is_a_small_png(tmp_path):
    import plots

    plots.save(plots.plot_shape_factors(generate()[0]), "factors.png", folder=tmp_path)  # as the probe saves it
    png = (tmp_path / "factors.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) < 150_000


def test_epochs_below_one_are_refused_in_one_line(capsys):
    from lab.shapes_probe import main

    with pytest.raises(SystemExit) as stop:
        main(["--epochs", "0"])
    assert stop.value.code == 2 and capsys.readouterr().err.count("\n") == 1
