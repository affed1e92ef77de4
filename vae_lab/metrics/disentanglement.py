"""Disentanglement metrics with google-research/disentanglement_lib's definitions (docs/disentanglement.md)."""

import math
import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
import scipy.stats
import torch
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.svm import LinearSVC

# The property each score speaks to (docs/disentanglement.md; MIG and SAP as compactness, after Zaidi et al., 2020);
# Gaussian total correlation ignores the factors, so it has none.
PROPERTY: dict[str, str] = {
    "mig": "compactness", "sap": "compactness", "dci_disentanglement": "modularity", "dci_completeness": "compactness",
    "dci_informativeness": "explicitness", "modularity": "modularity", "explicitness": "explicitness",
    "beta_vae_score": "modularity", "factor_vae_score": "modularity",
}


class GroundTruth(Protocol):
    """A dataset with known discrete generative factors, which can sample factor values and render them."""

    factor_names: list[str]
    factor_sizes: list[int]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """N×K ints, each factor uniform over range(factor_sizes[k])."""

    def images(self, factors: np.ndarray) -> torch.Tensor:
        """N×C×H×W floats in [0, 1] showing the given N×K factor values."""


Encoder = Callable[[torch.Tensor], np.ndarray]  # images N×C×H×W -> mean representation N×D


def split_train_test(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None,
                     factors_test: np.ndarray | None, train_fraction: float = 2 / 3) -> tuple[np.ndarray, ...]:
    """(codes, factors, codes_test, factors_test): the given test set, or else the rows after the first ⌈fraction·N⌉."""
    if (codes_test is None) != (factors_test is None):
        raise ValueError("pass both codes_test and factors_test, or neither")
    if codes_test is not None:
        return codes, factors, codes_test, factors_test
    n_train = math.ceil(len(codes) * train_fraction)
    return codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each code dimension cut into `num_bins` equal-width bins (values 1..num_bins), in float64."""
    columns = np.asarray(codes, dtype=np.float64).T  # a collapsed float32 code has too few distinct bin edges
    return np.stack([np.digitize(column, np.histogram(column, num_bins)[1][:-1]) for column in columns], axis=1)


def discrete_mutual_info(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """D×K matrix of I(code_i; factor_j) (nats) for discrete N×D codes and N×K factors."""
    return np.array([[mutual_info_score(factor, code) for factor in factors.T] for code in codes.T])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each factor column, as I(y; y)."""
    return np.array([mutual_info_score(factor, factor) for factor in factors.T])


def varies(labels: np.ndarray) -> bool:
    """Whether a label vector holds at least two classes (a classifier needs two to fit)."""
    return len(np.unique(labels)) > 1


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """Mutual information gap (Chen et al., 2018), constant factors left out; NaN for a single code."""
    if codes.shape[1] < 2:
        return {"mig": float("nan")}
    information = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    entropy = discrete_entropy(factors)
    top = -np.sort(-information, axis=0)
    varying = entropy > 0
    return {"mig": float(np.mean((top[0, varying] - top[1, varying]) / entropy[varying]))}


def modularity(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """Ridgeway & Zemel (2018) modularity from squared MI profiles; NaN for a single factor."""
    if factors.shape[1] < 2:
        return {"modularity": float("nan")}
    squared = discrete_mutual_info(histogram_discretize(codes, num_bins), factors) ** 2
    best = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = (squared.sum(axis=1) - best) / (best * (squared.shape[1] - 1))
    return {"modularity": float(np.mean(np.where(best > 0, 1 - deviation, 0.0)))}


def explicitness(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None = None,
                 factors_test: np.ndarray | None = None, *, train_fraction: float = 2 / 3) -> dict[str, float]:
    """Ridgeway & Zemel (2018) explicitness: mean one-vs-rest ROC AUC of `LogisticRegression()` per factor."""
    train, train_factors, test, test_factors = split_train_test(codes, factors, codes_test, factors_test,
                                                                train_fraction)
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    train, test = (train - mean) / std, (test - mean) / std
    train_scores, test_scores = [], []
    for j in range(factors.shape[1]):
        if not varies(train_factors[:, j]):
            continue
        classifier = logistic_regression(train, train_factors[:, j])
        train_scores.append(mean_one_vs_rest_auc(classifier.predict_proba(train), classifier.classes_,
                                                 train_factors[:, j]))
        test_scores.append(mean_one_vs_rest_auc(classifier.predict_proba(test), classifier.classes_,
                                                test_factors[:, j]))
    return {"explicitness": nanmean(test_scores), "explicitness_train": nanmean(train_scores)}


def logistic_regression(points: np.ndarray, labels: np.ndarray) -> LogisticRegression:
    """The library's `LogisticRegression()`, fit, its (by-design) convergence notice silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lbfgs failed to converge", category=ConvergenceWarning)
        return LogisticRegression().fit(points, labels)


def mean_one_vs_rest_auc(probabilities: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest `roc_auc_score` over the classes present in `labels` beside others."""
    aucs = [roc_auc_score(labels == label, probabilities[:, c]) for c, label in enumerate(classes)
            if 0 < (labels == label).sum() < len(labels)]
    return float(np.mean(aucs)) if aucs else float("nan")


def nanmean(values: list[float]) -> float:
    """The mean of the finite values, NaN if there are none (without numpy's empty-slice warning)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def sap(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None = None,
        factors_test: np.ndarray | None = None, *, continuous: bool = False, svm_c: float = 0.01,
        train_fraction: float = 2 / 3) -> dict[str, float]:
    """Separated attribute predictability (Kumar et al., 2018): best minus second-best code score per factor."""
    train, train_factors, test, test_factors = split_train_test(codes, factors, codes_test, factors_test,
                                                                train_fraction)
    score = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            if continuous:
                score[i, j] = squared_correlation(train[:, i], train_factors[:, j])
            elif varies(train_factors[:, j]):
                svm = LinearSVC(C=svm_c, class_weight="balanced").fit(train[:, i:i + 1], train_factors[:, j])
                score[i, j] = np.mean(svm.predict(test[:, i:i + 1]) == test_factors[:, j])
    top = np.sort(score, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2])) if len(top) > 1 else float("nan")}  # one code: no gap


def squared_correlation(code: np.ndarray, factor: np.ndarray) -> float:
    """cov(code, factor)² / (var code · var factor), 0 for a (near) constant code."""
    covariance = np.cov(code, factor)
    return float(covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1])) if covariance[0, 0] > 1e-12 else 0.0


BOOSTERS = ("exact", "histogram")


def dci(codes: np.ndarray, factors: np.ndarray, codes_test: np.ndarray | None = None,
        factors_test: np.ndarray | None = None, *, train_fraction: float = 2 / 3, n_stages: int = 100,
        booster: str = "exact", seed: int = 0) -> dict[str, float]:
    """Eastwood & Williams (2018) DCI from one gradient-boosted classifier per factor (`exact` or `histogram`)."""
    if booster not in BOOSTERS:
        raise ValueError(f"booster={booster!r}: choose one of {BOOSTERS}")
    train, train_factors, test, test_factors = split_train_test(codes, factors, codes_test, factors_test,
                                                                train_fraction)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    train_accuracy, test_accuracy = [], []
    for j in range(factors.shape[1]):
        labels = train_factors[:, j]
        if varies(labels):
            importance[:, j], model = boosted_trees(train, labels, n_stages, booster, seed)
            train_predicted, test_predicted = model.predict(train), model.predict(test)
        else:  # nothing to learn: the one class everywhere, no importance
            train_predicted, test_predicted = labels, np.full(len(test), labels[0])
        train_accuracy.append(np.mean(train_predicted == labels))
        test_accuracy.append(np.mean(test_predicted == test_factors[:, j]))
    return {"dci_disentanglement": weighted_specificity(importance),
            "dci_completeness": weighted_specificity(importance.T),
            "dci_informativeness": float(np.mean(test_accuracy)),
            "dci_informativeness_train": float(np.mean(train_accuracy))}


def boosted_trees(x: np.ndarray, labels: np.ndarray, n_stages: int, booster: str, seed: int
                  ) -> tuple[np.ndarray, GradientBoostingClassifier | HistGradientBoostingClassifier]:
    """A fitted booster (see `dci`) and its D feature importances, normalised to sum 1 (all 0 if it never split)."""
    if booster == "exact":
        model = GradientBoostingClassifier(n_estimators=n_stages, random_state=seed).fit(x, labels)
        return np.abs(model.feature_importances_), model
    model = HistGradientBoostingClassifier(max_iter=n_stages, learning_rate=0.1, max_depth=3, max_leaf_nodes=None,
                                           min_samples_leaf=1, l2_regularization=0.0, early_stopping=False,
                                           random_state=seed).fit(x, labels)
    gain = np.zeros(x.shape[1])
    for stage in model._predictors:  # scikit-learn keeps the fitted trees here: one per class and stage
        for tree in stage:
            splits = tree.nodes[tree.nodes["is_leaf"] == 0]
            np.add.at(gain, splits["feature_idx"], splits["gain"])
    return (gain / gain.sum() if gain.sum() > 0 else gain), model


def weighted_specificity(importance: np.ndarray) -> float:
    """Σ_rows (row's share of importance)·(1 − entropy of the row, base = number of columns); 1 for one column."""
    if importance.shape[1] == 1:  # all of a row's importance is in its one column (log base 1 is undefined)
        return 1.0
    specificity = 1 - scipy.stats.entropy(importance.T + 1e-11, base=importance.shape[1])
    weight = importance.sum(axis=1) if importance.sum() > 0 else np.ones(len(importance))
    return float((specificity * weight).sum() / weight.sum())


def gaussian_total_correlation(codes: np.ndarray, factors: np.ndarray | None = None) -> dict[str, float]:
    """KL between a Gaussian with the codes' covariance and its marginals' product (`factors` unused)."""
    covariance = np.atleast_2d(np.cov(codes, rowvar=False))
    total = 0.5 * (np.log(np.diag(covariance)).sum() - np.linalg.slogdet(covariance)[1])
    return {"gaussian_total_correlation": float(total)}


def encode_factors(data: GroundTruth, encode: Encoder, factors: np.ndarray, images_per_call: int = 4096) -> np.ndarray:
    """Representations (…×D) of the images of factors of any leading shape (…×K), a few thousand images per call."""
    flat = factors.reshape(-1, factors.shape[-1])
    with torch.no_grad():
        codes = [np.asarray(encode(data.images(flat[start:start + images_per_call])))
                 for start in range(0, len(flat), images_per_call)]
    return np.concatenate(codes).reshape(*factors.shape[:-1], -1)


def batches_sharing_a_factor(data: GroundTruth, rng: np.random.Generator, fixed: np.ndarray, batch_size: int
                             ) -> np.ndarray:
    """len(fixed)×batch_size×K random factors, batch b holding factor fixed[b] at the value of its first row."""
    factors = data.sample_factors(len(fixed) * batch_size, rng).reshape(len(fixed), batch_size, -1)
    batch = np.arange(len(fixed))
    factors[batch, :, fixed] = factors[batch, 0, fixed][:, None]
    return factors


def beta_vae_score(data: GroundTruth, encode: Encoder, rng: np.random.Generator, *, batch_size: int = 64,
                   num_train: int = 10_000, num_eval: int = 5_000, images_per_call: int = 4096) -> dict[str, float]:
    """Higgins et al. (2017): logistic-regression accuracy on which factor pairs of images shared."""
    train_points, train_labels = beta_vae_points(data, encode, rng, batch_size, num_train, images_per_call)
    eval_points, eval_labels = beta_vae_points(data, encode, rng, batch_size, num_eval, images_per_call)
    return beta_vae_accuracy(train_points, train_labels, eval_points, eval_labels)


def beta_vae_accuracy(train_points: np.ndarray, train_labels: np.ndarray, eval_points: np.ndarray,
                      eval_labels: np.ndarray) -> dict[str, float]:
    """The BetaVAE score's `LogisticRegression()` eval and train accuracy; NaN for a single factor."""
    if not varies(train_labels):
        return {"beta_vae_score": float("nan"), "beta_vae_train_accuracy": float("nan")}
    classifier = logistic_regression(train_points, train_labels)
    return {"beta_vae_score": float(classifier.score(eval_points, eval_labels)),
            "beta_vae_train_accuracy": float(classifier.score(train_points, train_labels))}


def beta_vae_points(data: GroundTruth, encode: Encoder, rng: np.random.Generator, batch_size: int, num_points: int,
                    images_per_call: int) -> tuple[np.ndarray, np.ndarray]:
    """`num_points` × D mean |z₁ − z₂| feature vectors and the index of the factor each pair shared."""
    per_call = max(1, images_per_call // (2 * batch_size))
    points, labels = [], []
    for start in range(0, num_points, per_call):
        fixed = rng.integers(len(data.factor_sizes), size=min(per_call, num_points - start))
        first, second = data.sample_factors(2 * len(fixed) * batch_size, rng).reshape(2, len(fixed), batch_size, -1)
        second[np.arange(len(fixed)), :, fixed] = first[np.arange(len(fixed)), :, fixed]
        codes = encode_factors(data, encode, np.stack([first, second]), images_per_call)
        points.append(np.abs(codes[0] - codes[1]).mean(axis=1))
        labels.append(fixed)
    return np.concatenate(points), np.concatenate(labels)


def factor_vae_score(data: GroundTruth, encode: Encoder, rng: np.random.Generator, *, batch_size: int = 64,
                     num_train: int = 10_000, num_eval: int = 5_000, num_variance_estimate: int = 10_000,
                     prune_threshold: float = 0.05, images_per_call: int = 4096) -> dict[str, float]:
    """Kim & Mnih (2018): majority-vote accuracy from the code of least relative variance to the fixed factor."""
    global_variance = encode_factors(data, encode, data.sample_factors(num_variance_estimate, rng),
                                     images_per_call).var(axis=0, ddof=1)
    active = np.flatnonzero(np.sqrt(global_variance) >= prune_threshold)
    if len(active) == 0:
        return {"factor_vae_score": 0.0, "factor_vae_train_accuracy": 0.0, "factor_vae_active_dims": 0.0}
    train_votes, eval_votes = (factor_vae_votes(data, encode, rng, global_variance, active, batch_size, count,
                                                images_per_call) for count in (num_train, num_eval))
    predicted_factor = train_votes.argmax(axis=0)
    codes = np.arange(train_votes.shape[1])
    return {"factor_vae_score": float(eval_votes[predicted_factor, codes].sum() / eval_votes.sum()),
            "factor_vae_train_accuracy": float(train_votes[predicted_factor, codes].sum() / train_votes.sum()),
            "factor_vae_active_dims": float(len(active))}


def factor_vae_votes(data: GroundTruth, encode: Encoder, rng: np.random.Generator, global_variance: np.ndarray,
                     active: np.ndarray, batch_size: int, num_votes: int, images_per_call: int) -> np.ndarray:
    """K×D counts of (fixed factor, active code dimension of least variance relative to the global one)."""
    votes = np.zeros((len(data.factor_sizes), len(global_variance)), dtype=np.int64)
    per_call = max(1, images_per_call // batch_size)
    for start in range(0, num_votes, per_call):
        fixed = rng.integers(len(data.factor_sizes), size=min(per_call, num_votes - start))
        codes = encode_factors(data, encode, batches_sharing_a_factor(data, rng, fixed, batch_size), images_per_call)
        relative = codes.var(axis=1, ddof=1)[:, active] / global_variance[active]
        np.add.at(votes, (fixed, active[relative.argmin(axis=1)]), 1)
    return votes
