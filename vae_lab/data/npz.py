"""Arrays in .npy and .npz files read without unpickling: headers checked, chunked rows, memory maps."""

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from vae_lab.errors import DataError


def _member(zf: zipfile.ZipFile, path: Path, key: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(f"{key}.npy")
    except KeyError:
        raise DataError(f"{path}: has no array {key!r} (it holds {sorted(n[:-4] for n in zf.namelist())})") from None


def _header(f: IO[bytes], path: Path, key: str | None, available: int) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran order) of a .npy stream; object arrays and headers promising too much refused."""
    what = f"array {key!r}" if key else "the array"
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(f))
    except ValueError as err:
        raise DataError(f"{path}: {what} is not a readable .npy ({err})") from err
    if dtype.hasobject:
        raise DataError(f"{path}: {what} holds Python objects; vae_lab never unpickles data")
    needed = f.tell() - start + math.prod(shape) * dtype.itemsize
    if needed > available:
        raise DataError(f"{path}: {what}'s header says {dtype} {shape} ({needed:,} bytes) but it holds "
                        f"{available:,} bytes: truncated, or not what its header says")
    return shape, dtype, fortran


def npz_info(path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an .npz file, read from its header alone."""
    with zipfile.ZipFile(path) as zf:
        info = _member(zf, path, key)
        with zf.open(info) as f:
            shape, dtype, _ = _header(f, path, key, info.file_size)
    return shape, dtype


def load_array(path: Path, key: str) -> np.ndarray:
    """One (small) array of an .npz file, loaded whole with pickles refused."""
    npz_info(path, key)
    with np.load(path, allow_pickle=False) as data:
        try:
            return data[key]
        except ValueError as err:
            raise DataError(f"{path}: array {key!r} cannot be read without unpickling ({err})") from err


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """A .npy file's array (memory-mapped with `mmap`), its header checked first, with pickles refused."""
    with open(path, "rb") as f:
        _header(f, path, None, Path(path).stat().st_size)
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def iter_rows(path: Path, key: str, rows: int) -> Iterator[np.ndarray]:
    """The array's leading-axis rows, `rows` at a time, decompressed as they are read (never the whole array)."""
    with zipfile.ZipFile(path) as zf:
        info = _member(zf, path, key)
        with zf.open(info) as f:
            shape, dtype, fortran = _header(f, path, key, info.file_size)
            if fortran and len(shape) > 1:
                raise DataError(f"{path}: array {key!r} is stored in Fortran order; expected C order")
            row_bytes = math.prod(shape[1:]) * dtype.itemsize
            for start in range(0, shape[0], rows):
                count = min(rows, shape[0] - start)
                data = f.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise DataError(f"{path}: array {key!r} ends after {start + len(data) // row_bytes:,} of "
                                    f"{shape[0]:,} rows (truncated)")
                yield np.frombuffer(data, dtype=dtype).reshape(count, *shape[1:])


def memmap_member(path: Path, key: str) -> np.ndarray | None:
    """A read-only memory map of an uncompressed (stored) .npz member; None when the member is compressed."""
    with zipfile.ZipFile(path) as zf:
        info = _member(zf, path, key)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30],
                                                                                                    "little")
            raw.seek(start)
            shape, dtype, fortran = _header(raw, path, key, info.file_size)
            offset = raw.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def npz_to_npy(path: Path, key: str, out: Path, rows: int = 4096) -> Path:
    """Decompress one member of an .npz into a .npy file once (written beside, then renamed), for memory mapping."""
    if out.is_file():
        return out
    shape, dtype = npz_info(path, key)
    tmp = out.with_name(f".{out.name}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    start = 0
    for chunk in iter_rows(path, key, rows):
        array[start:start + len(chunk)] = chunk
        start += len(chunk)
    array.flush()
    del array
    tmp.replace(out)
    return out
