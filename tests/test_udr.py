"""UDR (Duan et al., 2020): known answers on planted representations, and the report's UDR column from checkpoints."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import scipy.stats
from omegaconf import OmegaConf

from tests.conftest import CONF, compose_cfg
from vae_lab.metrics.udr import relative_strength, udr
from vae_lab.report import report
from vae_lab.train import build

N, D = 1000, 6
ACTIVE = np.full(D, 1.0)  # mean KL per latent: every latent informative


@pytest.fixture(scope="module")
def sources() -> np.ndarray:
    """Six independent factors of variation of N inputs, each scaled differently."""
    return np.random.default_rng(0).normal(size=(N, D)) * np.arange(1, D + 1)


def test_relative_strength_of_a_permutation_is_one_and_of_uniform_strength_is_a_share():
    assert relative_strength(np.eye(4)[[1, 3, 0, 2]]) == pytest.approx(1.0)
    assert relative_strength(np.eye(4)[[1, 3, 0, 2]] * 0.7) == pytest.approx(0.7)   # max²/sum: not scale-free
    assert relative_strength(np.ones((4, 4))) == pytest.approx(0.25)
    assert relative_strength(np.zeros((3, 3))) == 0.0   # no strength anywhere: 0, as the library's nan_to_num
    assert relative_strength(np.zeros((3, 0))) == 0.0   # a model without informative latents (the library raises)


def test_identical_models_score_near_one(sources):
    """1 − α = 0.9 with the library's Lasso, whose α shrinks every coefficient (and zeroes the spurious ones);
    with rank correlations the spurious ~0.03 correlations of independent latents add to each sum: about 0.9 too."""
    same = [sources, sources.copy(), sources.copy()]
    assert min(udr(same, [ACTIVE] * 3, correlation="spearman")["model_scores"]) > 0.85
    assert udr(same, [ACTIVE] * 3)["model_scores"] == pytest.approx([0.9] * 3, abs=0.005)


def test_independent_random_encoders_score_near_zero(sources):
    rng = np.random.default_rng(1)
    unrelated = [rng.normal(size=(N, D)) for _ in range(3)]
    assert max(udr(unrelated, [ACTIVE] * 3)["model_scores"]) < 0.05
    assert max(udr(unrelated, [ACTIVE] * 3, correlation="spearman")["model_scores"]) < 0.1


def test_a_permutation_of_the_latents_changes_nothing_and_a_rotation_scores_lower(sources):
    rng = np.random.default_rng(2)
    noisy = [sources + 0.3 * rng.normal(size=sources.shape) * np.arange(1, D + 1) for _ in range(3)]
    order = rng.permutation(D)
    plain = udr(noisy, [ACTIVE] * 3)
    permuted = udr([noisy[0], noisy[1][:, order], noisy[2]], [ACTIVE, ACTIVE[order], ACTIVE])
    np.testing.assert_allclose(permuted["model_scores"], plain["model_scores"], atol=1e-9)
    rotation, _ = np.linalg.qr(rng.normal(size=(D, D)))
    rotated = udr([noisy[0], noisy[1] @ rotation, noisy[2]], [ACTIVE] * 3)
    assert rotated["model_scores"][1] < plain["model_scores"][1] - 0.2


def test_uninformative_latents_are_left_out(sources):
    """A latent whose KL is below the threshold is noise the model does not use: it neither helps nor hurts."""
    rng = np.random.default_rng(3)
    extra = [np.concatenate([sources, rng.normal(size=(N, 2))], axis=1) for _ in range(2)]
    kl = np.concatenate([ACTIVE, [0.001, 0.001]])
    assert udr(extra, [kl, kl])["model_scores"] == pytest.approx([0.9, 0.9], abs=0.005)
    by_rank = udr(extra, [kl, kl], correlation="spearman")["model_scores"]  # each zeroed latent is constant
    without = udr([e[:, :D] for e in extra], [ACTIVE] * 2, correlation="spearman")["model_scores"]
    assert by_rank == pytest.approx(without, abs=1e-12) and min(by_rank) > 0.85
    with pytest.raises(ValueError, match="at least 2"):
        udr([sources], [ACTIVE])


def test_spearman_strength_is_scipy_s_per_pair_and_0_for_a_constant_latent(sources):
    """As disentanglement_lib computes it: SciPy's spearmanr of each pair of latents (ties ranked by their average)."""
    from vae_lab.metrics.udr import spearman_strength

    rng = np.random.default_rng(4)
    source = np.round(sources[:200], 0)  # ties
    target = np.concatenate([source[:, :3] + rng.normal(size=(200, 3)), np.zeros((200, 1))], axis=1)
    strength = spearman_strength(np.concatenate([source, np.zeros((200, 1))], axis=1), target)
    expected = [[abs(scipy.stats.spearmanr(source[:, i], target[:, j]).statistic) for j in range(3)] for i in range(D)]
    np.testing.assert_allclose(strength[:D, :3], expected, atol=1e-12)
    assert strength.shape == (D + 1, 4) and not strength[D].any() and not strength[:, 3].any()
    kl = np.concatenate([ACTIVE[:3], [0.0]])  # a model with an inactive latent, against itself and another seed
    scores = udr([target, target.copy(), target + 0.1 * rng.normal(size=target.shape)], [kl] * 3,
                 correlation="spearman")["model_scores"]
    assert np.isfinite(scores).all() and min(scores) > 0.5
    with pytest.raises(ValueError, match="at least 2"):
        udr([sources], [ACTIVE])


@pytest.mark.parametrize("name", ["vae", "cvae"])  # the recommended CVAE: a mixture prior per class
def test_the_report_shows_udr_for_a_group_of_seeds(tmp_path, name):
    """Two run folders of one configuration, seeds 0 and 1, holding the same trained model: UDR ≈ 1 for both."""
    cfg = compose_cfg(tmp_path / "train", f"model={name}", "data=mnist", "data.train_subset=256", "data.batch_size=64",
                      "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false")
    datamodule, model, trainer = build(cfg, logger=False, enable_checkpointing=False, callbacks=[],
                                       limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, datamodule=datamodule)
    root = tmp_path / "sweep"
    for seed in (0, 1):
        folder = root / f"{seed}_{name}"
        (folder / "checkpoints").mkdir(parents=True)
        if seed == 0:
            trainer.save_checkpoint(folder / "checkpoints" / "last.ckpt")
        else:
            shutil.copy(root / f"0_{name}" / "checkpoints" / "last.ckpt", folder / "checkpoints" / "last.ckpt")
        record = {"model": name, "net": "mlp", "dataset": "mnist", "beta": 1.0, "capacity_max": 0.0,
                  "latent_dim": 10, "seed": seed, "status": "ok", "test/loss": 200.0 + seed}
        (folder / "metrics.json").write_text(json.dumps(record))
    options = OmegaConf.load(CONF / "report.yaml")
    options.merge_with({"dirs": [str(root)], "samples": False, "udr_points": 300})
    report(options)
    rows = list(csv.DictReader((root / "report.csv").read_text().splitlines()))
    assert len(rows) == 1 and float(rows[0]["test/udr_mean"]) == pytest.approx(0.9, abs=0.02)  # identical: 1 − α
    assert " UDR |" in (root / "report.md").read_text()
