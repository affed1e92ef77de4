"""What every entry point shares: turning user mistakes into one clear line and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vae_lab.errors import ConfigError, user_error


@contextmanager
def user_errors() -> Iterator[None]:
    """Print a VaeLabError as `error: …` on stderr and exit with status 2; let real bugs raise."""
    try:
        yield
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        to_log_files(f"error: {cause}")
        sys.exit(2)


def to_log_files(message: str) -> None:
    """Write a line to the log files Hydra's job logging opened (a run's train.log), not again to the console."""
    record = logging.LogRecord("vae_lab", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def require(cfg: DictConfig, key: str, example: str) -> None:
    """A one-line error for a mandatory option left out (Hydra's `???`), with an example of it."""
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"give {key}, e.g. {key}={example}")


def output_folder(key: str, path: str | Path) -> Path:
    """Make the folder an output file goes into and check a file can be written there, before any long work, or
    say in one line why it cannot be."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot write there ({err.strerror}: {err.filename})") from err
    if path.is_dir():
        raise ConfigError(f"{key}={path}: is a folder; give a file name")
    writable(f"{key}={path}", path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{key}={path}: the file is read-only")
    return path


def writable(what: str, folder: Path) -> None:
    """Create and remove a file in `folder` (the one test a read-only mount or a root user cannot fool)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what}: cannot write in {folder} ({err.strerror})") from err


class RunFolderCheck(Callback):
    """Before Hydra makes the run (or sweep) folder: one line if it cannot be made or written, not Hydra's
    traceback from `mkdir` or from writing `.hydra/`. Nothing is created here."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            creatable("hydra.run.dir", Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            creatable("hydra.sweep.dir", Path(config.hydra.sweep.dir))


def creatable(key: str, folder: Path) -> None:
    """A folder that exists and can be written in, or whose nearest existing parent is a folder that can."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={folder}: {existing} is a file, not a folder")
    writable(f"{key}={folder}", existing)


def quote_override_lists(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """Let `KEY=[a=b,c=d]` (a list of overrides, which Hydra's grammar cannot read unquoted) mean
    `KEY=['a=b','c=d']`, for the keys (or key prefixes ending in '.') that hold override lists."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        name = key.lstrip("+~")
        if eq and value.startswith("[") and value.endswith("]") and any(
                name == k or k.endswith(".") and name.startswith(k) for k in keys):
            items = _split_top_level(value[1:-1])
            if any("=" in item and item[:1] not in "'\"" for item in items):
                quoted = [item if item[:1] in "'\"" else "'" + item.replace("'", "\\'") + "'" for item in items]
                arg = f"{key}=[{','.join(quoted)}]"
        out.append(arg)
    return out


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes; each part stripped."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote and (not current or current[-1] != "\\") else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    last = "".join(current).strip()
    return parts + [last] if last or parts else parts
