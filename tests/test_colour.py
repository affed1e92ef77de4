"""Colour through the stack: channel conversion, likelihoods and nets (the end-to-end colour run: test_datasets)."""

from __future__ import annotations

import pytest
import torch

from vae_lab.data.base import to_channels
from vae_lab.errors import ConfigError
from vae_lab.models.likelihood import nll
from vae_lab.nets.burgess import BurgessNet


def test_channels_convert_grey_to_colour_and_back():
    grey = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = to_channels(grey, 3)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c:c + 1], grey) for c in range(3))
    assert torch.equal(to_channels(rgb, 1), grey)  # the luma weights sum to 1
    assert to_channels(torch.rand(2, 3, 4, 4), 1).shape == (2, 1, 4, 4)


def test_likelihoods_sum_over_every_channel():
    logits, x = torch.randn(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    for likelihood in ("bernoulli", "gaussian"):
        per_channel = sum(nll(logits[:, c:c + 1], x[:, c:c + 1], likelihood) for c in range(3))
        assert torch.allclose(nll(logits, x, likelihood), per_channel, rtol=1e-5)


def test_nets_refuse_other_channel_counts():
    with pytest.raises(ConfigError, match="net.image_channels=2"):
        BurgessNet(image_size=32, image_channels=2)
