"""Colour through the stack: nets, likelihoods, grids, TensorBoard, generate and the metrics on 3-channel images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FAST, compose_cfg
from vae_lab.data.datamodule import to_channels
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


def test_a_colour_run_trains_evaluates_logs_and_generates_in_colour(tmp_path, data_dir, one_thread):
    from vae_lab.generate import generate
    from vae_lab.train import train

    run = tmp_path / "run"
    cfg = compose_cfg(run, "model=cvae", "net=burgess", "net.image_size=32", "data.channels=3",
                      "model.likelihood=gaussian", "data.batch_size=32", *FAST)
    assert cfg.net.image_channels == 3
    record = train(cfg)
    assert record["status"] == "ok" and math.isfinite(record["test/loss"])
    for key in ("test/fid", "test/cond_accuracy", "test/probe_accuracy", "test/nll_iwae"):
        assert math.isfinite(record[key]), key
    assert "test/fid" not in record["skipped"] and "disentanglement metrics" in record["skipped"]
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    events = EventAccumulator(str(next(run.rglob("events.out.tfevents.*")).parent), size_guidance={IMAGES: 0})
    events.Reload()
    assert {"images/samples", "images/reconstructions", "images/traversals"} <= set(events.Tags()["images"])
    ckpt = run / "checkpoints" / "last.ckpt"
    for mode, out in (("samples", tmp_path / "s.npy"), ("traverse", tmp_path / "t.png")):
        gen = compose_cfg(tmp_path, f"ckpt_path={ckpt}", f"mode={mode}", f"out={out}", "num_samples=4",
                          f"data_dir={data_dir}", config="generate")
        generate(gen)
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (4, 3, 32, 32) and 0 <= samples.min() and samples.max() <= 1
    assert not np.allclose(samples[:, 0], samples[:, 1])  # the channels are decoded separately
    assert Image.open(tmp_path / "t.png").mode == "RGB"
