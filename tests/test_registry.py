"""A checkpoint rebuilds only vae_lab's own classes, by exact name: crafted files run nothing on any path (issue 32).

Each crafted file passes `weights_only` loading (plain values only); what it names must still never be imported,
resolved by attribute walk or called.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import vae_lab
from tests.conftest import cli_env, run_cli_cases
from tests.test_bad_input import MLP, write_checkpoint
from vae_lab.data import DATAMODULES, datamodule_class
from vae_lab.data.datamodule import datamodule_from_checkpoint
from vae_lab.errors import CheckpointError, ConfigError
from vae_lab.models import MODELS, checkpoint_settings, load_model
from vae_lab.models.vae import VAE
from vae_lab.nets import NETS
from vae_lab.registry import check_settings

REGISTRIES = (NETS, MODELS, DATAMODULES)


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """The issue's crafted checkpoints: a net that truncates a file, a net that loads a run folder's hubconf.py, a
    model class naming a module to import; and the victim file and the marker hubconf.py would write."""
    folder = tmp_path_factory.mktemp("crafted")
    victim, marker = folder / "victim.txt", folder / "ran.txt"
    victim.write_text("precious\n")
    (folder / "hubconf.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef net(**kw):\n    return None\n")
    truncate = {"_target_": "vae_lab.nets.torch._export.logging.basicConfig", "filename": str(victim),
                "filemode": "w", "force": True, "format": "owned"}
    hub = {"_target_": "vae_lab.nets.torch.hub.load", "repo_or_dir": str(folder), "model": "net", "source": "local"}
    hparams = dict(VAE(net=MLP, latent_dim=2).hparams)
    files = {
        "truncate": write_checkpoint(folder / "truncate" / "checkpoints" / "last.ckpt",
                                     hyper_parameters={**hparams, "net": truncate}),
        "hub": write_checkpoint(folder / "hub" / "checkpoints" / "last.ckpt", hyper_parameters={**hparams, "net": hub}),
        "zen": write_checkpoint(folder / "zen" / "checkpoints" / "last.ckpt", vae_lab_model="this.Zen"),
        "walk": write_checkpoint(folder / "walk" / "checkpoints" / "last.ckpt",
                                 vae_lab_model="vae_lab.models.base.torch.hub.load"),
    }
    return folder, files, victim, marker


def test_crafted_checkpoints_run_nothing_in_the_api(crafted) -> None:
    _, files, victim, marker = crafted
    for path in files.values():
        with pytest.raises(CheckpointError, match="not one of vae_lab's"):
            load_model(path)
    assert victim.read_text() == "precious\n" and not marker.exists()


def test_crafted_checkpoints_run_nothing_in_any_entry_point(crafted, tmp_path) -> None:
    _, files, victim, marker = crafted
    lines = []
    for name, path in files.items():
        lines.append(["vae_lab.generate", f"ckpt_path={path}", f"out={tmp_path / 'g.png'}"])
        if name in ("truncate", "hub"):
            lines += [["vae_lab.evaluate", f"ckpt_path={path}", f"out={tmp_path / 'm.json'}"],
                      ["vae_lab.train", f"ckpt_path={path}", "net=mlp", f"hydra.run.dir={tmp_path / 'resume'}"]]
    for line, result in zip(lines, run_cli_cases("-", lines), strict=True):
        assert result.returncode == 2, (line, result.stderr[-1500:])
        assert "Traceback" not in result.stderr, result.stderr[-1500:]
    assert victim.read_text() == "precious\n" and not marker.exists()
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "m.json").exists()


def test_explorer_imports_nothing_a_checkpoint_names(crafted) -> None:
    """`this.Zen` (the Zen of Python prints on import): neither `ckpt_path=` nor `run=` imports it."""
    folder, files, _, _ = crafted
    code = ("import sys\nfrom vae_lab.explorer.runs import candidates\n"
            "from vae_lab.errors import CheckpointError, ConfigError\n"
            f"for args in ([{str(files['zen'])!r}], None), (None, {str(folder)!r}):\n"
            "    try:\n        candidates(*args)\n    except (CheckpointError, ConfigError) as err:\n"
            "        print('refused:', err)\n"
            "print('imported' if 'this' in sys.modules else 'clean')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("refused:") == 2 and done.stdout.strip().endswith("clean"), done.stdout
    assert "Beautiful is better" not in done.stdout


def test_checkpoint_settings_checked_against_the_signature(tmp_path) -> None:
    hparams = dict(VAE(net=MLP, latent_dim=2).hparams)
    bad = {"unknown model key": {**hparams, "bogus": 1},
           "wrong type": {**hparams, "beta": "abc"},
           "non-plain value": {**hparams, "lr": {"_target_": "os.system"}},
           "nested target in net": {**hparams, "net": {**MLP, "hidden": {"_target_": "os.system", "command": "x"}}},
           "hydra key in net": {**hparams, "net": {**MLP, "_recursive_": True}},
           "net key the model sets": {**hparams, "net": {**MLP, "latent_dim": 3}}}
    for settings in bad.values():
        with pytest.raises(CheckpointError):
            checkpoint_settings(tmp_path / "x.ckpt", {"hyper_parameters": settings}, VAE)
    assert checkpoint_settings(tmp_path / "x.ckpt", {"hyper_parameters": hparams}, VAE) == hparams


def test_datamodule_only_from_the_registry() -> None:
    with pytest.raises(ConfigError, match="not one of vae_lab's datasets"):
        datamodule_from_checkpoint({"datamodule_hyper_parameters": {"name": "os.system"}})
    with pytest.raises(ConfigError, match="has no such setting"):
        datamodule_from_checkpoint({"datamodule_hyper_parameters": {"name": "mnist", "_target_": "os.system"}})
    assert datamodule_class("fashion_mnist").__name__ == "MNISTDataModule"


@functools.cache
def chains(depth: int = 2) -> frozenset[str]:
    """Attribute chains from every vae_lab module, `depth` attributes deep (`vae_lab.nets.torch.hub`)."""
    found: set[str] = set()
    modules = [vae_lab, *(importlib.import_module(m.name) for m in pkgutil.walk_packages(vae_lab.__path__, "vae_lab.")
                          if not m.name.endswith("__main__"))]
    frontier = [(m.__name__, m) for m in modules]
    for _ in range(depth):
        nxt = []
        for prefix, obj in frontier:
            for name in dir(obj):
                if name.startswith("__"):
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:  # noqa: BLE001, S112 (an attribute that raises is not a class)
                    continue
                chain = f"{prefix}.{name}"
                found.add(chain)
                if inspect.ismodule(value) or inspect.isclass(value):
                    nxt.append((chain, value))
        frontier = nxt
    return frozenset(found)


def test_no_attribute_chain_resolves() -> None:
    """Every chain reachable from vae_lab's modules is refused by every registry, but a class's own exact name."""
    own = {name for registry in REGISTRIES for name in registry.classes}
    walked = chains()
    assert "vae_lab.nets.torch.hub" in walked and len(walked) > 10_000
    for chain in walked - own:
        for registry in REGISTRIES:
            with pytest.raises(ConfigError):
                registry.get(chain, "x")
    for registry in REGISTRIES:
        for name, cls in registry.classes.items():
            assert registry.get(name, "x") is cls and name == f"{cls.__module__}.{cls.__qualname__}"
            assert name.startswith(registry.package + ".")


def test_every_walked_net_target_is_refused_by_the_loading_path(tmp_path) -> None:
    """The chains under vae_lab.nets and vae_lab.models (what a crafted net or model names), through the checkpoint
    check itself."""
    hparams = dict(VAE(net=MLP, latent_dim=2).hparams)
    targets = [c for c in chains() if c.startswith(("vae_lab.nets.", "vae_lab.models.")) and c not in NETS.classes]
    assert len(targets) > 1000
    for target in targets:
        with pytest.raises(CheckpointError):
            checkpoint_settings(tmp_path / "x.ckpt", {"hyper_parameters": {**hparams, "net": {"_target_": target}}},
                                VAE)


def test_schema_types() -> None:
    """The signature is the schema: types from annotations, unknown keys refused, given keys refused."""
    from vae_lab.nets.mlp import MLPNet

    check_settings(MLPNet, {"image_size": 28, "hidden": [8, 8]}, "net")
    for settings, words in [({"image_size": 2.5}, "must be a whole number"), ({"hidden": 3}, "must be a list"),
                            ({"width": 3}, "no such setting"), ({"image_size": True}, "must be a whole number")]:
        with pytest.raises(ConfigError, match=words):
            check_settings(MLPNet, settings, "net")
    with pytest.raises(ConfigError, match="set by vae_lab"):
        check_settings(MLPNet, {"latent_dim": 3}, "net", given=("latent_dim",))
