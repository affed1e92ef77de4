"""What the explorer shows, as plain arrays: a latent code in, images out (no web framework here)."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from vae_lab.api import decode as decode_images
from vae_lab.api import encode as encode_images
from vae_lab.data.datamodule import test_datamodule
from vae_lab.errors import ConfigError, check_number
from vae_lab.explorer.runs import Candidate
from vae_lab.metrics.disentanglement import discrete_entropy, discrete_mutual_info, histogram_discretize
from vae_lab.metrics.latent import active_dims, encode_means
from vae_lab.models import load_model, read_checkpoint
from vae_lab.models.base import BaseVAE
from vae_lab.models.likelihood import mean_image
from vae_lab.viz.grids import traverse

SPAN = 3.0          # sliders cover at least −SPAN…SPAN, and SPAN prior standard deviations around each prior mean
STRIP_STEPS = 9     # images in a traversal or interpolation strip
NAMED = 0.2         # a latent is named by a factor when it holds at least this share of the factor's entropy


@dataclass
class Loaded:
    """A model with its test set, its latents' KL there, which are active, and the factor each names."""

    candidate: Candidate
    model: BaseVAE
    test: Dataset
    kl: np.ndarray
    active: np.ndarray
    class_names: list[str] | None = None
    factor_names: list[str] | None = None
    factors: list[str | None] = field(default_factory=list)  # per latent: the factor it best predicts, or None
    order: list[int] = field(default_factory=list)  # latents by KL, largest first

    def __post_init__(self) -> None:
        self.order = np.argsort(-self.kl, kind="stable").tolist()

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def labels(self, label: int | None, n: int = 1) -> torch.Tensor | None:
        """The label tensor the decoder takes: None for an unconditional model, else `label` (default 0)."""
        if not self.model.conditional:
            return None
        label = 0 if label is None else int(label)
        if not 0 <= label < self.model.num_classes:
            raise ConfigError(f"class {label}: out of range, choose 0…{self.model.num_classes - 1}")
        return torch.full((n,), label, dtype=torch.long, device=self.model.device)

    @torch.no_grad()
    def centre(self, label: int | None) -> np.ndarray:
        """The mean of p(z|label): 0 for the standard normal; for a mixture, its heaviest component's mean."""
        y = self.labels(label)
        mu, _ = self.model.prior(y)
        if not torch.is_tensor(mu):
            return np.zeros(self.latent_dim, np.float32)
        if mu.dim() == 3:  # N×K×D: a mixture
            mu = mu[0, self.model.mixture(y)[2][0].argmax()][None]
        return mu[0].float().cpu().numpy()

    @torch.no_grad()
    def reach(self) -> np.ndarray:
        """Per latent, the range (D×2) of the prior's means ± SPAN stds over classes, at least −SPAN…SPAN."""
        y = torch.arange(self.model.num_classes, device=self.model.device) if self.model.conditional else None
        mu, logvar = self.model.prior(y)
        out = np.tile(np.float32([-SPAN, SPAN]), (self.latent_dim, 1))
        if torch.is_tensor(mu):
            std = (0.5 * torch.as_tensor(logvar)).exp()
            lo = (mu - SPAN * std).reshape(-1, self.latent_dim).min(0).values.cpu().numpy()
            hi = (mu + SPAN * std).reshape(-1, self.latent_dim).max(0).values.cpu().numpy()
            out = np.stack([np.minimum(out[:, 0], lo), np.maximum(out[:, 1], hi)], 1)
        return out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N×C×H×W floats in [0, 1] → N×H×W (one channel) or N×H×W×C uint8."""
    out = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().permute(0, 2, 3, 1).numpy()
    return out[..., 0] if out.shape[-1] == 1 else out


def strip(images: torch.Tensor, nrow: int) -> np.ndarray:
    """Images as one grid picture (torchvision's make_grid), uint8."""
    return to_uint8(make_grid(images.float().cpu(), nrow=nrow, padding=1, pad_value=0.5)[None])[0]


def pad_to(images: torch.Tensor, side: int) -> torch.Tensor:
    """N×C×h×w images centred in side×side cells of grey (so that two models' images share a grid)."""
    h, w = images.shape[-2:]
    top, left = (side - h) // 2, (side - w) // 2
    return F.pad(images, (left, side - w - left, top, side - h - top), value=0.5)


def labelled_strip(rows: list[torch.Tensor], steps: int, names: str = "") -> np.ndarray:
    """Rows of images (one tensor per model) as one grid picture, row k named names[k] at its left."""
    side = max(r.shape[-1] for r in rows)
    grid = strip(torch.cat([pad_to(r.float().cpu(), side) for r in rows]), steps)
    if not names:
        return grid
    picture = Image.new("RGB", (grid.shape[1] + 12, grid.shape[0]), (255, 255, 255))
    picture.paste(Image.fromarray(grid if grid.ndim == 3 else np.stack([grid] * 3, -1)), (12, 0))
    draw = ImageDraw.Draw(picture)
    for row, name in enumerate(names):
        draw.text((3, row * (side + 1) + side // 2 - 4), name, fill=(0, 0, 0))
    return np.asarray(picture)


@torch.no_grad()
def factor_names_of(mu: torch.Tensor, factors: torch.Tensor, names: list[str]) -> list[str | None]:
    """Per latent, the factor it best predicts (share of the factor's entropy), or None below NAMED."""
    information = discrete_mutual_info(histogram_discretize(mu.numpy()), factors.numpy())
    share = information / np.maximum(discrete_entropy(factors.numpy()), 1e-12)
    return [names[int(row.argmax())] if row.max() >= NAMED else None for row in share]


def load(candidate: Candidate, data_dir: str | Path | None = None, kl_images: int = 2000,
         device: str = "cpu") -> Loaded:
    """Load a checkpoint (`vae_lab.models.load_model`) and measure its latents on `kl_images` test images."""
    checkpoint = read_checkpoint(candidate.path)
    model = load_model(candidate.path, device)
    datamodule = test_datamodule(checkpoint, data_dir, train_subset=None)
    test = datamodule.splits["test"]
    mu, logvar, y = encode_means(model, test, max(2, kl_images))
    with torch.no_grad():
        labels = y.to(model.device) if model.conditional else None
        kl = model.kl_per_dimension(mu.to(model.device), logvar.to(model.device), labels).mean(0).cpu().numpy()
    ground_truth = getattr(datamodule, "ground_truth", None)
    names = list(ground_truth.factor_names) if ground_truth is not None else None
    return Loaded(candidate, model, test, kl, active_dims(mu).numpy(), class_names=datamodule.class_names,
                  factor_names=names, factors=factor_names_of(mu, y, names) if names else [])


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
        """What two models side by side share (empty for one model): the same numbers, each with its own meaning."""
        if len(self.models) < 2:
            return ""
        line = ("**A and B side by side** decode the same numbers: a slider sets latent k in both, but each model "
                "learned its own meaning for latent k — compare what each model does with a slider, not whether the "
                "two images match.")
        sizes = [m.latent_dim for m in self.models]
        if len(set(sizes)) > 1:
            small, big = min(sizes), max(sizes)
            line += (f" A has {sizes[0]} latents and B {sizes[1]}: both decode the first {small}; "
                     f"the other {big - small} sliders move only the model with {big}.")
        return line

    def code(self, z: np.ndarray | list[float]) -> np.ndarray:
        """z as a float32 vector of this session's size (missing entries 0)."""
        z = np.asarray(z, dtype=np.float32).ravel()[: self.size]
        return np.pad(z, (0, self.size - len(z)))

    def centre(self, label: int | None) -> np.ndarray:
        """Where the page starts and resets: each model's prior mean for the class."""
        z = np.zeros(self.size, np.float32)
        for m in reversed(self.models):
            z[: m.latent_dim] = m.centre(label)
        return z

    def reach(self) -> np.ndarray:
        """Each slider's range (size×2): where either model's prior puts its mass, at least −SPAN…SPAN."""
        out = np.tile(np.float32([-SPAN, SPAN]), (self.size, 1))
        for m in self.models:
            r = m.reach()
            out[: m.latent_dim, 0] = np.minimum(out[: m.latent_dim, 0], r[:, 0])
            out[: m.latent_dim, 1] = np.maximum(out[: m.latent_dim, 1], r[:, 1])
        return np.stack([np.floor(out[:, 0] * 2) / 2, np.ceil(out[:, 1] * 2) / 2], 1)  # to half units

    @torch.no_grad()
    def decode(self, z: np.ndarray | list[float], label: int | None = None) -> list[np.ndarray]:
        """Each model's image of the code z (its decoder's mean), uint8."""
        z = self.code(z)
        out = []
        for m in self.models:
            codes = torch.from_numpy(z[: m.latent_dim].copy())[None].to(m.model.device)
            out.append(to_uint8(decode_images(m.model, codes, m.labels(label)))[0])
        return out

    @torch.no_grad()
    def traversal(self, z: np.ndarray | list[float], dim: int, label: int | None = None) -> np.ndarray:
        """The strip of latent `dim` over its slider's range around z: one row per model that has it."""
        z = self.code(z)
        lo, hi = self.reach()[dim]
        rows = []
        for m in self.models:
            if dim < m.latent_dim:
                base = torch.from_numpy(z[: m.latent_dim].copy())
                base[dim] = 0.0  # the strip shows absolute values lo…hi of the latent
                values = torch.linspace(float(lo), float(hi), STRIP_STEPS)
                rows.append(traverse(m.model, base, [dim], m.labels(label), values).cpu())
        names = "".join(tag for tag, m in zip("AB", self.models) if dim < m.latent_dim)
        return labelled_strip(rows, STRIP_STEPS, names if len(self.models) > 1 else "")

    @torch.no_grad()
    def prior(self, temperature: float = 1.0, label: int | None = None) -> np.ndarray:
        """A code from the first model's prior, its std scaled by temperature; extra latents from N(0, t²)."""
        check_number("variety", temperature, minimum=0)
        m = self.first
        z = torch.randn(self.size) * temperature
        z[: m.latent_dim] = m.model.sample_latents(1, m.labels(label), temperature)[0].cpu()
        return z.numpy().astype(np.float32)

    def test_image(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Test image `index` of the first model's test set and its label (class or factor values), batched."""
        n = len(self.first.test)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index < n:
            raise ConfigError(f"test image {index!r}: choose 0…{n - 1}")
        return self.first.test[torch.tensor([int(index)])]

    def class_of(self, y: torch.Tensor) -> int | None:
        """A test image's class (None for data without classes)."""
        return int(y[0]) if self.first.class_names is not None else None

    @torch.no_grad()
    def encode(self, index: int) -> dict:
        """Test image `index`: its posterior mean as the code, image, reconstruction, label or factors."""
        m = self.first
        x, y = self.test_image(index)
        mu, _ = encode_images(m.model, x, y)
        z = self.code(mu[0].cpu().numpy())
        label = self.class_of(y)
        recon = self.decode(z, label if m.model.conditional else None)[0]
        return {"z": z, "image": to_uint8(x)[0], "reconstruction": recon, "about": self.describe(y[0]), "label": label}

    def describe(self, y: torch.Tensor) -> str:
        """A test image's class name or factor values, as one line."""
        m = self.first
        if m.factor_names is not None:
            return ", ".join(f"{n}={int(v)}" for n, v in zip(m.factor_names, y.tolist()))
        if m.class_names is not None:
            return f"class {int(y)}: {m.class_names[int(y)]}"
        return ""

    @torch.no_grad()
    def decode_blend(self, m: Loaded, codes: torch.Tensor, ends: tuple[int | None, int | None],
                     weights: torch.Tensor) -> torch.Tensor:
        """Codes decoded under a class blended from ends[0] to ends[1] by `weights` (unconditional: none)."""
        if not m.model.conditional:
            return decode_images(m.model, codes)
        a, b = (0 if e is None else e for e in ends)
        one_hot = F.one_hot(torch.tensor([a, b]), m.model.num_classes).float()
        condition = (1 - weights)[:, None] * one_hot[0] + weights[:, None] * one_hot[1]
        return mean_image(m.model.net.decode(codes.to(m.model.device), condition.to(m.model.device)))

    @torch.no_grad()
    def interpolate(self, i: int, j: int, t: float) -> dict:
        """The path from image i's posterior mean to image j's: code at t, its class, the strip and a note."""
        check_number("fraction", t, minimum=0, maximum=1)
        (xa, ya), (xb, yb) = self.test_image(i), self.test_image(j)
        ends = (self.class_of(ya), self.class_of(yb))
        a, b = self.encode(i)["z"], self.encode(j)["z"]
        steps = torch.linspace(0, 1, STRIP_STEPS)
        path = torch.from_numpy(a)[None] * (1 - steps[:, None]) + torch.from_numpy(b)[None] * steps[:, None]
        rows = []
        for m in self.models:
            decoded = self.decode_blend(m, path[:, : m.latent_dim], ends, steps).cpu()
            side = max(decoded.shape[-1], xa.shape[-1])
            rows.append(torch.cat([pad_to(xa.float(), side), pad_to(decoded, side), pad_to(xb.float(), side)]))
        picture = labelled_strip(rows, STRIP_STEPS + 2, "AB" if len(self.models) > 1 else "")
        return {"z": self.code(a * (1 - t) + b * t), "label": ends[0] if t < 0.5 else ends[1], "strip": picture,
                "about": self.path_note(ends)}

    def path_note(self, ends: tuple[int | None, int | None]) -> str:
        """What the interpolation strip shows, in one line."""
        line = "The strip: the start image, the path decoded in 9 steps, the end image."
        if not any(m.model.conditional for m in self.models) or ends[0] is None:
            return line
        names = self.first.class_names
        if ends[0] == ends[1]:
            return line + f" The class is held: {names[ends[0]]}."
        return (line + f" The class is blended step by step from {names[ends[0]]} to {names[ends[1]]}; the large "
                "image uses the nearer end's class.")


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
