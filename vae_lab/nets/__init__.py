"""Plain encoder/decoder networks: encode(x, y|None) → (mu, logvar), decode(z, y|None) → logits."""

from collections.abc import Sequence

import torch
from torch import nn

from vae_lab.errors import ConfigError, check_number
from vae_lab.registry import Registry


def is_net(cls: type) -> bool:
    """A net: an nn.Module with `encode` and `decode`."""
    return issubclass(cls, nn.Module) and callable(getattr(cls, "encode", None)) and callable(getattr(cls, "decode", None))


NETS = Registry("vae_lab.nets", "nets", is_net)  # every net a config or a checkpoint may name


def with_label(h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Append the one-hot label to features when the net is conditional (y is not None)."""
    return h if y is None else torch.cat([h, y.to(h.dtype)], dim=1)


def like_weights(h: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Feature maps in the memory layout of the conv layer they enter: oneDNN runs mixed layouts slowly."""
    if layer.weight.is_contiguous(memory_format=torch.channels_last) and not layer.weight.is_contiguous():
        return h.contiguous(memory_format=torch.channels_last)
    return h


def relu() -> nn.ReLU:
    """An in-place ReLU (each follows a layer whose backward does not read its output), saving memory."""
    return nn.ReLU(inplace=True)


def check_widths(**widths: int | Sequence[int]) -> None:
    """One line for a layer width below 1 (`net.hidden=[0]`): a zero-width layer passes nothing, yet would train."""
    for key, value in widths.items():
        many = isinstance(value, Sequence) and not isinstance(value, str)
        values = list(value) if many else [value]
        shown = f"net.{key}={values if many else value}"
        for width in values:
            try:
                check_number(shown, width, whole=True, minimum=1)
            except ConfigError:
                raise ConfigError(f"{shown}: every layer width must be a whole number ≥ 1") from None


def check_image_channels(image_channels: int) -> None:
    """One line unless the images are grey (1 channel) or colour (3): the data's `channels`."""
    if image_channels not in (1, 3):
        raise ConfigError(f"net.image_channels={image_channels}: images have 1 (grey) or 3 (colour) channels; "
                          "the net takes it from data.channels")
