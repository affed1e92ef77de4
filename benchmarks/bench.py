"""`python -m benchmarks.bench` (`make bench`): vae_lab's training path against a plain PyTorch loop, side by side."""

from __future__ import annotations

import functools
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra import compose
from hydra.errors import HydraException
from omegaconf import DictConfig
from torch.utils.data import DataLoader, RandomSampler, Subset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms

from benchmarks import with_vae_lab_conf
from vae_lab.cli import lightning_quiet, output_folder, user_errors
from vae_lab.data.batches import epoch_generator, step_batches
from vae_lab.data.mnist import CLASS_NAMES, MNISTDataModule
from vae_lab.errors import ConfigError, check_number
from vae_lab.models.base import BaseVAE
from vae_lab.results import write_json
from vae_lab.timing import Clock, Marks, StepClock, advance, device_name, synchronize, throughput, window_rates
from vae_lab.train import apply_threads, build

TOP_OPS = 12  # operators listed by `profile_steps`


def denormals_flushed() -> bool:
    """Whether this thread's CPU arithmetic flushes denormal floats to zero (torch has no getter for it)."""
    return (torch.tensor(1e-40) * 1.0).item() == 0.0


class StepProfiler(pl.Callback):
    """torch.profiler over the optimiser steps after the first `start`: where the time of vae_lab's step goes —
    on the CPU its operators' own time, on a GPU its kernels' (and a replayed CUDA graph's) own GPU time."""

    def __init__(self, start: int) -> None:
        self.start, self.steps, self.seen = start, 0, 0
        self.profiler: torch.profiler.profile | None = None
        self.clock = "host"  # whose time `shares` ranks: "host" (CPU operators) or "device" (GPU kernels)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs, batch, idx) -> None:
        steps = len(step_batches(batch))
        if self.profiler is not None:
            self.steps += steps
        self.seen += steps
        if self.profiler is None and self.seen >= self.start:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if module.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.clock = "device"
            self.profiler = torch.profiler.profile(activities=activities, record_shapes=True)
            self.profiler.start()

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.profiler is not None:
            self.profiler.stop()

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, module)  # a profiler left running would refuse the next one in this process

    def shares(self, top: int = TOP_OPS) -> list[dict[str, Any]]:
        """The `top` operators (or kernels) by their own time, each operator once per set of input shapes (which tells
        the layers apart): milliseconds per optimiser step and share of the total.

        On a GPU only the kernels' own events count: the operators that launched them carry their time too.
        """
        if self.profiler is None or not self.steps:
            return []
        if self.clock == "device":
            def own(e: Any) -> float:
                return e.self_device_time_total if e.device_type == torch.autograd.DeviceType.CUDA else 0.0
        else:
            def own(e: Any) -> float:
                return e.self_cpu_time_total
        averages = self.profiler.key_averages(group_by_input_shape=True)
        events = sorted((e for e in averages if own(e) > 0), key=own, reverse=True)
        total = sum(own(e) for e in events)
        return [{"op": e.key, "inputs": shapes(e.input_shapes), "calls_per_step": e.count / self.steps,
                 "ms_per_step": own(e) / 1e3 / self.steps, "share": own(e) / total} for e in events[:top]]


def shapes(inputs: list[Any] | None) -> str:
    """An operator's tensor inputs as `128×784, 784×3146` (scalars and absent inputs left out)."""
    return ", ".join("×".join(map(str, shape)) for shape in inputs or [] if isinstance(shape, list) and shape)


def speedup(fast: Marks, reference: Marks, warmup: int, repeats: int, steps: int) -> float:
    """The median over windows of vae_lab's rate over the reference's in the window next to it in time."""
    pairs = zip(window_rates(fast, warmup, repeats, steps), window_rates(reference, warmup, repeats, steps))
    return statistics.median(f / r for f, r in pairs)


def fast_path(cfg: DictConfig, total_steps: int,
              callbacks: list[pl.Callback]) -> tuple[BaseVAE, pl.LightningDataModule]:
    """Train with exactly vae_lab.train's datamodule, model and Trainer (no logger, checkpoints or validation)."""
    datamodule, model, trainer = build(cfg, callbacks=callbacks, logger=False, max_steps=total_steps, max_epochs=-1,
                                       enable_checkpointing=False, limit_val_batches=0, enable_progress_bar=False,
                                       enable_model_summary=False)
    trainer.fit(model, datamodule=datamodule)
    return model, datamodule


def reference_dataset(cfg: DictConfig, datamodule: MNISTDataModule) -> Subset:
    """The design notes' dataset — torchvision's, per-sample ToTensor — cut to the datamodule's training images."""
    cls = datasets.MNIST if cfg.data.name == "mnist" else datasets.FashionMNIST
    pad = (cfg.data.image_size - 28) // 2
    steps = [transforms.Pad(pad)] if pad > 0 else []
    if cfg.data.image_size == 64:
        steps = [transforms.Resize(64)]
    dataset = cls(cfg.data.data_dir, train=True, download=False, transform=transforms.Compose(steps + [transforms.ToTensor()]))
    return Subset(dataset, datamodule.train_val_indices(len(dataset))[0].tolist())


def reference_loader(cfg: DictConfig, dataset: Subset, seed: int, epoch: int) -> DataLoader:
    """A shuffling DataLoader (shuffle=True's RandomSampler) whose order for `epoch` is the one vae_lab's sampler draws.

    The generator goes to the sampler, not the DataLoader, which would draw its workers' seed from it first.
    """
    shuffle = RandomSampler(dataset, generator=epoch_generator(seed, epoch))
    return DataLoader(dataset, batch_size=cfg.data.batch_size, sampler=shuffle)


class ReferenceLoop:
    """A plain fp32 loop with torch's default Adam (the case's lr and ε) over the same network and batch size, run in
    turns.

    Its shuffling `DataLoader` draws each epoch's order from the generator vae_lab's sampler uses, so both paths
    see the same images in the same batches: the parity check compares arithmetic, not luck of the batch order.
    """

    def __init__(self, cfg: DictConfig, boundaries: Iterable[int] = ()) -> None:
        self.boundaries = set(boundaries)  # the step counts that start or end a timed window: synchronised there only
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule, self.model, _ = build(cfg, callbacks=[], logger=False)
        self.device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
        self.model.to(self.device).train()
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=cfg.model.lr, eps=cfg.model.get("adam_eps", 1e-8))
        self.binarize = cfg.data.get("binarize", "none") != "none"  # each batch drawn as Bernoulli(pixel), as plain loops do
        dataset = reference_dataset(cfg, datamodule)
        self.batches = (batch for epoch in itertools.count()
                        for batch in reference_loader(cfg, dataset, datamodule.hparams.seed, epoch))
        self.marks: Marks = []
        self.clock = Clock(paused=True)
        self.seconds = self.data_seconds = 0.0  # time in its turns, and how much of it went to fetching batches
        self.rng = self.rng_state()

    def rng_state(self) -> list[torch.Tensor]:
        """The random state of the CPU and this loop's GPU (the reparametrisation noise is drawn from it)."""
        return [torch.get_rng_state()] + ([torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else [])

    def run(self, steps: int) -> None:
        """`steps` more training steps, timed on this loop's own clock and drawing on its own random stream (as if it
        ran alone, and leaving vae_lab's stream as if it did too), without the denormal flushing vae_lab's fit
        turns on around it. On a GPU it waits for its queued work only where a timed window starts or ends (and at
        the turn's end), so that, like a plain loop, it fetches the next batch while the GPU works."""
        flushing = denormals_flushed()
        torch.set_flush_denormal(False)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.set_rng_state(self.rng[0])
            if self.device.type == "cuda":
                torch.cuda.set_rng_state(self.rng[1], self.device)
            self.clock.resume()
            start = time.perf_counter()
            for step in range(steps):
                fetch = time.perf_counter()
                x, y = next(self.batches)
                x = torch.bernoulli(x) if self.binarize else x
                self.data_seconds += time.perf_counter() - fetch
                loss = self.model.loss_terms((x.to(self.device), y.to(self.device)))["loss"]
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
                done = (self.marks[-1][0] if self.marks else 0) + 1
                if done in self.boundaries or step == steps - 1:
                    synchronize()
                self.marks.append(advance(self.marks, 1, len(x), self.clock.now()))
            self.clock.pause()
            self.seconds += time.perf_counter() - start
            self.rng = self.rng_state()
        torch.set_flush_denormal(flushing)


@torch.no_grad()
def eval_loss(model: BaseVAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """fp32 loss on fixed images with fixed noise, for comparing two trained models."""
    model.eval().float()
    torch.manual_seed(1234)
    losses = [model.loss_terms((x.to(model.device), y.to(model.device)))["loss"] for x, y in batches]
    return float(torch.stack(losses).mean())


def flops_per_image(model: BaseVAE, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Forward + backward FLOPs of one training step, per image (torch.utils.flop_counter)."""
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss_terms(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch[0])


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 1024, windows: int = 5,
                seconds: float = 0.2) -> float:
    """This machine's dense matmul rate, FLOP/s: the best of several short windows, since what the floor needs is
    what the machine can do, and a shared machine's passing load only lowers a window's rate."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    return max(2 * n**3 * repeat_for(lambda: a @ b, seconds, device) for _ in range(windows))


def repeat_for(work: Callable[[], Any], seconds: float, device: torch.device) -> float:
    """Run `work` until `seconds` have passed; how many times it ran per second."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        count += 1
    synchronize()
    return count / (time.perf_counter() - start)


def run_case(name: str, cfg: DictConfig, bench: DictConfig) -> dict[str, Any]:
    """Both paths for one config: throughput, ratio, FLOPs, floor fraction and the parity verdict."""
    warmup, repeats, steps = window = (bench.warmup_steps, bench.repeats, bench.steps_per_repeat)
    apply_threads(cfg.get("threads"))  # both paths run on the case's `threads`
    reference = ReferenceLoop(cfg, boundaries=[warmup + r * steps for r in range(repeats + 1)])
    turns = {warmup + r * steps: functools.partial(reference.run, steps + (warmup if r == 0 else 0))
             for r in range(repeats)}  # before each of vae_lab's windows, one of the reference's
    if bench.profile_steps:  # as many steps as vae_lab's profiled ones, so that parity compares equal training
        turns[warmup + repeats * steps] = functools.partial(reference.run, bench.profile_steps)
    clock, profiler = StepClock(turns), StepProfiler(warmup + repeats * steps)
    fast_model, datamodule = fast_path(cfg, warmup + repeats * steps + bench.profile_steps,
                                       [clock] + ([profiler] if bench.profile_steps else []))
    reference.run(clock.marks[-1][0] - reference.marks[-1][0])  # untimed: Lightning stops at a whole batch of
    batch_size = cfg.data.batch_size                              # data.steps_per_batch steps, so it may take more
    fast, ref = throughput(clock.marks, *window), throughput(reference.marks, *window)
    device, ref_model = reference.device, reference.model
    fast_model = fast_model.to(device)  # Lightning hands the model back on the CPU
    val = datamodule.splits["val"]
    n = min(len(val), bench.eval_images)
    eval_batches = [tuple(t.to(device) for t in val[torch.arange(i, min(i + 500, n))]) for i in range(0, n, 500)]
    fast_loss, ref_loss = eval_loss(fast_model, eval_batches), eval_loss(ref_model, eval_batches)
    flops = flops_per_image(ref_model, eval_batches[0])
    n = 4096 if device.type == "cuda" else 1024  # a GPU's peak needs large matmuls; 1024² would flatter the floor
    peak = max(matmul_rate(device, torch.float32, n), matmul_rate(device, torch.bfloat16, n))
    return {"case": name, "model": cfg.model._target_.rsplit(".", 1)[-1], "net": cfg.net._target_.rsplit(".", 1)[-1],
            "image_size": cfg.data.image_size, "batch_size": batch_size, "precision": str(cfg.trainer.precision),
            "options": speed_options(cfg, fast_model),
            "vae_lab_images_per_second": fast, "reference_images_per_second": ref,
            "speedup": speedup(clock.marks, reference.marks, *window), "flops_per_image": flops, "matmul_flops_per_second": peak,
            "floor_fraction": fast["median"] * flops / peak, "vae_lab_loss": fast_loss, "reference_loss": ref_loss,
            "loss_gap": (fast_loss - ref_loss) / abs(ref_loss),
            "parity": parity(fast_loss, ref_loss, bench.parity_tolerance),
            "trained_steps": {"vae_lab": clock.marks[-1][0], "reference": reference.marks[-1][0]},
            "reference_data_fraction": reference.data_seconds / reference.seconds,
            "profile": profiler.shares(), "profile_clock": profiler.clock}


def parity(fast_loss: float, ref_loss: float, tolerance: float) -> str:
    """`pass` unless vae_lab's loss is worse than the reference's by more than `tolerance` of its size (a Gaussian
    likelihood's loss can be negative: worse is higher either way)."""
    return "pass" if fast_loss - ref_loss <= tolerance * abs(ref_loss) else "FAIL"


def speed_options(cfg: DictConfig, model: BaseVAE) -> str:
    """The training path's speed settings that differ from the defaults, in a few words."""
    words = [name for name, key in (("CUDA graphs", "cuda_graph"), ("compile", "compile")) if cfg.model.get(key)]
    if model.channels_last:
        words.append("channels-last" + (" (auto)" if cfg.model.get("channels_last") == "auto" else ""))
    if cfg.data.get("steps_per_batch", 1) > 1:
        words.append(f"{cfg.data.steps_per_batch} steps/batch")
    if not cfg.model.get("fused_adam", True):
        words.append("unfused Adam")
    return ", ".join(words) or "defaults"


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = [("| case | net | batch | precision | options | vae_lab img/s | reference img/s | speed-up | GFLOP/img "
             "| floor reached | loss (vae_lab / ref) | parity |"), "|" + "---|" * 12]
    for r in rows:
        f, g = r["vae_lab_images_per_second"], r["reference_images_per_second"]
        lines.append(f"| {r['case']} | {r['net']} {r['image_size']}² | {r['batch_size']} | {r['precision']} | {r['options']} "
                     f"| {f['median']:,.0f} ({f['min']:,.0f}–{f['max']:,.0f}) | {g['median']:,.0f} "
                     f"({g['min']:,.0f}–{g['max']:,.0f}) | {r['speedup']:.2f}× | {r['flops_per_image'] / 1e9:.4f} "
                     f"| {r['floor_fraction']:.1%} | {r['vae_lab_loss']:.2f} / {r['reference_loss']:.2f} "
                     f"| {r['parity']} ({r['loss_gap']:+.2%}) |")
    return "\n".join(lines)


def floor_line(row: dict[str, Any]) -> str:
    """The floor behind "floor reached": the measured matmul rate, and the images/s it allows at this FLOP count."""
    rate = row["matmul_flops_per_second"]
    flops = row["flops_per_image"]
    return (f"{row['case']}: matmul rate {rate / 1e12:.2f} TFLOP/s (best of fp32 and bf16), so at "
            f"{flops / 1e9:.4f} GFLOP per image the floor is {rate / flops:,.0f} images/s")


def profile_table(row: dict[str, Any]) -> str:
    """Where one case's time goes: vae_lab's top operators, and the reference loop's share spent fetching data."""
    if not row["profile"]:
        return (f"{row['case']}: no step was profiled; raise profile_steps above the steps of one Lightning batch "
                "(data.steps_per_batch)")
    clock = "GPU" if row["profile_clock"] == "device" else "host"
    title = (f"{row['case']}: the reference loop spent {row['reference_data_fraction']:.0%} of its time fetching "
             f"batches; vae_lab's step, by operator (own {clock} time, {len(row['profile'])} largest):")
    lines = [title, "| operator | inputs | calls/step | ms/step | share |", "|---|---|---|---|---|"]
    lines += [f"| {op['op']} | {op['inputs']} | {op['calls_per_step']:g} | {op['ms_per_step']:.3f} | {op['share']:.1%} |"
              for op in row["profile"]]
    return "\n".join(lines)


def check(cfg: DictConfig) -> None:
    """Reject bad benchmark settings in one line, before anything runs."""
    for key in ("warmup_steps", "repeats", "steps_per_repeat", "eval_images"):
        check_number(key, cfg[key], whole=True, minimum=1)
    check_number("profile_steps", cfg.profile_steps, whole=True, minimum=0)
    check_number("parity_tolerance", cfg.parity_tolerance, minimum=0)
    check_number("train_subset", cfg.train_subset, whole=True, minimum=1, nullable=True)
    if cfg.dataset not in CLASS_NAMES:
        raise ConfigError(f"dataset={cfg.dataset!r}: choose one of {sorted(CLASS_NAMES)}")
    if not cfg.cases:
        raise ConfigError("cases is empty: give at least one case (name: [train.yaml overrides])")


def compose_train(name: str, overrides: list[str]) -> DictConfig:
    """train.yaml with one case's overrides; a bad override becomes one line naming the case."""
    try:
        return compose("train", overrides=overrides, return_hydra_config=False)
    except HydraException as err:
        first, _, rest = str(err).partition("\n")
        options = [line.strip() for line in rest.splitlines() if line.startswith("\t") and "provider=" not in line]
        hints = [line.strip() for line in rest.splitlines() if line.strip() and not line.startswith("\t")
                 and not line.startswith(("Available options", "Config search path"))]
        allowed = f" (available: {', '.join(options)})" if options else "".join(f" {h}" for h in hints)
        raise ConfigError(f"case {name!r}: {first}{allowed}") from err


def bench(cfg: DictConfig, compose_case: Callable[[list[str]], DictConfig] | None = None) -> list[dict[str, Any]]:
    """Run every case and print (and optionally save) the table."""
    check(cfg)
    extra = [f"data={cfg.dataset}", f"seed={cfg.seed}"] + ([f"data.train_subset={cfg.train_subset}"]
                                                           if cfg.train_subset else [])
    cases = {}  # every case composed (its overrides checked) before any runs
    for name, overrides in cfg.cases.items():
        if overrides is None:  # `cases.NAME=null` leaves a case out
            continue
        all_overrides = list(overrides) + list(cfg.overrides) + extra
        cases[name] = compose_case(all_overrides) if compose_case else compose_train(name, all_overrides)
        per_batch = cases[name].data.get("steps_per_batch", 1)
        if per_batch > cfg.steps_per_repeat:  # a Lightning batch would span a whole window: nothing to time
            raise ConfigError(f"case {name!r}: data.steps_per_batch={per_batch} is more than steps_per_repeat="
                              f"{cfg.steps_per_repeat}; give steps_per_repeat ≥ {per_batch}")
    if cfg.json:
        output_folder("json", cfg.json)
    rows = []
    for name, case_cfg in cases.items():
        print(f"benchmarking {name} …", flush=True)
        with lightning_quiet():
            rows.append(run_case(name, case_cfg, cfg))
        print(table(rows[-1:]).splitlines()[-1], flush=True)  # each row as soon as it is measured
    print(table(rows))
    for row in rows:
        print(floor_line(row))
    for row in rows if cfg.profile_steps else ():
        print("\n" + profile_table(row))
    if cfg.json:
        write_json(Path(cfg.json), {"device": device_name(), "torch": torch.__version__, "results": rows})
    return rows


def quote_override_lists(argv: list[str], keys: tuple[str, ...]) -> list[str]:
    """Let `KEY=[a=b,c=d]` (a list of overrides, which Hydra's grammar cannot read unquoted) mean
    `KEY=['a=b','c=d']`, for the keys (or key prefixes ending in '.') that hold override lists."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        name = key.lstrip("+~")
        if eq and value.startswith("[") and value.endswith("]") and any(
                name == k or k.endswith(".") and name.startswith(k) for k in keys):
            items = _split_top_level(value[1:-1])
            if any("=" in item and item[:1] not in "'\"" for item in items):
                quoted = [item if item[:1] in "'\"" else "'" + item.replace("'", "\\'") + "'" for item in items]
                arg = f"{key}=[{','.join(quoted)}]"
        out.append(arg)
    return out


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes; each part stripped."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote and (not current or current[-1] != "\\") else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    last = "".join(current).strip()
    return parts + [last] if last or parts else parts


@hydra.main(version_base="1.3", config_path="conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        bench(cfg)


if __name__ == "__main__":
    sys.argv[1:] = quote_override_lists(sys.argv[1:], ("overrides", "cases."))  # `overrides=[model.compile=true]`
    sys.argv = with_vae_lab_conf(sys.argv)
    main()
