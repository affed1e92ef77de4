"""The latent explorer without a browser: its session (state → images) and its server, through Gradio's client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.browser import free_port
from tests.explorer_helpers import tiny_checkpoint
from vae_lab.errors import ConfigError
from vae_lab.explorer.runs import candidates
from vae_lab.explorer.session import Catalogue, Session, to_uint8
from vae_lab.metrics.latent import active_dims
from vae_lab.models.likelihood import mean_image


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, data_dir, one_thread):
    """A CVAE with 8 latents and a VAE with 12 (untrained: what matters is that the page shows what they decode)."""
    root = tmp_path_factory.mktemp("explore")
    return (tiny_checkpoint(root / "cvae", "model=cvae", "model.latent_dim=8"),
            tiny_checkpoint(root / "vae", "model=vae", "model.latent_dim=12"))


@pytest.fixture(scope="module")
def shelf(checkpoints):
    return Catalogue(candidates([str(p) for p in checkpoints], None), kl_images=300)


@pytest.fixture(scope="module")
def pair(shelf) -> Session:
    return shelf.session(*shelf.names)


def model_image(loaded, z, label):
    """The model's own decode of z (its first latent_dim entries), as uint8."""
    y = torch.tensor([label]) if loaded.model.conditional else None
    with torch.no_grad():
        return to_uint8(mean_image(loaded.model.decode(torch.as_tensor(z[: loaded.latent_dim])[None].float(), y)))[0]


def is_prior_mean(pair, z, label):
    """Whether z is a mean of the first model's prior p(z|label) (a mixture's component), 0 beyond its latents."""
    means = torch.as_tensor(pair.first.model.prior(torch.tensor([label]))[0]).reshape(-1, pair.first.latent_dim)
    return not np.any(z[pair.first.latent_dim:]) and bool(torch.isclose(means, torch.as_tensor(z[:8])).all(1).any())


def test_two_models_share_the_sliders_they_have_and_say_so(pair):
    cvae = pair.models[0]
    assert pair.size == 12 and sorted(pair.order()) == list(range(12))
    assert pair.order()[:8] == np.argsort(-cvae.kl, kind="stable").tolist() and set(pair.order()[8:]) == {8, 9, 10, 11}
    assert all(cvae.kl[a] >= cvae.kl[b] for a, b in zip(pair.order()[:7], pair.order()[1:8]))
    assert "8 and 12 latents" in pair.note()
    x, y = cvae.test[torch.arange(300)]
    with torch.no_grad():
        mu, _ = cvae.model.encode(x, y)
    assert np.array_equal(cvae.active, active_dims(mu).numpy())


def test_a_code_decodes_as_each_model_decodes_it(pair):
    z = np.random.default_rng(0).normal(size=12).astype(np.float32)
    a, b = pair.decode(z, label=3)
    assert a.shape == b.shape == (28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, model_image(pair.models[0], z, 3)) and np.array_equal(b, model_image(pair.models[1], z, 0))
    assert not np.array_equal(pair.decode(z, label=7)[0], a)  # the CVAE's class changes its image…
    assert np.array_equal(pair.decode(z, label=7)[1], b)      # …and not the VAE's


def test_strips_encode_interpolate_and_prior(pair):
    z = np.zeros(12, np.float32)
    assert pair.traversal(z, pair.order()[0]).shape == (2 * 29 + 1, 9 * 29 + 1, 3)  # a row per model, 9 steps
    assert pair.traversal(z, 11).shape == (29 + 1, 9 * 29 + 1, 3)                  # latent 11: the VAE's only
    out = pair.encode(5)
    x, y = pair.first.test[torch.tensor([5])]
    with torch.no_grad():
        mu, _ = pair.first.model.encode(x, y)
    assert np.allclose(out["z"][:8], mu[0].numpy()) and not out["z"][8:].any()
    assert np.array_equal(out["image"], to_uint8(x)[0]) and out["label"] == int(y)
    assert out["about"].startswith(f"class {int(y)}")
    at, path = pair.interpolate(5, 9, 0.0)
    assert np.allclose(at, out["z"]) and np.allclose(pair.interpolate(5, 9, 1.0)[0], pair.encode(9)["z"])
    assert path.shape == (2 * 29 + 1, 9 * 29 + 1, 3)
    assert is_prior_mean(pair, pair.prior(0.0, label=2), 2) and pair.prior(1.0).std() > 0.3
    with pytest.raises(ConfigError, match="test image 10000: choose 0…9999"):
        pair.encode(10_000)


def test_only_the_checkpoints_given_are_listed_and_loaded(shelf, checkpoints, tmp_path):
    with pytest.raises(ConfigError, match="not one of the checkpoints given"):
        shelf.get(str(checkpoints[0]))
    with pytest.raises(ConfigError, match="give ckpt_path="):
        candidates(None, None)
    for job, beta in (("0", 4), ("1", 1)):  # a multirun folder: its runs by model, dataset, β, seed
        tiny_checkpoint(tmp_path / job, "model=beta_vae", f"model.beta={beta}", "net=mlp")
        (tmp_path / job / "metrics.json").write_text(json.dumps({"model": "beta_vae", "dataset": "mnist",
                                                                  "beta": beta, "seed": 3}))
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "metrics.json").write_text("{}")  # a run without a checkpoint is not listed
    listed = candidates(None, str(tmp_path))
    assert [c.name for c in listed] == ["beta_vae · mnist · β=1 · seed 3 · 1/last.ckpt",
                                        "beta_vae · mnist · β=4 · seed 3 · 0/last.ckpt"]


# ------------------------------------------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def server(shelf):
    """The page served on a free port of 127.0.0.1, and a Gradio client of it."""
    pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    from gradio_client import Client

    from vae_lab.explorer import page

    demo = page.build(shelf)
    url = page.launch(demo, "127.0.0.1", free_port())
    yield Client(url, verbose=False), url
    demo.close()


def read_png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_the_server_decodes_what_the_models_decode(server, pair, shelf):
    client, url = server
    assert url.startswith("http://127.0.0.1:")
    a, b = shelf.names
    client.predict(a, b, api_name="/choose")
    values = [0.0] * 12
    values[0], values[5] = 2.5, -1.25  # slider k holds latent order[k]
    image_a, image_b, code = client.predict(a, b, 4, *values, api_name="/slider_0")
    z = np.array(code["z"], np.float32)
    assert z[pair.order()[0]] == 2.5 and z[pair.order()[5]] == -1.25 and np.count_nonzero(z) == 2
    assert np.array_equal(read_png(image_a), model_image(pair.models[0], z, 4))
    assert np.array_equal(read_png(image_b), model_image(pair.models[1], z, 0))
    strip = read_png(client.predict(a, b, 4, *values, api_name="/strip_0"))
    assert np.array_equal(strip, pair.traversal(z, pair.order()[0], 4))
    other = client.predict(a, b, 9, *values, api_name="/set_class")
    assert np.array_equal(read_png(other[0]), model_image(pair.models[0], z, 9))


def test_the_server_draws_encodes_interpolates_and_downloads(server, pair, shelf):
    client, _ = server
    a, b = shelf.names
    out = client.predict(a, b, 2, 0.0, api_name="/draw")
    assert is_prior_mean(pair, np.array(out[-1]["z"], np.float32), 2)  # temperature 0: the prior's mean
    assert np.array_equal(read_png(out[12]), model_image(pair.models[0], np.array(out[-1]["z"], np.float32), 2))
    out = client.predict(a, b, 0, 7, api_name="/encode")
    z = np.array(out[-1]["z"], np.float32)
    assert np.allclose(z, pair.encode(7)["z"]) and out[12] == pair.encode(7)["label"]
    assert [out[k] for k in range(12)] == [round(float(z[d]), 3) for d in pair.order()]
    assert np.array_equal(read_png(out[13]), pair.encode(7)["image"]) and out[15].startswith("class ")
    assert np.array_equal(read_png(out[16]), model_image(pair.models[0], z, out[12]))
    out = client.predict(a, b, 0, 3, 4, 0.25, api_name="/interpolate")
    assert np.allclose(out[-2]["z"], pair.interpolate(3, 4, 0.25)[0])
    files = client.predict(a, b, 1, *([0.5] + [0.0] * 11), api_name="/download")
    names = sorted(Path(f).name for f in files)
    assert names == ["image_A.png", "image_B.png", "z.json", "z.npy"]
    saved = {Path(f).name: f for f in files}
    z = np.load(saved["z.npy"])
    assert json.loads(Path(saved["z.json"]).read_text())["z"] == pytest.approx(z.tolist())
    assert np.array_equal(read_png(saved["image_A.png"]), model_image(pair.models[0], z, 1))


def test_the_server_refuses_other_paths_and_bad_indices(server, shelf, checkpoints, tmp_path):
    from gradio_client.exceptions import AppError

    client, _ = server
    other = tiny_checkpoint(tmp_path / "other", "model=vae")  # a real checkpoint, but not given on the command line
    for name in (str(other), str(checkpoints[0])):
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict(name, None, api_name="/choose")
    with pytest.raises(AppError, match="test image 10000: choose 0…9999"):
        client.predict(shelf.names[0], None, 0, 10_000, api_name="/encode")
    assert set(shelf.loaded) <= set(shelf.names)


def test_the_server_refuses_non_finite_codes_and_other_sites(server, shelf):
    """Raw requests: a NaN or infinite slider value, temperature or t is one line, not a black image; a POST (a model
    run, an upload) from another site's page is refused before any work, and the page takes no upload at all."""
    import httpx

    _, url = server
    a = shelf.names[0]
    cases = [("slider_0", f'["{a}", null, 0, NaN{", 0" * 11}]', "z: every slider value must be a finite number"),
             ("download", f'["{a}", null, 0, NaN{", 0" * 11}]', "z: every slider value must be a finite number"),
             ("draw", f'["{a}", null, 0, NaN]', "temperature=nan: must be a finite number"),
             ("interpolate", f'["{a}", null, 0, 3, 4, NaN]', "t=nan: must be a finite number")]
    for api, data, message in cases:  # JSON as Python's json writes NaN: what a hand-made request may send
        answer = httpx.post(f"{url}gradio_api/run/{api}", content='{"data": ' + data + "}",
                            headers={"Content-Type": "application/json"})
        assert message in answer.text and answer.status_code >= 400, (api, answer.status_code, answer.text)
    host = url.split("//")[1].rstrip("/")
    upload = {"files": ("x.txt", b"payload", "text/plain")}
    foreign = httpx.post(f"{url}gradio_api/upload", files=upload, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    run = httpx.post(f"{url}gradio_api/call/reset", json={"data": [a, None, 0]}, headers={"Origin": "null"})
    assert run.status_code == 403
    own = httpx.post(f"{url}gradio_api/upload", files=upload, headers={"Origin": f"http://{host}"})
    assert own.status_code == 413  # same origin, but the page takes no uploads
    assert httpx.post(f"{url}gradio_api/call/reset", json={"data": [a, None, 0]},
                      headers={"Origin": f"http://{host}"}).status_code == 200


@pytest.mark.parametrize(("args", "message"), [
    (["port=99999"], "port=99999: must be a whole number ≥ 1 and ≤ 65535 or null"),
    (["host=not-a-host.invalid"], "host=not-a-host.invalid: not an address or host name this machine knows"),
    (["host=192.0.2.1"], "host=192.0.2.1: cannot serve there (Cannot assign requested address)"),
    (["port={busy}"], "port={busy}: in use on 127.0.0.1 by another program; choose another"),
])
def test_launch_options_are_one_line_before_any_model_loads(args, message, tmp_path):
    import socket

    from omegaconf import OmegaConf

    from tests.conftest import CONF
    from vae_lab.explore import check

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = OmegaConf.merge(OmegaConf.load(CONF / "explore.yaml"),
                              OmegaConf.from_dotlist([a.format(busy=port) for a in args]))
        with pytest.raises(ConfigError) as err:
            check(cfg)
    assert str(err.value).startswith(message.format(busy=port)), err.value


def test_a_ground_truth_image_shows_its_factor_values(tmp_path, data_dir):
    path = tiny_checkpoint(tmp_path / "shapes", "model=beta_vae", "data=shapes2d", "net.image_size=32")
    session = Catalogue(candidates([str(path)], None), kl_images=50).session(
        candidates([str(path)], None)[0].name)
    out = session.encode(3)
    _, factors = session.first.test[torch.tensor([3])]
    assert out["about"] == ", ".join(f"{n}={v}" for n, v in zip(session.first.factor_names, factors[0].tolist()))
    assert out["image"].shape == (32, 32) and out["label"] is None and session.first.class_names is None
