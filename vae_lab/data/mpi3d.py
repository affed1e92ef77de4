"""MPI3D-toy: 1,036,800 RGB 64×64 renderings over object colour 6 × shape 6 × size 2 × camera height 3 × background
colour 3 × horizontal axis 40 × vertical axis 40, in `mpi3d_toy.npz` (one array, `images`, uint8 1036800×64×64×3, in
factor order, vertical axis fastest; no labels: the order is the factors)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from vae_lab.data.files import KnownFile, ensure_file
from vae_lab.data.ground_truth import GroundTruthDataModule
from vae_lab.data.npz import iter_rows, memmap_member, npz_info, npz_to_npy
from vae_lab.data.stored_grid import StoredGrid
from vae_lab.errors import DataError

FILE = KnownFile(
    name="mpi3d_toy.npz",
    # The MD5 disent (nmichlo/disent, Mpi3dData's "toy" uri_hash "full") and other public loaders check for this
    # file; the publisher (rr-learning/disentanglement_dataset) gives none.
    md5="55889cb7c7dfc655d6e0277beee88868",
    size=12_740_000_000,
    url="https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/mpi3d_toy.npz",
    page="https://github.com/rr-learning/disentanglement_dataset",
    hash_source="disent's Mpi3dData uri_hash (full MD5) for the toy subset",
)


class MPI3D(StoredGrid):
    """The real MPI3D-toy images under the ground-truth interface."""

    factor_names: ClassVar[list[str]] = ["object_color", "object_shape", "object_size", "camera_height", "background_color",
                    "horizontal_axis", "vertical_axis"]
    factor_sizes: ClassVar[list[int]] = [6, 6, 2, 3, 3, 40, 40]


def check_images(path) -> None:
    """The file's `images` array has the grid's shape and dtype."""
    shape, dtype = npz_info(path, "images")
    expected = (math.prod(MPI3D.factor_sizes), 64, 64, 3)
    if shape != expected or dtype != np.uint8:
        raise DataError(f"{path}: images is {dtype} {shape}, expected uint8 {expected}: not the MPI3D-toy file")


class MPI3DDataModule(GroundTruthDataModule):
    """`data=mpi3d`: batches read from a memory map of the images (the .npz's own when stored uncompressed, else a
    .npy decompressed once beside it), or held with data.in_memory=true."""

    datasets = ("mpi3d",)
    data_class = MPI3D

    def prepare_data(self) -> None:
        """Find, fetch and verify the file (once per machine)."""
        check_images(ensure_file(self.data_dir / "mpi3d", FILE, self.hparams.download))

    def make_ground_truth(self, device: torch.device) -> MPI3D:
        path = ensure_file(self.data_dir / "mpi3d", FILE, download=False)
        check_images(path)
        if self.hparams.in_memory:
            return MPI3D(self.image_size, device, self.channels, chunks=lambda: iter_rows(path, "images", 8192))
        store = memmap_member(path, "images")
        if store is None:  # compressed: no random access into it
            store = np.load(npz_to_npy(path, "images", path.with_name("mpi3d_toy_images.npy")), mmap_mode="r")
        return MPI3D(self.image_size, device, self.channels, store=store)
