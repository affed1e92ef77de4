"""The names a reader sees for metrics and settings: one scheme for report.md, TensorBoard and the explorer."""

from typing import Any

from vae_lab.metrics.disentanglement import PROPERTY

# What the timing pass measures per arm, with its header in the report (each shown as median (min–max)).
TIMING_HEADERS = {"train_images_per_second": "train img/s", "epoch_seconds": "epoch s",
                  "sample_images_per_second": "samples/s", "eval_seconds_per_10k": "eval s / 10k test images"}
# Metric → short header, in table order; metrics not named here follow, sorted.
HEADERS = {
    "test/loss": "loss", "test/nelbo": "−ELBO", "test/recon": "recon", "test/kl": "KL", "test/nll_iwae": "NLL (IWAE)",
    "test/mse": "MSE", "test/active_units": "active units", "test/fid": "FID", "test/cond_accuracy": "cond acc",
    "test/cond_accuracy_t0.5": "cond acc T=0.5", "test/class_entropy": "class entropy",
    "test/probe_accuracy": "probe acc",
    **{f"timing/{m}": f"{h} (timing pass)" for m, h in TIMING_HEADERS.items()},
    "time/train_seconds": "train s (wall clock)", "time/train_images_per_second": "images/s (wall clock)",
    "time/epoch_seconds": "epoch s (wall clock)", "time/sample_images_per_second": "samples/s (wall clock)",
    "time/eval_seconds": "eval s (wall clock)",
    "mem/peak_mb": "peak MB", "time/dci_seconds": "DCI s", "test/gaussian_total_correlation": "TC (Gaussian)",
    "test/udr": "UDR",
    **{f"test/{m}": f"{m} ({p})" for m, p in PROPERTY.items()},   # disentanglement, with the property it measures
}
# The columns a reader compares runs by: report.md's first table (the full table follows it).
HEADLINE = ("test/nelbo", "test/nll_iwae", "test/fid", "test/cond_accuracy", "test/active_units", "test/mig",
            "time/train_seconds")
# A setting's short name, by its last dotted part (`model.beta` and metrics.json's `beta` alike), in column order;
# a setting not named here is shown by its dotted key, after these.
KEY_HEADERS = {"model": "model", "net": "net", "dataset": "dataset", "beta": "β", "capacity_max": "C", "gamma": "γ",
               "variant": "variant", "lambda_od": "λ_od", "lambda_d": "λ_d", "latent_dim": "z",
               "prior_components": "K", "learned_prior": "learned prior", "lr": "lr", "image_size": "image",
               "epochs": "epochs", "max_epochs": "epochs", "train_subset": "train subset", "seed": "seed"}


def header(metric: str) -> str:
    """A metric's column name: its short name, or for one without, its key without the prefix, in words."""
    if metric in HEADERS:
        return HEADERS[metric]
    prefix, _, name = metric.partition("/")
    return name.replace("_", " ") + (" s" if prefix == "time" and name.endswith("_seconds") else "")


def key_header(key: str) -> str:
    """A setting's column name: KEY_HEADERS's by its last dotted part, else the dotted key itself."""
    return KEY_HEADERS.get(key.rsplit(".", 1)[-1], key)


def key_order(key: str) -> tuple[int, str]:
    """Where a setting's column goes: KEY_HEADERS's order, then the rest by key."""
    leaf = key.rsplit(".", 1)[-1]
    return (list(KEY_HEADERS).index(leaf) if leaf in KEY_HEADERS else len(KEY_HEADERS), key)


def setting_label(key: str, value: Any) -> str:
    """`β=4`, `data.batch_size=64`, `learned prior=True`: a setting as a label or a run's name shows it."""
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key_header(key)}={shown}"
