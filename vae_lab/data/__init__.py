"""Data: one resident-tensor LightningDataModule per dataset, and the registry that finds them by dataset name."""

import pytorch_lightning as pl

from vae_lab.errors import ConfigError
from vae_lab.registry import Registry

DATAMODULES = Registry("vae_lab.data", "datamodules", lambda cls: issubclass(cls, pl.LightningDataModule))


def datamodule_class(name: object) -> type[pl.LightningDataModule]:
    """The datamodule class serving a dataset name (a checkpoint's `data.name`), among vae_lab's own."""
    found = [cls for cls in DATAMODULES.classes.values() if name in getattr(cls, "datasets", ())]
    if len(found) != 1:
        known = sorted(n for cls in DATAMODULES.classes.values() for n in getattr(cls, "datasets", ()))
        raise ConfigError(f"data.name={name!r}: not one of vae_lab's datasets ({', '.join(known)})")
    return found[0]
