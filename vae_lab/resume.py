"""Resuming exactly: the random streams a checkpoint carries, and the settings a resumed run must share with it."""

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from vae_lab.errors import ConfigError
from vae_lab.registry import parameters

# Settings a resumed run may change: where the data is read from, and speed options that train the same steps.
FREE = {"model": {"compile", "channels_last", "fused_adam", "cuda_graph", "flush_denormal"},
        "data": {"data_dir", "download"}}
_ABSENT = "<absent>"


def random_state() -> dict[str, Any]:
    """torch's (CPU and each CUDA device's), numpy's and Python's random states, as plain values and tensors."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda, "numpy": numpy_state, "python": random.getstate()}


def set_random_state(state: dict[str, Any]) -> None:
    """Restore what `random_state` captured (CUDA states only onto as many devices as were saved)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": numpy_state["state"]["key"].numpy().astype(np.uint32)}
    np.random.set_state(numpy_state)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class RandomState(pl.Callback):
    """Saves and restores the random states in checkpoints, so a resumed run draws the same noise."""

    def __init__(self) -> None:
        self._restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._restore is not None:
            set_random_state(self._restore)
            self._restore = None


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint of the best epochs that a resumed (or moved) run continues exactly."""

    _resumed = False

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's own: checkpoints written with either class resume into the other."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:  # the folder moved, its files with it
            state_dict = {**state_dict, "dirpath": self.dirpath, **moved(state_dict, Path(old), Path(self.dirpath))}
        super().load_state_dict(state_dict)
        self._resumed = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self._resumed and trainer.is_global_zero and self.dirpath and self.filename):
            return
        kept = {Path(path).resolve() for path in self.best_k_models}
        pattern = self.filename.split("{")[0] + "*" + self.FILE_EXTENSION
        for path in Path(self.dirpath).glob(pattern):
            if path.resolve() not in kept:
                path.unlink()


def moved(state_dict: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    """A ModelCheckpoint state's file paths moved from folder `old` to `new` (those elsewhere as they are)."""
    def move(path: str) -> str:
        return str(new / Path(path).relative_to(old)) if path and Path(path).is_relative_to(old) else path

    paths = {key: move(state_dict.get(key) or "") for key in ("best_model_path", "kth_best_model_path",
                                                              "last_model_path")}
    return {**paths, "best_k_models": {move(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}}


def defaults(cls: type) -> dict[str, Any]:
    """A class's constructor defaults, `**kwargs` followed up its chain."""
    return {key: param.default for key, (param, _) in parameters(cls)[0].items() if param.default is not param.empty}


def changed_settings(checkpoint: dict[str, Any], model: pl.LightningModule,
                     datamodule: pl.LightningDataModule) -> list[str]:
    """`key=value (the checkpoint's: value)` for every setting that differs from the checkpoint's, beside FREE."""
    saved_class = checkpoint.get("vae_lab_model")
    model_class = f"{type(model).__module__}.{type(model).__qualname__}"
    changes = [f"model={model_class.rsplit('.', 1)[-1]} (the checkpoint's: {str(saved_class).rsplit('.', 1)[-1]})"
               ] if saved_class != model_class else []
    model_now = dict(model.hparams)
    model_saved = dict(checkpoint.get("hyper_parameters") or {})
    net_now, net_saved = model_now.pop("net", {}), model_saved.pop("net", {})
    for prefix, saved, now, cls in (("model", model_saved, model_now, type(model)),
                                    ("net", net_saved, net_now, type(model.net)),
                                    ("data", checkpoint.get("datamodule_hyper_parameters") or {},
                                     dict(datamodule.hparams), type(datamodule))):
        older = defaults(cls)  # a setting newer than the checkpoint: it trained with the default
        for key in sorted((set(saved) | set(now)) - FREE.get(prefix, set())):
            old, new = saved.get(key, older.get(key, _ABSENT)), now.get(key, _ABSENT)
            if old != new:
                changes.append(f"{prefix}.{key}={new!r} (the checkpoint's: {old!r})")
    return changes


def check_same_settings(checkpoint: dict[str, Any], model: pl.LightningModule,
                        datamodule: pl.LightningDataModule) -> None:
    """Refuse, in one line, settings a resumed run would not train with (Lightning restores the optimiser)."""
    changes = changed_settings(checkpoint, model, datamodule)
    if changes:
        raise ConfigError(f"resume: {', '.join(changes)}; a resumed run trains with its checkpoint's settings: drop "
                          "the change, or start a new run in another hydra.run.dir")
