"""shapes2d: the dSprites factor ordering, and each factor moving the image the way it should."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from vae_lab.data.datamodule import datamodule_from_checkpoint
from vae_lab.data.shapes2d import FACTOR_SIZES, Shapes2D
from vae_lab.models import read_checkpoint


@pytest.fixture(scope="module")
def shapes() -> Shapes2D:
    return Shapes2D(64)


def centroid(image: torch.Tensor) -> tuple[float, float]:
    """(row, column) centre of mass of a 1×H×W image."""
    grid = torch.arange(image.shape[-1], dtype=torch.float32)
    mass = image[0].sum()
    return float((image[0].sum(1) * grid).sum() / mass), float((image[0].sum(0) * grid).sum() / mass)


def test_index_and_factors_round_trip_in_dsprites_order(shapes):
    assert len(shapes) == 737_280
    index = np.random.default_rng(0).integers(0, len(shapes), 5000)
    assert (shapes.factors_to_index(shapes.index_to_factors(index)) == index).all()
    assert shapes.index_to_factors(np.array([1]))[0].tolist() == [0, 0, 0, 0, 1]              # y varies fastest
    assert shapes.index_to_factors(np.array([32 * 32 * 40 * 6]))[0].tolist() == [1, 0, 0, 0, 0]  # shape slowest
    assert shapes.index_to_factors(np.array([len(shapes) - 1]))[0].tolist() == [s - 1 for s in FACTOR_SIZES]


def test_x_and_y_shift_the_sprite_by_one_pixel_per_step(shapes):
    base = np.array([[2, 3, 7, 10, 20]])
    images = shapes.images(np.repeat(base, 3, 0) + np.array([[0, 0, 0, 0, 0], [0, 0, 0, 5, 0], [0, 0, 0, 0, 5]]))
    (r0, c0), (r1, c1), (r2, c2) = (centroid(i) for i in images)
    assert c1 - c0 == pytest.approx(5) and r1 == pytest.approx(r0)     # x moves columns
    assert r2 - r0 == pytest.approx(5) and c2 == pytest.approx(c0)     # y moves rows
    assert torch.equal(images[1][:, :, 5:], images[0][:, :, :-5])


def test_scale_grows_the_area_and_orientation_keeps_it(shapes):
    area = [float(shapes.images(np.array([[s, k, 0, 16, 16]])).sum()) for s in range(3) for k in range(6)]
    for s in range(3):
        assert all(a < b for a, b in zip(area[6 * s: 6 * s + 5], area[6 * s + 1: 6 * s + 6]))   # strictly growing
        assert area[6 * s + 5] / area[6 * s] == pytest.approx(4, rel=0.15)                     # (1 / 0.5)²
    turned = shapes.images(np.array([[0, 5, k, 16, 16] for k in range(40)]))
    assert turned.sum((1, 2, 3)).std() / turned.sum((1, 2, 3)).mean() < 0.05
    assert not torch.equal(turned[0], turned[5])                       # a square turned by 45° differs


def test_images_are_binary_deterministic_and_inside_the_frame(shapes):
    rng = np.random.default_rng(1)
    factors = shapes.sample_factors(256, rng)
    images = shapes.images(factors)
    assert images.shape == (256, 1, 64, 64) and set(images.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(images, Shapes2D(64).images(factors))
    corner = shapes.images(np.array([[0, 5, 5, 0, 0], [0, 5, 5, 31, 31]]))   # extreme positions lose no pixels
    assert corner[0].sum() == corner[1].sum() == shapes.images(np.array([[0, 5, 5, 16, 16]])).sum()
    small = Shapes2D(32).images(factors[:8])
    assert small.shape == (8, 1, 32, 32) and torch.allclose(small.sum((1, 2, 3)) * 4, images[:8].sum((1, 2, 3)))


def test_batches_carry_their_factors(shapes):
    index = torch.tensor([0, 12345, 700_000])
    images, factors = shapes[index]
    assert factors.tolist() == shapes.index_to_factors(index.numpy()).tolist()
    assert torch.equal(images, shapes.images(factors.numpy()))


def test_a_model_trains_on_shapes2d_with_its_disentanglement_metrics_and_reloads(tmp_path):
    result = run_cli("vae_lab.train", "+experiment=disentangle_cpu", "+arm=beta_4", "data.train_subset=640",
                     "trainer.enable_progress_bar=false", "++eval.num_train=600", "++eval.num_test=300",
                     "++eval.score_train=200", "++eval.score_eval=100", "++eval.dci_stages=5", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["dataset"] == "shapes2d" and record["image_size"] == 32 and math.isfinite(record["test/loss"])
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "modularity",
                "explicitness", "gaussian_total_correlation", "factor_vae_score", "beta_vae_score"):
        assert math.isfinite(record[f"test/{key}"]), key
    assert record["time/dci_seconds"] > 0 and "test/fid" not in record
    datamodule = datamodule_from_checkpoint(read_checkpoint(tmp_path / "checkpoints" / "last.ckpt"))
    datamodule.setup()
    x, factors = datamodule.splits["test"][torch.arange(4)]
    assert x.shape == (4, 1, 32, 32) and factors.shape == (4, 5)
