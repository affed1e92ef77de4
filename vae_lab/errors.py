"""User-facing errors: entry points print these as one line and exit non-zero."""


class VaeLabError(Exception):
    """Base class for problems the user can fix (bad config, data, checkpoint)."""


class ConfigError(VaeLabError, ValueError):
    """A config value is out of range or inconsistent with another one."""


class DataError(VaeLabError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


class CheckpointError(VaeLabError):
    """A checkpoint is missing, unreadable or belongs to something else."""
