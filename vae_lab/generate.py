"""`python -m vae_lab.generate ckpt_path=…`: samples, traversals or reconstructions from a checkpoint."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torchvision.utils import make_grid, save_image

from vae_lab.cli import entry_point, output_folder, require
from vae_lab.data.datamodule import test_split
from vae_lab.errors import ConfigError, check_number, check_seed
from vae_lab.models import load_model, read_checkpoint
from vae_lab.models.base import BaseVAE
from vae_lab.viz import grids

MODES = ("samples", "traverse", "reconstruct")
FORMATS = (".png", ".npy")
MAX_IMAGES = {".png": 10_000, ".npy": 100_000}  # one grid picture; one array (1.6 GB float32 at 64×64)
MAX_STEPS = 100  # traverse: steps per latent
CHUNK = 1_000  # images decoded at once


def check(cfg: DictConfig) -> None:
    """Reject bad arguments before any work."""
    require(cfg, "ckpt_path", "RUN/checkpoints/last.ckpt")
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode!r}: choose one of {MODES}")
    if Path(cfg.out).suffix not in FORMATS:
        raise ConfigError(f"out={cfg.out!r}: the file must end in one of {FORMATS}")
    check_number("num_samples", cfg.num_samples, whole=True, minimum=1)
    most = MAX_STEPS if cfg.mode == "traverse" else MAX_IMAGES[Path(cfg.out).suffix]
    if cfg.num_samples > most:
        what = "steps per latent for mode=traverse" if cfg.mode == "traverse" else f"images in one {Path(cfg.out).suffix}"
        raise ConfigError(f"num_samples={cfg.num_samples}: at most {most:,} {what}; for more, run it several "
                          "times with other seed= and out=")
    check_number("temperature", cfg.temperature, minimum=0)
    check_number("label", cfg.label, whole=True, nullable=True)
    check_seed("seed", cfg.seed)
    output_folder("out", cfg.out)


def test_images(checkpoint: dict, cfg: DictConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test images (of class `label` if given) of the checkpoint's dataset."""
    data = test_split(checkpoint, cfg.data_dir)
    keep = torch.arange(len(data)) if cfg.label is None else (data.labels == int(cfg.label)).nonzero()[:, 0]
    return data[keep[:n]]


def samples(model: BaseVAE, n: int, label: int | None, temperature: float) -> torch.Tensor:
    """n prior samples (of class `label`), decoded CHUNK at a time so the decoder's activations stay small."""
    chunks = []
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        labels = None if label is None else torch.full((size,), int(label))
        chunks.append(model.generate(size, labels=labels, temperature=temperature).cpu())
    return torch.cat(chunks)


STATS_IMAGES = 256  # test images whose posteriors give a traversal's per-dimension KL and active units


def images(cfg: DictConfig) -> tuple[torch.Tensor, int, list[str], str]:
    """The requested images, the grid's row length, and a labelled picture's row labels and title."""
    check(cfg)
    pl.seed_everything(cfg.seed, verbose=False)
    checkpoint = read_checkpoint(cfg.ckpt_path)
    model = load_model(cfg.ckpt_path)
    label = cfg.label
    if label is not None and not model.conditional:
        raise ConfigError(f"label={label}: this {type(model).__name__} is not conditional; drop the label")
    if label is not None and not 0 <= int(label) < model.num_classes:
        raise ConfigError(f"label={label}: out of range, choose 0…{model.num_classes - 1}")
    if cfg.mode == "samples":
        cycling = model.conditional and label is None  # a column per class
        columns = min(cfg.num_samples, model.num_classes) if cycling else grids.grid_columns(cfg.num_samples)
        return samples(model, cfg.num_samples, label, cfg.temperature), columns, [], ""
    if cfg.mode == "reconstruct":
        x, y = test_images(checkpoint, cfg, cfg.num_samples)
        per_row = grids.reconstruction_columns(len(x))
        if Path(cfg.out).suffix == ".npy":
            return torch.cat([x, model.reconstruct(x, y)]), len(x), [], ""
        out, labels = grids.reconstruction_images(model, x, y, per_row)
        return out, per_row, labels, f"reconstructions of {len(x)} test images"
    x, y = test_images(checkpoint, cfg, STATS_IMAGES)
    t = grids.traversal(model, x, y if model.conditional else None, steps=cfg.num_samples)
    return t.images, cfg.num_samples, t.labels(), t.title()


def generate(cfg: DictConfig) -> Path:
    """Write the images as a picture (.png) or raw array (.npy); return the path."""
    out, nrow, labels, title = images(cfg)
    path = Path(cfg.out)
    if path.suffix == ".npy":
        np.save(path, out.float().clamp(0, 1).cpu().numpy().astype(np.float32))
    elif labels:
        grid = make_grid(out.float().clamp(0, 1).cpu(), nrow=nrow, pad_value=0.5)
        fig = grids.labelled_rows(grid, labels, title)
        fig.savefig(path, metadata={"Title": title, "Description": "\n".join(labels)})
        plt.close(fig)
    else:
        save_image(make_grid(out.cpu(), nrow=nrow, pad_value=0.5), path)
    print(f"wrote {len(out)} images to {path}")
    return path


main = entry_point("generate")(generate)  # python -m vae_lab.generate


if __name__ == "__main__":
    main()
