"""Checkpoint files: written whole or not at all, read without running any code, checked against their digest."""

import hashlib
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import Container, OmegaConf

from vae_lab.errors import CheckpointError, StorageError, leaves
from vae_lab.files import write_atomically

DIGEST_KEY = "vae_lab_digest"  # sha256 of the state dict's names, dtypes, shapes and bytes, written at save time
OPTIMIZER_DIGEST_KEY = "vae_lab_optimizer_digest"  # the same over the optimisers' states (Adam's moments, steps, rates)


def digest_of(named: Iterable[tuple[str, Any]]) -> str:
    """sha256 over (name, value) pairs: a tensor's dtype, shape and raw bytes, any other value's repr."""
    digest = hashlib.sha256()
    for name, value in named:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{name}|{value!r}|".encode())
    return digest.hexdigest()


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 over every tensor of a state dict (name, dtype, shape and raw bytes), in name order."""
    return digest_of((name, state_dict[name]) for name in sorted(state_dict))


def optimizer_digest(optimizer_states: Any) -> str:
    """sha256 over the optimisers' states in name order: what a resume continues from besides the weights."""
    return digest_of(sorted(leaves(optimizer_states), key=lambda item: item[0]))


def plain(value: Any) -> Any:
    """OmegaConf containers as plain dicts and lists, which a `weights_only` load reads without any class."""
    if isinstance(value, Container):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def load_plain(path: str | Path) -> Any:
    """torch.load with `weights_only=True` (tensors and plain values only: unpickling can run no code), on the CPU."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint; give the file in it (e.g. last.ckpt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # the file names a class or function to import and call
            raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain values, and "
                                  "loading them could run code") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (UnpicklingError); it may be truncated") from None
    except Exception as err:  # noqa: BLE001  (whatever a damaged file raises: one line, not a traceback)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}); it may be truncated") from None


def check_weights(path: Path, checkpoint: dict[str, Any]) -> None:
    """Refuse weights or optimiser states that differ from the digests written with them, or that are not finite."""
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise CheckpointError(f"{path}: not a vae_lab checkpoint (no state dict of tensors)")
    expected = checkpoint.get(DIGEST_KEY)
    if expected is not None and weights_digest(state_dict) != expected:
        raise CheckpointError(f"{path}: its weights do not match the digest written with them: the file is damaged")
    _check_finite(path, "weights", state_dict.items())
    optimizer_states = checkpoint.get("optimizer_states")
    expected = checkpoint.get(OPTIMIZER_DIGEST_KEY)
    if expected is not None and optimizer_digest(optimizer_states) != expected:
        raise CheckpointError(f"{path}: its optimizer state does not match the digest written with it: the file is "
                              "damaged")
    _check_finite(path, "optimizer state", leaves(optimizer_states or []))


def _check_finite(path: Path, what: str, named: Iterable[tuple[str, Any]]) -> None:
    """Refuse a checkpoint naming the first of its tensors holding NaN or ±inf."""
    bad = [name for name, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()
           and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(f"{path}: non-finite {what} (NaN or inf) in {bad[0]}{more}; the run that wrote it "
                              "diverged: use an earlier checkpoint")


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents on the CPU, loaded without running code; one-line CheckpointErrors."""
    path = Path(ckpt_path)
    checkpoint = load_plain(path)
    if not isinstance(checkpoint, dict) or not checkpoint.get("vae_lab_model"):
        raise CheckpointError(f"{path}: not a vae_lab checkpoint (no model class recorded)")
    check_weights(path, checkpoint)
    return checkpoint


def stamp(checkpoint: dict[str, Any]) -> None:
    """Record the digests of a checkpoint's weights and optimiser states in it (called as it is saved)."""
    checkpoint[DIGEST_KEY] = weights_digest(checkpoint["state_dict"])
    if "optimizer_states" in checkpoint:
        checkpoint[OPTIMIZER_DIGEST_KEY] = optimizer_digest(checkpoint["optimizer_states"])


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO: written atomically as plain containers, read back by `read_checkpoint`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"could not write {path}: {err.strerror or err}") from err
        checkpoint = plain(checkpoint)
        write_atomically(path, lambda file: torch.save(checkpoint, file))

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        return read_checkpoint(path)
