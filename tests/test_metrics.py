"""Evaluation metrics on known-answer cases: exact likelihoods, planted latents, stub generators, tiny real models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vae_lab.data.mnist import MNISTDataModule
from vae_lab.errors import ConfigError
from vae_lab.metrics import classifier as classifier_module
from vae_lab.metrics import evaluate_model, evaluation_layout
from vae_lab.metrics import fid as fid_module
from vae_lab.metrics.classifier import accuracy, get_classifier, to_28
from vae_lab.metrics.fid import fid, fid_against, real_statistics
from vae_lab.metrics.latent import active_units, linear_probe_accuracy
from vae_lab.metrics.likelihood import (
    CPU_DECODES,
    CPU_PASS_FLOATS,
    decoder_in,
    iwae_bound,
    iwae_nll,
    output_layer,
    widest_layer,
)
from vae_lab.metrics.samples import class_entropy, conditional_accuracy, entropy_of_predictions
from vae_lab.models.cvae import CVAE
from vae_lab.models.likelihood import nll
from vae_lab.models.vae import VAE

MLP = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [64]}
BURGESS = {"_target_": "vae_lab.nets.burgess.BurgessNet", "image_size": 32}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist(data_dir) -> MNISTDataModule:
    data = MNISTDataModule("mnist", str(data_dir), train_subset=2000, download=False)
    data.setup()
    return data


def train_briefly(model: VAE, data: MNISTDataModule, steps: int = 150) -> VAE:
    """A few hundred Adam steps, so the posterior is informative and the IWAE gap is visible."""
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    train = data.splits["train"]
    for _ in range(steps):
        loss = model.loss_terms(train[torch.randint(0, len(train), (128,))])["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def vae(mnist) -> VAE:
    return train_briefly(VAE(MLP), mnist)


@pytest.fixture(scope="module")
def tiny_classifier(data_dir, tmp_path_factory) -> nn.Module:
    return get_classifier(data_dir, "mnist", width=8, epochs=5, max_steps=40, train_subset=2000,
                          cache_dir=tmp_path_factory.mktemp("classifiers"))


def z_blind_vae(mu: float, logvar: float, latent_dim: int = 2) -> VAE:
    """A VAE whose decoder ignores z and whose q(z|x) = N(mu, e^logvar) for every x: log p(x) is known exactly."""
    model = VAE(MLP, latent_dim=latent_dim).eval()
    encoder_out, decoder_out = model.net.encoder[-1], model.net.decoder[-1]
    with torch.no_grad():
        encoder_out.weight.zero_()
        encoder_out.bias.copy_(torch.tensor([mu] * latent_dim + [logvar] * latent_dim))
        decoder_out.weight.zero_()
    return model


# --- likelihood ----------------------------------------------------------------------------------
def exact_nll(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """−log p(x) of a z-blind VAE: p(x) = ∫ p(x|z) p(z) dz = p(x|·)."""
    return nll(model.decode(torch.zeros(len(x), model.latent_dim)), x, model.hparams.likelihood)


@pytest.mark.parametrize("samples, chunk", [(1, 1), (300, 64)])
def test_iwae_is_exact_when_q_is_the_prior_and_decoder_ignores_z(mnist, samples, chunk):
    model = z_blind_vae(0.0, 0.0)
    x, y = mnist.splits["test"][torch.arange(8)]
    assert torch.allclose(iwae_bound(model, x, y, samples, chunk), exact_nll(model, x), rtol=1e-5)


def test_iwae_converges_to_the_exact_nll_and_one_sample_gives_the_elbo(mnist):
    torch.manual_seed(0)
    model = z_blind_vae(0.3, 0.5)
    x, y = mnist.splits["test"][torch.arange(4)]
    exact = exact_nll(model, x)
    assert torch.allclose(iwae_bound(model, x, y, samples=5000, chunk=512), exact, atol=0.02)
    elbo = model.loss_terms((x.repeat(2000, 1, 1, 1), None))["loss"]  # recon + analytic KL, β = 1
    one_sample = iwae_bound(model, x.repeat(2000, 1, 1, 1), None, samples=1, chunk=1)
    assert one_sample.mean().item() == pytest.approx(elbo.item(), abs=4 * one_sample.std().item() / math.sqrt(8000))
    assert elbo.item() > exact.mean().item() + 0.1


def test_one_sample_bound_is_the_elbo_in_expectation(vae, mnist):
    torch.manual_seed(1)
    x, _ = mnist.splits["test"][torch.arange(16)]
    many = x.repeat(400, 1, 1, 1)
    one_sample = iwae_bound(vae, many, None, samples=1, chunk=1)
    elbo = vae.loss_terms((many, None))["loss"].item()
    noise = one_sample.std().item() / math.sqrt(len(many))
    assert one_sample.mean().item() == pytest.approx(elbo, abs=6 * noise)


def test_more_importance_samples_tighten_the_bound(vae, mnist):
    torch.manual_seed(2)
    x, y = mnist.splits["test"][torch.arange(64)]
    bounds = [iwae_bound(vae, x, y, samples=k, chunk=25).mean().item() for k in (1, 10, 100)]
    elbo = vae.loss_terms((x.repeat(50, 1, 1, 1), None))["loss"].item()
    assert bounds[0] > bounds[1] > bounds[2]
    assert bounds[2] < elbo - 0.5


def test_iwae_nll_averages_over_batches(mnist):
    model = z_blind_vae(0.0, 0.0)
    data = mnist.splits["test"]
    batches = [data[index] for index in torch.arange(30).split(7)]
    expected = exact_nll(model, data[torch.arange(30)][0]).mean().item()
    assert iwae_nll(model, batches, samples=3, chunk=2) == pytest.approx(expected, rel=1e-5)


def test_a_seeded_bound_draws_the_same_samples(vae, mnist):
    x, y = mnist.splits["test"][torch.arange(16)]
    batches = [(x, y)]
    same = [iwae_nll(vae, batches, samples=20, chunk=20, seed=3) for _ in range(2)]
    assert same[0] == same[1] != iwae_nll(vae, batches, samples=20, chunk=20, seed=4)


@pytest.mark.parametrize("net", [MLP, BURGESS])
def test_the_bf16_bound_stays_within_hundredths_of_a_nat_of_fp32(net, mnist):
    """bf16 decodes with the same samples: each image's bound moves by bf16's rounding, the mean by far less."""
    torch.manual_seed(0)
    model = train_briefly(VAE(net), mnist, steps=60) if net is MLP else VAE(net).eval()
    x, y = mnist.splits["test"][torch.arange(32)]
    x = x if net is MLP else nn.functional.pad(x, (2, 2, 2, 2))
    bounds = {precision: iwae_bound(model, x, y, samples=50, chunk=50, decoder=decoder_in(model, precision),
                                    generator=torch.Generator().manual_seed(0)) for precision in ("fp32", "bf16")}
    gap = bounds["bf16"] - bounds["fp32"]
    assert gap.abs().max() < 0.5 and abs(gap.mean()) < 0.05


def test_the_output_layer_is_the_one_making_the_logits():
    assert output_layer(VAE(BURGESS)).out_channels == 1  # the image layer, not the wider transposed conv before it
    mlp = CVAE(MLP)
    assert output_layer(mlp) is mlp.net.decoder[-1]


def test_a_bf16_copy_adds_the_output_bias_in_fp32():
    model = CVAE(MLP).eval()
    with torch.no_grad():
        model.net.decoder[-1].weight.zero_()  # the logits are the bias alone
        model.net.decoder[-1].bias.fill_(0.3001)  # no bf16 number: rounded, the logits would move
    copy, labels = decoder_in(model, "bf16"), torch.zeros(2).long()
    logits = copy.decode(torch.zeros(2, model.latent_dim, dtype=torch.bfloat16), labels)
    assert copy.net.decoder[0].weight.dtype == torch.bfloat16 and logits.dtype == torch.float32
    assert torch.equal(logits, model.decode(torch.zeros(2, model.latent_dim), labels))
    assert next(model.parameters()).dtype == torch.float32  # the model itself is untouched


def test_a_bf16_bound_decodes_a_conditional_model(mnist):
    torch.manual_seed(0)
    model = CVAE(MLP).eval()
    x, y = mnist.splits["test"][torch.arange(8)]
    bound = iwae_bound(model, x, y, samples=10, chunk=10, decoder=decoder_in(model, "bf16"))
    assert bound.shape == (8,) and torch.isfinite(bound).all()


def test_an_unknown_precision_is_one_line():
    with pytest.raises(ConfigError, match="eval.iwae_precision='fp8': choose one of"):
        decoder_in(VAE(MLP), "fp8")


def test_bf16_is_refused_for_a_gaussian_decoder():
    with pytest.raises(ConfigError, match="is for Bernoulli decoders: a gaussian likelihood"):
        decoder_in(VAE(MLP, likelihood="gaussian"), "bf16")
    assert decoder_in(VAE(MLP, likelihood="gaussian"), "fp32") is not None


def test_the_cpu_bound_decodes_in_cache_sized_passes(mnist, monkeypatch):
    model = z_blind_vae(0.0, 0.0)
    x, y = mnist.splits["test"][torch.arange(50)]
    rows, decode = [], model.decode
    monkeypatch.setattr(model, "decode", lambda z, y=None: rows.append(len(z)) or decode(z, y))
    bound = iwae_bound(model, x, y, samples=300, chunk=300)
    rows = rows[1:]  # the first decode is widest_layer's probe
    assert max(rows) <= CPU_DECODES < 50 * 300 and sum(rows) == 50 * 300
    assert torch.allclose(bound, exact_nll(model, x), rtol=1e-5)


def test_a_cpu_pass_holds_no_layer_output_over_its_float_budget(monkeypatch):
    torch.manual_seed(0)
    model = VAE(BURGESS).eval()
    assert widest_layer(model) == 32 * 16 * 16  # the maps before the image layer
    x = torch.rand(20, 1, 32, 32).round()
    rows, decode = [], model.decode
    monkeypatch.setattr(model, "decode", lambda z, y=None: rows.append(len(z)) or decode(z, y))
    iwae_bound(model, x, samples=100, chunk=100)
    passes = rows[1:]  # the first decode is widest_layer's probe
    assert sum(passes) == 20 * 100 and max(passes) * 32 * 16 * 16 <= CPU_PASS_FLOATS < CPU_DECODES * 32 * 16 * 16


def test_evaluation_runs_conv_weights_channels_last_and_restores_them():
    torch.manual_seed(0)
    model = VAE(BURGESS).eval()
    z = torch.randn(64, model.latent_dim)
    with torch.no_grad():
        before = model.decode(z)
        with evaluation_layout(model):
            assert model.net.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
            inside = model.decode(z)
    assert all(p.is_contiguous() for p in model.parameters())
    assert torch.allclose(inside, before, atol=1e-4)
    model.to(memory_format=torch.channels_last)  # a model trained channels-last keeps its layout
    with evaluation_layout(model):
        pass
    assert model.net.conv[0].weight.is_contiguous(memory_format=torch.channels_last)


# --- latent --------------------------------------------------------------------------------------
def test_active_units_counts_dimensions_whose_means_vary():
    torch.manual_seed(0)
    assert active_units(torch.full((500, 6), 0.7)) == 0
    mu = torch.cat([torch.randn(500, 3), 0.05 * torch.randn(500, 2), torch.full((500, 1), 3.0)], dim=1)
    assert active_units(mu) == 3
    assert active_units(mu, threshold=1e-4) == 5


def test_probe_reads_codes_that_encode_the_label():
    torch.manual_seed(0)
    y = torch.randint(0, 10, (3000,))
    codes = torch.nn.functional.one_hot(y, 10).float() + 0.1 * torch.randn(3000, 10)
    codes = torch.cat([codes, torch.randn(3000, 6)], dim=1)
    assert linear_probe_accuracy(codes[:2000], y[:2000], codes[2000:], y[2000:], 10) > 0.99


def test_probe_on_random_codes_is_near_chance_and_deterministic():
    torch.manual_seed(0)
    codes, y = torch.randn(4000, 10), torch.randint(0, 10, (4000,))
    first = linear_probe_accuracy(codes[:2000], y[:2000], codes[2000:], y[2000:], 10)
    assert first < 0.15
    assert linear_probe_accuracy(codes[:2000], y[:2000], codes[2000:], y[2000:], 10) == first


# --- classifier and FID --------------------------------------------------------------------------
def test_classifier_is_trained_cached_and_reused(tiny_classifier, data_dir, tmp_path_factory, monkeypatch, mnist):
    """Cached per recipe: the same request reuses it; another recipe, or the default one, never takes it."""
    cache = next(p for p in tmp_path_factory.getbasetemp().glob("classifiers*"))
    tiny = {"width": 8, "epochs": 5, "max_steps": 40, "train_subset": 2000}
    [weights] = cache.glob("mnist-*.pt")  # not mnist.pt, the name of the default recipe's cache
    assert weights.with_suffix(".json").is_file() and not (cache / "mnist.pt").exists()
    assert tiny_classifier.test_accuracy > 0.6
    assert accuracy(tiny_classifier, mnist.splits["test"]) == pytest.approx(tiny_classifier.test_accuracy)
    trained = []
    monkeypatch.setattr(classifier_module, "train_and_cache", lambda *a, **k: trained.append(a[3].name))
    monkeypatch.setattr(classifier_module, "load_classifier", lambda weights, device: weights.name)
    assert get_classifier(data_dir, "mnist", cache_dir=cache, **tiny) == weights.name and not trained
    get_classifier(data_dir, "mnist", cache_dir=cache, **{**tiny, "width": 16})
    get_classifier(data_dir, "mnist", cache_dir=cache)
    assert trained[0].startswith("mnist-") and trained[0] != weights.name and trained[1] == "mnist.pt"
    (cache / "mnist.pt").write_bytes(weights.read_bytes())  # a default-named cache trained another way
    get_classifier(data_dir, "mnist", cache_dir=cache)
    assert trained[2] == "mnist.pt"  # is trained again


def test_classifier_takes_any_image_size(tiny_classifier, mnist):
    x, _ = mnist.splits["test"][torch.arange(200)]
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    assert torch.equal(to_28(padded), x)
    with torch.no_grad():
        big = torch.nn.functional.interpolate(x, size=64, mode="bilinear")
        agree = (tiny_classifier(big).argmax(1) == tiny_classifier(x).argmax(1)).float().mean()
    assert tiny_classifier.features(big).shape == (200, tiny_classifier.num_features)
    assert agree > 0.85


def test_fid_is_zero_for_identical_sets_and_large_for_noise(tiny_classifier, mnist):
    torch.manual_seed(0)
    x, _ = mnist.splits["train"][torch.arange(1000)]
    same = fid(x, x.clone(), tiny_classifier)
    other_digits = fid(x[:500], x[500:], tiny_classifier)
    noise = fid(x, torch.rand_like(x), tiny_classifier)
    assert abs(same) < 1e-3
    assert noise > 20 * other_digits > 0


def test_the_real_images_fid_statistics_are_cached_and_recomputed_for_other_images_or_classifier(
        tiny_classifier, mnist, data_dir, tmp_path, monkeypatch):
    """Computed once per (images, classifier): reused from the cache, recomputed when either changes."""
    import copy

    x, _ = mnist.splits["train"][torch.arange(400)]
    fake, _ = mnist.splits["train"][torch.arange(400, 800)]
    stats = real_statistics(x, tiny_classifier, 200, tmp_path)
    assert len(list(tmp_path.glob("real-*.pt"))) == 1
    assert fid_against(stats, fake, tiny_classifier, 200) == pytest.approx(fid(x, fake, tiny_classifier, 200), rel=1e-6)
    computed = []
    update = fid_module._update
    monkeypatch.setattr(fid_module, "_update", lambda m, images, real, b: (computed.append(real), update(m, images, real, b)))
    again = real_statistics(x.clone(), tiny_classifier, 200, tmp_path)
    assert not computed and all(torch.equal(again[k], stats[k]) for k in stats)  # read back, not recomputed
    other = copy.deepcopy(tiny_classifier)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    real_statistics(x, other, 200, tmp_path)  # another classifier
    fashion = MNISTDataModule("fashion_mnist", str(data_dir), image_size=28, download=False)
    fashion.setup()
    real_statistics(fashion.splits["test"][torch.arange(400)][0], tiny_classifier, 200, tmp_path)  # another dataset
    assert computed == [True, True] and len(list(tmp_path.glob("real-*.pt"))) == 3


# --- samples -------------------------------------------------------------------------------------
class StubGenerator(nn.Module):
    """Generates 'images' whose first pixel stores a class: the requested one, or a fixed/random one."""

    def __init__(self, conditional: bool, mode: str = "label") -> None:
        super().__init__()
        self.conditional, self.num_classes, self.mode, self.device = conditional, 10, mode, torch.device("cpu")

    def generate(self, n=None, labels=None, temperature=1.0) -> torch.Tensor:
        n = len(labels) if labels is not None else n
        cls = {"label": labels, "random": torch.randint(0, 10, (n,)), "constant": torch.full((n,), 3)}[self.mode]
        images = torch.zeros(n, 1, 28, 28)
        images[:, 0, 0, 0] = cls.float() / 10
        return images


class StubClassifier(nn.Module):
    """Reads the class back from the first pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 10).round().long(), 10).float()


def test_conditional_accuracy_compares_with_the_requested_label():
    assert conditional_accuracy(StubGenerator(True, "label"), StubClassifier(), per_class=50) == 1.0
    torch.manual_seed(0)
    ignores_labels = conditional_accuracy(StubGenerator(True, "random"), StubClassifier(), per_class=300)
    assert ignores_labels == pytest.approx(0.1, abs=0.03)


def test_class_entropy_is_ln10_when_uniform_and_zero_when_collapsed():
    torch.manual_seed(0)
    assert class_entropy(StubGenerator(False, "random"), StubClassifier(), n=10000) == pytest.approx(
        math.log(10), abs=0.01)
    assert class_entropy(StubGenerator(False, "constant"), StubClassifier(), n=500) == 0.0
    assert entropy_of_predictions(torch.arange(10).repeat(7), 10) == pytest.approx(math.log(10))


# --- everything together -------------------------------------------------------------------------
@pytest.mark.parametrize("model_cls", [VAE, CVAE])
def test_evaluate_model_returns_every_metric(model_cls, vae, mnist, tiny_classifier):
    torch.manual_seed(0)
    model = vae if model_cls is VAE else model_cls(MLP).eval()
    out = evaluate_model(model, mnist, tiny_classifier, iwae_samples=5, iwae_chunk=2, max_test_images=100,
                         probe_train_images=500, fid_samples=200, per_class=10)
    keys = {"test/mse", "test/nll_iwae", "test/active_units", "test/fid", "test/class_entropy",
            "test/probe_accuracy", "time/sample_images_per_second", "time/iwae_seconds", "test/mig", "test/sap",
            "test/explicitness", "test/explicitness_train", "test/dci_completeness", "test/dci_informativeness",
            "test/dci_informativeness_train"}
    keys |= {"test/cond_accuracy", "test/cond_accuracy_t0.5"} if model.conditional else set()
    parts = ["eval_encode", "iwae", "mse", "probe", "class_metrics", "fid_samples", "fid_real", "fid_features",
             "class_entropy"] + (["cond_accuracy"] if model.conditional else [])
    keys |= {f"time/{part}_seconds" for part in parts}  # each part of the evaluation timed
    assert set(out) == keys and all(math.isfinite(v) for v in out.values())
    assert 0 <= out["test/class_entropy"] <= math.log(10) + 1e-6 and 0 <= out["test/active_units"] <= 10
    assert out["test/nll_iwae"] > 0 and out["time/sample_images_per_second"] > 0
    if model_cls is VAE:
        assert out["test/probe_accuracy"] > 0.5 and out["test/active_units"] >= 1


def test_split_batches_are_sized_for_progress_bars_and_cover_the_first_images():
    from vae_lab.data.batches import ResidentImages
    from vae_lab.metrics import SplitBatches

    images = torch.arange(1050, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    split = ResidentImages(images, torch.arange(1050) % 10)
    for limit, sizes in ((None, [500, 500, 50]), (300, [300]), (1000, [500, 500])):
        batches = SplitBatches(split, torch.device("cpu"), batch_size=500, limit=limit)
        assert len(batches) == len(sizes) and [len(x) for x, _ in batches] == sizes
        labels = torch.cat([y for _, y in batches])
        assert torch.equal(labels, torch.arange(sum(sizes)) % 10)  # in order, twice iterable
