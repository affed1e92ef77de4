"""How every model trains: its own optimiser steps, Adam and its schedule, checkpoint hooks, the speed paths."""

import copy
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.model_helpers import is_overridden

from vae_lab.checkpoints import stamp
from vae_lab.data.batches import step_batches
from vae_lab.errors import ConfigError, check_number
from vae_lab.hardware import amx_cpu, skip_missing_nvml
from vae_lab.models.graphed import StepGraph
from vae_lab.registry import check_settings

Batch = tuple[torch.Tensor, torch.Tensor]
LR_SCHEDULES = ("constant", "cosine")
CHANNELS_LAST = (True, False, "auto")
SCHEDULERS = {f"torch.optim.lr_scheduler.{name}": cls for name, cls in vars(torch.optim.lr_scheduler).items()
              if isinstance(cls, type) and issubclass(cls, torch.optim.lr_scheduler.LRScheduler)
              and cls.__module__.startswith("torch.optim")}  # model.lr_scheduler: one of torch's, by exact name
AUTOMATIC, MANUAL = "epoch_loop.automatic_optimization", "epoch_loop.manual_optimization"  # Lightning's loop keys


def torch_scheduler(config: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """`model.lr_scheduler`: one of torch's schedulers by exact name (never imported), its settings checked."""
    settings = dict(config)
    target = settings.pop("_target_", None)
    require(target in SCHEDULERS, f"model.lr_scheduler._target_={target!r}: name one of torch's schedulers "
            f"(torch.optim.lr_scheduler.MultiStepLR, …)")
    check_settings(SCHEDULERS[target], settings, "model.lr_scheduler", given=("optimizer",))
    return SCHEDULERS[target], settings


def require(ok: bool, message: str) -> None:
    """A ConfigError with `message` unless `ok`: a constructor's range check."""
    if not ok:
        raise ConfigError(message)


def check_training_options(lr_schedule: str, cuda_graph: bool, compile: bool, channels_last: bool | str,
                           adam_eps: float = 1e-8, lr_scheduler: Mapping[str, Any] | None = None) -> None:
    """The training options' ranges (the constructor's arguments of the same names)."""
    require(lr_scheduler is None or isinstance(lr_scheduler, Mapping),
            f"model.lr_scheduler={lr_scheduler!r}: a torch scheduler's _target_ and settings, or null")
    require(lr_schedule in LR_SCHEDULES, f"model.lr_schedule={lr_schedule!r}: choose one of {LR_SCHEDULES}")
    check_number("model.adam_eps", adam_eps)
    require(adam_eps > 0, f"model.adam_eps={adam_eps}: must be > 0")
    if lr_scheduler is not None:
        torch_scheduler(lr_scheduler)
        require(lr_schedule == "constant", f"model.lr_schedule={lr_schedule} and model.lr_scheduler: choose one")
    require(not (cuda_graph and compile), "model.cuda_graph=true and model.compile=true: choose one")
    require(channels_last in CHANNELS_LAST, f"model.channels_last={channels_last!r}: choose true, false or auto")


def capturing(batch: Batch) -> bool:
    """Whether a CUDA graph is being captured on the stream this batch's step runs on."""
    return batch[0].is_cuda and torch.cuda.is_current_stream_capturing()


class TrainingModule(pl.LightningModule):
    """Manual optimisation: `training_step` takes one optimiser step per (images, labels) pair of its batch."""

    def __init__(self) -> None:
        super().__init__()
        self._train_sums: torch.Tensor | None = None
        self._train_count, self._train_names, self._train_batches = 0, [], 0
        self.automatic_optimization = False  # training_step takes its own steps: several per batch if asked
        self.__dict__["_step_graph"] = None  # a StepGraph from on_fit_start with model.cuda_graph=true; not a submodule
        self.channels_last = False  # the training layout `configure_model` chose

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The model's loss terms, `loss` among them."""
        raise NotImplementedError

    def curves(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The scalar terms drawn as training curves."""
        raise NotImplementedError

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> None:
        """One optimiser step per (images, labels) pair; the last one's terms logged on Lightning's cadence."""
        for pair in step_batches(batch):
            terms = self.curves(self.optimise(pair))
            self.record(terms, len(pair[0]))
        self._train_batches += 1  # this fit's Lightning batches
        if self.trainer._logger_connector.should_update_logs:  # Lightning's own test, so a resumed run logs in step
            logged = {k: v.detach().float() for k, v in terms.items()}
            self.log("train/loss", logged.pop("loss"), on_step=True, on_epoch=False, prog_bar=True)
            self.log_dict({f"train/{k}": v for k, v in logged.items()}, on_step=True, on_epoch=False)

    def optimise(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One training step (replayed from a CUDA graph if captured), then a per-step schedule's step."""
        graph = self.__dict__["_step_graph"]
        terms, graphed = graph(batch) if graph is not None else (self.take_step(batch), False)
        if graphed:  # Lightning counts the steps its optimiser wrappers take; a replayed graph bypasses them
            self.count_steps(len(self.trainer.optimizers))
        if self.schedule_interval() == "step":
            self.lr_schedulers().step()
        return terms

    def schedule_interval(self) -> str | None:
        """When the schedule steps: `step` (cosine), `epoch` (lr_scheduler) or None; the model steps it."""
        configs = self.trainer.lr_scheduler_configs
        return configs[0].interval if configs else None

    def take_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss and one Adam step on it; what a CUDA graph captures (subclasses with more optimisers override)."""
        lean = self.__dict__.get("_lean", False)  # never with CUDA graphs (lean_steps), so never capturing
        optimiser = self.optimizers(use_pl_optimizer=not (lean or capturing(batch)))
        terms = self.loss_terms(batch)
        self.descend(optimiser, terms["loss"])
        if lean:
            self.count_steps(1)
        return terms

    def count_steps(self, n: int) -> None:
        """Count n optimiser steps taken past Lightning's wrappers in its progress (the global step)."""
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        for _ in range(n):
            progress.increment_ready()
            progress.increment_completed()

    def lean_steps(self) -> bool:
        """Whether steps may go straight through torch (no wrapper costs): one device, no loss scaler, no hooks."""
        trainer, hooks = self.trainer, ("on_before_backward", "on_after_backward", "on_before_optimizer_step",
                                        "on_before_zero_grad")
        hooked = any(is_overridden(h, c, pl.Callback) for c in trainer.callbacks for h in hooks)
        return (isinstance(trainer.strategy, SingleDeviceStrategy) and not self.hparams.get("cuda_graph")
                and getattr(trainer.precision_plugin, "scaler", None) is None and not hooked
                and not any(is_overridden(h, self, pl.LightningModule) for h in hooks))

    def descend(self, optimiser: torch.optim.Optimizer | LightningOptimizer, loss: torch.Tensor) -> None:
        """zero_grad, backward, step: through Lightning's wrappers, or straight through torch inside a capture."""
        optimiser.zero_grad(set_to_none=True)
        if isinstance(optimiser, LightningOptimizer):
            self.manual_backward(loss)
        else:
            loss.backward()
        optimiser.step()

    def record(self, terms: dict[str, torch.Tensor], n: int) -> None:
        """Add a step's scalar terms to the epoch's sums, on the device (no per-step host sync)."""
        values = torch.stack([v.detach().float() for v in terms.values()])
        if self._train_sums is None:
            self._train_sums, self._train_names = values * n, list(terms)
        else:
            self._train_sums += values * n
        self._train_count += n

    def on_train_epoch_start(self) -> None:
        """A fresh epoch's sums; a per-epoch schedule stepped to this epoch (caught up to it after a resume)."""
        self._train_sums, self._train_count = None, 0
        if self.schedule_interval() == "epoch":
            scheduler = self.lr_schedulers()
            while scheduler.last_epoch < self.current_epoch:
                scheduler.step()

    def on_train_epoch_end(self) -> None:
        if self._train_sums is not None:
            means = self._train_sums / self._train_count
            self.log_dict({f"train_epoch/{k}": v for k, v in zip(self._train_names, means)}, sync_dist=True)

    def configure_model(self) -> None:
        """Speed options: channels-last memory format for conv nets, torch.compile of the loss."""
        self.channels_last = self.trains_channels_last(self.trainer.strategy.root_device)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if self.hparams.get("compile") and "loss_terms" not in self.__dict__:  # compile once, not per fit
            self.loss_terms = torch.compile(self.loss_terms)

    def trains_channels_last(self, device: torch.device) -> bool:
        """`model.channels_last`; auto: on for nets that measured faster so on AMX CPUs (docs/speed.md)."""
        option = self.hparams.get("channels_last", False)
        if option != "auto":
            return bool(option)
        return getattr(self.net, "channels_last_pays", False) and device.type == "cpu" and amx_cpu()

    def on_after_batch_transfer(self, batch: Batch | list[Batch], dataloader_idx: int) -> Batch | list[Batch]:
        if not self.channels_last:
            return batch
        pairs = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in step_batches(batch)]
        return pairs if len(pairs) > 1 else pairs[0]

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """Adam (fused unless `model.fused_adam=false`) with `model.lr_schedule=cosine` or `model.lr_scheduler`."""
        adam = torch.optim.Adam(self.parameters(), **self.adam_options(self.hparams.lr))
        if self.hparams.get("lr_scheduler"):
            cls, settings = torch_scheduler(self.hparams.lr_scheduler)
            return {"optimizer": adam, "lr_scheduler": {"scheduler": cls(adam, **settings), "interval": "epoch"}}
        if self.hparams.get("lr_schedule", "constant") == "constant":
            return adam
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=self.planned_steps())
        return {"optimizer": adam, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    def adam_options(self, lr: float) -> dict[str, Any]:
        """Adam's settings beside its betas (`on_train_start` adapts them to CUDA graphs)."""
        return {"lr": lr, "eps": self.hparams.get("adam_eps", 1e-8), "weight_decay": self.hparams.weight_decay,
                "fused": self.hparams.get("fused_adam", True) or None}

    def on_train_start(self) -> None:
        """Optimisers fitted to this run (after a resume too): capturable, a device-tensor rate, for CUDA graphs."""
        graphed = bool(self.hparams.get("cuda_graph")) and self.device.type == "cuda"
        self.__dict__["_lean"] = self.lean_steps()
        for optimiser in self.trainer.optimizers:
            for group in optimiser.param_groups:
                lr = float(group["lr"])
                group["lr"], group["capturable"] = (torch.tensor(lr, device=self.device) if graphed else lr), graphed
            for state in optimiser.state.values() if graphed else ():
                if "step" in state:
                    state["step"] = state["step"].to(self.device, torch.float32)

    def planned_steps(self) -> int:
        """Optimiser steps this fit takes (Lightning's estimate counts Lightning batches, K steps each here)."""
        trainer = self.trainer
        batches = trainer.estimated_stepping_batches  # also has Lightning load the training data
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if not hasattr(sampler, "num_batches") or trainer.max_epochs in (None, -1):
            return int(batches)
        steps = sampler.num_batches() * trainer.max_epochs
        return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps

    def on_fit_start(self) -> None:
        """No NVML retries; denormals flushed (slow on CPUs); a fresh CUDA graph per fit (one device, no scaler)."""
        skip_missing_nvml()
        if self.hparams.get("flush_denormal", True):
            torch.set_flush_denormal(True)
        if not self.hparams.get("cuda_graph"):
            return
        require(self.trainer.world_size == 1, "model.cuda_graph=true trains on one device: set trainer.devices=1")
        require(self.trainer.precision != "16-mixed",
                "model.cuda_graph=true and trainer.precision=16-mixed (loss scaling): use bf16-mixed")
        self.__dict__["_step_graph"] = StepGraph(self, self.take_step)

    def on_fit_end(self) -> None:
        """Denormals back to IEEE behaviour for whatever the process does next (evaluation, another loop)."""
        if self.hparams.get("flush_denormal", True):
            torch.set_flush_denormal(False)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Carry an old checkpoint's automatic-loop step count over, or a resumed run would restart at step 0."""
        loops = checkpoint.get("loops", {}).get("fit_loop", {})
        automatic = loops.get(f"{AUTOMATIC}.optim_progress", {}).get("optimizer", {}).get("step")
        manual = loops.get(f"{MANUAL}.optim_step_progress")
        if automatic and manual is not None and not manual["total"]["completed"]:
            loops[f"{MANUAL}.optim_step_progress"] = copy.deepcopy(automatic)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the class (for `load_model`) and the weights' digest (a damaged file is refused when read)."""
        checkpoint["vae_lab_model"] = f"{type(self).__module__}.{type(self).__qualname__}"
        stamp(checkpoint)
