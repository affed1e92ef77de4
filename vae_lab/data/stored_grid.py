"""A factor grid too large to hold: each batch read from the file unless `data.in_memory=true`."""

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from vae_lab.data.ground_truth import GroundTruth

CHUNK = 8192  # rows copied at a time when loading into memory


class StoredGrid(GroundTruth):
    """N×64×64×3 uint8 images in factor order read per batch from `store`, or resident when `chunks` is given."""

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
