"""A small CNN classifier per dataset: FID feature extractor and judge of generated samples, trained once and cached."""

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vae_lab.data.base import DataModule, to_channels
from vae_lab.data.batches import ResidentImages
from vae_lab.data.mnist import MNISTDataModule
from vae_lab.files import file_lock, write_atomically
from vae_lab.results import write_json

# Per-dataset training recipe (any key can be overridden through `get_classifier`); other datasets: DEFAULT_RECIPE.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {"epochs": 3, "width": 16, "augment": "shift"},
    "fashion_mnist": {"epochs": 5, "width": 32, "augment": "flip"},
    "cifar10": {"epochs": 10, "width": 32, "augment": "flip"},
}
DEFAULT_RECIPE: dict[str, Any] = {"epochs": 5, "width": 32, "augment": "none"}
TWENTY_EIGHT = ("mnist", "fashion_mnist")  # their classifier sees 28×28 grey images, whatever size the model uses


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """3×3 convolution, batch norm, ReLU, then 2×2 max pooling."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.MaxPool2d(2))


def to_28(x: torch.Tensor) -> torch.Tensor:
    """Bring N×1×H×W images to 28×28: crop the 2-pixel padding of 32, resize any other size."""
    size = x.shape[-1]
    if size == 28:
        return x
    if size == 32:
        return x[..., 2:30, 2:30]
    # Plain bilinear best undoes the data's bilinear 28→64 upsampling (antialiased or area: blurrier, ~5% worse).
    return F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)


def to_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """N×C×H×W images at the classifier's input size: `to_28`'s way for 28, bilinear resizing otherwise."""
    if size == 28:
        return to_28(x)
    return x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def device_of(module: nn.Module) -> torch.device:
    """The device a module's parameters live on."""
    return next(module.parameters()).device


class Classifier(nn.Module):
    """Three conv blocks, then `num_features` penultimate units; any input brought to its size and channels."""

    def __init__(self, num_classes: int = 10, width: int = 32, num_features: int = 128, channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width, "num_features": num_features}
        if (channels, image_size) != (1, 28):  # recorded only where they differ: earlier caches load as they were
            self.config.update(channels=channels, image_size=image_size)
        self.num_features, self.channels, self.image_size = num_features, channels, image_size
        side = image_size // 8
        self.body = nn.Sequential(conv_block(channels, width), conv_block(width, 2 * width),
                                  conv_block(2 * width, 4 * width), nn.Flatten(),
                                  nn.Linear(4 * width * side * side, num_features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(num_features, num_classes))
        self.test_accuracy = float("nan")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (N×num_features) for images in [0, 1]."""
        return self.body(to_channels(to_size(x.float(), self.image_size), self.channels) * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N×num_classes) for images in [0, 1]."""
        return self.head(self.features(x))


def random_shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by its own random offset of up to `max_shift` pixels (zero fill)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) + dy
    cols = torch.arange(w, device=x.device).view(1, 1, w) + dx
    return padded[torch.arange(n, device=x.device).view(n, 1, 1), :, rows, cols].permute(0, 3, 1, 2)  # N×H×W×C


AUGMENTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x, "shift": random_shift,
    "flip": lambda x: torch.where(torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5, x.flip(-1), x)}  # half mirrored


@torch.no_grad()
def accuracy(classifier: nn.Module, data: ResidentImages, batch_size: int = 1000) -> float:
    """Fraction of `data` the classifier labels correctly."""
    device = device_of(classifier)
    correct = 0
    for index in torch.arange(len(data)).split(batch_size):
        x, y = data[index]
        correct += (classifier(x.to(device)).argmax(1) == y.to(device)).sum().item()
    return correct / len(data)


def train_classifier(train: ResidentImages, device: torch.device | str, epochs: int = 3, width: int = 16,
                     augment: str = "shift", batch_size: int = 256, lr: float = 3e-3, seed: int = 0,
                     max_steps: int | None = None, num_classes: int = 10, image_size: int = 28) -> Classifier:
    """Adam with a one-cycle schedule and light augmentation, on resident images; prints progress."""
    torch.manual_seed(seed)
    channels = int(train.images.shape[1])
    classifier = Classifier(num_classes, width, channels=channels, image_size=image_size).to(device).train()
    order = torch.cat([torch.randperm(len(train)) for _ in range(epochs)]).split(batch_size)[:max_steps]
    optimiser = torch.optim.Adam(classifier.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=len(order))
    bar = tqdm(order, desc="classifier", unit="batch", mininterval=2.0, disable=None)  # no bar in logs
    for step, index in enumerate(bar):
        x, y = train[index]
        loss = F.cross_entropy(classifier(AUGMENTATIONS[augment](x.to(device))), y.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=step * batch_size // len(train))
    return classifier.eval()


def load_classifier(weights: Path, device: torch.device | str) -> Classifier:
    """A cached classifier, frozen and in eval mode, with its recorded test accuracy."""
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    classifier = Classifier(**saved["config"])
    classifier.load_state_dict(saved["state_dict"])
    classifier.test_accuracy = float(saved["test_accuracy"])
    classifier.cache_file = weights  # its real-image FID statistics are cached beside it (`fid_cache`)
    return classifier.requires_grad_(False).to(device).eval()


def classifier_splits(data_dir: str | Path, dataset: str, train_subset: int | None,
                      datamodule: DataModule | None) -> tuple[ResidentImages, ResidentImages, int, int]:
    """(train, test, classes, input size) a dataset's classifier learns from."""
    if dataset in TWENTY_EIGHT or datamodule is None:
        data = MNISTDataModule(dataset, str(data_dir), image_size=28, train_subset=train_subset, download=False)
        data.setup()
        return data.splits["train"], data.splits["test"], data.num_classes, 28
    datamodule.setup()
    train, test = datamodule.splits["train"], datamodule.splits["test"]
    if train_subset:
        train = ResidentImages(train.images[:train_subset], train.labels[:train_subset])
    return train, test, datamodule.num_classes, datamodule.image_size


def train_and_cache(data_dir: str | Path, dataset: str, device: torch.device | str, weights: Path,
                    train_subset: int | None = None, datamodule: DataModule | None = None,
                    **recipe: Any) -> None:
    """Train on the dataset's training split, score on its test split, save weights and a JSON summary."""
    train, test, num_classes, size = classifier_splits(data_dir, dataset, train_subset, datamodule)
    start = time.perf_counter()
    classifier = train_classifier(train, device, num_classes=num_classes, image_size=size, **recipe)
    record = {"dataset": dataset, "test_accuracy": accuracy(classifier, test),
              "train_seconds": time.perf_counter() - start, "train_images": len(train), "train_subset": train_subset,
              "recipe": recipe, "device": str(device), "threads": torch.get_num_threads()}
    print(f"classifier[{dataset}]: test accuracy {record['test_accuracy']:.4f} "
          f"after {record['train_seconds']:.0f} s of training")
    weights.parent.mkdir(parents=True, exist_ok=True)
    saved = {"state_dict": classifier.state_dict(), "config": classifier.config, **record}
    write_atomically(weights, lambda file: torch.save(saved, file))  # never a truncated cache later runs would trust
    write_json(weights.with_suffix(".json"), {**record, "config": classifier.config})


def get_classifier(data_dir: str | Path, dataset: str, device: torch.device | str = "cpu",
                   train_subset: int | None = None, cache_dir: str | Path | None = None,
                   datamodule: DataModule | None = None, **overrides: Any) -> Classifier:
    """The dataset's classifier, trained once per recipe and cached under a name keyed by the recipe."""
    recipe = {**RECIPES.get(dataset, DEFAULT_RECIPE), **overrides}
    source = None if dataset in TWENTY_EIGHT or datamodule is None else data_identity(datamodule)
    folder = Path(cache_dir or Path(data_dir) / "classifiers")  # eval.classifier.cache_dir
    weights = folder / cache_name(dataset, recipe, train_subset, source)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(weights.with_suffix(".lock")):  # a sweep's jobs side by side: one trains, the others wait for it
        if not (weights.is_file() and trained_as(weights, recipe, train_subset)):
            train_and_cache(data_dir, dataset, device, weights, train_subset, datamodule, **recipe)
    return load_classifier(weights, device)


def fid_cache(classifier: nn.Module) -> Path | None:
    """Where a cached classifier's real-image FID statistics are kept (None for an uncached classifier)."""
    weights = getattr(classifier, "cache_file", None)
    return None if weights is None else Path(weights).parent / "fid"


def data_identity(datamodule: DataModule) -> dict[str, Any]:
    """What a classifier's training images depend on beside the recipe: where they come from, their size, channels."""
    hparams = dict(datamodule.hparams)
    return {"path": hparams.get("path"), "image_size": datamodule.image_size, "channels": datamodule.channels,
            "split_seed": hparams.get("split_seed")}


def cache_name(dataset: str, recipe: dict[str, Any], train_subset: int | None,
               source: dict[str, Any] | None = None) -> str:
    """The cache file of a classifier recipe: the dataset's name for its default recipe, with a hash otherwise."""
    if recipe == RECIPES.get(dataset, DEFAULT_RECIPE) and train_subset is None and source is None:
        return f"{dataset}.pt"
    key = json.dumps({"recipe": recipe, "train_subset": train_subset, **({"data": source} if source else {})},
                     sort_keys=True)
    return f"{dataset}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.pt"


def trained_as(weights: Path, recipe: dict[str, Any], train_subset: int | None) -> bool:
    """Whether a cached classifier was trained with this recipe (old caches: on all images)."""
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    return saved.get("recipe") == recipe and saved.get("train_subset") == train_subset
