"""A factor grid of RGB 64×64 images too large to hold (Shapes3D 5.9 GB, MPI3D 12.7 GB as uint8): each batch is
read from the file (memory-mapped, or the HDF5 dataset's chunks) unless `data.in_memory=true` loads it once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from vae_lab.data.ground_truth import GroundTruth

CHUNK = 8192  # rows copied at a time when loading into memory


class StoredGrid(GroundTruth):
    """Images N×64×64×3 uint8 in factor order, in `store` (anything indexable by a sorted array of rows: a NumPy
    memory map, an h5py dataset), read per batch; or resident on the device when `rows` (an iterator of row chunks)
    is given instead."""

    native_channels = 3

    def __init__(self, image_size: int = 64, device: torch.device | str = "cpu", channels: int | None = None,
                 store: Any = None, chunks: Callable[[], Iterator[np.ndarray]] | None = None) -> None:
        super().__init__(image_size, device, channels)
        self.store, self.resident = store, None
        if chunks is not None:
            self.resident = torch.empty((len(self), 64, 64, 3), dtype=torch.uint8, device=self.device)
            start = 0
            for chunk in chunks():
                self.resident[start:start + len(chunk)] = torch.from_numpy(np.ascontiguousarray(chunk))
                start += len(chunk)

    def native(self, index: np.ndarray, factors: np.ndarray) -> torch.Tensor:
        """N×3×64×64 floats in [0, 1]: gathered on the device, or read from the file in increasing row order."""
        if self.resident is not None:
            rows = self.resident[torch.as_tensor(index, device=self.device)]
        else:
            unique, inverse = np.unique(index, return_inverse=True)  # h5py reads sorted, distinct rows only
            rows = torch.from_numpy(np.asarray(self.store[unique])[inverse]).to(self.device)
        return rows.permute(0, 3, 1, 2).float().div_(255)


def chunked(read: Callable[[int, int], np.ndarray], total: int, rows: int = CHUNK) -> Iterator[np.ndarray]:
    """Rows start…start+rows of a store, one slice at a time."""
    for start in range(0, total, rows):
        yield read(start, min(start + rows, total))
