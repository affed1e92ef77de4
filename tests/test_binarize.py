"""data.binarize: dynamically and statically binarized MNIST / Fashion-MNIST, the likelihood benchmarks' data."""

from __future__ import annotations

import pytest
import torch

from vae_lab.data import datamodule
from vae_lab.data.binarize import Redrawn
from vae_lab.data.mnist import MNISTDataModule
from vae_lab.errors import ConfigError


def _data(data_dir, mode, name="mnist", seed=777, subset=200):
    dm = MNISTDataModule(name, data_dir=str(data_dir), train_subset=subset, binarize=mode, binarize_seed=seed)
    dm.setup()
    return dm


def _binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


@pytest.fixture(scope="module")
def dynamic(data_dir):
    return _data(data_dir, "dynamic")


def test_dynamic_redraws_each_training_read_and_fixes_validation_and_test(data_dir, dynamic):
    dm = dynamic
    index = torch.arange(64)
    assert isinstance(dm.splits["train"], Redrawn)
    (a, ya), (b, yb) = dm.splits["train"][index], dm.splits["train"][index]
    assert _binary(a) and _binary(b) and not torch.equal(a, b) and torch.equal(ya, yb)
    grey = dm.splits["train"].images[index].float() / 255  # the draws average to the grey pixel
    draws = torch.stack([dm.splits["train"][index][0] for _ in range(400)]).mean(0)
    assert (draws - grey).abs().max() < 0.12
    again = _data(data_dir, "dynamic", "mnist")
    for split in ("val", "test"):
        x = dm.splits[split][torch.arange(len(dm.splits[split]))][0]
        assert _binary(x) and torch.equal(x, again.splits[split][torch.arange(len(x))][0]), split
    other = _data(data_dir, "static", "mnist", seed=778)
    assert not torch.equal(dm.splits["test"].images, other.splits["test"].images)


def test_static_fixes_every_split_and_none_leaves_the_grey_images(data_dir, dynamic):
    static, plain = _data(data_dir, "static", "fashion_mnist"), _data(data_dir, "none", "fashion_mnist")
    index = torch.arange(64)
    x = static.splits["train"][index][0]
    assert _binary(x) and torch.equal(x, static.splits["train"][index][0])
    same_seed = _data(data_dir, "static")
    assert torch.equal(same_seed.splits["test"].images, dynamic.splits["test"].images)  # one seed, one test set
    assert not _binary(plain.splits["train"][index][0]) and not _binary(plain.splits["test"].images / 255)


def test_evaluation_reads_the_runs_binarized_test_set(data_dir, dynamic):
    """A checkpoint's datamodule (what evaluate, FID and the IWAE bound read) draws the same test images: the full
    test set, whose first images the run's train_subset-sized test split holds."""
    dm = dynamic
    assert dm.hparams.binarize == "dynamic" and dm.hparams.binarize_seed == 777  # saved in each checkpoint
    full = datamodule.test_split({"datamodule_hyper_parameters": dict(dm.hparams)}, data_dir)
    n = len(dm.splits["test"])
    assert len(full) == 10_000 and torch.equal(full.images[:n], dm.splits["test"].images)


def test_a_bad_mode_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="data.binarize='yes'"):
        MNISTDataModule(binarize="yes")
