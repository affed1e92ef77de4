"""Disentanglement metrics on planted codes: perfect, rotated, noisy and redundant representations of known factors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vae_lab.metrics import disentanglement as dis
from vae_lab.metrics.ground_truth import class_factor_metrics

SIZES = [3, 5, 8, 4]
N = 2000
FAST_DCI = {"n_stages": 10}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(size, size=N) for size in SIZES], axis=1)


@pytest.fixture(scope="module")
def perfect(factors) -> np.ndarray:
    """The factors themselves, each rescaled, in a shuffled order of code dimensions."""
    return (factors * np.array([0.5, -2.0, 1.0, 3.0]))[:, [2, 0, 3, 1]]


@pytest.fixture(scope="module")
def rotated(perfect) -> np.ndarray:
    """The standardised perfect codes under a random rotation: every code mixes every factor."""
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    return (perfect - perfect.mean(0)) / perfect.std(0) @ rotation


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(2).normal(size=(N, 4))


class FactorImages:
    """A toy `GroundTruth`: each image is its factor values scaled to [0, 1], laid out as one row of pixels."""

    def __init__(self, sizes: list[int]):
        self.factor_sizes = list(sizes)
        self.factor_names = [f"factor_{k}" for k in range(len(sizes))]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(size, size=n) for size in self.factor_sizes], axis=1)

    def images(self, factors: np.ndarray) -> torch.Tensor:
        scaled = factors / (np.array(self.factor_sizes) - 1)
        return torch.as_tensor(scaled, dtype=torch.float32).reshape(len(factors), 1, 1, -1)


def perfect_encoder(images: torch.Tensor) -> np.ndarray:
    return images.flatten(1).numpy()[:, ::-1] * 4.0


def noise_encoder(images: torch.Tensor) -> np.ndarray:
    return np.random.default_rng(len(images) + int(images.sum() * 1000)).normal(size=(len(images), 3))


# ---------------------------------------------------------------- building blocks


def test_discrete_mutual_info_and_entropy_match_the_closed_form():
    rng = np.random.default_rng(3)
    x = rng.integers(4, size=100_000)
    information = dis.discrete_mutual_info(np.stack([x, x % 2, rng.integers(4, size=100_000)], axis=1), x[:, None])
    assert information[:, 0] == pytest.approx([math.log(4), math.log(2), 0.0], abs=1e-3)
    assert dis.discrete_entropy(x[:, None])[0] == pytest.approx(math.log(4), abs=1e-3)


def test_histogram_discretize_uses_equal_width_bins_numbered_from_one():
    codes = np.array([[0.0, 5.0], [0.49, 5.0], [0.51, 5.0], [1.0, 5.0]])
    binned = dis.histogram_discretize(codes, num_bins=2)
    assert binned[:, 0].tolist() == [1, 1, 2, 2]
    assert len(np.unique(binned[:, 1])) == 1


def test_histogram_discretize_takes_a_collapsed_float32_code():
    """Values a few float32 ulps apart (a collapsed latent) still get bins, and MIG scores such a code 0."""
    collapsed = (np.float32(0.7) + np.arange(1000) % 3 * np.finfo(np.float32).eps).astype(np.float32)[:, None]
    bins = dis.histogram_discretize(collapsed)
    assert bins.shape == (1000, 1) and 1 <= bins.min() and bins.max() <= 20
    factors = np.random.default_rng(0).integers(4, size=(1000, 1))
    assert dis.mig(np.concatenate([collapsed, collapsed], axis=1), factors)["mig"] < 0.01


def test_weighted_specificity_is_one_for_a_permutation_and_zero_for_uniform_importance():
    assert dis.weighted_specificity(np.eye(4)[[2, 0, 3, 1]]) == pytest.approx(1.0, abs=1e-6)
    assert dis.weighted_specificity(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("booster", dis.BOOSTERS)
def test_boosted_trees_put_all_importance_on_the_informative_feature(booster):
    rng = np.random.default_rng(5)
    labels = rng.integers(2, size=600)
    codes = np.stack([rng.normal(size=600), labels + 0.1 * rng.normal(size=600), rng.normal(size=600)], axis=1)
    importance, model = dis.boosted_trees(codes[:400], labels[:400], n_stages=10, booster=booster, seed=0)
    assert importance[1] > 0.95 and importance.sum() == pytest.approx(1.0)
    assert np.mean(model.predict(codes[400:]) == labels[400:]) > 0.98


def test_an_unknown_booster_is_refused(perfect, factors):
    with pytest.raises(ValueError, match="booster"):
        dis.dci(perfect, factors, booster="lightgbm")


def test_split_train_test_takes_the_first_two_thirds_or_the_given_test_set(perfect, factors):
    train, train_factors, test, test_factors = dis.split_train_test(perfect, factors, None, None)
    assert len(train) == len(train_factors) == math.ceil(2 * N / 3)
    assert len(test) == len(test_factors) == N - len(train)
    assert np.array_equal(test, perfect[len(train):])
    assert dis.split_train_test(perfect, factors, perfect[:5], factors[:5])[2].shape == (5, 4)
    with pytest.raises(ValueError):
        dis.split_train_test(perfect, factors, perfect, None)


# ---------------------------------------------------------------- sample-based metrics


def test_perfect_codes_score_near_one(perfect, factors):
    scores = {**dis.mig(perfect, factors), **dis.modularity(perfect, factors), **dis.dci(perfect, factors, **FAST_DCI),
              **dis.explicitness(perfect, factors)}
    assert scores["mig"] > 0.95
    assert scores["modularity"] > 0.95
    assert scores["dci_disentanglement"] > 0.95
    assert scores["dci_completeness"] > 0.95
    assert scores["dci_informativeness"] > 0.95
    assert scores["explicitness"] > 0.95


def test_a_rotation_of_the_perfect_codes_scores_clearly_lower(perfect, rotated, factors):
    for metric, key in [(dis.mig, "mig"), (dis.sap, "sap")]:
        assert metric(rotated, factors)[key] < metric(perfect, factors)[key] - 0.2, key
    # Modularity is lenient (small spurious MI, squared, barely counts): a smaller but clear drop.
    assert dis.modularity(rotated, factors)["modularity"] < dis.modularity(perfect, factors)["modularity"] - 0.1
    rotated_dci, perfect_dci = dis.dci(rotated, factors, **FAST_DCI), dis.dci(perfect, factors, **FAST_DCI)
    assert rotated_dci["dci_disentanglement"] < perfect_dci["dci_disentanglement"] - 0.3
    assert rotated_dci["dci_completeness"] < perfect_dci["dci_completeness"] - 0.3


def test_noise_codes_score_near_zero(noise, factors):
    assert dis.mig(noise, factors)["mig"] < 0.05
    assert dis.sap(noise, factors)["sap"] < 0.05
    scores = dis.dci(noise, factors, **FAST_DCI)
    assert scores["dci_disentanglement"] < 0.1
    assert scores["dci_informativeness"] < 0.4


def test_sap_rewards_the_one_predictive_code(perfect, factors):
    assert dis.sap(perfect, factors)["sap"] > 0.2
    assert dis.sap(perfect, factors, continuous=True)["sap"] > 0.9


def test_a_duplicated_code_lowers_completeness_but_not_disentanglement(perfect, factors):
    duplicated = np.concatenate([perfect, perfect[:, :2]], axis=1)
    plain, redundant = dis.dci(perfect, factors, **FAST_DCI), dis.dci(duplicated, factors, **FAST_DCI)
    assert redundant["dci_completeness"] < plain["dci_completeness"] - 0.1
    assert redundant["dci_disentanglement"] > 0.9


def test_explicitness_of_noise_is_chance(noise, factors):
    assert dis.explicitness(noise, factors)["explicitness"] == pytest.approx(0.5, abs=0.05)


def test_explicitness_survives_a_collapsed_code(perfect, factors):
    collapsed = np.concatenate([perfect, np.zeros((N, 1))], axis=1)
    assert dis.explicitness(collapsed, factors)["explicitness"] > 0.95


def test_gaussian_total_correlation_of_independent_and_correlated_codes(noise):
    assert abs(dis.gaussian_total_correlation(noise)["gaussian_total_correlation"]) < 0.01
    rho = 0.8
    correlated = noise.copy()
    correlated[:, 1] = rho * noise[:, 0] + math.sqrt(1 - rho ** 2) * noise[:, 1]
    expected = -0.5 * math.log(1 - rho ** 2)  # the mutual information of a bivariate Gaussian
    assert dis.gaussian_total_correlation(correlated)["gaussian_total_correlation"] == pytest.approx(expected, abs=0.05)


def test_every_property_names_a_metric_output_and_one_of_the_three_properties():
    assert set(dis.PROPERTY.values()) == {"modularity", "compactness", "explicitness"}
    codes, factors = np.random.default_rng(6).normal(size=(90, 3)), np.random.default_rng(7).integers(3, size=(90, 2))
    data, rng = FactorImages([3, 4]), np.random.default_rng(8)
    keys = {**dis.mig(codes, factors), **dis.modularity(codes, factors), **dis.dci(codes, factors, n_stages=2),
            **dis.sap(codes, factors), **dis.explicitness(codes, factors),
            **dis.beta_vae_score(data, perfect_encoder, rng, batch_size=4, num_train=20, num_eval=10),
            **dis.factor_vae_score(data, perfect_encoder, rng, batch_size=4, num_train=20, num_eval=10,
                                   num_variance_estimate=50)}
    assert set(dis.PROPERTY) <= set(keys)


# ---------------------------------------------------------------- intervention-based metrics

SMALL_VOTES = {"batch_size": 16, "num_train": 300, "num_eval": 200}


def test_factor_vae_score_is_one_for_a_perfect_encoder_and_chance_for_noise():
    data = FactorImages([3, 5, 4])
    perfect_score = dis.factor_vae_score(data, perfect_encoder, np.random.default_rng(9), **SMALL_VOTES,
                                         num_variance_estimate=500)
    noise_score = dis.factor_vae_score(data, noise_encoder, np.random.default_rng(10), **SMALL_VOTES,
                                       num_variance_estimate=500)
    assert perfect_score["factor_vae_score"] > 0.99
    assert perfect_score["factor_vae_active_dims"] == 3
    assert noise_score["factor_vae_score"] == pytest.approx(1 / 3, abs=0.12)  # chance: one of three factors


def test_factor_vae_score_prunes_collapsed_dimensions():
    data = FactorImages([3, 5, 4])

    def with_dead_dimension(images: torch.Tensor) -> np.ndarray:
        return np.concatenate([perfect_encoder(images), np.full((len(images), 1), 2.0)], axis=1)

    scores = dis.factor_vae_score(data, with_dead_dimension, np.random.default_rng(11), **SMALL_VOTES,
                                  num_variance_estimate=500)
    assert scores["factor_vae_active_dims"] == 3
    assert scores["factor_vae_score"] > 0.99


def test_beta_vae_score_is_one_for_a_perfect_encoder_and_chance_for_noise():
    data = FactorImages([3, 5, 4])
    perfect_score = dis.beta_vae_score(data, perfect_encoder, np.random.default_rng(12), **SMALL_VOTES)
    noise_score = dis.beta_vae_score(data, noise_encoder, np.random.default_rng(13), **SMALL_VOTES)
    assert perfect_score["beta_vae_score"] > 0.95
    assert noise_score["beta_vae_score"] == pytest.approx(1 / 3, abs=0.12)


def test_the_class_as_the_single_factor_of_mnist_like_data():
    """MNIST / Fashion-MNIST plug in with their label as the one factor: a code holding it scores ~1, noise ~0."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (3000,), generator=g)
    noise = torch.randn(3000, 6, generator=g)
    holding = noise.clone()
    holding[:, 4] = labels + 0.1 * torch.randn(3000, generator=g)
    good = class_factor_metrics(holding[:2000], labels[:2000], holding[2000:], labels[2000:], dci_stages=10)
    bad = class_factor_metrics(noise[:2000], labels[:2000], noise[2000:], labels[2000:], dci_stages=10)
    assert set(good) == {"test/mig", "test/sap", "test/explicitness", "test/explicitness_train",
                         "test/dci_completeness", "test/dci_informativeness", "test/dci_informativeness_train"}
    assert good["test/mig"] > 0.9 and good["test/dci_completeness"] > 0.9 and good["test/dci_informativeness"] > 0.9
    assert bad["test/mig"] < 0.05 and bad["test/dci_completeness"] < 0.2 and bad["test/dci_informativeness"] < 0.2
    assert good["test/sap"] > bad["test/sap"] + 0.1
    assert good["test/explicitness"] > 0.95 and bad["test/explicitness"] < 0.6


def test_a_one_dimensional_code_has_no_gaps_and_is_trivially_complete():
    """model.latent_dim=1: MIG and SAP (best minus second-best code) are undefined, DCI completeness is 1 by
    construction, and the metrics that need only one code still measure it."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (1500,), generator=g)
    code = (labels + 0.1 * torch.randn(1500, generator=g))[:, None]
    out = class_factor_metrics(code[:1000], labels[:1000], code[1000:], labels[1000:], dci_stages=10)
    assert math.isnan(out["test/mig"]) and math.isnan(out["test/sap"])
    assert out["test/dci_completeness"] == 1.0 and out["test/dci_informativeness"] > 0.9
    assert out["test/explicitness"] > 0.9


def test_modularity_with_a_single_factor_is_undefined():
    """Modularity asks whether a code's information is about one factor rather than several: with one factor there
    is nothing to ask (the library divides by K − 1 = 0), so it is NaN, and the class-as-factor metrics leave it out."""
    rng = np.random.default_rng(0)
    labels = rng.integers(10, size=(1000, 1))
    assert math.isnan(dis.modularity(labels + 0.1 * rng.normal(size=(1000, 3)), labels)["modularity"])


# ---------------------------------------------------------------- known answers: disentanglement_lib's definitions

# Fixed codes (900 points, 5 codes mixing 3 factors of 2, 3 and 5 values) and each metric's value on them, computed
# once by transcribing the library's functions (its codes × points layout, its scikit-learn calls) with
# scikit-learn 1.9.1; DCI's trees seeded with random_state=0, which the library leaves unseeded.
DATA = Path(__file__).parent / "known_answers"
REFERENCE = json.loads((DATA / "disentanglement_reference.json").read_text())
AGREEMENT = 0.002


@pytest.fixture(scope="module")
def fixed() -> tuple[np.ndarray, np.ndarray, int]:
    saved = np.load(DATA / "disentanglement_codes.npz")
    return saved["codes"], saved["factors"], math.ceil(len(saved["codes"]) * 2 / 3)


def test_information_metrics_match_the_library(fixed):
    codes, factors, n_train = fixed
    scores = {**dis.mig(codes[:n_train], factors[:n_train]), **dis.modularity(codes[:n_train], factors[:n_train]),
              **dis.gaussian_total_correlation(codes[:n_train])}
    for key in ("mig", "modularity", "gaussian_total_correlation"):
        assert scores[key] == pytest.approx(REFERENCE[key], abs=AGREEMENT), key


def test_classifier_metrics_match_the_library(fixed):
    codes, factors, _ = fixed
    scores = {**dis.explicitness(codes, factors), **dis.sap(codes, factors)}
    for key in ("explicitness", "explicitness_train", "sap"):
        assert scores[key] == pytest.approx(REFERENCE[key], abs=AGREEMENT), key


def test_dci_matches_the_library(fixed):
    codes, factors, _ = fixed
    scores = dis.dci(codes, factors, seed=0)
    for key in ("dci_disentanglement", "dci_completeness", "dci_informativeness", "dci_informativeness_train"):
        assert scores[key] == pytest.approx(REFERENCE[key], abs=AGREEMENT), key


def test_beta_vae_classifier_matches_the_library(fixed):
    codes, factors, _ = fixed
    points, labels = np.abs(codes[:600:2] - codes[1:600:2]), factors[:600:2, 0] % 3
    scores = dis.beta_vae_accuracy(points[:200], labels[:200], points[200:], labels[200:])
    expected = REFERENCE["beta_vae_fixed_points"]
    assert scores["beta_vae_score"] == pytest.approx(expected["eval_accuracy"], abs=AGREEMENT)
    assert scores["beta_vae_train_accuracy"] == pytest.approx(expected["train_accuracy"], abs=AGREEMENT)


def test_the_library_logistic_regression_stops_at_100_iterations_without_a_notice():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, 20)) * np.logspace(0, 4, 20)  # badly scaled: lbfgs does not converge in 100
    labels = (points[:, 0] + rng.normal(size=300) > 0).astype(int)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classifier = dis.logistic_regression(points, labels)
    assert classifier.n_iter_[0] == 100
    assert classifier.score(points, labels) > 0.5
