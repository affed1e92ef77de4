"""What the explorer shows, as plain arrays: a latent code in, images out (no web framework here).

A code `z` is a float vector as long as the largest model shown; each model decodes its first `latent_dim`
entries. Images are H×W (grey) or H×W×C uint8 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from vae_lab.api import decode as decode_images
from vae_lab.api import encode as encode_images
from vae_lab.data.datamodule import test_datamodule
from vae_lab.errors import ConfigError, check_number
from vae_lab.explorer.runs import Candidate
from vae_lab.metrics.latent import active_dims, encode_means
from vae_lab.models import load_model, read_checkpoint
from vae_lab.models.base import BaseVAE
from vae_lab.viz.grids import traverse

SPAN = 3.0          # sliders and traversals run over −SPAN…SPAN
STRIP_STEPS = 9     # images in a traversal or interpolation strip


@dataclass
class Loaded:
    """A model with its test set, its latents' KL on that set (nats, to N(0, 1)) and which of them are active."""

    candidate: Candidate
    model: BaseVAE
    test: Dataset
    kl: np.ndarray
    active: np.ndarray
    class_names: list[str] | None = None
    factor_names: list[str] | None = None
    order: list[int] = field(default_factory=list)  # latents by KL, largest first

    def __post_init__(self) -> None:
        self.order = np.argsort(-self.kl, kind="stable").tolist()

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N×C×H×W floats in [0, 1] → N×H×W (one channel) or N×H×W×C uint8."""
    out = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().permute(0, 2, 3, 1).numpy()
    return out[..., 0] if out.shape[-1] == 1 else out


def strip(images: torch.Tensor, nrow: int) -> np.ndarray:
    """Images as one grid picture (torchvision's make_grid), uint8."""
    return to_uint8(make_grid(images.float().cpu(), nrow=nrow, padding=1, pad_value=0.5)[None])[0]


def load(candidate: Candidate, data_dir: str | Path | None = None, kl_images: int = 2000,
         device: str = "cpu") -> Loaded:
    """Load a checkpoint (`vae_lab.models.load_model`) and measure its latents on `kl_images` test images."""
    checkpoint = read_checkpoint(candidate.path)
    model = load_model(candidate.path, device)
    datamodule = test_datamodule(checkpoint, data_dir)
    test = datamodule.splits["test"]
    mu, logvar, _ = encode_means(model, test, max(2, kl_images))
    kl = model.kl_per_dim(mu, logvar).mean(0).numpy()
    ground_truth = getattr(datamodule, "ground_truth", None)
    return Loaded(candidate, model, test, kl, active_dims(mu).numpy(), class_names=datamodule.class_names,
                  factor_names=list(ground_truth.factor_names) if ground_truth is not None else None)


class Session:
    """The models on the page (one, or two side by side) and every picture the page draws from a code."""

    def __init__(self, models: list[Loaded]) -> None:
        if not 1 <= len(models) <= 2:
            raise ConfigError(f"the explorer shows one model or two side by side, not {len(models)}")
        self.models = models
        self.size = max(m.latent_dim for m in models)

    @property
    def first(self) -> Loaded:
        return self.models[0]

    def order(self) -> list[int]:
        """Slider order: the first model's latents by its KL, then any further latents of the second by its KL."""
        extra = [d for d in self.models[-1].order if d >= self.first.latent_dim]
        return self.first.order + extra

    def note(self) -> str:
        """One line on how the models share the sliders (empty for one model or equal latent sizes)."""
        sizes = [m.latent_dim for m in self.models]
        if len(set(sizes)) == 1:
            return ""
        small, big = min(sizes), max(sizes)
        return (f"The models have {sizes[0]} and {sizes[1]} latents: both decode the first {small}; "
                f"the other {big - small} sliders move only the model with {big}.")

    def code(self, z: np.ndarray | list[float]) -> np.ndarray:
        """z as a float32 vector of this session's size (missing entries 0)."""
        z = np.asarray(z, dtype=np.float32).ravel()[: self.size]
        return np.pad(z, (0, self.size - len(z)))

    def labels(self, loaded: Loaded, label: int | None, n: int = 1) -> torch.Tensor | None:
        """The label tensor a model's decoder takes: None for an unconditional model, else `label` (default 0)."""
        if not loaded.model.conditional:
            return None
        label = 0 if label is None else int(label)
        if not 0 <= label < loaded.model.num_classes:
            raise ConfigError(f"label={label}: out of range, choose 0…{loaded.model.num_classes - 1}")
        return torch.full((n,), label, dtype=torch.long, device=loaded.model.device)

    @torch.no_grad()
    def decode(self, z: np.ndarray | list[float], label: int | None = None) -> list[np.ndarray]:
        """Each model's image of the code z (its decoder's mean), uint8."""
        z = self.code(z)
        out = []
        for m in self.models:
            codes = torch.from_numpy(z[: m.latent_dim].copy())[None].to(m.model.device)
            out.append(to_uint8(decode_images(m.model, codes, self.labels(m, label)))[0])
        return out

    @torch.no_grad()
    def traversal(self, z: np.ndarray | list[float], dim: int, label: int | None = None) -> np.ndarray:
        """The strip of latent `dim` at −SPAN…SPAN around z (other latents fixed): one row per model that has it,
        each row one batched decode."""
        z = self.code(z)
        rows = []
        for m in self.models:
            if dim < m.latent_dim:
                base = torch.from_numpy(z[: m.latent_dim].copy())
                base[dim] = 0.0  # the strip shows absolute values −SPAN…SPAN of the latent
                offsets = torch.linspace(-SPAN, SPAN, STRIP_STEPS)
                rows.append(traverse(m.model, base, [dim], self.labels(m, label), offsets).cpu())
        return strip(torch.cat(rows), STRIP_STEPS)

    @torch.no_grad()
    def prior(self, temperature: float = 1.0, label: int | None = None) -> np.ndarray:
        """A code from the first model's prior p(z[|label]) (its `sample_latents`) with its std scaled by
        temperature; further latents of a larger second model from N(0, temperature²)."""
        check_number("temperature", temperature, minimum=0)
        m = self.first
        z = torch.randn(self.size) * temperature
        z[: m.latent_dim] = m.model.sample_latents(1, self.labels(m, label), temperature)[0].cpu()
        return z.numpy().astype(np.float32)

    def check_index(self, index: int) -> int:
        """A test-image index of the first model's test set, or a one-line error."""
        n = len(self.first.test)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < n:
            raise ConfigError(f"test image {index!r}: choose 0…{n - 1}")
        return int(index)

    @torch.no_grad()
    def encode(self, index: int) -> dict:
        """Test image `index` of the first model: its posterior mean as the code, the image, the reconstruction,
        its label (class) or factor values."""
        m = self.first
        x, y = m.test[torch.tensor([self.check_index(index)])]
        mu, _ = encode_images(m.model, x, y)
        z = self.code(mu[0].cpu().numpy())
        recon = self.decode(z, int(y[0]) if m.model.conditional else None)[0]
        return {"z": z, "image": to_uint8(x)[0], "reconstruction": recon, "about": self.describe(y[0]),
                "label": int(y[0]) if m.class_names is not None else None}

    def describe(self, y: torch.Tensor) -> str:
        """A test image's class name or factor values, as one line."""
        m = self.first
        if m.factor_names is not None:
            return ", ".join(f"{n}={int(v)}" for n, v in zip(m.factor_names, y.tolist()))
        if m.class_names is not None:
            return f"class {int(y)}: {m.class_names[int(y)]}"
        return ""

    @torch.no_grad()
    def interpolate(self, i: int, j: int, t: float, label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The code a fraction t of the way from test image i's posterior mean to image j's, and the path's strip
        (STRIP_STEPS codes decoded as one batch per model)."""
        check_number("t", t, minimum=0, maximum=1)
        a, b = self.encode(i)["z"], self.encode(j)["z"]
        steps = torch.linspace(0, 1, STRIP_STEPS)[:, None]
        path = torch.from_numpy(a)[None] * (1 - steps) + torch.from_numpy(b)[None] * steps
        rows = []
        for m in self.models:
            codes = path[:, : m.latent_dim].to(m.model.device)
            rows.append(decode_images(m.model, codes, self.labels(m, label, STRIP_STEPS)).cpu())
        return self.code(a * (1 - t) + b * t), strip(torch.cat(rows), STRIP_STEPS)


class Catalogue:
    """The checkpoints the page may show, loaded on first use; any other name (or a path) is refused."""

    def __init__(self, candidates: list[Candidate], data_dir: str | Path | None = None, kl_images: int = 2000,
                 device: str = "cpu") -> None:
        self.candidates = {c.name: c for c in candidates}
        self.data_dir, self.kl_images, self.device = data_dir, kl_images, device
        self.loaded: dict[str, Loaded] = {}

    @property
    def names(self) -> list[str]:
        return list(self.candidates)

    @property
    def max_latents(self) -> int:
        """The most latents any of the candidates has: how many sliders the page needs."""
        return max(c.latent_dim for c in self.candidates.values())

    def get(self, name: str) -> Loaded:
        """The loaded model of one of the given checkpoints."""
        if name not in self.candidates:
            raise ConfigError(f"{name!r} is not one of the checkpoints given on the command line")
        if name not in self.loaded:
            self.loaded[name] = load(self.candidates[name], self.data_dir, self.kl_images, self.device)
        return self.loaded[name]

    def session(self, first: str, second: str | None = None) -> Session:
        """The session of one model, or two side by side."""
        return Session([self.get(first)] + ([self.get(second)] if second else []))
