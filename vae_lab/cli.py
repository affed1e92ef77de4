"""What every entry point shares: turning user mistakes into one clear line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
        sys.exit(2)


def require(cfg: DictConfig, key: str, example: str) -> None:
    """A one-line error for a mandatory option left out (Hydra's `???`), with an example of it."""
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"give {key}, e.g. {key}={example}")


def output_folder(key: str, path: str | Path) -> Path:
    """Make the folder an output file goes into, before any long work, or say in one line why it cannot be."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot write there ({err.strerror}: {err.filename})") from err
    if path.is_dir():
        raise ConfigError(f"{key}={path}: is a folder; give a file name")
    return path
