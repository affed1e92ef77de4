"""IDX parsing, checksums, offline sources and the resident-tensor datamodule."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from vae_lab.data.datamodule import BatchIndexSampler, ImageDataModule
from vae_lab.data.idx import FILES, decode_idx, encode_idx, read_idx, verify, write_idx
from vae_lab.data.sources import ensure_raw, raw_dir
from vae_lab.errors import ConfigError, DataError


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x", images)
    back = read_idx(tmp_path / "x")
    assert back.shape == (7, 28, 28) and (back == images).all()
    assert (decode_idx(encode_idx(np.arange(5, dtype=np.uint8))) == np.arange(5)).all()


def test_idx_rejects_truncated_and_corrupt(tmp_path):
    data = encode_idx(np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(DataError, match="truncated"):
        decode_idx(data[:-10], "short")
    with pytest.raises(DataError, match="magic"):
        decode_idx(b"\x01\x02" + data[2:], "bad")
    with pytest.raises(DataError, match="unsigned bytes"):
        decode_idx(data[:2] + b"\x0d" + data[3:], "float")


def test_wrong_checksum_names_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(path, np.zeros(10, np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*MD5"):
        verify(path, "mnist")


def test_real_files_verify(data_dir):
    for dataset in ("mnist", "fashion_mnist"):
        folder = ensure_raw(data_dir, dataset, download=False)
        assert all((folder / f).exists() for f in FILES)


def test_corrupt_local_file_stops_without_fallback(tmp_path, data_dir):
    folder = raw_dir(tmp_path, "mnist")
    shutil.copytree(raw_dir(data_dir, "mnist"), folder)
    corrupt = folder / "train-labels-idx1-ubyte"
    raw = bytearray(corrupt.read_bytes())
    raw[100] ^= 0xFF
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        ensure_raw(tmp_path, "mnist", download=False)
    assert corrupt.read_bytes() == bytes(raw), "a corrupt file must not be silently replaced"


def test_truncated_gzip_is_rejected(tmp_path, data_dir):
    folder = raw_dir(tmp_path, "fashion_mnist")
    folder.mkdir(parents=True)
    for name in FILES:
        shutil.copyfile(raw_dir(data_dir, "fashion_mnist") / name, folder / name)
    (folder / "t10k-images-idx3-ubyte").unlink()
    blob = gzip.compress((raw_dir(data_dir, "fashion_mnist") / "t10k-images-idx3-ubyte").read_bytes())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        ensure_raw(tmp_path, "fashion_mnist", download=False)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_datamodule_splits_and_batches(data_dir, name):
    dm = ImageDataModule(name, data_dir=str(data_dir), batch_size=100)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
    assert dm.splits["train"].images.dtype == torch.uint8
    assert len(dm.train_dataloader()) == 550


@pytest.mark.parametrize("size", [32, 64])
def test_datamodule_image_sizes(data_dir, size):
    dm = ImageDataModule("mnist", data_dir=str(data_dir), image_size=size, train_subset=500)
    dm.setup()
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape[-2:] == (size, size)
    if size == 32:
        assert x[..., :2, :].abs().sum() == 0, "32×32 is zero-padding"


def test_batches_reshuffle_per_epoch_deterministically():
    sampler = BatchIndexSampler(10, 4, shuffle=True, seed=3)
    first = torch.cat(list(sampler))
    sampler.set_epoch(1)
    second = torch.cat(list(sampler))
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    sampler.set_epoch(0)
    assert torch.equal(torch.cat(list(sampler)), first)
    assert [len(b) for b in BatchIndexSampler(10, 4, shuffle=False)] == [4, 4, 2]


def test_grouped_batches_are_the_same_batches_in_lists():
    """data.steps_per_batch > 1 hands Lightning lists of the very batches it would get one by one."""
    single = list(BatchIndexSampler(10, 3, shuffle=True, seed=1))
    grouped = list(BatchIndexSampler(10, 3, shuffle=True, seed=1, group=2))
    assert [len(g) for g in grouped] == [2, 2] and len(BatchIndexSampler(10, 3, shuffle=True, group=2)) == 2
    assert all(torch.equal(a, b) for a, b in zip(single, [b for g in grouped for b in g]))


def test_bad_datamodule_arguments():
    with pytest.raises(ConfigError, match="steps_per_batch"):
        ImageDataModule(steps_per_batch=0)
    with pytest.raises(ConfigError, match="batch_size"):
        ImageDataModule(batch_size=0)
    with pytest.raises(ConfigError, match="image_size"):
        ImageDataModule(image_size=30)
    with pytest.raises(ConfigError, match="choose one of"):
        ImageDataModule(name="cifar")
    for subset in (0, -5):  # `if train_subset:` would train on every image, or on all but five
        with pytest.raises(ConfigError, match=f"data.train_subset={subset}: must be a whole number ≥ 1 or null"):
            ImageDataModule(train_subset=subset)
    with pytest.raises(ConfigError, match="data.val_size=70000: must leave training images"):
        ImageDataModule(val_size=70000)
    with pytest.raises(ConfigError, match="data.train_subset=1000000: there are only 55,000 training images"):
        ImageDataModule(train_subset=10**6)  # would be cut to 55,000 while metrics.json said a million


def test_bad_shapes2d_splits():
    from vae_lab.data.shapes2d import Shapes2DDataModule

    with pytest.raises(ConfigError, match="data.test_size=0: must be a whole number ≥ 1"):
        Shapes2DDataModule(image_size=32, test_size=0)
    with pytest.raises(ConfigError, match="data.val_size=400000 \\+ data.test_size=400000: must leave training"):
        Shapes2DDataModule(image_size=32, val_size=400_000, test_size=400_000)
    with pytest.raises(ConfigError, match="data.train_subset=737000: there are only 722,280"):
        Shapes2DDataModule(image_size=32, train_subset=737_000)  # its subset would overlap val and test
