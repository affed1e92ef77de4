"""The plain VAE (Kingma & Welling): recon + KL, the base objective unchanged."""

from vae_lab.models.base import BaseVAE


class VAE(BaseVAE):
    """Unconditional VAE; `model.beta` is 1 unless a sweep sets it."""
