"""Unsupervised disentanglement ranking (Duan et al., 2020) with disentanglement_lib's definitions."""

import numpy as np
import scipy.stats
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

KL_THRESHOLD = 0.01  # nats: latents whose mean KL to the prior is at most this are uninformative and left out


def relative_strength(strength: np.ndarray) -> float:
    """How one-to-one a strength matrix is: mean over rows and columns of max² / sum (0 when empty)."""
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
    """D×D absolute Spearman correlations of source with target latents, 0 for a constant latent."""
    centred = [ranks - ranks.mean(axis=0) for ranks in (scipy.stats.rankdata(m, axis=0) for m in (source, target))]
    norms = [np.sqrt((c**2).sum(axis=0)) for c in centred]
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = centred[0].T @ centred[1] / np.outer(*norms)
    return np.nan_to_num(np.abs(correlation))


CORRELATIONS = ("lasso", "spearman")


def udr(representations: list[np.ndarray], kl: list[np.ndarray], correlation: str = "lasso", alpha: float = 0.1,
        kl_threshold: float = KL_THRESHOLD, seed: int = 0) -> dict[str, object]:
    """UDR of S ≥ 2 models from their mean representations and KL per latent: `model_scores`, `pairwise`."""
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
