"""Measurements of vae_lab itself, outside the installed package (vae_lab never imports them), run from the
repository root: `make bench` / `make bench-gpu` (`python -m benchmarks.bench`: vae_lab's training path against a
plain PyTorch loop), `make compare-probe` (`python -m benchmarks.probe`: the compare sweep's launcher layouts),
`make bench-explore` (`python -m benchmarks.explorer`: the explorer's latency, and Gradio against Panel in headless
Chromium). Their configs are in benchmarks/conf/."""

from __future__ import annotations

from pathlib import Path

VAE_LAB_CONF = Path(__file__).resolve().parents[1] / "conf"  # vae_lab's own configs (train.yaml, explore.yaml)


def with_vae_lab_conf(argv: list[str]) -> list[str]:
    """The command line with vae_lab's conf/ added to Hydra's search path after benchmarks/conf (Hydra's
    `--config-dir`), so that a benchmark's config can build on vae_lab's and compose train.yaml as vae_lab.train
    does."""
    return [argv[0], f"--config-dir={VAE_LAB_CONF}", *argv[1:]]
