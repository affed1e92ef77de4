"""Read and write IDX files (the MNIST format) and verify them against the known MD5s."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vae_lab.errors import DataError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# MD5 of the uncompressed files: the official MNIST and Debian's Fashion-MNIST.
KNOWN_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

_UBYTE = 0x08


def md5(path: Path) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decode_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode unsigned-byte IDX content into an array, rejecting bad headers and truncation."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    if data[2] != _UBYTE:
        raise DataError(f"{name}: IDX type 0x{data[2]:02x} is not unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise DataError(f"{name}: {len(data)} bytes, expected {expected} for shape {shape} (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX content."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def read_idx(path: Path) -> np.ndarray:
    """Read an uncompressed IDX file."""
    return decode_idx(Path(path).read_bytes(), str(path))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array as an uncompressed IDX file, atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(encode_idx(array))
    tmp.replace(path)


def verify(path: Path, dataset: str) -> None:
    """Check a raw file against its known MD5; raise DataError naming the file otherwise."""
    expected = KNOWN_MD5[dataset][Path(path).name]
    actual = md5(path)
    if actual != expected:
        raise DataError(
            f"{path}: MD5 {actual} does not match the official {expected}; the file is corrupt or "
            f"not the official {dataset} data. Delete it and run `make data` to fetch it again."
        )
