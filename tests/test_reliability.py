"""Nothing lost, nothing run that should not be: safe checkpoint loading, atomic writes, one run per folder, and a
resume that ends bit for bit where the uninterrupted run does."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_cfg, run_cli_cases
from vae_lab.checkpoints import SafeCheckpointIO, read_checkpoint, stamp
from vae_lab.errors import CheckpointError, ConfigError, RunFolderError, StorageError
from vae_lab.files import write_atomically
from vae_lab.run_folder import claim

# Two Lightning batches per epoch: enough for the resumed epoch to draw noise and take a shuffled order.
TINY = ["net=mlp", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false", "data.train_subset=600", "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=1", "eval.enabled=false"]


def train_tiny(folder: Path, *overrides: str) -> dict:
    """One tiny run (or resume) through `vae_lab.train.train`, as the CLI runs it."""
    from vae_lab.train import train

    return train(compose_cfg(folder, *TINY, *overrides))


@pytest.fixture(scope="module")
def first_epoch(tmp_path_factory, data_dir, one_thread) -> Path:
    """A run folder after one epoch of a two-epoch plan: as a run killed after its first checkpoint leaves it."""
    folder = tmp_path_factory.mktemp("first_epoch")
    train_tiny(folder, "trainer.max_epochs=1")
    (folder / "metrics.json").unlink()  # a killed run writes none
    return folder


@pytest.fixture()
def ckpt(first_epoch, tmp_path) -> Path:
    """A copy of that run's last.ckpt."""
    return Path(shutil.copy(first_epoch / "checkpoints" / "last.ckpt", tmp_path / "last.ckpt"))


class Payload:
    """Unpickling this runs a shell command: what a crafted checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(folder: Path) -> tuple[Path, Path]:
    """A .ckpt whose pickle would create a file when unpickled, and that file's path."""
    marker = folder / "pwned"
    path = folder / "crafted.ckpt"
    torch.save({"vae_lab_model": "vae_lab.models.vae.VAE", "state_dict": {}, "hyper_parameters": Payload(marker)}, path)
    return path, marker


# --- loading runs no code ------------------------------------------------------------------------------------
def test_a_crafted_checkpoint_runs_nothing_wherever_it_is_read(tmp_path, data_dir):
    from vae_lab.evaluate import evaluate
    from vae_lab.generate import generate
    from vae_lab.train import check

    path, marker = crafted(tmp_path)
    readers = {
        "read_checkpoint": lambda: read_checkpoint(path),
        "Lightning's resume": lambda: SafeCheckpointIO().load_checkpoint(path),
        "train": lambda: check(compose_cfg(tmp_path / "run", f"ckpt_path={path}")),
        "generate": lambda: generate(compose_cfg(tmp_path, f"ckpt_path={path}", f"out={tmp_path}/x.png",
                                                 config="generate")),
        "evaluate": lambda: evaluate(compose_cfg(tmp_path, f"ckpt_path={path}", config="evaluate")),
    }
    for name, read in readers.items():
        with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors"):
            read()
        assert not marker.exists(), name


def test_checkpoints_hold_only_plain_values(ckpt):
    checkpoint = torch.load(ckpt, weights_only=True)  # raises on any class but tensors and plain containers
    assert checkpoint["vae_lab_model"] == "vae_lab.models.vae.VAE" and len(checkpoint["vae_lab_digest"]) == 64


def test_a_checkpoint_naming_code_instead_of_a_model_is_refused(ckpt):
    from vae_lab.models import load_model

    checkpoint = torch.load(ckpt, weights_only=True)
    for key, value in (("vae_lab_model", "os.system"),
                       ("hyper_parameters", {**checkpoint["hyper_parameters"],
                                             "net": {"_target_": "os.system", "command": "true"}})):
        torch.save({**checkpoint, key: value}, ckpt)
        with pytest.raises(CheckpointError, match="not one of vae_lab"):
            load_model(ckpt)


def test_a_flipped_bit_is_refused(ckpt):
    weights = torch.load(ckpt, weights_only=True)["state_dict"]
    name = max(weights, key=lambda k: weights[k].numel())
    raw = bytearray(ckpt.read_bytes())
    at = raw.find(weights[name].numpy().tobytes()[:64]) + 1000  # inside the largest tensor's stored bytes
    raw[at] ^= 0x10
    ckpt.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="do not match the digest written with them"):
        read_checkpoint(ckpt)


def test_damaged_or_non_finite_optimizer_state_is_refused_on_resume(ckpt, tmp_path):
    """A resume continues from Adam's moments as much as from the weights: a flipped bit or a NaN there is refused."""
    from vae_lab.train import check

    checkpoint = torch.load(ckpt, weights_only=True)
    assert len(checkpoint["vae_lab_optimizer_digest"]) == 64
    moments = checkpoint["optimizer_states"][0]["state"][0]["exp_avg_sq"]
    moments.view(torch.int32).view(-1)[0] ^= 1 << 20  # one flipped bit, the digest as written
    torch.save(checkpoint, ckpt)
    with pytest.raises(CheckpointError, match="its optimizer state does not match the digest written with it"):
        read_checkpoint(ckpt)
    moments.view(-1)[0] = float("nan")
    stamp(checkpoint)  # as a diverged run would have written it: the digest matches
    torch.save(checkpoint, ckpt)
    with pytest.raises(CheckpointError, match=r"non-finite optimizer state \(NaN or inf\) in \[0\].state\[0\]"
                                              ".exp_avg_sq"):
        check(compose_cfg(tmp_path / "run", *TINY, f"ckpt_path={ckpt}"))


def test_non_finite_weights_are_refused_by_generate_and_evaluate(ckpt, tmp_path):
    from vae_lab.evaluate import evaluate
    from vae_lab.generate import generate

    checkpoint = torch.load(ckpt, weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name][0] = float("nan")
    stamp(checkpoint)  # as a diverged run would have written it: the digest matches
    torch.save(checkpoint, ckpt)
    for run in (lambda: generate(compose_cfg(tmp_path, f"ckpt_path={ckpt}", f"out={tmp_path}/x.png",
                                             config="generate")),
                lambda: evaluate(compose_cfg(tmp_path, f"ckpt_path={ckpt}", config="evaluate"))):
        with pytest.raises(CheckpointError, match=f"non-finite weights \\(NaN or inf\\) in {name}"):
            run()
    assert not (tmp_path / "x.png").exists()


# --- atomic writes -------------------------------------------------------------------------------------------
def enospc_after(nbytes: int):
    """A torch.save that writes `nbytes` of the file, then finds the disk full."""
    def save(obj, file):
        file.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save


def test_a_full_disk_mid_checkpoint_keeps_the_last_good_one(ckpt, monkeypatch):
    before = ckpt.read_bytes()
    checkpoint = torch.load(ckpt, weights_only=True)
    monkeypatch.setattr("vae_lab.checkpoints.torch.save", enospc_after(len(before) // 2))
    with pytest.raises(StorageError, match=r"last.ckpt: No space left on device; the previous last.ckpt is kept"):
        SafeCheckpointIO().save_checkpoint(checkpoint, ckpt)
    assert ckpt.read_bytes() == before and os.listdir(ckpt.parent) == ["last.ckpt"]  # no temporary file left
    read_checkpoint(ckpt)


def test_every_trainer_writes_checkpoints_through_the_safe_plugin(tmp_path):
    from vae_lab.train import build

    _, _, trainer = build(compose_cfg(tmp_path, *TINY), logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, SafeCheckpointIO)


def test_results_are_written_whole_or_not_at_all(tmp_path):
    from vae_lab.results import write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"status": "ok"})
    with pytest.raises(StorageError, match="metrics.json: No space left on device; the previous metrics.json is kept"):
        write_atomically(path, lambda file: enospc_after(3)(None, file))
    assert json.loads(path.read_text()) == {"status": "ok"} and os.listdir(tmp_path) == ["metrics.json"]


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): scripts/full_disk.sh shows the same on a real run")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_keeps_the_last_good_checkpoint(small_tmpfs):
    path = small_tmpfs / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(100_000)}}, path)  # 400 kB: fits
    before = path.read_bytes()
    with pytest.raises(StorageError, match="No space left on device; the previous last.ckpt is kept"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(200_000)}}, path)  # 800 kB more: does not
    assert path.read_bytes() == before and os.listdir(small_tmpfs) == ["last.ckpt"]


FULL_DISK = """
import errno, os, runpy, sys
from pathlib import Path
from tensorboard.compat.tensorflow_stub.io import gfile

append = gfile.LocalFileSystem.append

def append_until_full(self, filename, file_content, binary_mode=False):  # full once the first checkpoint is written
    if (Path(os.fsdecode(filename)).parents[2] / "checkpoints" / "last.ckpt").exists():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return append(self, filename, file_content, binary_mode)

gfile.LocalFileSystem.append = append_until_full
sys.argv = ["vae_lab.train", *sys.argv[1:]]
runpy.run_module("vae_lab.train", run_name="__main__", alter_sys=True)
"""


def test_tensorboard_filling_the_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    """TensorBoard's event writer (a thread) meets a full disk after epoch 0's checkpoint: one line, exit status 2,
    the checkpoint kept and loadable, metrics.json saying why the run failed. (A real 200 KB run folder: the same line,
    with no checkpoint yet; scripts/full_disk.sh.)"""
    from tests.conftest import ROOT, cli_env

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run}"],
                          check=False, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and errors == [(
        f"error: could not write in run folder {run}: No space left on device; kept: the last good checkpoint "
        f"({run}/checkpoints/last.ckpt)")], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["epoch"] == 0
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["reason"]


# --- one run per folder --------------------------------------------------------------------------------------
def test_a_folder_holding_a_run_is_refused(first_epoch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(first_epoch, run)
    (run / "metrics.json").write_text('{"status": "ok"}')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError, match=r"already holds a run \(checkpoints/best-epoch00.ckpt and 1 more\); "
                                             "resume=true continues it, overwrite=true replaces it"):
        train_tiny(run)
    with pytest.raises(ConfigError, match="overwrite=true and resume/ckpt_path: choose one"):
        train_tiny(run, "resume=true", "overwrite=true")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_the_cli_refuses_a_crafted_checkpoint_and_a_folder_in_use_in_one_line(first_epoch, tmp_path):
    """Each exits with status 2 and one `error:` line, before Lightning reads anything or a file is written."""
    path, marker = crafted(tmp_path)
    planted = tmp_path / "planted"  # a crafted last.ckpt in a run folder: resume=true reads it
    (planted / "checkpoints").mkdir(parents=True)
    shutil.copy(path, planted / "checkpoints" / "last.ckpt")
    busy, busy_job, finished = tmp_path / "busy", tmp_path / "busy_job", tmp_path / "finished"
    for folder in (busy, busy_job, finished):
        shutil.copytree(first_epoch, folder)
    cases = [[f"ckpt_path={path}", f"hydra.run.dir={tmp_path}/fresh"], ["resume=true", f"hydra.run.dir={planted}"],
             ["resume=true", f"hydra.run.dir={busy}"],
             ["-m", "resume=true", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=busy_job"],  # a sweep job there
             [f"hydra.run.dir={finished}"]]  # the same command again, without resume=true
    with claim(busy, continuing=True, overwrite=False), claim(busy_job, continuing=True, overwrite=False):
        with pytest.raises(RunFolderError, match=f"run folder {busy} is in use by another run \\(pid {os.getpid()}\\)"):
            train_tiny(busy, "resume=true")
        results = run_cli_cases("vae_lab.train", cases)
    for result in results[:2]:
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-2000:]
        assert result.stderr.startswith("error: ") and "refused: it holds objects other than tensors" in result.stderr
    assert not marker.exists()
    assert results[2].returncode == 2 and results[2].stderr == f"error: run folder {busy} is in use by another " \
        f"run (pid {os.getpid()}); wait for it, or choose another hydra.run.dir\n"
    assert results[4].returncode == 2 and results[4].stderr.startswith(f"error: run folder {finished} already holds")
    for folder in (busy, finished):
        assert not (folder / ".hydra").exists(), "refused before Hydra writes the command's config there"
    assert results[3].returncode == 1 and "in use by another run" in results[3].stdout + results[3].stderr
    assert not (busy_job / "metrics.json").exists(), "a refused sweep job writes no metrics.json in the other run's"


def test_two_runs_started_at_once_into_one_folder_leave_the_winner_whole(tmp_path, data_dir):
    """The lock is taken before Hydra writes the run's `.hydra/` config, and held: the refused run writes nothing."""
    from tests.conftest import ROOT, cli_env

    run = tmp_path / "run"
    jobs = [subprocess.Popen([sys.executable, "-m", "vae_lab.train", *TINY, "trainer.max_epochs=1", f"seed={seed}",
                              f"hydra.run.dir={run}"], cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(job.wait(timeout=600), job.communicate()[1]) for job in jobs]
    assert sorted(code for code, _ in results) == [0, 2], results
    seed, (_, refused) = next((s, r) for s, r in zip((2, 1), results) if r[0] == 2)  # the winner's seed, and the other
    errors = [line for line in refused.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("is in use by another run" in errors[0] or "already holds a run" in errors[0]), refused
    config = (run / ".hydra" / "config.yaml").read_text()
    assert json.loads((run / "metrics.json").read_text())["seed"] == seed and f"\nseed: {seed}\n" in config
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    assert f"seed={seed}" in overrides and f"seed={3 - seed}" not in overrides


def test_overwrite_clears_the_previous_run(first_epoch, tmp_path):
    """And a run that takes a folder removes the temporary files a killed run left there."""
    run = tmp_path / "run"
    shutil.copytree(first_epoch, run)
    stale = run / "checkpoints" / ".last.ckpt.123.abcd.tmp"
    stale.write_bytes(b"half")  # a run killed mid-write left it
    with claim(run, continuing=True, overwrite=False):
        assert not stale.exists() and (run / "checkpoints" / "last.ckpt").is_file()
    with claim(run, continuing=False, overwrite=True):
        assert not (run / "checkpoints").exists() and not (run / "tensorboard").exists()
    with claim(run, continuing=False, overwrite=False):  # now free, and the lock released
        pass


# --- exact resume --------------------------------------------------------------------------------------------
def test_a_resumed_run_ends_bit_identical_to_the_uninterrupted_one(first_epoch, tmp_path, one_thread):
    """In another folder than the one it started in (moved), and with a best checkpoint a killed run wrote after
    its last.ckpt: the same checkpoint files as the uninterrupted run, no stale best-epochNN.ckpt."""
    resumed = tmp_path / "resumed"
    shutil.copytree(first_epoch, resumed)
    shutil.copy(resumed / "checkpoints" / "best-epoch00.ckpt", resumed / "checkpoints" / "best-epoch07.ckpt")
    whole = train_tiny(tmp_path / "whole", "trainer.max_epochs=2")
    again = train_tiny(resumed, "trainer.max_epochs=2", "resume=true")
    tests = {k: v for k, v in whole.items() if k.startswith("test/")}
    assert tests and tests == {k: again[k] for k in tests}
    assert again["epochs"] == whole["epochs"] == 2 and again["resumed_from"].endswith("checkpoints/last.ckpt")
    weights = [torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for folder in (tmp_path / "whole", resumed)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    files = [sorted(p.name for p in (folder / "checkpoints").iterdir()) for folder in (tmp_path / "whole", resumed)]
    assert files[0] == files[1] and len(files[0]) == 2, files


def test_resume_refuses_changed_settings_in_one_line(first_epoch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(first_epoch, run)
    with pytest.raises(ConfigError, match=r"^resume: model.lr=1000000.0 \(the checkpoint's: 0.001\), "
                                          r"data.batch_size=64 \(the checkpoint's: 128\); a resumed run trains"):
        train_tiny(run, "trainer.max_epochs=2", "resume=true", "model.lr=1e6", "data.batch_size=64")
    assert not (run / "metrics.json").exists()


# --- Ctrl+C ----------------------------------------------------------------------------------------------------
INTERRUPTED = """
import os, runpy, signal, sys, time
import vae_lab.metrics.classifier

def interrupted(*args, **kwargs):  # Ctrl+C while the evaluation trains or loads its classifier
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)

vae_lab.metrics.classifier.get_classifier = interrupted
sys.argv = ["vae_lab.evaluate", *sys.argv[1:]]
runpy.run_module("vae_lab.evaluate", run_name="__main__", alter_sys=True)
"""


def test_ctrl_c_during_evaluate_is_one_line_and_loses_nothing(first_epoch, tmp_path):
    from tests.conftest import ROOT, cli_env

    run = tmp_path / "run"
    shutil.copytree(first_epoch, run)
    (run / "metrics.json").write_text('{"model": "vae", "status": "ok"}')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    done = subprocess.run([sys.executable, "-c", INTERRUPTED, f"ckpt_path={run}/checkpoints/last.ckpt",
                           "projector.images=0"], check=False, cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 130 and errors == ["error: interrupted (Ctrl+C)"], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr + done.stdout
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_checkpoint_older_than_a_setting_resumes_with_that_settings_default(data_dir):
    """A checkpoint written before a setting existed (adam_eps, kl_warmup_epochs, lr_scheduler, the net's activation,
    data.binarize) trained with its default: resuming with the default is no change; another value is one."""
    from vae_lab.data.mnist import MNISTDataModule
    from vae_lab.models.vae import VAE
    from vae_lab.resume import changed_settings

    model = VAE(net={"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [16]}, latent_dim=2)
    data = MNISTDataModule(data_dir=str(data_dir), train_subset=100)
    hparams, net = dict(model.hparams), dict(model.hparams["net"])
    for key in ("adam_eps", "kl_warmup_epochs", "lr_scheduler"):
        hparams.pop(key, None)
    net.pop("activation", None)
    saved = {k: v for k, v in data.hparams.items() if k not in ("binarize", "binarize_seed")}
    old = {"vae_lab_model": "vae_lab.models.vae.VAE", "hyper_parameters": {**hparams, "net": net},
           "datamodule_hyper_parameters": saved}
    assert changed_settings(old, model, data) == []
    other = VAE(net={"_target_": "vae_lab.nets.mlp.MLPNet", "image_size": 28, "hidden": [16]}, latent_dim=2,
                adam_eps=1e-4)
    assert changed_settings(old, other, data) == ["model.adam_eps=0.0001 (the checkpoint's: 1e-08)"]
