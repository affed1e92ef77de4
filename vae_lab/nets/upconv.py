"""The nets' 4×4, stride-2 transposed convolution, with a faster gradient-free CPU form for image outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# For output rows 2i (phase 0) and 2i+1 (phase 1): the kernel row that multiplies input row i−1, i, i+1
# (a 3×3 convolution's taps); 4 indexes the zero row appended to the 4×4 kernel.
TAPS = torch.tensor([[3, 1, 4], [4, 2, 0]])


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """ConvTranspose2d(4, stride 2, padding 1) weight (cin, cout, 4, 4) → the 3×3 conv weight (4·cout, cin, 3, 3)
    whose output, pixel-shuffled by 2, is the transposed convolution's."""
    cin, cout = weight.shape[:2]
    taps = TAPS.to(weight.device)
    k = F.pad(weight, (0, 1, 0, 1))[:, :, taps][:, :, :, :, taps]  # (cin, cout, phase y, tap y, phase x, tap x)
    return k.permute(1, 2, 4, 0, 3, 5).reshape(4 * cout, cin, 3, 3)


class UpConv(nn.ConvTranspose2d):
    """ConvTranspose2d(cin, cout, 4, stride 2, padding 1): same parameters, state dict and training arithmetic.

    Without gradients on the CPU, a 1-channel output (the image layer) is computed as the equivalent 3×3
    convolution into 4 channels followed by `pixel_shuffle`, which oneDNN runs faster than its 1-channel
    transposed convolution (evaluation's thousands of decodes per image gain most); wider outputs keep the
    transposed convolution, which is faster for them.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or self.out_channels != 1 or output_size is not None:
            return super().forward(x, output_size)
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        return F.pixel_shuffle(F.conv2d(x, subpixel_weight(self.weight), bias, padding=1), 2)
