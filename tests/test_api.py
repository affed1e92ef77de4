"""The Python API (vae_lab/api.py): wrong arguments are one ValueError naming the argument, right ones work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vae_lab
from vae_lab.models.cvae import CVAE
from vae_lab.models.vae import VAE

MLP = {"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [16]}


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VAE(MLP, latent_dim=3).eval()


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return CVAE(MLP, latent_dim=3).eval()


X = torch.rand(4, 1, 28, 28)
Y = torch.tensor([0, 3, 9, 1])
NAN_X = X.clone()
NAN_X[0, 0, 0, 0] = float("nan")
# (model, function, arguments, the error's start)
CASES = [
    ("vae", "encode", (X.numpy(),), "x: a torch.Tensor of images, not ndarray"),
    ("vae", "encode", ((X * 255).to(torch.uint8),), "x: images are floating-point numbers, not torch.uint8"),
    ("vae", "encode", (X[0],), "x: shape (1, 28, 28), but VAE takes N×1×28×28 images; one is x[None]"),
    ("vae", "encode", (torch.rand(4, 1, 32, 32),), "x: shape (4, 1, 32, 32), but VAE takes N×1×28×28 images"),
    ("vae", "encode", (torch.rand(4, 3, 28, 28),), "x: shape (4, 3, 28, 28)"),
    ("vae", "encode", (NAN_X,), "x: 1 value is NaN or infinite"),
    ("vae", "reconstruct", (X * 255,), "x: images are in [0, 1]; these go from"),
    ("vae", "decode", (torch.randn(4, 5),), "z: shape (4, 5), but VAE takes N×3 codes"),
    ("vae", "decode", (torch.randn(3),), "z: shape (3,), but VAE takes N×3 codes; one is z[None]"),
    ("vae", "decode", (torch.full((2, 3), float("inf")),), "z: 6 values are NaN or infinite"),
    ("vae", "decode", ([[0.0, 0.0, 0.0]],), "z: a torch.Tensor of codes, not list"),
    ("cvae", "encode", (X,), "y: CVAE is conditional: give a label per image (0…9)"),
    ("cvae", "encode", (X, torch.tensor([0, 3, 10, 1])), "y: labels are 0…9; these go from 0 to 10"),
    ("cvae", "decode", (torch.randn(4, 3), torch.tensor([0, -1, 2, 1])), "y: labels are 0…9; these go from -1 to 2"),
    ("cvae", "reconstruct", (X, Y[:3]), "y: shape (3,): one label per image, 4 in all"),
    ("cvae", "encode", (X, Y.float()), "y: labels are whole numbers (torch.long), not torch.float32"),
    ("cvae", "traverse", (X, Y[:, None]), "y: shape (4, 1): one label per image, 4 in all"),
    ("cvae", "decode", (torch.randn(4, 3), [0, 1, 2, 3]), "y: a torch.Tensor of labels, not list"),
    ("vae", "sample", (), {"label": 3}, "label=3: VAE is not conditional; leave label out"),
    ("cvae", "sample", (), {"label": 10}, "label=10: must be a whole number ≥ 0 and ≤ 9"),
    ("vae", "sample", (), {"n": 0}, "n=0: must be a whole number ≥ 1"),
    ("vae", "sample", (), {"temperature": float("nan")}, "temperature=nan: must be a finite number"),
    ("vae", "traverse", (X,), {"steps": 1}, "steps=1: must be a whole number ≥ 2"),
    ("vae", "traverse", (X,), {"span": -1.0}, "span=-1.0: must be a number > 0"),
    (None, "encode", (X,), "model: a vae_lab model (vae_lab.load_model(ckpt_path)), not dict"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}-{c[-1][:40]}" for c in CASES])
def test_a_wrong_argument_is_one_value_error_naming_it(case, request):
    name, function, args, *kwargs, message = case
    model = request.getfixturevalue(name) if name else {"not": "a model"}
    with pytest.raises(ValueError) as err:
        getattr(vae_lab, function)(model, *args, **(kwargs[0] if kwargs else {}))
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(("argument", "message"), [
    ({"n": -1}, "n=-1: must be a whole number ≥ 0 or null"), ({"split": "dev"}, "split='dev': choose one of"),
    ({"map_location": "gpu"}, "map_location='gpu': not a device")])
def test_load_model_and_load_data_check_their_arguments_before_reading(argument, message, tmp_path):
    function = vae_lab.load_model if "map_location" in argument else vae_lab.load_data
    with pytest.raises(ValueError, match=f"^{message}"):
        function(tmp_path / "absent.ckpt", **argument)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_this_machine_lacks_is_named():
    with pytest.raises(ValueError, match="^map_location='cuda:1': this machine has no CUDA GPUs"):
        vae_lab.load_model("absent.ckpt", map_location="cuda:1")


def test_right_arguments_give_the_right_values(vae, cvae):
    """Other float dtypes are the same images; labels on a CVAE and ignored by a VAE."""
    mu, _ = vae_lab.encode(vae, X)
    assert torch.allclose(vae_lab.encode(vae, X.double())[0], mu) and mu.dtype == torch.float32
    assert torch.equal(vae_lab.encode(vae, X, torch.tensor([99]))[0], mu)  # an unconditional model ignores y
    images = vae_lab.decode(cvae, torch.zeros(4, 3), Y)
    assert images.shape == X.shape and bool(((0 <= images) & (images <= 1)).all())
    assert vae_lab.sample(cvae, n=3, label=9).shape == (3, 1, 28, 28)
    assert vae_lab.reconstruct(vae, np.float32(0.5) * X).shape == X.shape
