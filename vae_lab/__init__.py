"""vae_lab: VAE, CVAE and β-VAE experiments with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
