"""The benchmark in a tiny configuration: both throughputs, a ratio and a parity verdict."""

from __future__ import annotations

import json

from tests.conftest import compose_cfg
from vae_lab.bench import bench


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
