"""The nets' 4×4, stride-2 transposed convolution, with a faster gradient-free CPU form for image outputs."""

from __future__ import annotations

import torch
from torch import nn


def image_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """ConvTranspose2d(cin, 1, 4, stride 2, padding 1) as one GEMM and shifted sums.

    The GEMM gives every input pixel's 4×4 patch of contributions; output row 2m takes kernel row 1 of input row m
    and row 3 of row m−1, output row 2m+1 row 2 of row m and row 0 of row m+1 (columns alike): exactly the
    transposed convolution's products, none of them zero, summed in place (no large temporaries). The sums and the
    output are fp32 whatever the GEMM's precision: bf16 elementwise work is slow on the CPU.
    """
    n, c, h, w = x.shape
    patches = (x.permute(0, 2, 3, 1).reshape(-1, c) @ weight.reshape(c, 16)).float().view(n, h, w, 4, 4)
    rows = patches.new_empty(n, h, 2, w, 4)  # (n, input row, output row phase, input column, kernel column)
    rows[:, :, 0], rows[:, :, 1] = patches[:, :, :, 1], patches[:, :, :, 2]
    rows[:, 1:, 0] += patches[:, :-1, :, 3]
    rows[:, :-1, 1] += patches[:, 1:, :, 0]
    image = patches.new_empty(n, h, 2, w, 2)  # (n, input row, row phase, input column, column phase)
    image[..., 0], image[..., 1] = rows[..., 1], rows[..., 2]
    image[..., 1:, 0] += rows[..., :-1, 3]
    image[..., :-1, 1] += rows[..., 1:, 0]
    image = image.view(n, 1, 2 * h, 2 * w)
    return image if bias is None else image.add_(bias)


class UpConv(nn.ConvTranspose2d):
    """ConvTranspose2d(cin, cout, 4, stride 2, padding 1): same parameters, state dict and training arithmetic.

    Without gradients on the CPU, a 1-channel output (the image layer) is computed by `image_layer`, one GEMM and
    shifted sums (README, Speed: about twice as fast as the 3×3 sub-pixel convolution it replaced, four times
    oneDNN's 1-channel transposed convolution; evaluation's thousands of decodes per image gain most); wider
    outputs, and training, where oneDNN's backward is faster, keep the transposed convolution.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or self.out_channels != 1 or output_size is not None:
            return super().forward(x, output_size)
        return image_layer(x, self.weight, self.bias)
