"""User-facing errors: entry points print these as one line and exit non-zero."""

import math
from collections.abc import Iterator
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)
MAX_SEED = 2**32 - 1  # numpy's seeds, which Lightning's seed_everything sets too


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


def cause_of(err: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of `kind` in an exception's chain (Hydra and torch.save wrap the real cause)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def user_error(err: BaseException | None) -> VaeLabError | None:
    """The VaeLabError behind an exception, if any."""
    return cause_of(err, VaeLabError)


def check_number(key: str, value: object, whole: bool = False, minimum: float | None = None,
                 nullable: bool = False, maximum: float | None = None, above: float | None = None) -> None:
    """One-line ConfigError unless `value` is a finite (whole) number in range (or None when nullable)."""
    if value is None and nullable:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value}: must be a finite number")
    kind = "a whole number" if whole else "a number"
    kind += f" ≥ {_bound(minimum)}" if minimum is not None else ""
    kind += f" > {_bound(above)}" if above is not None else ""
    kind += f" and ≤ {_bound(maximum)}" if maximum is not None else ""
    kind += " or null" if nullable else ""
    ok = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
    if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum) or (
            above is not None and value <= above):
        raise ConfigError(f"{key}={value!r}: must be {kind}")


def check_flag(key: str, value: object) -> None:
    """A true/false setting: `maybe` (a non-empty string, so truthy) would otherwise silently mean true."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")


def _bound(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_seed(key: str, value: object) -> None:
    """A seed numpy (and so Lightning's seed_everything) takes: a whole number in [0, 2**32 - 1]."""
    check_number(key, value, whole=True, minimum=0, maximum=MAX_SEED)


def leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of nested plain dicts and lists (`OmegaConf.to_container`'s)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else None
    if items is None:
        yield prefix, tree
        return
    for key, value in items:
        name = f"{prefix}[{key}]" if isinstance(key, int) else f"{prefix}.{key}" if prefix else str(key)
        yield from leaves(value, name)


def check_finite(settings: dict[str, Any], skip: tuple[str, ...] = ("hydra",)) -> None:
    """One line for any setting that is NaN or infinite (`model.beta=inf`): no vae_lab setting means anything then."""
    for key, value in leaves(settings):
        if isinstance(value, float) and not math.isfinite(value) and not key.startswith(skip):
            raise ConfigError(f"{key}={value}: must be a finite number")
