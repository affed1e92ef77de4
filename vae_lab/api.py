"""The Python API for notebooks: the functions the entry points use, under short names (see docs/api.md)."""

from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vae_lab import models
from vae_lab.data import DATAMODULES
from vae_lab.data.datamodule import datamodule_from_checkpoint
from vae_lab.errors import ConfigError, check_number
from vae_lab.evaluate import evaluate_checkpoint
from vae_lab.models import read_checkpoint
from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import mean_image
from vae_lab.viz.grids import traversal

CONF = Path(__file__).resolve().parents[1] / "conf"
SPLITS = ("train", "val", "test")

__all__ = ["decode", "encode", "evaluate_checkpoint", "load_data", "load_model", "reconstruct", "sample", "traverse"]


def load_model(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> BaseVAE:
    """Any vae_lab model from its checkpoint, in eval mode, on `map_location` (a device this machine has)."""
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"map_location={map_location!r}: not a device (e.g. 'cpu', 'cuda', 'cuda:0')") from err
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (count == 0 or (device.index or 0) >= count):
        raise ConfigError(f"map_location={map_location!r}: this machine has {count or 'no'} CUDA GPU{'s' * (count != 1)}")
    return models.load_model(ckpt_path, device)


def datamodule(source: str | Path, data_dir: str | Path | None = None, **overrides: Any) -> Any:
    """The set-up datamodule of a checkpoint (`RUN/checkpoints/last.ckpt`) or of a `conf/data/` option (`"mnist"`)."""
    if Path(source).suffix == ".ckpt":
        module = datamodule_from_checkpoint(read_checkpoint(source), data_dir, **overrides)
    else:
        options = [f"data={source}", f"paths.data_dir={Path(data_dir or 'data').resolve()}", "paths.root_dir=.",
                   "paths.output_dir=."]
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=options)
        cfg.data.update(overrides)
        module = DATAMODULES.build(OmegaConf.to_container(cfg.data, resolve=True), "data")
    module.prepare_data()
    module.setup("fit")
    return module


def load_data(source: str | Path, split: str = "test", data_dir: str | Path | None = None,
              n: int | None = None, **overrides: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as tensors `(x, y)`: x float32 N×C×H×W in [0, 1], y labels (or factor indices); the first n if given."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: choose one of {SPLITS}")
    check_number("n", n, whole=True, minimum=0, nullable=True)
    data = datamodule(source, data_dir, **overrides).splits[split]
    index = torch.arange(len(data) if n is None else min(n, len(data)))
    return data[index]


@torch.no_grad()
def encode(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x[, y]) as (μ, log σ²), each N×latent_dim."""
    x = _images(model, x)
    return model.encode(x, _labels(model, y, len(x)))


@torch.no_grad()
def decode(model: BaseVAE, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder's mean images in [0, 1] for codes z (and labels y for a conditional model)."""
    z = _tensor(model, "z", z, (model.latent_dim,), "codes")
    return mean_image(model.decode(z, _labels(model, y, len(z))))


def sample(model: BaseVAE, n: int = 16, label: int | None = None, temperature: float = 1.0) -> torch.Tensor:
    """n images from the prior (of class `label` for a CVAE; a CVAE cycles through its classes without one)."""
    _model(model)
    check_number("n", n, whole=True, minimum=1)
    check_number("temperature", temperature, minimum=0)
    if label is not None and not model.conditional:
        raise ConfigError(f"label={label!r}: {type(model).__name__} is not conditional; leave label out")
    check_number("label", label, whole=True, minimum=0, maximum=model.num_classes - 1, nullable=True)
    labels = None if label is None else torch.full((n,), int(label), device=model.device)
    return model.generate(n, labels=labels, temperature=temperature)


def reconstruct(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The deterministic reconstruction: the decoder's mean at the posterior mean."""
    x = _images(model, x)
    return model.reconstruct(x, _labels(model, y, len(x)))


def traverse(model: BaseVAE, x: torch.Tensor, y: torch.Tensor | None = None, steps: int = 9,
             span: float = 3.0) -> tuple[torch.Tensor, list[int]]:
    """One row of `steps` images per latent moved over −span…span, and the latents' order (most KL first)."""
    x = _images(model, x)
    y = _labels(model, y, len(x))
    check_number("steps", steps, whole=True, minimum=2)
    check_number("span", span, above=0)
    t = traversal(model, x, y, steps=steps, span=span, collapsed_rows=None)
    return t.images, t.dims


def _model(model: object) -> None:
    """A vae_lab model, as load_model returns."""
    if not isinstance(model, BaseVAE):
        raise ConfigError(f"model: a vae_lab model (vae_lab.load_model(ckpt_path)), not {type(model).__name__}")


def _images(model: BaseVAE, x: object) -> torch.Tensor:
    """Images N×C×H×W in [0, 1] of the model's size, on its device in its dtype."""
    _model(model)
    size = model.image_size
    x = _tensor(model, "x", x, (model.hparams["net"].get("image_channels") or 1, size, size), "images")
    if len(x) and (float(x.min()) < 0 or float(x.max()) > 1):
        raise ConfigError(f"x: images are in [0, 1]; these go from {float(x.min()):g} to {float(x.max()):g} (for "
                          "0…255: x / 255)")
    return x


def _tensor(model: BaseVAE, name: str, value: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """A batch N×shape of finite floats, on the model's device in its dtype; one ValueError naming the argument."""
    _model(model)
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"{name}: a torch.Tensor of {what}, not {type(value).__name__} (torch.as_tensor({name}))")
    if not value.is_floating_point():
        hint = " (for 0…255 images: x.float() / 255)" if name == "x" else ""
        raise ConfigError(f"{name}: {what} are floating-point numbers, not {value.dtype}{hint}")
    if tuple(value.shape[1:]) != shape or value.dim() != len(shape) + 1:
        single = f"; one is {name}[None]" if tuple(value.shape) == shape else ""
        raise ConfigError(f"{name}: shape {tuple(value.shape)}, but {type(model).__name__} takes N×"
                          f"{'×'.join(map(str, shape))} {what}{single}")
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ConfigError(f"{name}: {bad} value{'s are' if bad > 1 else ' is'} NaN or infinite")
    return value.to(model.device, next(model.parameters()).dtype)


def _labels(model: BaseVAE, y: object, n: int) -> torch.Tensor | None:
    """n whole-number labels on the model's device for a conditional model; None for the others."""
    if not model.conditional:
        return None
    if y is None:
        raise ConfigError(f"y: {type(model).__name__} is conditional: give a label per image (0…{model.num_classes - 1})")
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"y: a torch.Tensor of labels, not {type(y).__name__} (torch.as_tensor(y))")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(f"y: labels are whole numbers (torch.long), not {y.dtype}")
    if y.dim() != 1 or len(y) != n:
        raise ConfigError(f"y: shape {tuple(y.shape)}: one label per image, {n} in all")
    if n and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
        raise ConfigError(f"y: labels are 0…{model.num_classes - 1}; these go from {int(y.min())} to {int(y.max())}")
    return y.to(model.device)
