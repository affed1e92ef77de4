"""The benchmark in a tiny configuration: both throughputs, a ratio and a parity verdict."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import compose_cfg, run_cli
from vae_lab.bench import bench, reference_dataset, reference_loader, throughput


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


def test_the_reference_loop_sees_vae_labs_batches_in_vae_labs_order(tmp_path, data_dir):
    """Parity compares arithmetic: the torchvision loop gets the same images, batched and shuffled the same way."""
    from hydra.utils import instantiate

    cfg = compose_cfg(tmp_path, "data.train_subset=300", "data.batch_size=64", "seed=3")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    dataset = reference_dataset(cfg, datamodule)
    sampler = datamodule.train_dataloader().sampler
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        ours = [datamodule.splits["train"][index] for index in sampler]
        theirs = list(reference_loader(cfg, dataset, seed=3, epoch=epoch))
        assert [len(y) for _, y in ours] == [len(y) for _, y in theirs] == [64, 64, 64, 64, 44]
        for (x, y), (ref_x, ref_y) in zip(ours, theirs):
            assert torch.equal(y, ref_y) and torch.allclose(x, ref_x)
