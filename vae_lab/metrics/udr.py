"""Unsupervised disentanglement ranking (Duan et al., 2020), with disentanglement_lib's definitions (udr.py).

UDR scores a model by how consistently models of the same configuration, trained from other seeds, represent the
same inputs: for each ordered pair of models, a Lasso regression from one's standardised mean representation to the
other's gives a latent-to-latent strength matrix |coef| (or, with `correlation="spearman"`, the absolute Spearman
correlations), scored by how one-to-one it is; a model's UDR is the median of its pair scores as the target of the
regression. No ground truth is needed, so it works on MNIST as on shapes2d. The score weighs strengths by max²/sum,
so it is not scale-free: identical models score 1 − α = 0.9 with the Lasso's α = 0.1 (the library's), about 0.9
with Spearman too (the small spurious correlations of independent latents add to each sum); unrelated ones about 0.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

KL_THRESHOLD = 0.01  # nats: latents whose mean KL to the prior is at most this are uninformative and left out


def relative_strength(strength: np.ndarray) -> float:
    """How one-to-one an R×C strength matrix is: the mean over columns and over rows of max² / sum, averaged.

    A row or column without any strength counts 0, as in the library; so does a pair in which either model has no
    informative latent (an empty matrix, on which the library raises).
    """
    if strength.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = np.nan_to_num(strength.max(axis=0) ** 2 / strength.sum(axis=0))
        rows = np.nan_to_num(strength.max(axis=1) ** 2 / strength.sum(axis=1))
    return float((np.mean(columns) + np.mean(rows)) / 2)


def lasso_strength(source: np.ndarray, target: np.ndarray, alpha: float = 0.1, seed: int = 0) -> np.ndarray:
    """D×D |coefficients| of `Lasso(alpha)` predicting every target latent from the source latents (source × target)."""
    return np.abs(Lasso(alpha=alpha, random_state=seed).fit(source, target).coef_).T


def spearman_strength(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """D×D absolute Spearman rank correlations of each source latent with each target latent (source × target), pair
    by pair as the library's `spearman_correlation_conv`: the Pearson correlation of their average ranks, 0 where a
    latent is constant (an uninformative one, zeroed: SciPy's joint `spearmanr` then gives one NaN for the lot)."""
    centred = [ranks - ranks.mean(axis=0) for ranks in (scipy.stats.rankdata(m, axis=0) for m in (source, target))]
    norms = [np.sqrt((c**2).sum(axis=0)) for c in centred]
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = centred[0].T @ centred[1] / np.outer(*norms)
    return np.nan_to_num(np.abs(correlation))


CORRELATIONS = ("lasso", "spearman")


def udr(representations: list[np.ndarray], kl: list[np.ndarray], correlation: str = "lasso", alpha: float = 0.1,
        kl_threshold: float = KL_THRESHOLD, seed: int = 0) -> dict[str, object]:
    """UDR of each of S ≥ 2 models from their N×D mean representations of the same N inputs and their mean KL per latent.

    As the library's `compute_udr_sklearn` with the Lasso: each representation is standardised and its latents of
    KL ≤ `kl_threshold` zeroed; the pair (i, j) scores `relative_strength` of the Lasso strengths from i to j
    restricted to both models' informative latents; model j's UDR is the median over i ≠ j. Returns `model_scores`
    (S floats) and `pairwise` (S×S, NaN on the diagonal).
    """
    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation={correlation!r}: choose one of {CORRELATIONS}")
    if len(representations) < 2:
        raise ValueError(f"UDR compares models trained from different seeds: needs at least 2, got {len(representations)}")
    if len({r.shape for r in representations}) > 1:
        raise ValueError("UDR needs every model's representation of the same inputs, with the same number of latents")
    informative = [np.asarray(k) > kl_threshold for k in kl]
    standardised = [StandardScaler().fit_transform(r) * keep for r, keep in zip(representations, informative)]
    count = len(representations)
    pairwise = np.full((count, count), np.nan)
    for i in range(count):
        for j in range(count):
            if i != j:
                strength = (lasso_strength(standardised[i], standardised[j], alpha, seed) if correlation == "lasso"
                            else spearman_strength(standardised[i], standardised[j]))
                pairwise[i, j] = relative_strength(strength[informative[i]][:, informative[j]])
    scores = [float(np.median(np.delete(pairwise[:, j], j))) for j in range(count)]
    return {"model_scores": scores, "pairwise": pairwise}
