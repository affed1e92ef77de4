"""Tests of benchmarks/: the measurements of vae_lab itself, outside the package."""
