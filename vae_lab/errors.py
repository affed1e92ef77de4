"""User-facing errors: entry points print these as one line and exit non-zero."""

from __future__ import annotations


class VaeLabError(Exception):
    """Base class for problems the user can fix (bad config, data, checkpoint)."""


class ConfigError(VaeLabError, ValueError):
    """A config value is out of range or inconsistent with another one."""


class DataError(VaeLabError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


class CheckpointError(VaeLabError):
    """A checkpoint is missing, unreadable or belongs to something else."""


class StorageError(VaeLabError):
    """A result or checkpoint file could not be written (a full disk, no permission); the previous one is kept."""


class RunFolderError(VaeLabError):
    """The run folder is in use by another run, or holds a finished run that this one would overwrite."""


def user_error(err: BaseException | None) -> VaeLabError | None:
    """The VaeLabError behind an exception (Hydra wraps those raised while instantiating), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, VaeLabError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def check_number(key: str, value: object, whole: bool = False, minimum: float | None = None,
                 nullable: bool = False) -> None:
    """Raise a one-line ConfigError unless `value` is a (whole) number ≥ minimum (or None when nullable)."""
    if value is None and nullable:
        return
    kind = ("a whole number" if whole else "a number") + (f" ≥ {minimum:g}" if minimum is not None else "")
    kind += " or null" if nullable else ""
    ok = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
    if not ok or (minimum is not None and value < minimum):
        raise ConfigError(f"{key}={value!r}: must be {kind}")
