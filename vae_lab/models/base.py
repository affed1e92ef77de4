"""The VAE every model shares: net, loss terms in nats, sampling, logging; its training is `training.py`."""

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from vae_lab.checkpoints import plain
from vae_lab.errors import ConfigError, check_flag, check_number
from vae_lab.models.likelihood import LIKELIHOODS, mean_image, nll
from vae_lab.models.reparam import ReparametrizationMixin, gaussian_log_density
from vae_lab.models.training import Batch, TrainingModule, capturing, check_training_options, require
from vae_lab.nets import NETS
from vae_lab.registry import Registry

__all__ = ["MODELS", "BaseVAE", "Batch", "Posterior", "capturing"]  # what the objectives import from here
Posterior = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # z ~ q(z|x), its mean and log-variance
MAX_LATENT_DIM = 1024  # more than a 32² image's pixels; each dimension is logged (kl_dim/val/i) and traversed


class BaseVAE(ReparametrizationMixin, TrainingModule):
    """A VAE around any net from `vae_lab.nets`; subclasses change only `objective`."""

    conditional = False

    def __init__(self, net: DictConfig | dict, latent_dim: int = 10, num_classes: int = 10, beta: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, likelihood: str = "bernoulli", obs_sigma: float = 0.1,
                 fused_adam: bool = True, compile: bool = False, channels_last: bool | str = "auto",
                 lr_schedule: str = "constant", cuda_graph: bool = False, flush_denormal: bool = True,
                 adam_eps: float = 1e-8, kl_warmup_epochs: int = 0,
                 lr_scheduler: DictConfig | dict | None = None) -> None:
        super().__init__()
        check_number("model.latent_dim", latent_dim, whole=True, minimum=1)
        check_number("model.num_classes", num_classes, whole=True, minimum=1)
        for key, value in {"fused_adam": fused_adam, "compile": compile, "cuda_graph": cuda_graph,
                           "flush_denormal": flush_denormal}.items():
            check_flag(f"model.{key}", value)
        require(latent_dim <= MAX_LATENT_DIM, f"model.latent_dim={latent_dim}: at most {MAX_LATENT_DIM} (each dimension "
                 "is a logged KL curve, kl_dim/val/i, and a traversal row; a code that wide is not a VAE's)")
        check_number("model.beta", beta, minimum=0)
        check_number("model.lr", lr, above=0)
        check_number("model.weight_decay", weight_decay, minimum=0)
        require(likelihood in LIKELIHOODS, f"model.likelihood={likelihood!r}: choose one of {LIKELIHOODS}")
        check_number("model.obs_sigma", obs_sigma, above=0)
        check_number("model.kl_warmup_epochs", kl_warmup_epochs, whole=True, minimum=0)
        net, lr_scheduler = plain(net), plain(lr_scheduler)
        check_training_options(lr_schedule, cuda_graph, compile, channels_last, adam_eps, lr_scheduler)
        self.save_hyperparameters(ignore=["net", "lr_scheduler"])  # collects the subclasses' arguments too
        self.hparams["net"] = net
        if lr_scheduler is not None:
            self.hparams["lr_scheduler"] = lr_scheduler
        self.latent_dim, self.num_classes, self.beta = latent_dim, num_classes, beta
        self.net = NETS.build(net, "net", latent_dim=latent_dim, label_dim=num_classes if self.conditional else 0)
        self.image_size = int(net.get("image_size", 28))
        self.register_buffer("warmup", torch.ones(()), persistent=False)  # the KL's warm-up weight, this epoch

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
        """KL(q(z|x) || p(z|y)) per example (N) and per dimension (N×D); analytic for a Gaussian prior."""
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
        return {"loss": terms["recon"] + self.kl_weight() * terms["kl"]}

    def kl_weight(self) -> torch.Tensor | float:
        """β, times the warm-up's weight while training (`model.kl_warmup_epochs`); validation and test: β."""
        return self.beta * self.warmup if self.training and self.hparams.get("kl_warmup_epochs") else self.beta

    def on_train_epoch_start(self) -> None:
        """The KL warm-up's weight this epoch: epoch / kl_warmup_epochs (counted from 1), then 1 (Tomczak & Welling)."""
        super().on_train_epoch_start()
        epochs = self.hparams.get("kl_warmup_epochs")
        if epochs:
            self.warmup.fill_(min(1.0, (self.current_epoch + 1) / epochs))

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

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._eval_step(batch, "test")


def scalars(terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loggable terms: drop the per-dimension KL and the latent sample."""
    return {k: v for k, v in terms.items() if v.dim() == 0}


MODELS = Registry("vae_lab.models", "models", lambda cls: issubclass(cls, BaseVAE))  # every model by exact name
