"""Read and write IDX files (the MNIST format)."""

from pathlib import Path

import numpy as np

from vae_lab.errors import DataError

_UBYTE = 0x08


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
