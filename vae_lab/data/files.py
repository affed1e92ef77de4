"""A benchmark's raw file: where it comes from (data_dir → the publisher's download → a one-line error) and its
checksum, verified before anything reads it."""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vae_lab.data.idx import md5
from vae_lab.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownFile:
    """A published file: its name, MD5 (and where that hash comes from), size in bytes (exact where a source gives
    it, else approximate), download address and home page."""

    name: str
    md5: str
    size: int
    url: str
    page: str
    hash_source: str
    exact_size: bool = False

    def describe(self) -> str:
        """`NAME (about SIZE, from PAGE)` for messages."""
        return f"{self.name} ({'' if self.exact_size else 'about '}{human_size(self.size)}, from {self.page})"


def human_size(size: int) -> str:
    """Bytes as MB or GB, one decimal."""
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def stamp_path(path: Path) -> Path:
    """The file that records a verified file's size, mtime and MD5, so it is hashed once, not at every run."""
    return path.with_name(f".{path.name}.verified")


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISBLK(mode) or stat.S_ISCHR(mode) else
            "not a regular file")


def check_regular(path: Path, what: str = "the data file") -> None:
    """A one-line DataError unless `path` is a regular file (reading a FIFO or a device would hang, a folder crash)."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: is a broken link, not {what}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is {file_kind(mode)}, not {what}; move it away")


def verify_file(path: Path, known: KnownFile) -> None:
    """Raise a one-line DataError naming the file unless its MD5 is the published one (a recorded earlier
    verification of the same size and modification time counts)."""
    check_regular(path)
    info = path.stat()
    stamp = stamp_path(path)
    seen = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "md5": known.md5}
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == seen:
                return
        except (OSError, ValueError):
            pass
    actual = md5(path)
    if actual != known.md5:
        short = info.st_size < (known.size if known.exact_size else known.size // 2)
        what = "truncated?" if short else "corrupt or not the published file"
        raise DataError(f"{path}: MD5 {actual} is not the known {known.md5} ({info.st_size:,} bytes: {what}); "
                        f"left as it is: delete it and fetch {known.describe()} again")
    try:
        stamp.write_text(json.dumps(seen))
    except OSError:  # a read-only data folder: verify again next time
        pass


def ensure_file(folder: Path, known: KnownFile, download: bool = True) -> Path:
    """The verified file in `folder`: already there, else downloaded from its publisher (online users), else a
    one-line error saying what it is, how large, where to get it and where to put it. An existing file that fails
    its check is refused, never overwritten."""
    path = Path(folder) / known.name
    if not path.exists() and download:
        _download(path, known)
    if not path.exists():
        raise DataError(f"{path} is missing: download {known.describe()} — {known.url} — and put it there "
                        f"(or run with data.download=true on a machine online)")
    verify_file(path, known)
    return path


def _download(path: Path, known: KnownFile) -> None:
    """torchvision's download (which checks the MD5) into a temporary file beside the target, then a rename; a
    failed or partial download leaves nothing under the real name."""
    from torchvision.datasets.utils import download_url

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
        try:
            log.info("downloading %s from %s", known.name, known.url)
            download_url(known.url, tmp, known.name, known.md5)
        except Exception as err:  # noqa: BLE001 - offline, refused or corrupt: the caller says what to do
            log.warning("could not download %s (%s)", known.name, err)
            return
        os.replace(Path(tmp) / known.name, path)
