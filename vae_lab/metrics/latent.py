"""Latent-space metrics: posterior means, active units (Burda et al., 2016) and a linear probe."""

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


@torch.no_grad()
def encode_means(model: torch.nn.Module, test: Dataset, count: int,
                 batch: int = 500) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances (CPU) of a split's first `count` images, and their labels."""
    mus, logvars, ys = [], [], []
    for start in range(0, min(count, len(test)), batch):
        x, y = test[torch.arange(start, min(start + batch, count, len(test)))]
        mu, logvar = model.encode(x.to(model.device), y.to(model.device) if model.conditional else None)
        mus.append(mu.cpu())
        logvars.append(logvar.cpu())
        ys.append(y.cpu())
    return torch.cat(mus), torch.cat(logvars), torch.cat(ys)


def active_dims(mu: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Which latent dimensions are active: Cov_x(E_q[z_i|x]) above `threshold` (mu is N×D; a D-long bool tensor)."""
    return mu.float().var(dim=0) > threshold


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions have Cov_x(E_q[z_i|x]) above `threshold` (mu is N×D)."""
    return int(active_dims(mu, threshold).sum().item())


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = 100,
                 weight_decay: float = 1e-4) -> torch.nn.Linear:
    """Multinomial logistic regression on (x, y), full-batch L-BFGS from zero weights (deterministic)."""
    linear = torch.nn.Linear(x.shape[1], num_classes, device=x.device)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimiser = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(linear(x), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return linear


def linear_probe_accuracy(train_mu: torch.Tensor, train_y: torch.Tensor, test_mu: torch.Tensor,
                          test_y: torch.Tensor, num_classes: int = 10, steps: int = 100) -> float:
    """Test accuracy of a linear classifier from standardised μ to labels, fit on the train μ's."""
    train, test = train_mu.float(), test_mu.float().to(train_mu.device)
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)  # standardised by the train set's (constant: 0)
    train_x, test_x = (train - mean) / std, (test - mean) / std
    with torch.enable_grad():
        linear = fit_logistic(train_x, train_y.to(train_x.device).long(), num_classes, steps)
    with torch.no_grad():
        predicted = linear(test_x).argmax(1).cpu()
    return (predicted == test_y.cpu()).float().mean().item()
