"""IDX parsing, the one fetch-and-verify path, MNIST's sources, the base datamodule and the resident-tensor batches."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import CONF
from vae_lab import registry
from vae_lab.data import mnist
from vae_lab.data.base import DataModule
from vae_lab.data.batches import BatchIndexSampler
from vae_lab.data.files import verify_file
from vae_lab.data.idx import decode_idx, encode_idx, read_idx, write_idx
from vae_lab.data.mnist import FILES, MNISTDataModule, ensure_raw, known_files, raw_dir
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
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: MD5"):
        verify_file(path, known_files("mnist")[3])


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
    dm = MNISTDataModule(name, data_dir=str(data_dir), batch_size=100)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
    assert dm.splits["train"].images.dtype == torch.uint8
    assert len(dm.train_dataloader()) == 550


@pytest.mark.parametrize("size", [32, 64])
def test_datamodule_image_sizes(data_dir, size):
    dm = MNISTDataModule("mnist", data_dir=str(data_dir), image_size=size, train_subset=500)
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
        MNISTDataModule(steps_per_batch=0)
    with pytest.raises(ConfigError, match="batch_size"):
        MNISTDataModule(batch_size=0)
    with pytest.raises(ConfigError, match="image_size"):
        MNISTDataModule(image_size=30)
    with pytest.raises(ConfigError, match="choose one of"):
        MNISTDataModule(name="cifar")
    for subset in (0, -5):  # `if train_subset:` would train on every image, or on all but five
        with pytest.raises(ConfigError, match=f"data.train_subset={subset}: must be a whole number ≥ 1 or null"):
            MNISTDataModule(train_subset=subset)
    with pytest.raises(ConfigError, match="data.val_size=70000: must leave training images"):
        MNISTDataModule(val_size=70000)
    with pytest.raises(ConfigError, match="data.train_subset=1000000: there are only 55,000 training images"):
        MNISTDataModule(train_subset=10**6)  # would be cut to 55,000 while metrics.json said a million


def test_bad_shapes2d_splits():
    from vae_lab.data.shapes2d import Shapes2DDataModule

    with pytest.raises(ConfigError, match="data.test_size=0: must be a whole number ≥ 1"):
        Shapes2DDataModule(image_size=32, test_size=0)
    with pytest.raises(ConfigError, match="data.val_size=400000 \\+ data.test_size=400000: must leave training"):
        Shapes2DDataModule(image_size=32, val_size=400_000, test_size=400_000)
    with pytest.raises(ConfigError, match="data.train_subset=737000: there are only 722,280"):
        Shapes2DDataModule(image_size=32, train_subset=737_000)  # its subset would overlap val and test


def test_an_existing_file_failing_its_checksum_is_never_replaced(tmp_path, monkeypatch):
    """A wrong file beside a missing one: the run stops naming it, and nothing is fetched over it."""
    fetched = []

    def fetch(into, dataset, download):  # what torchvision's download does: all four files
        fetched.append(into)
        for name in FILES:
            (into / name).write_bytes(b"fetched")

    monkeypatch.setattr(mnist, "fetch", fetch)
    folder = raw_dir(tmp_path, "mnist")
    folder.mkdir(parents=True)
    (folder / FILES[0]).write_bytes(b"the user's own, truncated")
    with pytest.raises(DataError, match=f"{FILES[0]}: MD5"):
        ensure_raw(tmp_path, "mnist")
    assert (folder / FILES[0]).read_bytes() == b"the user's own, truncated" and not fetched


def test_only_missing_files_are_fetched_and_good_ones_stay(tmp_path, monkeypatch):
    contents = {name: name.encode() for name in FILES}
    monkeypatch.setitem(mnist.KNOWN_MD5, "mnist", {n: hashlib.md5(c).hexdigest() for n, c in contents.items()})
    fetched = []

    def fetch(into, dataset, download):
        fetched.append(into)
        for name, content in contents.items():
            (into / name).write_bytes(content)

    monkeypatch.setattr(mnist, "fetch", fetch)
    folder = raw_dir(tmp_path, "mnist")
    folder.mkdir(parents=True)
    kept = folder / FILES[0]
    kept.write_bytes(contents[FILES[0]])
    inode = kept.stat().st_ino
    assert ensure_raw(tmp_path, "mnist") == folder
    assert fetched and fetched[0] != folder  # fetched beside, not into, the user's files
    assert kept.stat().st_ino == inode and all((folder / n).read_bytes() == c for n, c in contents.items())
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(FILES)
    assert not list(folder.glob(".fetch-*"))  # the temporary folder is gone


def test_a_fifo_or_a_folder_in_a_data_files_place_is_one_line_not_a_hang(tmp_path, data_dir):
    """Hashing a FIFO would block for ever, a folder would crash: both refused before they are opened."""
    folder = raw_dir(tmp_path, "mnist")
    shutil.copytree(raw_dir(data_dir, "mnist"), folder)
    (folder / FILES[1]).unlink()
    os.mkfifo(folder / FILES[1])
    with pytest.raises(DataError) as err:
        ensure_raw(tmp_path, "mnist", download=False)
    assert str(err.value) == f"{folder / FILES[1]}: is a FIFO (named pipe), not the data file; move it away"
    (folder / FILES[1]).unlink()
    (folder / FILES[1]).mkdir()
    with pytest.raises(DataError, match=f"{FILES[1]}: is a folder, not the data file"):
        ensure_raw(tmp_path, "mnist", download=False)


def datamodule_classes() -> dict[str, type]:
    """Each conf/data option's `_target_` class, by option name."""
    from hydra.utils import get_class

    return {path.stem: get_class(OmegaConf.load(path)["_target_"]) for path in sorted((CONF / "data").glob("*.yaml"))}


def test_every_dataset_sits_on_the_base_class_and_declares_what_it_serves():
    classes = datamodule_classes()
    assert len(classes) == 8
    for option, cls in classes.items():
        assert issubclass(cls, DataModule) and option in cls.datasets, (option, cls)
        config = OmegaConf.load(CONF / "data" / f"{option}.yaml")
        parameters, open_ended = registry.parameters(cls)  # `**kwargs` followed to the constructor that takes them
        assert config["name"] == option and set(config) - {"_target_"} <= set(parameters), (option, cls)
        assert not open_ended, cls  # no key taken silently
    assert classes["mnist"] is classes["fashion_mnist"] is MNISTDataModule
    served = [name for cls in set(classes.values()) for name in cls.datasets]
    assert sorted(served) == sorted(classes)  # each name served by exactly one class


def test_make_data_verifies_both_datasets_or_says_why_not_in_one_line(data_dir, tmp_path, monkeypatch, capsys):
    """`make data` runs `python -m vae_lab.data.mnist DATA_DIR`."""
    monkeypatch.setattr("sys.argv", ["mnist", str(data_dir)])
    mnist.main()
    assert capsys.readouterr().out.splitlines() == [f"mnist: verified in {data_dir}/MNIST/raw",
                                                    f"fashion_mnist: verified in {data_dir}/FashionMNIST/raw"]
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr("sys.argv", ["mnist", str(tmp_path / "a_file")])
    with pytest.raises(SystemExit) as stop:
        mnist.main()
    assert stop.value.code == 2 and capsys.readouterr().err.startswith("error: data.data_dir: cannot make")


def test_mnist_comes_from_torchvisions_download_else_the_offline_source(tmp_path, monkeypatch):
    """Online: torchvision's files (compressed, in its layout) moved in; offline: the offline source's."""
    contents = {name: name.encode() for name in FILES}
    monkeypatch.setitem(mnist.KNOWN_MD5, "mnist", {n: hashlib.md5(c).hexdigest() for n, c in contents.items()})
    used = []

    def torchvision_download(root, dataset):
        used.append("torchvision")
        raw = raw_dir(root, dataset)
        raw.mkdir(parents=True)
        for name, content in contents.items():
            (raw / f"{name}.gz").write_bytes(gzip.compress(content))

    def offline_fetch(into, dataset, names):
        used.append("offline")
        for name in names:
            (into / name).write_bytes(contents[name])

    monkeypatch.setattr(mnist, "torchvision_download", torchvision_download)
    monkeypatch.setattr(mnist, "offline_fetch", offline_fetch)
    assert all((ensure_raw(tmp_path / "online", "mnist") / n).read_bytes() == c for n, c in contents.items())
    assert used == ["torchvision"]
    monkeypatch.setattr(mnist, "torchvision_download", lambda root, dataset: used.append("refused") or 1 / 0)
    assert all((ensure_raw(tmp_path / "offline", "mnist") / n).read_bytes() == c for n, c in contents.items())
    assert used == ["torchvision", "refused", "offline"]
    assert sorted(p.name for p in raw_dir(tmp_path / "online", "mnist").iterdir() if p.name[0] != ".") == sorted(FILES)
