"""MPI3D: 1,036,800 RGB 64×64 images over 7 factors in `mpi3d_VARIANT.npz` (toy, realistic, real)."""

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from vae_lab.data.files import KnownFile, ensure_files, from_publisher
from vae_lab.data.ground_truth import GroundTruthDataModule
from vae_lab.data.npz import iter_rows, memmap_member, npz_info, npz_to_npy
from vae_lab.data.stored_grid import StoredGrid
from vae_lab.errors import ConfigError, DataError

# The publisher's address since 2025 (rr-learning/disentanglement_dataset's README), and its first one, where
# disentanglement_lib and disent fetch from; the MD5s are disent's (Mpi3dData's uri_hash "full", of the files at the
# first address; the publisher gives none). Each file holds the same 1,036,800×64×64×3 uint8 images: 12.7 GB.
HUB = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
FIRST = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"
MD5 = {"toy": "55889cb7c7dfc655d6e0277beee88868", "realistic": "59a6225b88b635365f70c91b3e52f70f",
       "real": "0f33f609918fb5c97996692f91129802"}
FILES = {variant: KnownFile(f"mpi3d_{variant}.npz", md5, 12_740_000_000, f"{HUB}mpi3d_{variant}.npz",
                            "https://github.com/rr-learning/disentanglement_dataset") for variant, md5 in MD5.items()}
FILE = FILES["toy"]


def ensure_variant(folder: Path, variant: str, download: bool) -> Path:
    """The variant's verified file in `folder`: fetched from the publisher's current address, else from its first."""
    known = FILES[variant]
    fetch = from_publisher(known, dataclasses.replace(known, url=FIRST + known.name)) if download else None
    return ensure_files(folder, [known], fetch) / known.name


class MPI3D(StoredGrid):
    """The real MPI3D-toy images under the ground-truth interface."""

    factor_names: ClassVar[list[str]] = ["object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis"]
    factor_sizes: ClassVar[list[int]] = [6, 6, 2, 3, 3, 40, 40]


def check_images(path: Path) -> None:
    """The file's `images` array has the grid's shape and dtype."""
    shape, dtype = npz_info(path, "images")
    expected = (math.prod(MPI3D.factor_sizes), 64, 64, 3)
    if shape != expected or dtype != np.uint8:
        raise DataError(f"{path}: images is {dtype} {shape}, expected uint8 {expected}: not an MPI3D file")


class MPI3DDataModule(GroundTruthDataModule):
    """`data=mpi3d`: batches read from a memory map of the images, or held with data.in_memory=true."""

    datasets = ("mpi3d",)
    data_class = MPI3D

    def __init__(self, variant: str = "toy", **kwargs: Any) -> None:
        if variant not in FILES:
            raise ConfigError(f"data.variant={variant!r}: choose one of {', '.join(FILES)}")
        super().__init__(**kwargs)
        self.hparams["variant"] = self.variant = variant

    def prepare_data(self) -> None:
        """Find, fetch and verify the file (once per machine)."""
        check_images(ensure_variant(self.data_dir / "mpi3d", self.variant, self.hparams.download))

    def make_ground_truth(self, device: torch.device) -> MPI3D:
        path = ensure_variant(self.data_dir / "mpi3d", self.variant, download=False)
        check_images(path)
        if self.hparams.in_memory:
            return MPI3D(self.image_size, device, self.channels, chunks=lambda: iter_rows(path, "images", 8192))
        store = memmap_member(path, "images")
        if store is None:  # compressed: no random access into it
            store = np.load(npz_to_npy(path, "images", path.with_name(f"mpi3d_{self.variant}_images.npy")), mmap_mode="r")
        return MPI3D(self.image_size, device, self.channels, store=store)
