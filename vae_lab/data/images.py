"""`data=images`: a user's image folder or .npy/.npz array, converted once into a cached uint8 array."""

import hashlib
import json
import logging
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vae_lab.data.arrays import NO_LABEL, ArrayDataModule, Arrays, resize_to
from vae_lab.data.base import constructor_arguments, to_channels
from vae_lab.data.files import check_regular, file_kind
from vae_lab.data.npz import iter_rows, load_array, load_npy, npz_info
from vae_lab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's IMG_EXTENSIONS
ARRAYS = (".npy", ".npz")
DEPTH = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 2**31 - 1, "F": 1}  # not 8-bit
GREY = {"1", "L", "LA", "La", *DEPTH}
PROGRESS_DELAY = 2.0  # seconds: a first pass that takes longer shows its progress
Converted = tuple[np.ndarray, np.ndarray | None, list[str]]  # N×C×S×S uint8 images, labels or None, class names


def list_images(folder: Path) -> tuple[list[tuple[Path, int]], list[str], Counter]:
    """(image file, label) pairs by ImageFolder's rules, the class names, and the files left out by reason."""
    from torchvision.datasets.folder import find_classes, has_file_allowed_extension, make_dataset

    skipped: Counter = Counter()

    def is_image(path: str) -> bool:
        if not has_file_allowed_extension(path, EXTENSIONS):
            skipped["not images (other extensions)"] += 1
            return False
        return True

    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    loose = [folder / e.name for e in entries if not e.is_dir()]
    if len(loose) == len(entries):  # no sub-folders: unlabelled
        return [(p, NO_LABEL) for p in loose if is_image(str(p))], [], skipped
    classes, index = find_classes(folder)
    try:
        found = make_dataset(folder, index, is_valid_file=is_image)
    except FileNotFoundError as err:
        raise DataError(f"{folder}: {err} (torchvision's ImageFolder refuses an empty class folder too)") from None
    skipped["outside the class folders"] += len(loose)
    return [(Path(p), k) for p, k in found], classes, skipped


def image_mode(path: Path) -> str | None:
    """The image's mode from its header, or None when unreadable; a decompression bomb refused in one line."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():  # a FIFO or a device would hang the read
        return None
    try:
        with Image.open(path) as image:
            return image.mode
    except Image.DecompressionBombError as err:
        raise DataError(f"{path}: {err} (Pillow's limit, Image.MAX_IMAGE_PIXELS): shrink it or move it away") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError):
        return None


def check_values(values: np.ndarray, where: str) -> None:
    """Pixel values scaled to [0, 1]: every one finite and in range, else one line."""
    bad = values.size - np.count_nonzero(np.isfinite(values))
    if bad:
        raise DataError(f"{where}: {bad:,} of {values.size:,} values are not finite (NaN or ±inf)")
    if values.size and (values.min() < 0 or values.max() > 1):
        raise DataError(f"{where}: values from {values.min():g} to {values.max():g} after scaling by the image's "
                        "depth; float images must be in [0, 1]")


def image_pixels(path: Path, mode: str, size: int, background: tuple[int, int, int]) -> np.ndarray | None:
    """One image file as C×size×size uint8 (mode "L" or "RGB"), or None when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in DEPTH and image.has_transparency_data:
                image = Image.alpha_composite(Image.new("RGBA", image.size, (*background, 255)), image.convert("RGBA"))
            if image.mode in DEPTH:
                values = np.asarray(image, dtype=np.float64) / DEPTH[image.mode]
                check_values(values, str(path))
                small = Image.fromarray(values.astype(np.float32), "F").resize((size, size), Image.Resampling.BILINEAR)
                grey = np.rint(np.clip(np.asarray(small), 0, 1) * 255).astype(np.uint8)[None]
                return grey if mode == "L" else np.repeat(grey, 3, axis=0)
            pixels = np.asarray(image.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
    except (OSError, ValueError, EOFError):  # truncated or corrupt pixel data
        return None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def progress(items, total: int, what: str):
    """`items`, with a progress bar on stderr once the pass takes longer than PROGRESS_DELAY."""
    from tqdm import tqdm

    return tqdm(items, total=total, desc=what, unit="image", delay=PROGRESS_DELAY, leave=False)


def read_folder(folder: Path, size: int, channels: int | None, background: tuple[int, int, int]) -> Converted:
    """A folder's images decoded, converted and resized one at a time into one N×C×size×size uint8 array."""
    try:
        files, classes, skipped = list_images(folder)
    except OSError as err:
        raise DataError(f"{err.filename or folder}: cannot be read ({err.strerror})") from err
    modes = [image_mode(path) for path, _ in progress(files, len(files), f"reading {folder.name}")]
    readable = [(f, m) for f, m in zip(files, modes) if m is not None]
    grey = all(m in GREY for _, m in readable)
    mode = "L" if (channels or (1 if grey else 3)) == 1 else "RGB"
    images = np.empty((len(readable), 1 if mode == "L" else 3, size, size), dtype=np.uint8)
    kept: list[int] = []
    unreadable = [str(path) for (path, _), m in zip(files, modes) if m is None]
    for (path, label), _ in progress(readable, len(readable), f"converting {folder.name}"):
        pixels = image_pixels(path, mode, size, background)
        if pixels is None:
            unreadable.append(str(path))
            continue
        images[len(kept)] = pixels
        kept.append(label)
    skipped["unreadable"] += len(unreadable)
    if sum(skipped.values()):
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.items() if n)
        example = f" (e.g. {unreadable[0]})" if unreadable else ""
        log.warning("%s: skipped %d files: %s%s", folder, sum(skipped.values()), reasons, example)
    if not kept:
        raise DataError(f"{folder}: no readable image files ({', '.join(EXTENSIONS)}) in it or in its class folders")
    labels = np.array(kept, dtype=np.int64) if classes else None
    return images[: len(kept)], labels, classes


def open_array(path: Path) -> tuple[tuple[int, ...], np.dtype, Iterator[np.ndarray], np.ndarray | None]:
    """An array file's shape, dtype, rows one at a time and labels, read without pickles and never whole."""
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as zf:
                members = zf.namelist()
            if "images.npy" not in members:
                raise DataError(f"{path}: no `images` array (it holds {sorted(n[:-4] for n in members)})")
            shape, dtype = npz_info(path, "images")
            labels = load_array(path, "labels") if "labels.npy" in members else None
            return shape, dtype, (row[0] for row in iter_rows(path, "images", 1)), labels
        array = load_npy(path, mmap=True)
        return array.shape, array.dtype, iter(array), None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable NumPy array without pickles ({err})") from err


def read_array(path: Path, labels_path: str | None, size: int, channels: int | None) -> Converted:
    """An array's images converted one at a time into N×C×size×size uint8, its labels and class names."""
    shape, dtype, rows, labels = open_array(path)
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or shape[-1] not in (1, 3) or shape[0] == 0:
        raise DataError(f"{path}: images are {shape}; expected N×H×W or N×H×W×C with C 1 or 3")
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise DataError(f"{path}: images are {dtype}; give uint8 0…255 or floats in [0, 1]")
    images = np.empty((shape[0], channels or shape[-1], size, size), dtype=np.uint8)
    not_finite = 0
    try:
        for i, row in enumerate(progress(rows, shape[0], f"converting {path.name}")):
            row = np.asarray(row).reshape(shape[1:])
            if dtype != np.uint8:
                not_finite += row.size - np.count_nonzero(np.isfinite(row))
                if not_finite:
                    continue
                if row.min() < 0 or row.max() > 1:
                    raise DataError(f"{path}: image {i} holds values from {row.min():g} to {row.max():g}; give "
                                    "uint8 0…255 or floats in [0, 1]")
                row = np.rint(row * 255).astype(np.uint8)
            image = torch.from_numpy(np.array(row.transpose(2, 0, 1), order="C"))[None]
            images[i] = resize_to(to_channels(image, channels) if channels else image, size)[0].numpy()
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: cannot be read to the end ({err})") from err
    if not_finite:
        raise DataError(f"{path}: {not_finite:,} values are not finite (NaN or ±inf); give uint8 0…255 or floats "
                        "in [0, 1]")
    if labels_path:
        labels = load_npy(Path(labels_path))
    if labels is None:
        return images, None, []
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise DataError(f"labels {labels.shape} {labels.dtype}: expected {len(images)} whole numbers ≥ 0")
    labels = labels.astype(np.int64)
    return images, labels, [str(k) for k in range(int(labels.max()) + 1)]


def fingerprint(source: Path, labels: str | None) -> str:
    """A digest of every file a conversion reads (path, size, modification time)."""
    paths = [source, *([Path(labels)] if labels else [])]
    if source.is_dir():
        paths = [Path(root) / name for root, dirs, files in sorted(os.walk(source, followlinks=True))
                 for name in sorted(dirs) + sorted(files)]
    entries = []
    for path in paths:
        try:
            info = path.stat()
            entries.append([str(path), info.st_size, info.st_mtime_ns])
        except OSError:  # a broken link: listed, it changes the digest when it is mended
            entries.append([str(path), -1, -1])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def parse_colour(value: str) -> tuple[int, int, int]:
    """A colour Pillow knows (a name, #rgb, #rrggbb, rgb(…)) as (r, g, b), else one line."""
    from PIL import ImageColor

    try:
        return tuple(ImageColor.getrgb(str(value))[:3])
    except ValueError:
        raise ConfigError(f"data.background={value!r}: not a colour (a name such as white or black, or "
                          "#rrggbb)") from None


class FolderDataModule(ArrayDataModule):
    """`data=images data.path=…`: the images cut into fixed seeded test, validation and training parts."""

    datasets = ("images",)

    def __init__(self, path: str | None = None, labels: str | None = None, background: str = "white",
                 name: str = "images", data_dir: str = "data", batch_size: int = 128, image_size: int = 28,
                 test_size: float = 0.1, val_size: float = 0.1, split_seed: int = 12345, seed: int = 0,
                 train_subset: int | None = None, download: bool = False, steps_per_batch: int = 1,
                 channels: int | None = None) -> None:
        settings = constructor_arguments(locals())
        self.source, self.background = self.check_source(path, labels), parse_colour(background)
        for key, value in (("test_size", test_size), ("val_size", val_size)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ConfigError(f"data.{key}={value!r}: a count ≥ 1 or a fraction in (0, 1)")
        self._converted: tuple[str, Converted] | None = None
        super().__init__({**settings, "path": str(self.source)})
        if self.hparams.channels is None:  # as given: known once converted (cached, so only the first run pays)
            self.channels = int(self.convert()[0].shape[1])

    @staticmethod
    def check_source(path: str | None, labels: str | None) -> Path:
        """The source as a path: a folder or a .npy / .npz regular file (and a labels file beside an array)."""
        if not path:
            raise ConfigError("data.path: give a folder of images (class sub-folders for labels) or a .npy/.npz "
                              "array, e.g. data=images data.path=/data/my_images")
        source = Path(path).expanduser()
        if not source.exists():
            raise ConfigError(f"data.path={path}: no such file or folder")
        if not source.is_dir() and not source.is_file():
            raise ConfigError(f"data.path={path}: is {file_kind(source.stat().st_mode)}, not a file or folder")
        if source.is_file() and source.suffix not in ARRAYS:
            raise ConfigError(f"data.path={path}: give a folder of images or a {' / '.join(ARRAYS)} array")
        if labels and source.is_dir():
            raise ConfigError(f"data.labels={labels}: a folder's labels are its class sub-folders; leave it null")
        if labels and not Path(labels).exists():
            raise ConfigError(f"data.labels={labels}: no such file")
        if labels:
            check_regular(Path(labels), "a labels .npy")
        return source

    def count_classes(self) -> int | None:
        """A folder's class sub-folders; an array's label range (converted now, once: it is cached)."""
        if self.source.is_dir():
            return len([e for e in os.scandir(self.source) if e.is_dir()]) or None
        return len(self.convert()[2]) or None

    def cached_path(self) -> Path:
        """The converted array's cache file: named by the source and the options (its content is keyed inside)."""
        key = json.dumps([str(self.source.resolve()), self.hparams.labels, self.image_size, self.hparams.channels,
                          self.background])
        return self.data_dir / "images_cache" / f"{self.source.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"

    def cached(self, key: str) -> Converted | None:
        """The converted images, labels and class names from the cache, if it was made from the files as they are."""
        try:
            with np.load(self.cached_path(), allow_pickle=False) as data:
                if "fingerprint" not in data.files or str(data["fingerprint"]) != key:
                    return None
                labels = data["labels"] if data["labels"].size else None
                return data["images"], labels, [str(n) for n in data["names"]]
        except (OSError, ValueError, zipfile.BadZipFile):
            return None

    def convert(self) -> Converted:
        """The converted images: from the cache if made from the files as they are, else converted and cached."""
        key = fingerprint(self.source, self.hparams.labels)
        if self._converted is not None and self._converted[0] == key:
            return self._converted[1]
        converted = self.cached(key)
        if converted is None:
            size, channels = self.image_size, self.hparams.channels
            converted = (read_folder(self.source, size, channels, self.background) if self.source.is_dir() else
                         read_array(self.source, self.hparams.labels, size, channels))
            images, labels, names = converted
            out = self.cached_path()
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.stem}.tmp.npz")
            np.savez(tmp, images=images, labels=np.zeros(0, np.int64) if labels is None else labels,
                     names=np.array(names, dtype=str), fingerprint=np.array(key))
            tmp.replace(out)
        self._converted = (key, converted)
        return converted

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
