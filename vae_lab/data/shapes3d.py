"""Shapes3D: 480,000 RGB 64×64 images over 6 factors in `3dshapes.h5`, read with h5py (vae_lab[datasets])."""

import math
from typing import ClassVar

import numpy as np
import torch

from vae_lab.data.files import KnownFile, ensure_file
from vae_lab.data.ground_truth import GroundTruthDataModule, grid_factors
from vae_lab.data.stored_grid import StoredGrid, chunked
from vae_lab.errors import DataError

FILE = KnownFile(
    name="3dshapes.h5",
    # MD5 and size as disent (nmichlo/disent, Shapes3dData's uri_hash "full") and other public loaders check them.
    md5="099a2078d58cec4daad0702c55d06868",
    size=267_573_662,
    url="https://storage.googleapis.com/3d-shapes/3dshapes.h5",
    page="https://github.com/google-deepmind/3d-shapes",
    exact_size=True,
)


def open_h5(path):
    """The file's (images, labels) h5py datasets, checked against the factor grid's shape and order."""
    try:
        import h5py
    except ImportError as err:
        raise DataError("data=shapes3d reads HDF5 with h5py: pip install 'vae_lab[datasets]' (or h5py)") from err
    f = h5py.File(path, "r")
    if "images" not in f or "labels" not in f:
        raise DataError(f"{path}: needs HDF5 datasets `images` and `labels` (it has {sorted(f)})")
    images, labels = f["images"], f["labels"]
    total = math.prod(Shapes3D.factor_sizes)
    if images.shape != (total, 64, 64, 3) or images.dtype != np.uint8 or labels.shape != (total, 6):
        raise DataError(f"{path}: images {images.dtype} {images.shape} and labels {labels.shape}; expected uint8 "
                        f"{(total, 64, 64, 3)} and {(total, 6)}")
    values = labels[:]
    expected = grid_factors(np.arange(total), Shapes3D.factor_sizes)
    for k, size in enumerate(Shapes3D.factor_sizes):
        distinct, rank = np.unique(values[:, k], return_inverse=True)
        if len(distinct) != size or not np.array_equal(rank.ravel(), expected[:, k]):
            raise DataError(f"{path}: labels column {k} ({Shapes3D.factor_names[k]}) is not in factor order")
    return f, images


class Shapes3D(StoredGrid):
    """The real Shapes3D images under the ground-truth interface."""

    factor_names: ClassVar[list[str]] = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    factor_sizes: ClassVar[list[int]] = [10, 10, 10, 8, 4, 15]


class Shapes3DDataModule(GroundTruthDataModule):
    """`data=shapes3d`: batches read from the HDF5 file per step (or held with data.in_memory=true)."""

    datasets = ("shapes3d",)
    data_class = Shapes3D

    def prepare_data(self) -> None:
        """Find, fetch and verify the file (once per machine)."""
        ensure_file(self.data_dir / "shapes3d", FILE, self.hparams.download)

    def make_ground_truth(self, device: torch.device) -> Shapes3D:
        self._file, images = open_h5(ensure_file(self.data_dir / "shapes3d", FILE, download=False))
        if self.hparams.in_memory:
            return Shapes3D(self.image_size, device, self.channels,
                            chunks=lambda: chunked(lambda a, b: images[a:b], len(images)))
        return Shapes3D(self.image_size, device, self.channels, store=images)
