"""The one fetch-and-verify path of every dataset's files: found, else fetched and MD5-checked, else one line."""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vae_lab.errors import DataError

log = logging.getLogger(__name__)

Fetch = Callable[[Path], None]  # puts (some of) the files, under their own names, into the folder it is given


@dataclass(frozen=True)
class KnownFile:
    """A published file: name, MD5, size in bytes (exact or approximate), download address and home page."""

    name: str
    md5: str
    size: int
    url: str
    page: str
    exact_size: bool = False

    def describe(self) -> str:
        """`NAME (about SIZE, from PAGE)` for messages."""
        size = f"{self.size / 1e9:.1f} GB" if self.size >= 1e9 else f"{self.size / 1e6:.1f} MB"
        return f"{self.name} ({'' if self.exact_size else 'about '}{size}, from {self.page})"

    def how_to_get(self) -> str:
        """Where to get the file, for the missing-file line."""
        return (f"download {self.describe()} — {self.url} — and put it there (or run with data.download=true on a "
                "machine online)")


def md5(path: Path) -> str:
    """MD5 hex digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    """One-line DataError unless the file is regular with the published MD5 (a matching stamp counts)."""
    check_regular(path)
    info = path.stat()
    stamp = path.with_name(f".{path.name}.verified")  # size, mtime and MD5: hashed once, not at every run
    seen = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "md5": known.md5}
    with contextlib.suppress(OSError, ValueError):
        if stamp.is_file() and json.loads(stamp.read_text()) == seen:
            return
    try:
        actual = md5(path)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err
    if actual != known.md5:
        short = info.st_size < (known.size if known.exact_size else known.size // 2)
        what = "truncated?" if short else "corrupt or not the published file"
        raise DataError(f"{path}: MD5 {actual} is not the known {known.md5} ({info.st_size:,} bytes: {what}); "
                        f"left as it is: delete it and fetch {known.describe()} again")
    with contextlib.suppress(OSError):  # a read-only data folder: verify again next time
        stamp.write_text(json.dumps(seen))


def ensure_files(folder: Path, files: Sequence[KnownFile], fetch: Fetch | None = None,
                 how_to_get: str | None = None) -> Path:
    """`folder` with every file verified: those there checked, the missing fetched and verified, else one line."""
    folder = Path(folder)
    missing = [known for known in files if not os.path.lexists(folder / known.name)]
    for known in files:
        if known not in missing:
            verify_file(folder / known.name, known)
    if missing and fetch is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file in the way, no permission
            raise DataError(f"data.data_dir: cannot make {folder} ({err.strerror}: {err.filename})") from err
        _fetch_into(folder, missing, fetch)
    for known in missing:
        if not (folder / known.name).exists():
            raise DataError(f"{folder / known.name} is missing: {how_to_get or known.how_to_get()}")
    return folder


def _fetch_into(folder: Path, missing: list[KnownFile], fetch: Fetch) -> None:
    """Run `fetch` in a temporary folder inside `folder`; move in the missing files it fetched, each verified."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=folder))
    except OSError as err:
        raise DataError(f"data.data_dir: cannot write in {folder} to fetch {missing[0].name} ({err.strerror})") from err
    try:
        fetch(tmp)
        for known in missing:
            if (tmp / known.name).is_file():
                verify_file(tmp / known.name, known)
                os.replace(tmp / known.name, folder / known.name)
    except OSError as err:
        raise DataError(f"could not put {missing[0].name} into {folder} ({err.strerror})") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def from_publisher(*files: KnownFile) -> Fetch:
    """Fetch files from their publishers through torchvision's `download_url`; a failure is logged."""
    def fetch(into: Path) -> None:
        from torchvision.datasets.utils import download_url

        for known in files:
            if (into / known.name).exists():
                continue
            try:
                log.info("downloading %s from %s", known.name, known.url)
                download_url(known.url, str(into), known.name, known.md5)
            except Exception as err:  # noqa: BLE001 - offline, refused or corrupt: the caller says what to do
                log.warning("could not download %s (%s)", known.name, err)

    return fetch


def by_torchvision(download: Callable[[str], object], layout: str, what: str) -> Callable[[Path], bool]:
    """Fetch by torchvision's own download, its files moved up into the folder; False (logged) on failure."""
    def fetch(into: Path) -> bool:
        try:
            download(str(into))
        except Exception as err:  # noqa: BLE001 - offline or refused: the caller goes on, or says what to do
            log.warning("torchvision could not download %s (%s)", what, err)
            return False
        for path in (into / layout).iterdir():
            if path.is_file():
                os.replace(path, into / path.name)
        return True

    return fetch


def ensure_file(folder: Path, known: KnownFile, download: bool = True) -> Path:
    """The verified file in `folder`: there, else downloaded from its publisher, else a one-line error."""
    return ensure_files(folder, [known], from_publisher(known) if download else None) / known.name
