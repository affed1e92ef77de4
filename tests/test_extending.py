"""docs/extending.md, done as it says: its files added to a temporary copy of vae_lab, and nothing else changed.

The code blocks are read from the page itself, so the page and this test cannot drift apart.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import DATA, ROOT

GROUND_TRUTH_EVAL = ["++eval.num_train=64", "++eval.num_test=32", "++eval.score_train=64", "++eval.score_eval=32",
                     "++eval.dci_stages=5"]
PAGE = ROOT / "docs" / "extending.md"
STEPS = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1",
         "+trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "eval.enabled=false", "callbacks.projector.images=0"]


def page_files() -> dict[str, str]:
    """Each file the page shows: its path (the backticked line before a code block) → the block's text."""
    text = PAGE.read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^`([\w/.]+)`:\n\n```\w+\n(.*?)^```", text, re.MULTILINE | re.DOTALL)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the package and its configs with the page's six files added."""
    root = tmp_path_factory.mktemp("extended")
    shutil.copytree(ROOT / "vae_lab", root / "vae_lab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", root / "conf")
    (root / "data").symlink_to(DATA)
    files = page_files()
    assert sorted(files) == ["conf/data/bars.yaml", "conf/model/free_bits_vae.yaml", "conf/net/linear.yaml",
                             "vae_lab/data/bars.py", "vae_lab/models/free_bits_vae.py", "vae_lab/nets/linear.py"]
    for path, text in files.items():
        assert not (root / path).exists(), f"{path} exists already: the example would not be an addition"
        (root / path).write_text(text)
    return root


def run(repo: Path, lines: list[list[str]]) -> list[SimpleNamespace]:
    """Command lines (each starting with its module) in one interpreter that imports the copy's vae_lab."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": os.pathsep.join([str(repo), str(ROOT)])}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "results.json"
        done = subprocess.run([sys.executable, "-m", "tests.cli_runner", "-", str(out)], input=json.dumps(lines),
                              cwd=repo, capture_output=True, text=True, env=env, check=False, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return [SimpleNamespace(**r) for r in json.loads(out.read_text())]


def python(repo: Path, code: str) -> str:
    """Run Python code against the copy's vae_lab; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def one_line(result: SimpleNamespace, words: str) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr[-2000:]


def test_the_page_s_additions_train_sweep_report_load_and_refuse(repo: Path) -> None:
    sweep, runs = repo / "outputs" / "fb", repo / "outputs" / "runs"
    lines = [
        ["vae_lab.train", "-m", "model=free_bits_vae", "model.free_bits=0.1,1.0", *STEPS, "data.train_subset=500",
         f"hydra.sweep.dir={sweep}"],
        ["vae_lab.report", str(sweep)],
        ["vae_lab.train", "net=linear", "model=cvae", *STEPS, "data.train_subset=500", f"hydra.run.dir={runs / 'lin'}"],
        ["vae_lab.train", "data=bars", "net=burgess", "net.image_size=32", *STEPS, "data.train_subset=64",
         "eval.enabled=true", *GROUND_TRUTH_EVAL, f"hydra.run.dir={runs / 'bars'}"],
        ["vae_lab.train", "model=free_bits_vae", "model.free_bits=abc", f"hydra.run.dir={runs / 'bad1'}"],
        ["vae_lab.train", "model=free_bits_vae", "model.free_bits=-1", *STEPS, f"hydra.run.dir={runs / 'bad2'}"],
        ["vae_lab.train", "model=free_bits_vae", "+model.free_bit=1", f"hydra.run.dir={runs / 'bad3'}"],
    ]
    sweep_run, report, linear, bars, bad_type, bad_range, bad_key = run(repo, lines)
    for result in (sweep_run, report, linear, bars):
        assert result.returncode == 0, result.stderr[-3000:]
    with open(sweep / "report.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    column = next(k for k in rows[0] if "free_bits" in k)
    assert sorted(float(r[column]) for r in rows) == [0.1, 1.0] and all(r["n"] == "1" for r in rows)
    one_line(bad_type, "model.free_bits='abc': must be a number")
    one_line(bad_range, "model.free_bits=-1")
    one_line(bad_key, "model.free_bit: FreeBitsVAE has no such setting")
    assert json.loads((runs / "bars" / "metrics.json").read_text())["test/mig"] is not None
    loaded = python(repo, "import vae_lab, glob\n"
                          "for p in sorted(glob.glob('outputs/**/last.ckpt', recursive=True)):\n"
                          "    m = vae_lab.load_model(p); print(type(m).__name__, type(m.net).__name__)\n"
                          "x, y = vae_lab.load_data('outputs/runs/bars/checkpoints/last.ckpt', n=4)\n"
                          "print(tuple(x.shape), tuple(y.shape))\n")
    assert sorted(loaded.splitlines()[:4]) == ["CVAE LinearNet", "FreeBitsVAE MLPNet", "FreeBitsVAE MLPNet",
                                                "VAE BurgessNet"], loaded
    assert "(4, 1, 32, 32) (4, 2)" in loaded
