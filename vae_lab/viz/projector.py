"""TensorBoard's Projector: test images' posterior means, with their class or factor values and the images as
sprites, so PCA / t-SNE / UMAP of the latent space can be coloured by class or factor."""

from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from vae_lab.errors import check_number
from vae_lab.metrics.latent import encode_means
from vae_lab.models.base import BaseVAE

SPRITE_PIXELS = 8192  # TensorBoard's projector takes sprite sheets up to this many pixels a side
TAG = "test_mu"


def projector_count(images: int, image_size: int, available: int) -> int:
    """How many test images to project: as many as asked, as the test set has, and as fit one sprite sheet."""
    return min(images, available, (SPRITE_PIXELS // image_size) ** 2)


def metadata(labels: torch.Tensor, class_names: list[str] | None,
             factor_names: list[str] | None) -> tuple[list[Any], list[str] | None]:
    """The projector's metadata rows and header: factor values (one column per factor) or class names."""
    if factor_names is not None:
        return [[str(v) for v in row] for row in labels.tolist()], list(factor_names)
    if class_names is not None:
        return [class_names[int(y)] for y in labels], None
    return [str(int(y)) for y in labels], None


@torch.no_grad()
def log_projector(writer: SummaryWriter, model: BaseVAE, test: Any, images: int, step: int = 0,
                  class_names: list[str] | None = None, factor_names: list[str] | None = None) -> int:
    """Add the first `images` test images' encoder means to `writer` as an embedding (0: nothing); the count logged."""
    check_number("projector images", images, whole=True, minimum=0)
    if images == 0:
        return 0
    x, _ = test[torch.arange(1)]
    n = projector_count(images, x.shape[-1], len(test))
    was_training = model.training
    model.eval()
    mu, _, labels = encode_means(model, test, n)
    model.train(was_training)
    rows, header = metadata(labels, class_names, factor_names)
    sprites, _ = test[torch.arange(n)]
    writer.add_embedding(mu, metadata=rows, metadata_header=header, label_img=sprites.float().cpu(),
                         global_step=step, tag=TAG)
    writer.flush()
    return n


def write_projector(log_dir: str | Path, model: BaseVAE, test: Any, images: int, step: int = 0,
                    class_names: list[str] | None = None, factor_names: list[str] | None = None) -> int:
    """`log_projector` into a TensorBoard folder of its own writer (evaluate's, which has no logger)."""
    if images == 0:
        return 0
    writer = SummaryWriter(str(log_dir))
    try:
        return log_projector(writer, model, test, images, step, class_names, factor_names)
    finally:
        writer.close()
