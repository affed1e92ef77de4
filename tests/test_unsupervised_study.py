"""+experiment=unsupervised_study: disentanglement_lib's unsupervised_study_v1 grid and settings, composed in full."""

from __future__ import annotations

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from tests.conftest import compose_cfg
from vae_lab.results.groups import dropped, flatten, shown_keys

# unsupervised_study_v1/sweep.py: each objective's hyper-parameter and its six values, and what the arm fixes.
GRID = {
    "study_beta_vae": ("BetaVAE", "beta", [1, 2, 4, 6, 8, 16], {"capacity_max": 0.0}),
    "study_annealed_vae": ("BetaVAE", "capacity_max", [5, 10, 25, 50, 75, 100],
                           {"gamma": 1000.0, "capacity_steps": 100_000}),
    "study_factor_vae": ("FactorVAE", "gamma", [10, 20, 30, 40, 50, 100],
                         {"disc_lr": 1e-4, "disc_hidden": 1000, "disc_layers": 6}),
    "study_dip_vae_i": ("DIPVAE", "lambda_od", [1, 2, 5, 10, 20, 50], {"variant": "i"}),
    "study_dip_vae_ii": ("DIPVAE", "lambda_od", [1, 2, 5, 10, 20, 50], {"variant": "ii"}),
    "study_beta_tcvae": ("BetaTCVAE", "beta", [1, 2, 4, 6, 8, 10], {"alpha": 1.0, "gamma": 1.0}),
}
POINTS = ["v1", "v2", "v3", "v4", "v5", "v6"]


def test_the_sweep_is_the_studys_grid(tmp_path):
    cfg = compose_cfg(tmp_path, "+experiment=unsupervised_study")
    params = cfg.hydra.sweeper.params
    assert params["+arm"].split(",") == list(GRID) and params.study_point.split(",") == POINTS
    assert (cfg.model.latent_dim, cfg.model.lr, cfg.model.likelihood, cfg.data.batch_size) == (10, 1e-4, "bernoulli", 64)
    assert (cfg.trainer.max_steps, cfg.trainer.max_epochs, cfg.net.image_size, cfg.data.name) == (300_000, -1, 64,
                                                                                                  "dsprites")
    assert (cfg.eval.num_train, cfg.eval.num_test, cfg.eval.score_train, cfg.eval.score_eval) == (10_000, 5_000,
                                                                                                  10_000, 5_000)


@pytest.mark.parametrize("arm", list(GRID))
def test_every_point_of_every_objective_composes_with_the_studys_value(tmp_path, arm):
    model_class, key, values, fixed = GRID[arm]
    points = []
    for point, value in zip(POINTS, values):
        cfg = compose_cfg(tmp_path, "+experiment=unsupervised_study", f"+arm={arm}", f"study_point={point}")
        assert get_class(cfg.model._target_).__name__ == model_class
        assert cfg.model[key] == value and cfg.model.lr == 1e-4 and cfg.net._target_.endswith("BurgessNet")
        assert {k: cfg.model[k] for k in fixed} == fixed
        job = {k: v for k, v in cfg.items() if k != "hydra"}
        points.append(((model_class,), {k: v for k, v in flatten(OmegaConf.to_container(OmegaConf.create(job),
                                                                                         resolve=True)).items()
                                         if not dropped(k)}))
    assert f"model.{key}" in shown_keys(points)   # the report tells the grid's points apart by the objective's value


def test_the_cpu_variant_cuts_lengths_and_keeps_one_value_per_objective(tmp_path):
    cfg = compose_cfg(tmp_path, "+experiment=unsupervised_study_cpu", "+arm=study_annealed_vae", "study_point=v3")
    params = cfg.hydra.sweeper.params
    assert params["+arm"].split(",") == list(GRID) and params.study_point == "v3" and params.seed == "0,1"
    assert (cfg.net.image_size, cfg.trainer.max_steps, cfg.model.capacity_max, cfg.model.gamma) == (32, 6000, 25, 1000)
    assert cfg.data.name == "shapes2d"   # rendered: runs offline
    assert cfg.model.capacity_steps == cfg.trainer.max_steps // 3   # C reached a third of the way, as in the study
