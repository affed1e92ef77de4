"""The real-data loaders on small files in each publisher's exact format (the real files are not on this machine):
checksums, factor ↔ index, batches, a few training steps, the metrics, and the bad inputs' one line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from tests.conftest import FAST, compose_cfg
from tests.datasets_util import (
    QUICK,
    expect_line,
    known_for_test,
    loss_falls,
    write_cifar,
    write_dsprites,
    write_mpi3d,
    write_shapes3d,
)
from vae_lab.data import cifar10, dsprites, mpi3d, shapes3d
from vae_lab.data.files import md5
from vae_lab.errors import ConfigError, DataError

DSPRITES_GRID = [3, 2, 2, 4, 4]  # shape, scale, orientation, x, y: 192 images in the real file's layout
TINY_GT_EVAL = ["++eval.num_train=96", "++eval.num_test=48", "++eval.score_train=8", "++eval.score_eval=4",
                "++eval.dci_stages=3"]
SPLITS = ["data.val_size=16", "data.test_size=32", "data.train_subset=null", "data.batch_size=32"]


@pytest.fixture()
def small_dsprites(tmp_path, monkeypatch):
    """data_dir with a small dSprites file under the real name, accepted by its test-only MD5."""
    path = write_dsprites(tmp_path / "dsprites" / dsprites.FILE.name, DSPRITES_GRID)
    monkeypatch.setattr(dsprites, "FILE", known_for_test(dsprites.FILE, path))
    monkeypatch.setattr(dsprites.DSprites, "factor_sizes", DSPRITES_GRID)
    return tmp_path


def test_dsprites_batches_factors_and_packed_bits(small_dsprites):
    data = dsprites.DSpritesDataModule(data_dir=str(small_dsprites), image_size=64, val_size=16, test_size=32,
                                       download=False)
    data.prepare_data()
    data.setup()
    truth = data.ground_truth
    assert truth.packed.shape == (192, 512) and truth.packed.dtype == torch.uint8  # 8 pixels a byte
    index = np.arange(192)
    assert (truth.factors_to_index(truth.index_to_factors(index)) == index).all()
    x, factors = data.splits["test"][torch.arange(8)]
    assert x.shape == (8, 1, 64, 64) and set(x.unique().tolist()) <= {0.0, 1.0}
    imgs = np.load(small_dsprites / "dsprites" / dsprites.FILE.name)["imgs"]
    flat = truth.factors_to_index(factors.numpy())
    assert np.array_equal(x[:, 0].numpy(), imgs[flat])   # the file's image for each factor tuple
    small = dsprites.DSprites(32, "cpu", 3, truth.packed.numpy()).images(factors.numpy())
    assert small.shape == (8, 3, 32, 32) and torch.allclose(small[:, :1], torch.nn.functional.avg_pool2d(x, 2))


def test_dsprites_refuses_a_wrong_or_missing_file_by_name(tmp_path, small_dsprites, monkeypatch):
    path = small_dsprites / "dsprites" / dsprites.FILE.name
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])                      # truncated: refused, and left as it is
    with pytest.raises(DataError) as err:
        dsprites.DSpritesDataModule(data_dir=str(small_dsprites), val_size=16, test_size=32).prepare_data()
    expect_line(err, str(path), "MD5", "delete it")
    assert path.read_bytes() == blob[: len(blob) // 2]
    monkeypatch.undo()                                            # the real hash for the real name
    path.write_bytes(blob)
    with pytest.raises(DataError) as err:
        dsprites.DSpritesDataModule(data_dir=str(small_dsprites), download=False).prepare_data()
    expect_line(err, "7da33b31b13a06f4b04a70402ce90c2e")
    with pytest.raises(DataError) as err:
        dsprites.DSpritesDataModule(data_dir=str(tmp_path / "empty"), download=False).prepare_data()
    expect_line(err, "is missing", dsprites.FILE.name, "26.0 MB", "github.com/google-deepmind/dsprites-dataset",
                str(tmp_path / "empty" / "dsprites"))


def test_dsprites_trains_and_gets_the_disentanglement_metrics(small_dsprites, tmp_path, one_thread):
    from vae_lab.train import train

    overrides = ["+experiment=disentangle_cpu", "+arm=beta_4", "data=dsprites", f"paths.data_dir={small_dsprites}",
                 "net.image_size=32", *SPLITS, *QUICK, "data.train_subset=null", *TINY_GT_EVAL]
    cfg = compose_cfg(tmp_path / "run", *overrides)
    first, last = loss_falls(cfg)
    assert last < first
    record = train(cfg)
    assert record["dataset"] == "dsprites" and math.isfinite(record["test/loss"])
    for key in ("mig", "dci_disentanglement", "sap", "factor_vae_score", "beta_vae_score"):
        assert math.isfinite(record[f"test/{key}"]), key
    assert "has ground-truth factors" in record["skipped"]["test/fid"] and "test/fid" not in record



@pytest.fixture()
def small_cifar(tmp_path, monkeypatch):
    """data_dir with CIFAR's batches layout, 40 images a batch, accepted by test-only MD5s."""
    folder = write_cifar(tmp_path)
    monkeypatch.setattr(cifar10, "KNOWN_MD5", {p.name: md5(p) for p in folder.iterdir()})
    return tmp_path


def test_cifar10_batches_classes_and_bad_files(small_cifar, monkeypatch):
    data = cifar10.Cifar10DataModule(data_dir=str(small_cifar), image_size=32, val_size=20, download=False)
    data.setup()
    assert data.num_classes == 10 and data.class_names[0] == "airplane"
    assert (len(data.splits["train"]), len(data.splits["val"]), len(data.splits["test"])) == (180, 20, 40)
    x, y = data.splits["test"][torch.arange(5)]
    raw = cifar10.read_batch(small_cifar / "cifar-10-batches-py" / "test_batch")
    assert x.shape == (5, 3, 32, 32) and 0 <= x.min() and x.max() <= 1 and y.tolist() == raw[b"labels"][:5]
    assert torch.equal((x * 255).round().to(torch.uint8).reshape(5, -1), torch.from_numpy(raw[b"data"][:5]))
    batch = small_cifar / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-100])  # truncated: refused by name before it is unpickled
    with pytest.raises(DataError) as err:
        cifar10.Cifar10DataModule(data_dir=str(small_cifar), val_size=20, download=True).prepare_data()
    expect_line(err, str(batch), "MD5")
    batch.unlink()
    with pytest.raises(DataError) as err:
        cifar10.Cifar10DataModule(data_dir=str(small_cifar), val_size=20, download=False).prepare_data()
    expect_line(err, str(batch), "is missing", "cifar-10-python.tar.gz", "cs.toronto.edu")
    monkeypatch.undo()                                   # the real MD5s (torchvision's) for the real names
    write_cifar(small_cifar)
    with pytest.raises(DataError) as err:
        cifar10.Cifar10DataModule(data_dir=str(small_cifar), val_size=20, download=False).prepare_data()
    expect_line(err, "c99cafc152244af753f735de768cd75f")


def test_a_colour_cvae_trains_on_cifar10_evaluates_logs_and_generates_in_colour(small_cifar, tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    from vae_lab.generate import generate
    from vae_lab.train import train

    run = tmp_path / "run"
    cfg = compose_cfg(run, "model=cvae", "data=cifar10", "net=burgess", "net.image_size=32", "net.channels=8", "net.hidden=32",
                      "data.val_size=20",
                      f"paths.data_dir={small_cifar}", "model.likelihood=gaussian", "data.batch_size=32", *FAST,
                      "data.train_subset=null", "++eval.classifier.train_subset=null", "++eval.per_class=4",
                      "++eval.fid_samples=40", "++eval.probe_train_images=100", "++eval.classifier.width=8",
                      "++eval.classifier.batch_size=64")
    assert cfg.net.image_channels == 3
    first, last = loss_falls(cfg)
    assert last < first
    record = train(cfg)
    assert record["status"] == "ok" and math.isfinite(record["test/loss"])
    for key in ("test/fid", "test/cond_accuracy", "test/probe_accuracy", "test/nll_iwae"):
        assert math.isfinite(record[key]), key
    assert "test/fid" not in record["skipped"] and "disentanglement metrics" in record["skipped"]
    events = EventAccumulator(str(next(run.rglob("events.out.tfevents.*")).parent), size_guidance={IMAGES: 0})
    events.Reload()
    assert {"images/class_grid", "images/reconstructions", "images/traversals"} <= set(events.Tags()["images"])
    assert "images/class_grid" in events.Tags()["images"]
    ckpt = run / "checkpoints" / "last.ckpt"
    for mode, out in (("samples", tmp_path / "s.npy"), ("traverse", tmp_path / "t.png")):
        generate(compose_cfg(tmp_path, f"ckpt_path={ckpt}", f"mode={mode}", f"out={out}", "num_samples=4",
                             f"data_dir={small_cifar}", config="generate"))
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (4, 3, 32, 32) and 0 <= samples.min() and samples.max() <= 1
    assert not np.allclose(samples[:, 0], samples[:, 1])  # the channels are decoded separately
    picture = np.asarray(Image.open(tmp_path / "t.png").convert("RGB")).astype(int)  # a labelled figure: RGBA
    assert (picture[..., 0] != picture[..., 1]).any()  # in colour, not grey


SHAPES3D_GRID = [2, 2, 2, 2, 2, 3]
MPI3D_GRID = [2, 2, 2, 1, 1, 3, 4]


@pytest.fixture()
def small_shapes3d(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    path = write_shapes3d(tmp_path / "shapes3d" / shapes3d.FILE.name, SHAPES3D_GRID)
    monkeypatch.setattr(shapes3d, "FILE", known_for_test(shapes3d.FILE, path))
    monkeypatch.setattr(shapes3d.Shapes3D, "factor_sizes", SHAPES3D_GRID)
    return tmp_path


def check_grid(module, data_dir: Path, name: str, truth_images: np.ndarray, in_memory: bool, train: bool,
               *overrides: str) -> None:
    """Round trip, batch shape and range, each batch the file's image of its factors; with `train`, a few falling
    loss steps and the disentanglement metrics."""
    from vae_lab.metrics.ground_truth import disentanglement_metrics

    cfg = compose_cfg(data_dir / "run", "+experiment=disentangle_cpu", "+arm=beta_4", f"data={name}",
                      f"paths.data_dir={data_dir}", "net.image_size=64", "net.channels=8", "net.hidden=32",
                      "data.val_size=8", "data.test_size=16", "data.batch_size=16", f"data.in_memory={in_memory}",
                      *overrides)
    if train:
        first, last = loss_falls(cfg, steps=12)
        assert last < first
    data = module(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    data.setup()
    truth = data.ground_truth
    index = np.arange(len(truth))
    assert (truth.factors_to_index(truth.index_to_factors(index)) == index).all()
    x, factors = data.splits["val"][torch.arange(8)]
    assert x.shape == (8, 3, 64, 64) and 0 <= x.min() and x.max() <= 1
    flat = truth.factors_to_index(factors.numpy())
    assert torch.equal((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(truth_images[flat]))
    if not train:
        return
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    metrics = disentanglement_metrics(model, truth, num_train=48, num_test=24, score_train=4, score_eval=2,
                                      dci_stages=2)
    assert all(math.isfinite(metrics[f"test/{k}"]) for k in ("mig", "dci_disentanglement", "sap")), metrics


@pytest.mark.parametrize("in_memory", [False, True])
def test_shapes3d_reads_batches_from_the_h5_file_or_memory(small_shapes3d, in_memory, one_thread):
    import h5py

    with h5py.File(small_shapes3d / "shapes3d" / "3dshapes.h5", "r") as f:
        images = f["images"][:]
    check_grid(shapes3d.Shapes3DDataModule, small_shapes3d, "shapes3d", images, in_memory, train=not in_memory)


def test_shapes3d_refuses_labels_out_of_factor_order(small_shapes3d, monkeypatch):
    import h5py

    path = small_shapes3d / "shapes3d" / "3dshapes.h5"
    with h5py.File(path, "r+") as f:
        f["labels"][:] = f["labels"][:][::-1]
    monkeypatch.setattr(shapes3d, "FILE", known_for_test(shapes3d.FILE, path))
    data = shapes3d.Shapes3DDataModule(data_dir=str(small_shapes3d), val_size=8, test_size=16, download=False)
    with pytest.raises(DataError) as err:
        data.setup()
    expect_line(err, str(path), "not in factor order")


@pytest.mark.parametrize("variant, compressed, in_memory", [("toy", False, False), ("realistic", True, False),
                                                            ("real", True, True)])
def test_mpi3d_memory_maps_or_decompresses_once_or_loads(tmp_path, monkeypatch, variant, compressed, in_memory,
                                                         one_thread):
    """Each variant (data.variant) from its own file, in the published format."""
    path = write_mpi3d(tmp_path / "mpi3d" / f"mpi3d_{variant}.npz", MPI3D_GRID, compressed)
    monkeypatch.setitem(mpi3d.FILES, variant, known_for_test(mpi3d.FILES[variant], path))
    monkeypatch.setattr(mpi3d.MPI3D, "factor_sizes", MPI3D_GRID)
    images = np.load(path)["images"]
    check_grid(mpi3d.MPI3DDataModule, tmp_path, "mpi3d", images, in_memory, not compressed, f"data.variant={variant}")
    assert (tmp_path / "mpi3d" / f"mpi3d_{variant}_images.npy").exists() == (compressed and not in_memory)


def test_mpi3d_refuses_a_file_of_the_wrong_shape_and_an_unknown_variant(tmp_path, monkeypatch):
    path = tmp_path / "mpi3d" / mpi3d.FILES["toy"].name
    path.parent.mkdir()
    np.savez(path, images=np.zeros((5, 64, 64, 3), np.uint8))
    monkeypatch.setitem(mpi3d.FILES, "toy", known_for_test(mpi3d.FILES["toy"], path))
    with pytest.raises(DataError) as err:
        mpi3d.MPI3DDataModule(data_dir=str(tmp_path), download=False).prepare_data()
    expect_line(err, str(path), "expected uint8 (1036800, 64, 64, 3)")
    with pytest.raises(ConfigError, match="^data.variant='sim': choose one of toy, realistic, real$"):
        mpi3d.MPI3DDataModule(data_dir=str(tmp_path), variant="sim")


def test_mpi3d_is_fetched_from_the_hub_else_from_its_first_address(tmp_path, monkeypatch):
    """Each variant's current address first; where that fails, the pre-2024 one; a file already there is never
    fetched again."""
    import dataclasses
    import hashlib

    from torchvision.datasets import utils

    tried, content = [], b"the published file"

    def download(url, root, filename, md5):  # torchvision's download_url, where only the first address answers
        tried.append(url)
        if url.startswith(mpi3d.FIRST):
            (Path(root) / filename).write_bytes(content)

    monkeypatch.setattr(utils, "download_url", download)
    for variant in mpi3d.FILES:
        known = dataclasses.replace(mpi3d.FILES[variant], md5=hashlib.md5(content).hexdigest())
        monkeypatch.setitem(mpi3d.FILES, variant, known)
        assert mpi3d.ensure_variant(tmp_path, variant, download=True) == tmp_path / f"mpi3d_{variant}.npz"
    assert tried == [f"{address}mpi3d_{v}.npz" for v in ("toy", "realistic", "real") for address in (
        "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/",
        "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/")]
    mpi3d.ensure_variant(tmp_path, "toy", download=True)
    assert len(tried) == 6
