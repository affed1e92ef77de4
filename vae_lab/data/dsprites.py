"""dSprites: 737,280 binary 64×64 images in factor order, read without pickles, resident as packed bits."""

from typing import ClassVar

import numpy as np
import torch

from vae_lab.data.files import KnownFile, ensure_file
from vae_lab.data.ground_truth import GroundTruth, GroundTruthDataModule, grid_factors
from vae_lab.data.npz import iter_rows, load_array, npz_info
from vae_lab.errors import DataError

FILE = KnownFile(
    name="dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    # The MD5 that several loaders check for this file (e.g. the `Resource(md5=…)` tables of the Python dSprites
    # loaders found by searching public code for the file name); DeepMind's repository publishes no hash itself.
    md5="7da33b31b13a06f4b04a70402ce90c2e",
    size=26_000_000,
    url="https://github.com/google-deepmind/dsprites-dataset/raw/master/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    page="https://github.com/google-deepmind/dsprites-dataset",
)
ROWS = 16_384  # images decompressed and packed at a time while loading
_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)  # np.packbits' order: first pixel, high bit


def pack_images(path, sizes: list[int]) -> np.ndarray:
    """The file's images as packed bits, N×512 uint8, checked against the factor grid (shape, values, order)."""
    shape, dtype = npz_info(path, "imgs")
    total = int(np.prod(sizes))
    if shape != (total, 64, 64) or dtype != np.uint8:
        raise DataError(f"{path}: imgs is {dtype} {shape}, expected uint8 {(total, 64, 64)}: not the dSprites file")
    classes = load_array(path, "latents_classes")
    if classes.shape != (total, 6):
        raise DataError(f"{path}: latents_classes is {classes.shape}, expected {(total, 6)}")
    probe = np.linspace(0, total - 1, 997).astype(np.int64)  # the factor order, on a spread of rows
    if (classes[probe, 0] != 0).any() or not np.array_equal(classes[probe, 1:], grid_factors(probe, sizes)):
        raise DataError(f"{path}: latents_classes are not in dSprites' factor order (shape, scale, orientation, x, y)")
    packed = np.empty((total, 512), dtype=np.uint8)
    start = 0
    for chunk in iter_rows(path, "imgs", ROWS):
        if chunk.max(initial=0) > 1:
            raise DataError(f"{path}: imgs holds values above 1; dSprites images are binary")
        packed[start:start + len(chunk)] = np.packbits(chunk.reshape(len(chunk), -1), axis=1)
        start += len(chunk)
    return packed


class DSprites(GroundTruth):
    """The real dSprites images, packed bits resident on the device, under the shapes2d interface."""

    factor_names: ClassVar[list[str]] = ["shape", "scale", "orientation", "x", "y"]
    factor_sizes: ClassVar[list[int]] = [3, 6, 40, 32, 32]

    def __init__(self, image_size: int = 64, device: torch.device | str = "cpu", channels: int | None = None,
                 packed: np.ndarray | None = None) -> None:
        super().__init__(image_size, device, channels)
        if packed is None or len(packed) != len(self):
            raise DataError(f"dSprites needs its {len(self):,} packed images")
        self.packed = torch.from_numpy(packed).to(self.device)
        self._bits = _BITS.to(self.device)

    def native(self, index: np.ndarray, factors: np.ndarray) -> torch.Tensor:
        """Unpack the batch's bits on the device: N×1×64×64 floats in {0, 1}."""
        rows = self.packed[torch.as_tensor(index, device=self.device)]
        bits = (rows.unsqueeze(-1) & self._bits).ne(0)
        return bits.view(len(index), 1, 64, 64).float()


class DSpritesDataModule(GroundTruthDataModule):
    """`data=dsprites`: the same splits, batches and ground-truth interface as `data=shapes2d`."""

    datasets = ("dsprites",)
    data_class = DSprites

    def prepare_data(self) -> None:
        """Find, fetch and verify the file (once per machine)."""
        ensure_file(self.data_dir / "dsprites", FILE, self.hparams.download)

    def make_ground_truth(self, device: torch.device) -> DSprites:
        path = ensure_file(self.data_dir / "dsprites", FILE, download=False)
        return DSprites(self.image_size, device, self.channels, pack_images(path, DSprites.factor_sizes))
