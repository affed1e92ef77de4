"""The LightningModule every model shares: steps, optimiser, logging of whatever terms a loss returns."""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.core.optimizer import LightningOptimizer

from vae_lab.checkpoints import stamp
from vae_lab.data.datamodule import step_batches
from vae_lab.errors import ConfigError, check_flag, check_number
from vae_lab.hardware import amx_cpu
from vae_lab.models.graphed import StepGraph
from vae_lab.models.likelihood import LIKELIHOODS, mean_image, nll
from vae_lab.models.reparam import ReparametrizationMixin, gaussian_log_density
from vae_lab.nets import NETS
from vae_lab.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]
LR_SCHEDULES = ("constant", "cosine")
CHANNELS_LAST = (True, False, "auto")
AUTOMATIC, MANUAL = "epoch_loop.automatic_optimization", "epoch_loop.manual_optimization"  # Lightning's loop keys
Posterior = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # z ~ q(z|x), its mean and log-variance
MAX_LATENT_DIM = 1024  # more than a 32² image's pixels; each dimension is logged (kl_dim/val/i) and traversed


class BaseVAE(ReparametrizationMixin, pl.LightningModule):
    """A VAE around any net from `vae_lab.nets`; subclasses change only `objective`."""

    conditional = False

    def __init__(self, net: DictConfig | dict, latent_dim: int = 10, num_classes: int = 10, beta: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, likelihood: str = "bernoulli", obs_sigma: float = 0.1,
                 fused_adam: bool = True, compile: bool = False, channels_last: bool | str = "auto",
                 lr_schedule: str = "constant", cuda_graph: bool = False, flush_denormal: bool = True) -> None:
        super().__init__()
        check_number("model.latent_dim", latent_dim, whole=True, minimum=1)
        check_number("model.num_classes", num_classes, whole=True, minimum=1)
        for key, value in {"fused_adam": fused_adam, "compile": compile, "cuda_graph": cuda_graph,
                           "flush_denormal": flush_denormal}.items():
            check_flag(f"model.{key}", value)
        _check(latent_dim <= MAX_LATENT_DIM, f"model.latent_dim={latent_dim}: at most {MAX_LATENT_DIM} (each dimension "
               "is a logged KL curve, kl_dim/val/i, and a traversal row; a code that wide is not a VAE's)")
        check_number("model.beta", beta, minimum=0)
        check_number("model.lr", lr, above=0)
        check_number("model.weight_decay", weight_decay, minimum=0)
        _check(likelihood in LIKELIHOODS, f"model.likelihood={likelihood!r}: choose one of {LIKELIHOODS}")
        check_number("model.obs_sigma", obs_sigma, above=0)
        _check(lr_schedule in LR_SCHEDULES, f"model.lr_schedule={lr_schedule!r}: choose one of {LR_SCHEDULES}")
        _check(not (cuda_graph and compile), "model.cuda_graph=true and model.compile=true: choose one")
        _check(channels_last in CHANNELS_LAST, f"model.channels_last={channels_last!r}: choose true, false or auto")
        net = OmegaConf.to_container(net, resolve=True) if isinstance(net, DictConfig) else dict(net)
        self.save_hyperparameters(ignore=["net"])  # collects the subclasses' arguments too
        self.hparams["net"] = net
        self.latent_dim, self.num_classes, self.beta = latent_dim, num_classes, beta
        self.net = build_net(net, latent_dim=latent_dim, label_dim=num_classes if self.conditional else 0)
        self.image_size = int(net.get("image_size", 28))
        self._train_sums: torch.Tensor | None = None
        self._train_count, self._train_names, self._train_batches = 0, [], 0
        self.automatic_optimization = False  # training_step takes its own steps: several per batch if asked
        self.__dict__["_step_graph"] = None  # a StepGraph from on_fit_start with model.cuda_graph=true; not a submodule
        self.channels_last = False  # the training layout `configure_model` chose

    # --- the model -------------------------------------------------------------------------------
    def condition(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """One-hot labels for conditional models, None for the others."""
        if not self.conditional:
            return None
        if y is None:
            raise ConfigError(f"{type(self).__name__} is conditional: it needs a label")
        return F.one_hot(y.long(), self.num_classes).float()

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x[, y]) as (mu, logvar), in fp32."""
        mu, logvar = self.net.encode(x, self.condition(y))
        return mu.float(), logvar.float()

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder logits for codes z (and labels y for conditional models)."""
        return self.net.decode(z, self.condition(y))

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The negative ELBO's parts in nats per image, plus this model's `loss`."""
        x, y = batch
        mu, logvar = self.encode(x, y)
        z = self.reparametrize(mu, logvar)
        logits = self.decode(z, y)
        kl, kl_dim = self.kl_terms(mu, logvar, z, y)
        terms = {"recon": nll(logits, x, self.hparams.likelihood, self.hparams.obs_sigma).mean(), "kl": kl.mean()}
        terms["nelbo"] = terms["recon"] + terms["kl"]  # −ELBO whatever the objective: comparable across β
        terms.update(self.objective(terms, (z, mu, logvar)))
        terms["kl_dim"], terms["z"] = kl_dim.mean(0), z
        return terms

    def prior(self, y: torch.Tensor | None) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        """Mean and log-variance of p(z | y): the standard normal unless a model learns its prior."""
        return 0.0, 0.0

    def kl_terms(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor,
                 y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """KL(q(z|x) || p(z|y)) per example (N) and its per-dimension split (N×D); z is q's sample.

        For a Gaussian prior both are analytic and the split sums to the total."""
        kl_dim = self.kl_per_dimension(mu, logvar, y)
        return kl_dim.sum(-1), kl_dim

    def kl_per_dimension(self, mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The KL each latent carries, per example (N×D): KL(q(z_d|x) || p(z_d|y)), analytic (docs/tensorboard.md)."""
        return self.kl_per_dim(mu, logvar, *self.prior(y))

    def log_prior(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """log p(z|y) summed over the last dimension, for codes z of shape (…, N, D)."""
        return gaussian_log_density(z, *self.prior(y)).sum(-1)

    def sample_latents(self, n: int, labels: torch.Tensor | None, temperature: float = 1.0) -> torch.Tensor:
        """n codes from p(z|labels), each standard deviation scaled by `temperature`."""
        return self.sample_prior(n, self.device, temperature, *self.prior(labels))

    def objective(self, terms: dict[str, torch.Tensor], posterior: Posterior) -> dict[str, torch.Tensor]:
        """recon + β·KL (β = 1: the VAE's negative ELBO); `posterior` = (z, μ, log σ²) for objectives that need it."""
        return {"loss": terms["recon"] + self.beta * terms["kl"]}

    # --- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int | None = None, labels: torch.Tensor | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
        """Images in [0, 1] decoded from prior samples (one per label for conditional models)."""
        if labels is not None and not self.conditional:
            raise ConfigError(f"{type(self).__name__} is not conditional: it takes no label")
        if self.conditional and labels is None:
            labels = torch.arange(n or self.num_classes, device=self.device) % self.num_classes
        n = len(labels) if labels is not None else n
        labels = None if labels is None else labels.to(self.device)
        z = self.sample_latents(n, labels, temperature)
        return mean_image(self.decode(z, labels))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder mean at the posterior mean: the deterministic reconstruction."""
        mu, _ = self.encode(x, y)
        return mean_image(self.decode(mu, y))

    # --- Lightning -------------------------------------------------------------------------------
    def _eval_step(self, batch: Batch, stage: str) -> torch.Tensor:
        """Validation/test: every term and the KL per dimension, averaged over the epoch by Lightning."""
        terms = self.loss_terms(batch)
        n = len(batch[0])
        shown = scalars(terms) if stage == "test" else self.curves(terms)  # test/nelbo: comparable across models
        self.log_dict({f"{stage}/{k}": v for k, v in shown.items() if k != "loss"}, batch_size=n, sync_dist=True)
        self.log(f"{stage}/loss", terms["loss"], prog_bar=True, batch_size=n, sync_dist=True)
        self.log_dict({f"kl_dim/{stage}/{i}": v for i, v in enumerate(terms["kl_dim"])}, batch_size=n, sync_dist=True)
        return terms["loss"]

    def loss_is_nelbo(self) -> bool:
        """Whether `loss` is the −ELBO itself (recon + KL), so that a `nelbo` curve would repeat it."""
        return self.beta == 1 and type(self).objective is BaseVAE.objective

    def curves(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The scalar terms drawn as training and validation curves: all but a `nelbo` that repeats `loss`."""
        shown = scalars(terms)
        if self.loss_is_nelbo():
            shown.pop("nelbo", None)
        return shown

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> None:
        """One optimiser step per (images, labels) pair: a batch is a pair, or a list of them (data.steps_per_batch).

        The last step's terms go to the logger on the batches Lightning writes out (every `log_every_n_steps`
        Lightning batches, counted over the whole run, resumed or not; none with 0), so with K steps per batch the
        curves have a point every K·N optimiser steps.
        """
        for pair in step_batches(batch):
            terms = self.curves(self.optimise(pair))
            self.record(terms, len(pair[0]))
        self._train_batches += 1  # this fit's Lightning batches
        if self.trainer._logger_connector.should_update_logs:  # Lightning's own test, so a resumed run logs in step
            logged = {k: v.detach().float() for k, v in terms.items()}
            self.log("train/loss", logged.pop("loss"), on_step=True, on_epoch=False, prog_bar=True)
            self.log_dict({f"train/{k}": v for k, v in logged.items()}, on_step=True, on_epoch=False)

    def optimise(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One training step on one batch (replayed from a CUDA graph with `model.cuda_graph=true`), then the
        learning-rate schedule's step; returns the loss terms."""
        graph = self.__dict__["_step_graph"]
        terms, graphed = graph(batch) if graph is not None else (self.take_step(batch), False)
        if graphed:  # Lightning counts the steps its optimiser wrappers take; a replayed graph bypasses them
            progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
            for _ in self.trainer.optimizers:
                progress.increment_ready()
                progress.increment_completed()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        return terms

    def take_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss and one Adam step on it; what a CUDA graph captures (subclasses with more optimisers override)."""
        optimiser = self.optimizers(use_pl_optimizer=not capturing(batch))
        terms = self.loss_terms(batch)
        self.descend(optimiser, terms["loss"])
        return terms

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
        self._train_sums, self._train_count = None, 0

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
        """`model.channels_last`: true, false, or auto — on for a net that measured faster with it
        (`channels_last_pays`: the Burgess net) on a CPU with AMX tiles, whose bf16 convolutions oneDNN runs
        channels-last; off elsewhere, where it measured no faster (docs/speed.md)."""
        option = self.hparams.get("channels_last", False)
        if option != "auto":
            return bool(option)
        return getattr(self.net, "channels_last_pays", False) and device.type == "cpu" and amx_cpu()

    def on_after_batch_transfer(self, batch: Batch | list[Batch], dataloader_idx: int) -> Batch | list[Batch]:
        if not self.channels_last:
            return batch
        pairs = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in step_batches(batch)]
        return pairs if len(pairs) > 1 else pairs[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """Adam (fused unless `model.fused_adam=false`); `model.lr_schedule=cosine` decays its rate to 0 by the last step."""
        adam = torch.optim.Adam(self.parameters(), **self.adam_options(self.hparams.lr))
        if self.hparams.get("lr_schedule", "constant") == "constant":
            return adam
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adam, T_max=self.planned_steps())
        return {"optimizer": adam, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}

    def adam_options(self, lr: float) -> dict[str, Any]:
        """Adam's settings beside its betas (`on_train_start` adapts them to CUDA graphs)."""
        return {"lr": lr, "weight_decay": self.hparams.weight_decay, "fused": self.hparams.get("fused_adam", True) or None}

    def on_train_start(self) -> None:
        """Fit the optimisers to this run: with CUDA graphs, capturable, the rate a device tensor (a graph reads it
        where the schedule writes it); without, a float. Runs after a resume, whose param groups are the saved run's."""
        graphed = bool(self.hparams.get("cuda_graph")) and self.device.type == "cuda"
        for optimiser in self.trainer.optimizers:
            for group in optimiser.param_groups:
                lr = float(group["lr"])
                group["lr"], group["capturable"] = (torch.tensor(lr, device=self.device) if graphed else lr), graphed
            for state in optimiser.state.values() if graphed else ():
                if "step" in state:
                    state["step"] = state["step"].to(self.device, torch.float32)

    def planned_steps(self) -> int:
        """Optimiser steps this fit will take: the sampler's batches per epoch × max_epochs, or max_steps if fewer.

        Lightning's `estimated_stepping_batches` counts Lightning batches, K optimiser steps each here.
        """
        trainer = self.trainer
        batches = trainer.estimated_stepping_batches  # also has Lightning load the training data
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if not hasattr(sampler, "num_batches") or trainer.max_epochs in (None, -1):
            return int(batches)
        steps = sampler.num_batches() * trainer.max_epochs
        return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps

    def on_fit_start(self) -> None:
        """Denormal floats flushed to zero while training (`model.flush_denormal`: on the CPU, arithmetic on them is
        many times slower, and the Burgess net's gradients and Adam moments produce them); a fresh CUDA graph per fit
        (one captured earlier points at parameters and state that may have moved), which needs one device and no
        loss scaling."""
        if self.hparams.get("flush_denormal", True):
            torch.set_flush_denormal(True)
        if not self.hparams.get("cuda_graph"):
            return
        _check(self.trainer.world_size == 1, "model.cuda_graph=true trains on one device: set trainer.devices=1")
        _check(self.trainer.precision != "16-mixed",
               "model.cuda_graph=true and trainer.precision=16-mixed (loss scaling): use bf16-mixed")
        self.__dict__["_step_graph"] = StepGraph(self, self.take_step)

    def on_fit_end(self) -> None:
        """Denormals back to IEEE behaviour for whatever the process does next (evaluation, another loop)."""
        if self.hparams.get("flush_denormal", True):
            torch.set_flush_denormal(False)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints from before the models took their own steps count them in Lightning's automatic loop:
        carry that count over, or a resumed run would restart its step (and the capacity C) at 0."""
        loops = checkpoint.get("loops", {}).get("fit_loop", {})
        automatic = loops.get(f"{AUTOMATIC}.optim_progress", {}).get("optimizer", {}).get("step")
        manual = loops.get(f"{MANUAL}.optim_step_progress")
        if automatic and manual is not None and not manual["total"]["completed"]:
            loops[f"{MANUAL}.optim_step_progress"] = copy.deepcopy(automatic)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the class, so `vae_lab.models.load_model` can rebuild any model from its checkpoint, and the
        weights' digest, so a damaged file is refused when read."""
        checkpoint["vae_lab_model"] = f"{type(self).__module__}.{type(self).__qualname__}"
        stamp(checkpoint)


def capturing(batch: Batch) -> bool:
    """Whether a CUDA graph is being captured on the stream this batch's step runs on."""
    return batch[0].is_cuda and torch.cuda.is_current_stream_capturing()


def scalars(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loggable terms: drop the per-dimension KL and the latent sample."""
    return {k: v for k, v in terms.items() if v.dim() == 0}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def build_net(net: dict[str, Any], **kwargs: Any) -> torch.nn.Module:
    """The net a config names (one of vae_lab's own, by exact name), its settings checked against its signature."""
    return NETS.build(net, "net", **kwargs)


MODELS = Registry("vae_lab.models", "models", lambda cls: issubclass(cls, BaseVAE))  # every model by exact name
