"""`data=images`: a user's own images — an ImageFolder-layout folder or a .npy / .npz array — converted once to a
cached uint8 array at `image_size`, with a fixed seeded train / validation / test split.

- A folder whose sub-folders hold images: torchvision's `ImageFolder` layout, each sub-folder a class (sorted names,
  labels 0, 1, …). A folder of image files only: unlabelled.
- `.npy`: an N×H×W (grey) or N×H×W×C (C = 1 or 3) array, uint8 0…255 or floats in [0, 1]; unlabelled, or labels
  from `data.labels` (a .npy of N whole numbers). `.npz`: the same array under `images` (labels under `labels`).
- Grey or colour as given (a folder is grey when every image is), or as `data.channels` asks; every image is
  resized (not cropped) to image_size × image_size.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from vae_lab.data.arrays import NO_LABEL, ArrayDataModule, Arrays, resize_to
from vae_lab.data.datamodule import to_channels
from vae_lab.errors import ConfigError, DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ARRAYS = (".npy", ".npz")


def image_files(folder: Path) -> list[Path]:
    """The image files directly in a folder, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def class_folders(folder: Path) -> list[Path]:
    """ImageFolder's classes: the sub-folders that hold images, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and image_files(p))


def read_folder(folder: Path, size: int, channels: int | None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """N×C×size×size uint8 images of a folder, labels by class sub-folder (None for a flat folder), class names."""
    from PIL import Image, UnidentifiedImageError

    classes = class_folders(folder)
    files = [(p, k) for k, c in enumerate(classes) for p in image_files(c)] if classes else \
        [(p, NO_LABEL) for p in image_files(folder)]
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(EXTENSIONS)}) in it or in its class sub-folders")
    opened = []
    for path, _ in files:
        try:
            with Image.open(path) as image:
                image.load()
                opened.append(image.copy())
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{path}: not a readable image ({err})") from err
    grey = all(image.mode in ("1", "L", "I", "I;16", "F") for image in opened)
    mode = "L" if (channels or (1 if grey else 3)) == 1 else "RGB"
    images = np.stack([np.asarray(image.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
                       for image in opened])
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    labels = np.array([k for _, k in files], dtype=np.int64) if classes else None
    return images, labels, [c.name for c in classes]


def read_array(path: Path, labels_path: str | None, size: int,
               channels: int | None) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """N×C×size×size uint8 images of a .npy / .npz array, its labels (None: unlabelled) and class names."""
    labels = None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "images" not in data.files:
                    raise DataError(f"{path}: no `images` array (it holds {sorted(data.files)})")
                array = data["images"]
                labels = data["labels"] if "labels" in data.files else None
        else:
            array = np.load(path, allow_pickle=False)
        if labels_path:
            labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable NumPy array without pickles ({err})") from err
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3) or len(array) == 0:
        raise DataError(f"{path}: images are {array.shape}; expected N×H×W or N×H×W×C with C 1 or 3")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating) or array.min() < 0 or array.max() > 1:
            raise DataError(f"{path}: images are {array.dtype}; give uint8 0…255 or floats in [0, 1]")
        array = np.rint(array * 255).astype(np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    if channels:
        images = to_channels(images, channels)
    images = resize_to(images, size).numpy()
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise DataError(f"labels {labels.shape} {labels.dtype}: expected {len(images)} whole numbers ≥ 0")
        labels = labels.astype(np.int64)
        return images, labels, [str(k) for k in range(int(labels.max()) + 1)]
    return images, None, []


class FolderDataModule(ArrayDataModule):
    """`data=images data.path=…`: the images cut into fixed seeded test, validation and training parts."""

    dataset = "images"
    image_sizes = (28, 32, 64)

    def __init__(self, path: str | None = None, labels: str | None = None, test_size: float = 0.1,
                 val_size: float = 0.1, **kwargs: object) -> None:
        if not path:
            raise ConfigError("data.path: give a folder of images (class sub-folders for labels) or a .npy/.npz "
                              "array, e.g. data=images data.path=/data/my_images")
        source = Path(path).expanduser()
        if not source.exists():
            raise ConfigError(f"data.path={path}: no such file or folder")
        if source.is_file() and source.suffix not in ARRAYS:
            raise ConfigError(f"data.path={path}: give a folder of images or a {' / '.join(ARRAYS)} array")
        for key, value in (("test_size", test_size), ("val_size", val_size)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ConfigError(f"data.{key}={value!r}: a count ≥ 1 or a fraction in (0, 1)")
        self.source = source
        super().__init__(val_size=val_size, path=str(source), labels=labels, test_size=test_size, **kwargs)
        if self.hparams.channels is None:  # as given: known once converted (cached, so only the first run pays)
            self.channels = int(self.convert()[0].shape[1])

    def count_classes(self) -> int | None:
        """A folder's class sub-folders; an array's label range (converted now, once: it is cached)."""
        if self.source.is_dir():
            return len(class_folders(self.source)) or None
        return len(self.convert()[2]) or None

    def cached_path(self) -> Path:
        """The converted array's cache file: named by the source, its size and time stamp, the size and channels."""
        stat = self.source.stat()
        extra = Path(self.hparams.labels).stat().st_mtime_ns if self.hparams.labels else None
        key = json.dumps([str(self.source.resolve()), stat.st_size, stat.st_mtime_ns, self.hparams.labels, extra,
                          self.image_size, self.hparams.channels], sort_keys=True)
        return self.data_dir / "images_cache" / f"{self.source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"

    def cached(self) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """The converted images, labels and class names from the cache."""
        with np.load(self.cached_path(), allow_pickle=False) as data:
            labels = data["labels"] if data["labels"].size else None
            return data["images"], labels, [str(n) for n in data["names"]]

    def convert(self) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
        """Convert the source once into the cache (written beside, then renamed) and return it."""
        out = self.cached_path()
        if out.is_file():
            return self.cached()
        size, channels = self.image_size, self.hparams.channels
        images, labels, names = (read_folder(self.source, size, channels) if self.source.is_dir() else
                                 read_array(self.source, self.hparams.labels, size, channels))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp.npz")
        np.savez(tmp, images=images, labels=np.zeros(0, np.int64) if labels is None else labels,
                 names=np.array(names, dtype=str))
        tmp.replace(out)
        return images, labels, names

    def prepare_data(self) -> None:
        """Convert the images once (cached in data_dir/images_cache)."""
        self.convert()

    def count(self, value: float, n: int, key: str) -> int:
        """A size given as a count or a fraction of n images."""
        count = int(value) if value >= 1 else max(1, round(value * n))
        if count >= n:
            raise ConfigError(f"data.{key}={value}: there are only {n:,} images")
        return count

    def val_count(self, n: int) -> int:
        return self.count(self.hparams.val_size, n, "val_size")

    def load(self) -> tuple[Arrays, Arrays, list[str] | None]:
        images, labels, names = self.convert()
        self.channels = images.shape[1]
        n = len(images)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.split_seed)).numpy()
        test = order[: self.count(self.hparams.test_size, n, "test_size")]
        train = np.sort(order[len(test):])
        y = np.full(n, NO_LABEL, dtype=np.int64) if labels is None else labels
        x, y = torch.from_numpy(images), torch.from_numpy(y)
        return (x[train], y[train]), (x[test], y[test]), (names or None)
