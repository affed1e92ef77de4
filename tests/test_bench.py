"""The benchmark in a tiny configuration: both throughputs, a ratio and a parity verdict."""

from __future__ import annotations

import json

import pytest

from tests.conftest import compose_cfg, run_cli
from vae_lab.bench import bench, throughput


def test_bench_reports_both_paths(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    cfg = compose_cfg(tmp_path, "warmup_steps=2", "repeats=2", "steps_per_repeat=3", "train_subset=1000",
                      "eval_images=500", f"json={out}", config="bench")
    rows = bench(cfg, compose_case=lambda overrides: compose_cfg(tmp_path, *overrides))
    assert [r["case"] for r in rows] == ["cvae", "beta_vae"]
    for row in rows:
        assert row["vae_lab_images_per_second"]["median"] > 0 and row["reference_images_per_second"]["median"] > 0
        assert row["speedup"] > 0 and row["flops_per_image"] > 1e6 and 0 < row["floor_fraction"] < 1
        assert row["parity"] in ("pass", "FAIL")
    assert len(json.loads(out.read_text())["results"]) == 2


@pytest.mark.parametrize("args, needle", [
    (["warmup_steps=0"], "error: warmup_steps=0: must be a whole number ≥ 1"),
    (["repeats=abc"], "error: repeats='abc'"),
    (["parity_tolerance=-1"], "error: parity_tolerance=-1"),
    (["dataset=cifar"], "error: dataset='cifar': choose one of ['fashion_mnist', 'mnist']"),
    (['overrides=["model=gan"]'], "error: case 'cvae': In 'train': Could not find 'model/gan' (available: beta_tcvae, beta_vae, cvae"),
    (['overrides=["data.batch_size=0"]'], "error: data.batch_size=0: must be at least 1"),
    (["nope=1"], "Key 'nope' is not in struct"),
])
def test_bench_bad_input_gives_one_clear_line(tmp_path, args, needle):
    result = run_cli("vae_lab.bench", *args, "train_subset=500", f"json={tmp_path / 'bench.json'}")
    assert result.returncode != 0 and needle in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "bench.json").exists()


def test_throughput_windows_count_optimiser_steps_when_batches_hold_several():
    """Marks every 4 steps of 10 images, one second apart: 40 images/s whatever the window's step boundaries."""
    marks = [(4 * i, 40 * i, float(i)) for i in range(1, 21)]
    rates = throughput(marks, warmup=8, repeats=3, steps=20)
    assert rates == {"median": 40.0, "min": 40.0, "max": 40.0}
    assert throughput([(1, 10, 1.0), (2, 20, 3.0), (3, 40, 4.0)], warmup=1, repeats=2, steps=1)["min"] == 5.0
