"""The latent explorer without a browser: its session (state → images) and its server, through Gradio's client."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.browser import free_port
from tests.explorer_helpers import tiny_checkpoint
from vae_lab.errors import ConfigError
from vae_lab.explorer.runs import candidates
from vae_lab.explorer.session import SPAN, Catalogue, Session, factor_names_of, pad_to, to_uint8
from vae_lab.metrics.latent import active_dims, encode_means
from vae_lab.models.likelihood import mean_image

CELL_A, CELL = 28, 32  # the CVAE's images (MLP net) and the β-VAE's (Burgess net): strips pad both to 32


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, data_dir, one_thread):
    """The project's defaults side by side (untrained: what matters is that the page shows what they decode): the
    CVAE (MLP, 28×28, 8 latents, a learned mixture prior p(z|y)) and a β-VAE (Burgess net, 32×32) with 12 latents."""
    root = tmp_path_factory.mktemp("explore")
    return (tiny_checkpoint(root / "cvae", "model=cvae"),
            tiny_checkpoint(root / "beta_vae", "model=beta_vae", "model.latent_dim=12"))


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


def prior_mean(pair, label):
    """The CVAE's prior mean for a class: its heaviest mixture component's mean."""
    model = pair.first.model
    with torch.no_grad():
        mu, _, log_pi = model.mixture(torch.tensor([label]))
    return mu[0, log_pi[0].argmax()].numpy()


def is_component_mean(pair, z, label):
    """Whether z is a mean of one of the CVAE's prior components for the label (0 beyond its latents)."""
    with torch.no_grad():
        means = pair.first.model.prior(torch.tensor([label]))[0][0]
    return not np.any(z[8:]) and bool(torch.isclose(means, torch.as_tensor(z[:8])).all(1).any())


def cells(strip, row, side=CELL, left=12):
    """The images of one row of a strip picture (grid padding 1, a label column of `left` pixels)."""
    top = 1 + row * (side + 1)
    count = (strip.shape[1] - left - 1) // (side + 1)
    return [strip[top:top + side, left + 1 + k * (side + 1): left + 1 + k * (side + 1) + side] for k in range(count)]


def padded(image28):
    """A 28×28 uint8 image as the strips show it in a 32×32 cell (grey frame), RGB."""
    x = torch.as_tensor(image28).float()[None, None] / 255
    return to_uint8(pad_to(x, CELL).expand(-1, 3, -1, -1))[0]


def test_the_kl_is_the_models_own_against_its_prior(pair):
    cvae = pair.first
    mu, logvar, y = encode_means(cvae.model, cvae.test, 300)
    with torch.no_grad():
        own = cvae.model.kl_per_dimension(mu, logvar, y).mean(0).numpy()
        standard = cvae.model.kl_per_dim(mu, logvar).mean(0).numpy()
    assert np.allclose(cvae.kl, own, atol=1e-5) and not np.allclose(cvae.kl, standard, atol=1e-2)
    assert np.array_equal(cvae.active, active_dims(mu).numpy())
    assert pair.order()[:8] == np.argsort(-cvae.kl, kind="stable").tolist() and set(pair.order()[8:]) == {8, 9, 10, 11}


def test_two_models_of_different_sizes_share_the_sliders_and_say_what_that_means(pair):
    note = pair.note()
    assert "A and B" in note and "its own meaning" in note and "A has 8 latents and B 12" in note
    z = np.random.default_rng(0).normal(size=12).astype(np.float32)
    a, b = pair.decode(z, label=3)
    assert a.shape == (CELL_A, CELL_A) and b.shape == (CELL, CELL) and a.dtype == np.uint8
    assert np.array_equal(a, model_image(pair.models[0], z, 3)) and np.array_equal(b, model_image(pair.models[1], z, 0))
    assert not np.array_equal(pair.decode(z, label=7)[0], a) and np.array_equal(pair.decode(z, label=7)[1], b)
    strip = pair.traversal(z, pair.order()[0], 3)
    assert strip.shape == (2 * 33 + 1, 12 + 9 * 33 + 1, 3)  # rows A and B, 9 steps, a label column
    for row in (0, 1):  # each row's label (dark text) beside it
        assert strip[1 + row * 33: (row + 1) * 33, :12].min() < 100
    assert pair.traversal(z, 11).shape == (33 + 1, 12 + 9 * 33 + 1, 3)  # latent 11: B's only, one labelled row


def test_a_learned_prior_starts_at_the_class_mean_and_the_sliders_cover_its_mass(pair):
    for label in (0, 7):
        z = pair.centre(label)
        assert np.allclose(z[:8], prior_mean(pair, label)) and not z[8:].any()
    reach = pair.reach()
    with torch.no_grad():
        mu, logvar = pair.first.model.prior(torch.arange(10))
    lo, hi = (mu - SPAN * (0.5 * logvar).exp()).amin((0, 1)), (mu + SPAN * (0.5 * logvar).exp()).amax((0, 1))
    assert (reach[:8, 0] <= lo.numpy()).all() and (reach[:8, 1] >= hi.numpy()).all() and reach[:8, 1].max() > SPAN
    assert (reach[8:] == [-SPAN, SPAN]).all()  # B's own latents: its standard normal prior
    assert is_component_mean(pair, pair.prior(0.0, label=2), 2) and pair.prior(1.0).std() > 0.3


def test_encode_and_interpolate_show_their_ends_under_their_classes(pair):
    out = pair.encode(5)
    x, y = pair.first.test[torch.tensor([5])]
    with torch.no_grad():
        mu, _ = pair.first.model.encode(x, y)
    assert np.allclose(out["z"][:8], mu[0].numpy()) and not out["z"][8:].any()
    assert np.array_equal(out["image"], to_uint8(x)[0]) and out["label"] == int(y)
    assert out["about"].startswith(f"class {int(y)}")
    i, j = 0, next(k for k in range(1, 50) if int(pair.first.test[torch.tensor([k])][1]) != int(y))
    ends = [int(pair.first.test[torch.tensor([k])][1]) for k in (i, j)]
    path = pair.interpolate(i, j, 0.25)
    assert np.allclose(path["z"], 0.75 * pair.encode(i)["z"] + 0.25 * pair.encode(j)["z"]) and path["label"] == ends[0]
    assert path["strip"].shape == (2 * 33 + 1, 12 + 11 * 33 + 1, 3)  # start image, 9 steps, end image
    row_a = cells(path["strip"], 0)
    assert np.array_equal(row_a[0], padded(pair.encode(i)["image"])) and np.array_equal(row_a[-1],
                                                                                      padded(pair.encode(j)["image"]))
    model = pair.first.model
    with torch.no_grad():  # step 4 of 9 (half way): the two classes' one-hot labels half and half
        half = 0.5 * (pair.encode(i)["z"] + pair.encode(j)["z"])
        blend = 0.5 * F.one_hot(torch.tensor(ends), 10).float().sum(0, keepdim=True)
        expected = to_uint8(mean_image(model.net.decode(torch.as_tensor(half[:8])[None], blend)))[0]
    assert np.array_equal(row_a[5], padded(expected))
    assert "blended" in path["about"] and "held" in pair.interpolate(i, i, 0.5)["about"]
    with pytest.raises(ConfigError, match="test image 10000: choose 0…9999"):
        pair.encode(10_000)


def test_a_latent_is_named_by_the_factor_it_best_predicts():
    rng = np.random.default_rng(0)
    factors = torch.as_tensor(rng.integers(0, 5, (400, 2)))
    mu = torch.stack([factors[:, 1].float() + 0.01 * torch.randn(400), torch.randn(400),
                      factors[:, 0].float()], 1)
    assert factor_names_of(mu, factors, ["shape", "scale"]) == ["scale", None, "shape"]
    pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    from vae_lab.explorer.page import slider_label

    model = SimpleNamespace(latent_dim=2, kl=np.array([1.5, 0.0]), active=np.array([True, False]), factors=["shape", None])
    session = SimpleNamespace(models=[model])
    assert [slider_label(d, session) for d in (0, 1)] == ["shape · z0 · 1.50 nats", "z1 · 0.00 nats (unused)"]


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

SLOTS = 12  # sliders on the page; then the outputs of `Page.view`: image A, image B, code, strip, strip line


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


def check_view(pair, view, label, dim):
    """Sliders, image A, code and strip show one code and class: the strip is latent `dim`'s traversal around it."""
    view = list(view)
    values, (image_a, image_b, code, strip, line) = view[:SLOTS], view[SLOTS:SLOTS + 5]
    z = np.array(code["z"], np.float32)
    assert code["class"] == label and values == [pytest.approx(float(z[d])) for d in pair.order()]
    assert np.array_equal(read_png(image_a), model_image(pair.models[0], z, label))
    assert np.array_equal(read_png(image_b), model_image(pair.models[1], z, label))
    assert np.array_equal(read_png(strip), pair.traversal(z, dim, label)) and f"slider z{dim} " in line
    return z


def test_every_control_keeps_sliders_image_and_strip_on_one_code(server, pair, shelf):
    client, url = server
    assert url.startswith("http://127.0.0.1:")
    a, b = shelf.names
    out = client.predict(a, b, api_name="/choose")
    sliders, (label, note), slot = out[:SLOTS], out[SLOTS:SLOTS + 2], out[-1]  # (B's column: not an output here)
    assert label["value"] == 0 and [c[0] for c in label["choices"]] == [str(k) for k in range(10)]
    assert "A and B" in note["value"] and note["visible"] and slot == 0
    reach = pair.reach()
    assert [(s["minimum"], s["maximum"]) for s in sliders] == [tuple(reach[d]) for d in pair.order()]
    assert sliders[0]["label"].startswith(f"z{pair.order()[0]} · A ") and "not in A" in sliders[-1]["label"]
    z = check_view(pair, [s["value"] for s in sliders] + list(out[SLOTS + 2:SLOTS + 7]), 0, pair.order()[0])
    assert np.allclose(z, pair.centre(0), atol=0.0051)  # the start: class 0's prior mean
    values = [0.0] * SLOTS
    values[0], values[5] = 2.5, -1.25  # slider k holds latent order[k]
    image_a, image_b, code = client.predict(a, b, 4, *values, api_name="/slider_5")
    assert np.array_equal(read_png(image_b), model_image(pair.models[1], z := np.array(code["z"], np.float32), 4))
    z = np.array(code["z"], np.float32)
    assert z[pair.order()[0]] == 2.5 and z[pair.order()[5]] == -1.25 and np.count_nonzero(z) == 2
    assert np.array_equal(read_png(image_a), model_image(pair.models[0], z, 4))
    strip, line, slot = client.predict(a, b, 4, *values, api_name="/strip_5")
    assert slot == 5 and f"slider z{pair.order()[5]} " in line and np.array_equal(read_png(strip), pair.traversal(z, pair.order()[5], 4))
    moved = client.predict(a, b, 9, {"z": z.tolist(), "class": 4}, 5, *values, api_name="/set_class")
    shifted = check_view(pair, moved, 9, pair.order()[5])  # the new class, and the strip of the latent last moved
    assert np.allclose(shifted, np.round(z - pair.centre(4) + pair.centre(9), 2), atol=1e-5)
    check_view(pair, client.predict(a, b, 2, 5, api_name="/reset"), 2, pair.order()[5])
    drawn = check_view(pair, client.predict(a, b, 2, 1.0, 5, api_name="/draw"), 2, pair.order()[5])
    assert not np.allclose(drawn, pair.centre(2), atol=0.01)
    out = client.predict(a, b, 0, 7, 5, api_name="/encode")
    encoded = pair.encode(7)
    label = encoded["label"]
    assert out[SLOTS] == label and out[SLOTS + 3].startswith("class ")
    assert np.array_equal(read_png(out[SLOTS + 1]), encoded["image"])
    z = check_view(pair, list(out[:SLOTS]) + list(out[SLOTS + 4:SLOTS + 9]), label, pair.order()[5])
    assert np.allclose(z, encoded["z"], atol=0.006)


def test_the_server_interpolates_and_downloads(server, pair, shelf):
    client, _ = server
    a, b = shelf.names
    out = client.predict(a, b, 0, 3, 4, 0.25, api_name="/interpolate")
    path = pair.interpolate(3, 4, 0.25)
    assert np.allclose(out[SLOTS + 3]["z"], path["z"], atol=0.006) and out[SLOTS] == path["label"]
    assert np.array_equal(read_png(out[SLOTS + 4]), path["strip"]) and out[SLOTS + 5] == path["about"]
    files = client.predict(a, b, 1, *([0.5] + [0.0] * 11), api_name="/download")
    names = sorted(Path(f).name for f in files)
    assert names == ["image_A.png", "image_B.png", "z.json", "z.npy"]
    saved = {Path(f).name: f for f in files}
    z = np.load(saved["z.npy"])
    record = json.loads(Path(saved["z.json"]).read_text())
    assert record["z"] == pytest.approx(z.tolist()) and record["label"] == 1
    assert np.array_equal(read_png(saved["image_A.png"]), model_image(pair.models[0], z, 1))


def test_a_mistake_shows_under_its_control_only(server, shelf, checkpoints, tmp_path):
    from gradio_client.exceptions import AppError

    client, _ = server
    other = tiny_checkpoint(tmp_path / "other", "model=vae")  # a real checkpoint, but not given on the command line
    for name in (str(other), str(checkpoints[0])):
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict(name, None, api_name="/choose")
    a, b = shelf.names
    out = client.predict(a, b, 0, 10_000, 0, api_name="/encode")
    assert "test image 10000: choose 0…9999" in out[-1]["value"] and out[-1]["visible"]
    assert all(o == {"__type__": "update"} for o in out[:-1])  # nothing else marked or changed
    out = client.predict(a, b, 0, 3, 10_000, 0.5, api_name="/interpolate")
    assert "test image 10000" in str(out[-1])
    assert set(shelf.loaded) <= set(shelf.names)


def test_the_server_refuses_non_finite_codes_and_other_sites(server, shelf):
    """Raw requests: a NaN or infinite slider value, temperature or t is one line, not a black image; a POST (a model
    run, an upload) from another site's page is refused before any work, and the page takes no upload at all."""
    import httpx

    _, url = server
    a = shelf.names[0]
    cases = [("slider_0", f'["{a}", null, 0, NaN{", 0" * 11}]', "z: every slider value must be a finite number"),
             ("download", f'["{a}", null, 0, NaN{", 0" * 11}]', "z: every slider value must be a finite number"),
             ("draw", f'["{a}", null, 0, NaN, 0]', "variety=nan: must be a finite number"),
             ("interpolate", f'["{a}", null, 0, 3, 4, NaN]', "fraction=nan: must be a finite number")]
    for api, data, message in cases:  # JSON as Python's json writes NaN: what a hand-made request may send
        answer = httpx.post(f"{url}gradio_api/run/{api}", content='{"data": ' + data + "}",
                            headers={"Content-Type": "application/json"})
        # refused: an error, or (draw, interpolate) only the message under the control, nothing redrawn
        redrawn = answer.status_code < 400 and ".png" in answer.text
        assert message in answer.text and not redrawn, (api, answer.status_code, answer.text[:500])
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
    assert len(session.first.factors) == session.first.latent_dim


def test_a_fashion_models_classes_are_garment_names(tmp_path, data_dir):
    """The class menu (the candidates' names) and an encoded image's line name Fashion-MNIST's garments."""
    from vae_lab.data.mnist import CLASS_NAMES

    listed = candidates([str(tiny_checkpoint(tmp_path / "fashion", "model=cvae", "data=fashion_mnist"))], None)
    names = list(listed[0].class_names)
    assert names == CLASS_NAMES["fashion_mnist"] and names[:2] == ["T-shirt/top", "Trouser"]
    out = Catalogue(listed, kl_images=50).session(listed[0].name).encode(0)
    assert out["about"] == f"class {out['label']}: {names[out['label']]}"


def test_every_control_has_a_line_of_help(shelf):
    """A menu shows its own `info` line; any other control has a help line (or a slider's `info`) after it, before
    its group ends (where its mistakes show, or the pictures' column); the latent sliders: the one line above them."""
    pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    from vae_lab.explorer import page

    helped, waiting = [], []
    for c in page.build(shelf).config["components"]:
        props, name = c["props"], c["props"].get("label") or c["props"].get("value")
        kinds = props.get("elem_classes", [])
        if props.get("visible") is False or (c["type"] == "slider" and name.startswith("z")):
            continue
        assert not (waiting and ("problem" in kinds or c["type"] == "image")), waiting
        assert c["type"] != "dropdown" or props.get("info"), name
        if "help" in kinds or props.get("info"):
            helped, waiting = helped + waiting + [name], []
        elif c["type"] in ("slider", "number", "button"):
            waiting.append(name)
    assert {"model A", "random design", "any", "start from it", "how far from the first to the second",
            "download this design (image and its code)"} <= set(helped)
