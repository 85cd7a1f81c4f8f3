"""Issue 25, part 1: density and coverage (Naeem et al. 2020) and the class mix of samples, on hand-made inputs
where the balls can be counted, and on real images with the project classifier (the sanity rows)."""

import math

import pytest
import torch

import metrics
from classifier import features_and_probs, load_classifier
from metrics import ball_counts, class_mix, density_coverage, knn_radii, precision_recall
from quality import ONE_CLASS, SANITY_NAMES, Reference, blur, reference_features, sanity_sets


# ---------------------------------------------------------------------------------------------- hand-made features
def test_density_and_coverage_count_the_real_balls_by_hand():
    real = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    radii = knn_radii(real, k=1)  # distance to the nearest other point
    assert radii.tolist() == [1.0, 1.0, 2.0, 7.0]
    generated = torch.tensor([[0.5], [20.0]])  # 0.5 lies in the balls of 0 and 1; 20 in none
    counts, hit = ball_counts(generated, real, radii)
    assert counts.tolist() == [2, 0] and hit.tolist() == [True, True, False, False]
    assert density_coverage(generated, real, k=1) == (pytest.approx(1.0), pytest.approx(0.5))  # (2 + 0) / 2 / k
    # 2.0 lies in the balls of 1 (radius 1) and 3 (radius 2): density counts balls, so it can exceed 1
    assert density_coverage(torch.tensor([[2.0]]), real, radii, k=1) == (pytest.approx(2.0), pytest.approx(0.5))
    # with k = 2 the balls grow (radii 3, 2, 3, 9): 0.5 lies in three of them, and the count is divided by 2
    assert knn_radii(real, k=2).tolist() == [3.0, 2.0, 3.0, 9.0]
    assert density_coverage(generated, real, k=2) == (pytest.approx((3 + 0) / 2 / 2), pytest.approx(0.75))


def test_a_real_outlier_fools_precision_but_not_density():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [30.0]])  # 30: a real outlier with a huge ball
    assert knn_radii(real, k=2).tolist() == [2.0, 1.0, 1.0, 2.0, 28.0]
    far = torch.tensor([[20.0], [21.0], [24.0], [25.0]])  # far from the data, but inside the outlier's ball only
    near = torch.tensor([[0.5], [1.5], [2.5]])  # in 2, 4 and 3 balls (2.5 also in the outlier's)
    assert precision_recall(far, real, k=2)[0] == precision_recall(near, real, k=2)[0] == 1.0
    assert density_coverage(far, real, k=2) == (pytest.approx(4 * 1 / 4 / 2), pytest.approx(1 / 5))
    assert density_coverage(near, real, k=2) == (pytest.approx((2 + 4 + 3) / 3 / 2), pytest.approx(1.0))


def test_a_set_against_itself_has_full_coverage_and_density_k_plus_one_over_k():
    points = torch.randn(600, 4, generator=torch.Generator().manual_seed(0))
    for k in (3, 5):
        density, coverage = density_coverage(points, points, k=k)
        # each ball holds its centre and its k - 1 nearest neighbours, and has its k-th neighbour on its edge (in
        # or out by the rounding of torch.cdist): between k and k + 1 hits per point, divided by k
        assert coverage == 1.0 and 1.0 <= density <= (k + 1) / k


def test_coverage_falls_with_dropped_modes_while_density_stays():
    generator = torch.Generator().manual_seed(1)
    centres = 20.0 * torch.eye(4)  # four well separated modes
    real = centres.repeat_interleave(300, 0) + torch.randn(1200, 4, generator=generator)
    every_mode = centres.repeat_interleave(300, 0) + torch.randn(1200, 4, generator=generator)
    two_modes = centres[:2].repeat_interleave(600, 0) + torch.randn(1200, 4, generator=generator)
    density_all, coverage_all = density_coverage(every_mode, real)
    density_two, coverage_two = density_coverage(two_modes, real)
    assert coverage_all > 0.9 and coverage_two == pytest.approx(0.5, abs=0.05)  # two of four modes
    assert 0.8 < density_all < 1.2 and 0.8 < density_two < 1.2  # each sample is as typical either way
    shifted_density, shifted_coverage = density_coverage(every_mode + 3.0, real)
    assert shifted_density < 0.5 * density_all and shifted_coverage < 0.5 * coverage_all


def test_class_mix_of_hand_made_probabilities():
    one_hot = torch.eye(10)
    uniform = class_mix(one_hot)  # one image of every class, each certain
    assert uniform == {
        "class_entropy": pytest.approx(math.log(10)),
        "class_kl_uniform": pytest.approx(0.0),
        "unsure": 0.0,
    }
    single = class_mix(one_hot[[3] * 7])
    assert single == {"class_entropy": 0.0, "class_kl_uniform": pytest.approx(math.log(10)), "unsure": 0.0}
    # classes 0, 0, 1, 1 (shares 1/2, 1/2: entropy log 2); the last two only just (0.4 and 0.3 < 0.5: unsure)
    probs = torch.tensor(
        [[0.9, 0.1] + [0.0] * 8, [0.6, 0.4] + [0.0] * 8, [0.3, 0.4] + [0.3 / 8] * 8, [0.2, 0.3] + [0.5 / 8] * 8]
    )
    mix = class_mix(probs)
    assert mix["class_entropy"] == pytest.approx(math.log(2)) and mix["unsure"] == pytest.approx(0.5)
    assert mix["class_kl_uniform"] == pytest.approx(math.log(10) - math.log(2))
    assert class_mix(probs, unsure=0.35)["unsure"] == pytest.approx(0.25)  # only the 0.3
    assert class_mix(torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9]]))["class_entropy"] == pytest.approx(
        -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    )  # two classes: at most log 2


# ---------------------------------------------------------------------------------------------- real images
@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def data(fmnist):
    """2,000 test images as the reference; 20,000 training images (about 2,000 of the one class)."""
    return fmnist.limited(train=20000, test=2000)


@pytest.fixture(scope="module")
def reference(classifier, data):
    return reference_features(classifier, data)


def test_test_images_against_other_test_images_cover_the_reference_with_every_class(fmnist, classifier, reference):
    test, _ = reference
    features, probs = features_and_probs(classifier, fmnist.test_images[2000:4000])  # another sample of the data
    density, coverage = density_coverage(features, test.features, test.dc_radii)
    assert coverage > 0.95  # 1 - 2^-5 = 0.97 expected for k = 5 and equal sizes (Naeem et al.)
    assert 0.9 < density < 1.1
    mix = class_mix(probs)
    assert mix["class_entropy"] > 2.25 and mix["class_kl_uniform"] < math.log(10) - 2.25  # log 10 = 2.303
    assert (density, coverage) == pytest.approx(tuple(test.quality(features)[key] for key in ("density", "coverage")))
    assert density_coverage(test.features, test.features, test.dc_radii)[1] == 1.0  # each ball holds its centre


def test_one_class_images_cover_less_and_have_almost_no_class_entropy(fmnist, classifier, reference):
    test, _ = reference
    trousers = fmnist.test_images[4000:][fmnist.test_labels[4000:] == ONE_CLASS]
    features, probs = features_and_probs(classifier, trousers)
    density, coverage = density_coverage(features, test.features, test.dc_radii)
    assert coverage < 0.3  # a tenth of the test images are trousers: their balls, and a few neighbours
    assert density > 0.5  # each one is a typical trouser: fidelity stays
    assert class_mix(probs)["class_entropy"] < 0.25 and class_mix(probs)["class_kl_uniform"] > 2.0


def test_sanity_sets_are_the_four_sets_in_unit_range(data):
    sets = sanity_sets(data, seed=3)
    assert tuple(sets) == SANITY_NAMES == ("real", "one_class", "blurred", "noise")
    assert all(images.shape == (2000, 1, 28, 28) for images in sets.values())
    assert all(0.0 <= images.min() and images.max() <= 1.0 for images in sets.values())
    assert torch.equal(sets["real"], data.train_images[:2000])
    assert torch.equal(sets["one_class"], data.train_images[data.train_labels == ONE_CLASS][:2000])
    assert torch.equal(sets["blurred"], blur(data.test_images)) and not torch.equal(sets["blurred"], data.test_images)
    assert torch.equal(sets["noise"], sanity_sets(data, seed=3)["noise"])
    assert not torch.equal(sets["noise"], sanity_sets(data, seed=4)["noise"])


def test_reference_features_rank_the_sanity_sets(reference, data, classifier):
    test, rows = reference
    assert tuple(rows) == SANITY_NAMES and len(test.features) == 2000
    real, one_class, blurred, noise = (rows[name] for name in SANITY_NAMES)
    assert real["coverage"] > 0.95 and real["coverage"] > one_class["coverage"] > noise["coverage"]
    assert real["coverage"] > blurred["coverage"] > noise["coverage"]
    assert min(real["density"], one_class["density"]) > max(blurred["density"], noise["density"])  # fidelity
    assert real["class_entropy"] > 2.25 and one_class["class_entropy"] < 0.25
    assert blurred["class_entropy"] > one_class["class_entropy"]  # the class mix sees the variety under the blur
    assert real["recall"] > one_class["recall"] and real["fd"] < min(row["fd"] for row in (one_class, blurred, noise))
    assert torch.equal(test.pr_radii, knn_radii(test.features, metrics.PR_NEIGHBOURS))
    assert torch.equal(test.dc_radii, knn_radii(test.features, metrics.DC_NEIGHBOURS))
    again = Reference.of(test.features)
    assert all(torch.equal(a, b) for a, b in zip(again, test))
