"""CIFAR-10 (50,000 / 10,000 RGB 32×32 images, 10 classes) from its publisher's MD5-checked python batches."""

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10

from vae_lab.data.arrays import ArrayDataModule, Arrays
from vae_lab.data.base import constructor_arguments
from vae_lab.data.files import KnownFile, by_torchvision, ensure_files

PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
ARCHIVE = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = ["test_batch"]
META = "batches.meta"
FOLDER = "cifar-10-batches-py"  # torchvision's layout
# Each file's MD5 as torchvision's CIFAR10 class records it (its train_list, test_list and meta).
KNOWN_MD5 = {**dict(CIFAR10.train_list), **dict(CIFAR10.test_list), CIFAR10.meta["filename"]: CIFAR10.meta["md5"]}


def known_files() -> list[KnownFile]:
    """The six batch files and batches.meta, with torchvision's MD5s."""
    return [KnownFile(name, KNOWN_MD5[name], 31_000_000 if name != META else 158, ARCHIVE, PAGE)
            for name in (*TRAIN, *TEST, META)]


def torchvision_download(root: str) -> None:
    """torchvision's download of the publisher's archive, extracted into root/FOLDER."""
    CIFAR10(root, train=True, download=True)


def ensure_cifar10(data_dir: Path, download: bool = True) -> Path:
    """The folder of verified batch files: found, else downloaded by torchvision, else a one-line error."""
    fetch = by_torchvision(torchvision_download, FOLDER, "CIFAR-10")
    return ensure_files(Path(data_dir) / FOLDER, known_files(), fetch if download else None,
                        f"download cifar-10-python.tar.gz (about 170 MB, from {PAGE}) and extract it in {data_dir} "
                        "(or run with data.download=true on a machine online)")


def read_batch(path: Path) -> dict:
    """One verified pickled batch (CIFAR's own format: a dict with bytes keys)."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def read_split(folder: Path, names: list[str]) -> Arrays:
    """The batches' images as N×3×32×32 uint8 and labels as int64."""
    batches = [read_batch(folder / name) for name in names]
    images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    return torch.from_numpy(images), torch.from_numpy(labels)


class Cifar10DataModule(ArrayDataModule):
    """`data=cifar10`: a 45k/5k train/val split of the official training set, the official test set."""

    datasets = ("cifar10",)
    image_sizes = (32, 64)
    train_images = 50_000

    def __init__(self, name: str = "cifar10", data_dir: str = "data", batch_size: int = 128, image_size: int = 32,
                 val_size: int = 5000, split_seed: int = 12345, seed: int = 0, train_subset: int | None = None,
                 download: bool = True, steps_per_batch: int = 1, channels: int = 3) -> None:
        super().__init__(constructor_arguments(locals()))

    def count_classes(self) -> int:
        return 10

    def prepare_data(self) -> None:
        """Find, fetch and verify the batch files (once per machine)."""
        ensure_cifar10(self.data_dir, self.hparams.download)

    def load(self) -> tuple[Arrays, Arrays, list[str]]:
        folder = ensure_cifar10(self.data_dir, download=False)
        names = [n.decode() for n in read_batch(folder / META)[b"label_names"]]
        return read_split(folder, TRAIN), read_split(folder, TEST), names
