"""Small files in each publisher's exact format (same keys, dtypes, per-item shapes, factor order, layout), written
by the tests, with the test-only known hashes that let the real loaders accept them."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import FAST
from vae_lab.data.files import KnownFile, md5
from vae_lab.data.ground_truth import grid_factors

QUICK = [*FAST, "net=mlp", "net.hidden=[64]", "~callbacks.images"]  # the CIFAR-10 test covers conv nets and images


def known_for_test(known: KnownFile, path: Path) -> KnownFile:
    """The published file's record with the small test file's MD5 and size in place of the real ones."""
    return dataclasses.replace(known, md5=md5(path), size=path.stat().st_size, exact_size=True)


def sprite_images(factors: np.ndarray) -> np.ndarray:
    """N×64×64 uint8 0/1 images of sprites that move with their factors (a square per shape, sized by scale)."""
    images = np.zeros((len(factors), 64, 64), dtype=np.uint8)
    for i, (shape, scale, orientation, x, y) in enumerate(factors):
        side = 6 + 4 * scale + 2 * shape
        top, left = 4 + 10 * y + orientation, 4 + 10 * x
        images[i, top:top + side, left:left + side] = 1
    return images


def write_dsprites(path: Path, sizes: list[int]) -> Path:
    """A dSprites .npz over a small factor grid: imgs, latents_classes, latents_values and a pickled metadata dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    factors = grid_factors(np.arange(int(np.prod(sizes))), sizes)
    classes = np.concatenate([np.zeros((len(factors), 1), dtype=np.int64), factors], axis=1)
    metadata = np.array({"latents_sizes": np.array([1, *sizes]), "latents_names": ("color", "shape", "scale",
                         "orientation", "posX", "posY")}, dtype=object)
    np.savez_compressed(path, imgs=sprite_images(factors), latents_classes=classes,
                        latents_values=classes.astype(np.float64), metadata=metadata)
    return path


def colour_images(factors: np.ndarray) -> np.ndarray:
    """N×64×64×3 uint8 images whose background, object colour and object place follow the factors."""
    images = np.zeros((len(factors), 64, 64, 3), dtype=np.uint8)
    for i, f in enumerate(factors):
        images[i, :, :, 0] = 60 + 120 * f[0]
        images[i, :, :, 2] = 40 + 100 * f[1]
        top, left = 8 + 10 * f[-1], 8 + 12 * f[-2]
        images[i, top:top + 16, left:left + 16, 1] = 90 + 80 * f[2]
    return images


def write_shapes3d(path: Path, sizes: list[int]) -> Path:
    """A 3dshapes.h5 over a small grid: `images` uint8 N×64×64×3 and `labels` float64 N×6 (the factor values)."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    factors = grid_factors(np.arange(int(np.prod(sizes))), sizes)
    values = np.stack([np.linspace(0.0, 0.9, s)[factors[:, k]] for k, s in enumerate(sizes)], axis=1)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=colour_images(factors), chunks=(1, 64, 64, 3))
        f.create_dataset("labels", data=values.astype(np.float64))
    return path


def write_mpi3d(path: Path, sizes: list[int], compressed: bool) -> Path:
    """An mpi3d_toy.npz over a small grid: one array, `images` uint8 N×64×64×3."""
    path.parent.mkdir(parents=True, exist_ok=True)
    factors = grid_factors(np.arange(int(np.prod(sizes))), sizes)
    (np.savez_compressed if compressed else np.savez)(path, images=colour_images(factors))
    return path


def write_cifar(root: Path, per_batch: int = 40) -> Path:
    """A `cifar-10-batches-py` folder: five training batches and a test batch of `per_batch` images, and
    batches.meta, pickled as CIFAR's are (bytes keys, data N×3072 uint8 in channel-major rows, labels a list)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    for k, name in enumerate(names):
        labels = rng.integers(0, 10, per_batch)
        images = np.zeros((per_batch, 3, 32, 32), dtype=np.uint8)
        for i, label in enumerate(labels):  # a class is a colour and a place
            images[i, label % 3, 4 + 2 * label: 12 + 2 * label, 8:24] = 200 + rng.integers(0, 50)
        batch = {b"batch_label": f"batch {k}".encode(), b"labels": labels.tolist(),
                 b"data": images.reshape(per_batch, 3072), b"filenames": [f"{i}.png".encode() for i in labels]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                   "horse", "ship", "truck")], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def loss_falls(cfg, steps: int = 15) -> tuple[float, float]:
    """(first, last) training loss of the config's model over `steps` Adam steps on the datamodule's batches."""
    torch.manual_seed(0)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()
    model = instantiate(cfg.model, net=cfg.net, _recursive_=False)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = iter(datamodule.train_dataloader())
    batch = next(batches)
    losses = []
    for _ in range(steps):
        loss = model.loss_terms(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses[:3])), float(np.mean(losses[-3:]))


def expect_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    """The error is one line naming every part."""
    message = str(err.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
