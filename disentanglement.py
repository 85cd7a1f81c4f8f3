"""Disentanglement metrics: how well codes (posterior means, float (N, D)) line up with known factors of variation
(value indices, int (N, K)), as pure functions of numpy arrays. Imports nothing of the project.

- mutual_information, mig: the mutual information gap (Chen et al. 2018, beta-TCVAE), each code coordinate
  discretised into 20 equal-width bins as disentanglement_lib does, estimated on every data point; factor_entropies,
  the most information a coordinate can carry about each factor.
- factor_vae_score: the FactorVAE score (Kim & Mnih 2018) with disentanglement_lib's settings: batches of 64,
  10,000 training and 5,000 evaluation votes, coordinates with std below 0.05 pruned.
- dci: disentanglement, completeness, informativeness (Eastwood & Williams 2018), importances from extremely
  randomised trees with a minimum leaf (disentanglement_lib's boosted trees take minutes of CPU, not seconds).
- disentanglement: all of them in one plain dict (JSON-ready).

No dependency: `disent` (0.8.0) pulls PyTorch Lightning, h5py and more, and its metrics take a dataset object and an
encoder rather than arrays; disentanglement_lib is TensorFlow 1 and unmaintained. The estimators are short enough to
write on scikit-learn, and the tests check them on codes whose answer is known.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import mutual_info_score

BINS = 20  # equal-width bins per code coordinate for the mutual information (disentanglement_lib)
VOTE_BATCH = 64  # FactorVAE: data points that share the fixed factor value, per vote
TRAIN_VOTES = 10_000  # FactorVAE: votes that make the majority-vote classifier
EVAL_VOTES = 5_000  # FactorVAE: votes it is scored on
PRUNE_STD = 0.05  # FactorVAE: a coordinate whose std over the data is below this has collapsed
DCI_TRAIN = 10_000  # DCI: data points the trees are fitted on
DCI_TEST = 5_000  # DCI: other data points their accuracy is measured on
DCI_TREES = 50  # DCI: trees per factor (extremely randomised, every coordinate tried at each split)
DCI_LEAF = 0.005  # DCI: smallest leaf, as a share of the training points: trees that fit noise credit noise


def check_inputs(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """codes as float64 (N, D) and factors as integers (N, K), or a one-line ValueError saying what is wrong."""
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or 0 in codes.shape + factors.shape:
        raise ValueError(
            f"codes (N, D) and factors (N, K) need the same N > 0, D > 0 and K > 0; got shapes "
            f"{codes.shape} and {factors.shape}"
        )
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be integer value indices, got dtype {factors.dtype}")
    if not np.isfinite(codes).all():
        rows = np.flatnonzero(~np.isfinite(codes).all(1))
        raise ValueError(f"codes have non-finite values in {len(rows)} rows (first: row {rows[0]})")
    single = [k for k in range(factors.shape[1]) if (factors[:, k] == factors[0, k]).all()]
    if single:
        raise ValueError(f"factor {single[0]} takes a single value: there is nothing to disentangle in it")
    return codes, factors


def discretise(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each code coordinate as bin indices 0 .. bins - 1 of `bins` equal-width bins over its range."""
    return np.stack([np.digitize(column, np.histogram_bin_edges(column, bins)[1:-1]) for column in codes.T], 1)


def mutual_information(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Mutual information (nats) between each discretised code coordinate and each factor, (D, K)."""
    codes, factors = check_inputs(codes, factors)
    binned = discretise(codes, bins)
    return np.array([[mutual_info_score(factor, column) for factor in factors.T] for column in binned.T])


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each factor's values, (K,): the most mutual information a code coordinate can have with it."""
    return np.array([mutual_info_score(factor, factor) for factor in np.asarray(factors).T])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> dict[str, float | list]:
    """Mutual information gap: per factor, the two largest mutual informations with a code coordinate, their
    difference over the factor's entropy (1: one coordinate carries the factor alone; 0: none or several do).
    'mig' is the mean over factors; 'factor_coordinates' the coordinate that carries each factor most."""
    information = mutual_information(codes, factors, bins)
    entropy = factor_entropies(factors)
    ranked = np.sort(information, axis=0)[::-1]
    runner_up = ranked[1] if len(ranked) > 1 else 0.0  # one coordinate: nothing to share the factor with
    gaps = (ranked[0] - runner_up) / entropy
    return {
        "mig": float(gaps.mean()),
        "mig_per_factor": gaps.tolist(),
        "factor_coordinates": information.argmax(0).tolist(),
    }


def least_varying_votes(
    scaled: np.ndarray, factors: np.ndarray, votes: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """(K, D) vote counts: for each vote a factor is drawn, fixed at the value of a random data point, and a batch
    of data points with that value drawn; the vote goes to the coordinate of `scaled` with least variance there."""
    counts = np.zeros((factors.shape[1], scaled.shape[1]), dtype=np.int64)
    fixed, anchors = rng.integers(factors.shape[1], size=votes), rng.integers(len(factors), size=votes)
    for k in range(factors.shape[1]):
        anchor = anchors[fixed == k]
        order = np.argsort(factors[:, k], kind="stable")  # the rows of each value of factor k, side by side
        values, starts, sizes = np.unique(factors[order, k], return_index=True, return_counts=True)
        value = np.searchsorted(values, factors[anchor, k])
        picks = starts[value, None] + rng.integers(sizes[value, None], size=(len(anchor), batch_size))
        variances = scaled[order[picks]].var(1, ddof=1)
        np.add.at(counts[k], variances.argmin(1), 1)
    return counts


def factor_vae_score(
    codes: np.ndarray,
    factors: np.ndarray,
    seed: int = 0,
    batch_size: int = VOTE_BATCH,
    train_votes: int = TRAIN_VOTES,
    eval_votes: int = EVAL_VOTES,
    prune_std: float = PRUNE_STD,
) -> float:
    """FactorVAE score: accuracy of the majority-vote classifier from 'the coordinate (divided by its std over the
    data) that varies least when one factor is fixed' to that factor, on evaluation votes; chance is 1 / K.
    Coordinates with std below `prune_std` take no part; 0.0 when none is left."""
    codes, factors = check_inputs(codes, factors)
    std = codes.std(0, ddof=1)
    active = std >= prune_std
    if not active.any():
        return 0.0
    scaled, rng = codes[:, active] / std[active], np.random.default_rng(seed)
    classifier = least_varying_votes(scaled, factors, train_votes, batch_size, rng).argmax(0)  # coordinate -> factor
    votes = least_varying_votes(scaled, factors, eval_votes, batch_size, rng)
    return float(votes[classifier, np.arange(scaled.shape[1])].sum() / eval_votes)


def one_minus_entropy(weights: np.ndarray) -> np.ndarray:
    """1 - entropy of each row of non-negative weights, normalised, in base the row length: 1 when all the weight
    is on one entry, 0 when it is spread evenly (a row of zeros counts as even)."""
    if weights.shape[1] == 1:
        return np.ones(len(weights))
    totals = weights.sum(1, keepdims=True)
    shares = np.where(totals > 0, weights / np.where(totals > 0, totals, 1.0), 1.0 / weights.shape[1])
    logs = np.log(shares, out=np.zeros_like(shares), where=shares > 0)
    return 1.0 + (shares * logs).sum(1) / math.log(weights.shape[1])


def dci_scores(importance: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness of an importance matrix R (D, K): sum over coordinates of their share of the
    total importance times 1 - H_K(R[d] normalised), and the mean over factors of 1 - H_D(R[:, k] normalised)."""
    total = importance.sum()
    share = importance.sum(1) / total if total > 0 else np.zeros(len(importance))
    return float((share * one_minus_entropy(importance)).sum()), float(one_minus_entropy(importance.T).mean())


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    seed: int = 0,
    train_points: int = DCI_TRAIN,
    test_points: int = DCI_TEST,
    trees: int = DCI_TREES,
    leaf: float = DCI_LEAF,
) -> dict[str, float | list]:
    """DCI (Eastwood & Williams 2018): one forest of extremely randomised trees per factor predicts it from the
    codes (leaves of at least `leaf` of the training points); their impurity importances make R (D, K).
    'informativeness' is the mean accuracy on held-out points (not an error: 1 is best; chance is the share of each
    factor's most common value). Fewer points than asked: 2/3 train, 1/3 test."""
    codes, factors = check_inputs(codes, factors)
    n_train = min(train_points, 2 * len(codes) // 3)
    rows = np.random.default_rng(seed).permutation(len(codes))
    train, test = rows[:n_train], rows[n_train : n_train + test_points]
    importance, accuracy = np.zeros((codes.shape[1], factors.shape[1])), []
    for k, factor in enumerate(factors.T):
        forest = ExtraTreesClassifier(
            n_estimators=trees, max_features=None, min_samples_leaf=leaf, random_state=seed, n_jobs=1
        )
        forest.fit(codes[train], factor[train])
        importance[:, k] = forest.feature_importances_
        accuracy.append(float(forest.score(codes[test], factor[test])))
    disentangled, complete = dci_scores(importance)
    return {
        "disentanglement": disentangled,
        "completeness": complete,
        "informativeness": float(np.mean(accuracy)),
        "informativeness_per_factor": accuracy,
        "importance": importance.tolist(),
    }


def disentanglement(codes: np.ndarray, factors: np.ndarray, seed: int = 0) -> dict[str, float | int | list | None]:
    """Every metric above in one plain dict of floats, ints and lists; 'note' says what limits the reading (None
    when nothing does)."""
    codes, factors = check_inputs(codes, factors)
    gaps, parts = mig(codes, factors), dci(codes, factors, seed)
    notes = []
    if codes.shape[1] < factors.shape[1]:
        notes.append(f"{codes.shape[1]} code coordinates for {factors.shape[1]} factors: some factors share one")
    if not (codes.std(0, ddof=1) >= PRUNE_STD).any():
        notes.append(f"every code coordinate has std below {PRUNE_STD}: FactorVAE score 0")
    return {
        "mig": gaps["mig"],
        "mig_per_factor": gaps["mig_per_factor"],
        "factor_coordinates": gaps["factor_coordinates"],
        "factor_vae": factor_vae_score(codes, factors, seed),
        "factor_vae_chance": 1 / factors.shape[1],
        "dci_disentanglement": parts["disentanglement"],
        "dci_completeness": parts["completeness"],
        "dci_informativeness": parts["informativeness"],
        "dci_informativeness_per_factor": parts["informativeness_per_factor"],
        "points": len(codes),
        "code_coordinates": codes.shape[1],
        "factors": factors.shape[1],
        "note": "; ".join(notes) or None,
    }
