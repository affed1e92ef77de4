"""The nets' 4×4 stride-2 transposed convolution, with faster CPU forms (docs/speed.md)."""

import torch
import torch.nn.functional as F
from torch import nn

STRIDE, PADDING = [2, 2], [1, 1]


def image_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """ConvTranspose2d(cin, 1, 4, stride 2, padding 1) as one GEMM and in-place shifted fp32 sums."""
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


class SplitBackward(torch.autograd.Function):
    """conv_transpose2d whose backward takes the input's and weight's gradients apart, the bias's summed here."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv_transpose2d(x, weight, bias, stride=STRIDE, padding=PADDING)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = transposed_conv_grad(grad, x, weight, 0) if need_x else None
        grad_w = transposed_conv_grad(grad, x, weight, 1) if need_w else None
        return grad_x, grad_w, grad.sum((0, 2, 3)) if ctx.has_bias and need_b else None


def transposed_conv_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, which: int) -> torch.Tensor:
    """One gradient of conv_transpose2d (stride 2, padding 1) from oneDNN: of its input (0) or its weight (1)."""
    mask = [which == 0, which == 1, False]
    return torch.ops.aten.convolution_backward(grad, x, weight, None, STRIDE, PADDING, [1, 1], True, [0, 0], 1,
                                               mask)[which]


def split_backward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The transposed convolution through `SplitBackward`, in the precision CPU autocast would give it."""
    if torch.is_autocast_enabled("cpu"):  # autocast casts a convolution's tensors to its dtype; do it as autocast does
        dtype = torch.get_autocast_dtype("cpu")
        x, weight, bias = x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)
    with torch.autocast("cpu", enabled=False):
        return SplitBackward.apply(x, weight, bias)


class UpConv(nn.ConvTranspose2d):
    """ConvTranspose2d(cin, cout, 4, 2, 1) with faster CPU paths (`image_layer`, `SplitBackward`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if x.device.type != "cpu" or output_size is not None:
            return super().forward(x, output_size)
        if torch.is_grad_enabled():
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                return split_backward(x, self.weight, self.bias)
            return super().forward(x)
        if self.out_channels != 1:
            return super().forward(x)
        return image_layer(x, self.weight, self.bias)
