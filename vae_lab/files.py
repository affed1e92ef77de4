"""Writing a file whole or not at all, on any local filesystem."""

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from vae_lab.errors import StorageError, cause_of


def write_atomically(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write` on a temporary file beside `path`, fsync it and rename it over `path`; StorageError if it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as file:  # the folder's default permissions, unlike mkstemp's 0600
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = cause_of(err, OSError)
        if cause is not None:
            kept = f"the previous {path.name} is kept" if path.is_file() else f"no {path.name} was written"
            raise StorageError(f"could not write {path}: {cause.strerror or cause}; {kept}") from err
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it survives a power cut (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[IO[str] | None]:
    """Hold an exclusive lock on a file while the body runs; with `wait=False`, None while another holds it."""
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
