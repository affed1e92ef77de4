"""`python -m benchmarks.probe`: the launcher layouts it compares compose as the compare sweep it times; bad input."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from benchmarks.probe import check, sweep_command
from tests.conftest import BENCH_CONF, compose_cfg
from vae_lab.errors import ConfigError


@pytest.mark.parametrize("jobs, threads", [(2, 1), (1, 2)])
def test_each_layout_is_the_compare_sweep_through_the_launcher_with_its_jobs_and_threads(tmp_path, jobs, threads):
    probe = OmegaConf.load(BENCH_CONF / "probe.yaml")
    command = sweep_command(jobs, threads, list(probe.overrides), tmp_path / "sweep")
    overrides = command[command.index("-m", 3) + 1:]  # after `python -m vae_lab.train -m`
    cfg = compose_cfg(tmp_path, *[o.split(",")[0] if o.startswith("+arm=") else o for o in overrides])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert (cfg.hydra.launcher.n_jobs, cfg.threads) == (jobs, threads)
    assert (cfg.trainer.max_epochs, cfg.data.train_subset, cfg.eval.iwae_samples) == (1, 10000, 10)


@pytest.mark.parametrize("field, value, needle", [("layouts", [], "layouts is empty"),
                                                  ("layouts", [[2]], "is not [n_jobs, threads]"),
                                                  ("layouts", [[0, 1]], "n_jobs=0"), ("repeats", 0, "repeats=0")])
def test_bad_probe_settings_are_one_line(field, value, needle):
    cfg = OmegaConf.load(BENCH_CONF / "probe.yaml")
    cfg[field] = value
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert needle in str(err.value)


def test_the_warm_up_is_the_sweep_cut_to_its_first_arm():
    from benchmarks.probe import warmup_overrides
    probe = OmegaConf.load(BENCH_CONF / "probe.yaml")
    assert probe.warmup is True
    cut = warmup_overrides(list(probe.overrides))
    assert "+arm=vae" in cut and not any("," in o for o in cut)
    assert [o for o in cut if not o.startswith("+arm=")] == [o for o in probe.overrides if not o.startswith("+arm=")]
