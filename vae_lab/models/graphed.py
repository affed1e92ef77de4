"""A whole training step as one CUDA graph: captured once per batch shape, then replayed."""

from collections.abc import Callable

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
Step = Callable[[Batch], dict[str, torch.Tensor]]


class StepGraph:
    """Runs a module's training step (`step`: zero_grad, loss, backward, optimiser step) eagerly or from a graph."""

    def __init__(self, module: nn.Module, step: Step, warmup: int = 3) -> None:
        self.module, self.step, self.warmup, self.warmed = module, step, warmup, 0
        self.warm_shape: torch.Size | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: Batch | None = None
        self.outputs: dict[str, torch.Tensor] = {}

    def __call__(self, batch: Batch) -> tuple[dict[str, torch.Tensor], bool]:
        """The step's terms, and whether the graph took the step (the caller counts those steps itself)."""
        x, _ = batch
        if not x.is_cuda or (self.inputs is not None and x.shape != self.inputs[0].shape):
            return self.step(batch), False
        if self.graph is None:
            if x.shape != self.warm_shape:  # capture a shape after `warmup` steps in a row at it
                self.warmed, self.warm_shape = 0, x.shape
            if self.warmed < self.warmup:
                self.warmed += 1
                return self.on_side_stream(batch), False
            self.capture(batch)
        for static, new in zip(self.inputs, batch):
            static.copy_(new)
        self.graph.replay()
        return self.outputs, True

    def on_side_stream(self, batch: Batch) -> dict[str, torch.Tensor]:
        """An eager step on a side stream: warm-up before capture must not run on the default stream."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            terms = self.step(batch)
        torch.cuda.current_stream().wait_stream(stream)
        return terms

    def capture(self, batch: Batch) -> None:
        """Capture one step under the ambient autocast dtype, with autocast's weight cache off (graphs need it)."""
        self.inputs = tuple(t.clone() for t in batch)
        dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.float32
        self.graph = torch.cuda.CUDAGraph()
        self.module.zero_grad(set_to_none=True)  # every gradient the step writes comes from the graph's own memory
        with (torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32, cache_enabled=False),
              torch.cuda.graph(self.graph)):
            self.outputs = {k: v.detach() for k, v in self.step(self.inputs).items()}
