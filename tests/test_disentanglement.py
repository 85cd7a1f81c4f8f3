"""The disentanglement metrics on constructed codes whose answer is known, on a small grid of factors (3 x 6 x 10
x 8 x 8, every combination once, as in dSprites): the factors themselves, a rotation of them, a factor copied into
two coordinates, pure noise and dead coordinates; and bad input."""

import math

import numpy as np
import pytest

from disentanglement import (
    dci,
    dci_scores,
    disentanglement,
    factor_entropies,
    factor_vae_score,
    mig,
    mutual_information,
    one_minus_entropy,
)

SIZES = (3, 6, 10, 8, 8)
FACTORS = np.stack(np.meshgrid(*map(np.arange, SIZES), indexing="ij"), -1).reshape(-1, len(SIZES))
CHANCE = 1 / len(SIZES)
ACCURACY_CHANCE = np.mean([1 / size for size in SIZES])  # every value equally common


def standardised(factors: np.ndarray) -> np.ndarray:
    return (factors - factors.mean(0)) / factors.std(0)


def noise(columns: int, seed: int, scale: float = 1.0) -> np.ndarray:
    return scale * np.random.default_rng(seed).normal(size=(len(FACTORS), columns))


TRUE = standardised(FACTORS) + noise(5, 1, scale=0.01)
WITH_NAN = np.where(np.arange(len(FACTORS))[:, None] == 7, np.nan, TRUE)  # row 7 is not a number
ROTATION = np.linalg.qr(np.random.default_rng(2).normal(size=(5, 5)))[0]


@pytest.fixture(scope="module")
def true_scores():
    return disentanglement(TRUE, FACTORS)


# ---------------------------------------------------------------------------------------------- hand-made answers
def test_mutual_information_of_a_code_that_is_a_factor_is_that_factors_entropy():
    factors = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25)  # two independent fair coins
    information = mutual_information(factors[:, :1].astype(float), factors)
    assert information == pytest.approx(np.array([[math.log(2), 0.0]]), abs=1e-12)
    # one coordinate: the gap is the whole information (nothing to share it with); the coin it misses scores 0
    assert mig(factors[:, :1], factors) == {
        "mig": pytest.approx(0.5),
        "mig_per_factor": [pytest.approx(1.0), pytest.approx(0.0, abs=1e-12)],
        "factor_coordinates": [0, 0],
    }


def test_factor_entropies_are_the_most_information_a_coordinate_can_carry():
    entropies = factor_entropies(FACTORS)
    assert entropies == pytest.approx([math.log(size) for size in SIZES])  # every value equally common
    information = mutual_information(FACTORS.astype(float), FACTORS)  # each factor copied into its own coordinate
    assert np.diag(information) == pytest.approx(entropies)
    assert factor_entropies(np.array([[0], [0], [0], [1]])) == pytest.approx(
        [-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    )


def test_dci_scores_of_hand_made_importance_matrices():
    assert dci_scores(np.eye(4)) == (pytest.approx(1.0), pytest.approx(1.0))
    assert dci_scores(np.ones((4, 3))) == (pytest.approx(0.0), pytest.approx(0.0))
    # one coordinate explains both factors: completeness 1 (each factor lives in one coordinate), disentanglement 0
    assert dci_scores(np.array([[0.5, 0.5], [0.0, 0.0]])) == (pytest.approx(0.0), pytest.approx(1.0))
    # a row [3/4, 1/4] over 2 factors: 1 - H_2 = 1 - (-(3/4) log2(3/4) - (1/4) log2(1/4))
    assert one_minus_entropy(np.array([[3.0, 1.0]]))[0] == pytest.approx(1 - 0.8112781244591328)
    assert one_minus_entropy(np.zeros((1, 3)))[0] == pytest.approx(0.0)  # no importance at all: spread evenly


# ---------------------------------------------------------------------------------------------- constructed codes
def test_the_factors_themselves_score_one(true_scores):
    assert true_scores["mig"] > 0.97 and min(true_scores["mig_per_factor"]) > 0.95
    assert true_scores["factor_coordinates"] == [0, 1, 2, 3, 4]
    assert true_scores["factor_vae"] == 1.0
    assert true_scores["dci_disentanglement"] > 0.97 and true_scores["dci_completeness"] > 0.97
    assert true_scores["dci_informativeness"] > 0.99 and true_scores["note"] is None
    assert true_scores["factor_vae_chance"] == CHANCE and true_scores["points"] == len(FACTORS) == 11_520


def test_a_rotation_of_the_factors_keeps_the_information_but_not_the_alignment(true_scores):
    rotated = disentanglement(TRUE @ ROTATION, FACTORS)
    assert rotated["mig"] < 0.15 and max(rotated["mig_per_factor"]) < 0.3
    assert rotated["dci_disentanglement"] < 0.3 and rotated["dci_completeness"] < 0.3
    assert rotated["factor_vae"] < 0.8
    assert rotated["dci_informativeness"] > 0.7  # the trees can still read the factors off the codes (chance 0.17)


def test_a_factor_copied_into_two_coordinates_has_no_gap():
    copied = np.hstack([TRUE, TRUE[:, 2:3] + noise(1, 3, scale=0.01)])  # factor 2 in coordinates 2 and 5
    gaps = mig(copied, FACTORS)
    assert gaps["mig_per_factor"][2] < 0.05
    assert min(np.delete(gaps["mig_per_factor"], 2)) > 0.95
    assert gaps["factor_coordinates"][2] in (2, 5)
    assert dci(copied, FACTORS)["completeness"] < 0.95  # factor 2's importance is split between two coordinates


def test_pure_noise_scores_nothing():
    scores = disentanglement(noise(10, 4), FACTORS)
    assert scores["mig"] < 0.01 and max(scores["mig_per_factor"]) < 0.02
    assert scores["factor_vae"] == pytest.approx(CHANCE, abs=0.03)
    assert scores["dci_disentanglement"] < 0.05 and scores["dci_completeness"] < 0.05
    assert scores["dci_informativeness"] == pytest.approx(ACCURACY_CHANCE, abs=0.02)


def test_dead_coordinates_change_nothing(true_scores):
    with_dead = disentanglement(np.hstack([np.full((len(FACTORS), 3), 0.7), TRUE]), FACTORS)
    assert with_dead["mig_per_factor"] == true_scores["mig_per_factor"]
    assert with_dead["factor_coordinates"] == [3, 4, 5, 6, 7]
    assert with_dead["factor_vae"] == true_scores["factor_vae"] == 1.0  # the dead ones are pruned, not divided by 0
    for key in ("dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert with_dead[key] == pytest.approx(true_scores[key], abs=0.01), key


def test_factor_vae_score_is_seeded_and_prunes_collapsed_coordinates():
    partly = np.hstack([TRUE[:, :3], noise(2, 5, scale=1e-3)])  # factors 3 and 4 lost; two collapsed coordinates
    assert factor_vae_score(partly, FACTORS, seed=7) == factor_vae_score(partly, FACTORS, seed=7)
    # three coordinates, one factor each: factors 3 and 4 have no coordinate left and are always misclassified
    assert factor_vae_score(partly, FACTORS) == pytest.approx(3 / 5, abs=0.03)
    assert factor_vae_score(partly, FACTORS) == factor_vae_score(TRUE[:, :3], FACTORS)  # same votes: pruned
    assert factor_vae_score(noise(4, 6, scale=1e-3), FACTORS) == 0.0


def test_fewer_coordinates_than_factors_is_allowed_and_noted():
    scores = disentanglement(TRUE[:, :3], FACTORS)
    assert scores["note"] == "3 code coordinates for 5 factors: some factors share one"
    assert scores["factor_vae"] == pytest.approx(3 / 5, abs=0.03) and scores["code_coordinates"] == 3


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "codes, factors, message",
    [
        (TRUE[:100], FACTORS, "need the same N"),
        (TRUE[:, 0], FACTORS, "need the same N"),
        (WITH_NAN, FACTORS, "non-finite values in 1 rows (first: row 7)"),
        (TRUE, np.hstack([FACTORS, np.zeros((len(FACTORS), 1), dtype=int)]), "factor 5 takes a single value"),
        (TRUE, FACTORS.astype(float), "factors must be integer value indices"),
    ],
)
def test_bad_input_gives_a_one_line_value_error(codes, factors, message):
    for metric in (mig, factor_vae_score, dci, disentanglement):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
            metric(codes, factors)
        assert "\n" not in str(error.value)
