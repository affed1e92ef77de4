"""`python -m benchmarks.explorer`: the explorer's latency through its served page on a tiny model, and bad input in
one line before any model loads."""

from __future__ import annotations

import pytest

from benchmarks.browser import chromium_missing, free_port
from tests.conftest import run_cli, run_cli_cases
from tests.explorer_helpers import tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir):
    pytest.importorskip("gradio", reason="the `explore` extra is not installed")
    return tiny_checkpoint(tmp_path_factory.mktemp("explorer_bench"), "model=vae", "model.latent_dim=6")


def test_bench_times_slider_moves_in_process_and_through_the_server(checkpoint):
    done = run_cli("benchmarks.explorer", f"ckpt_path={checkpoint}", "libraries=0", "bench=2", "kl_images=300",
                   f"port={free_port()}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "explorer latency per slider move, 2 moves" in done.stdout and "machine: " in done.stdout
    for part in ("HTTP request to the server, image back", "decode (in process)", "event handler (in process)",
                 "then the traversal strip (in process)"):
        assert any(line.strip().startswith(part) and "median" in line for line in done.stdout.splitlines()), part


def test_bad_input_is_one_line_before_any_model_loads(checkpoint, tmp_path):
    missing = tmp_path / "missing.ckpt"
    given = f"ckpt_path={checkpoint}"
    cases = [([given, "libraries=0", "bench=0"], "error: bench=0 and libraries=0: nothing to time"),
             ([given, "bench=-1"], "error: bench=-1: must be a whole number ≥ 0"),
             ([f"ckpt_path={missing}", "bench=2", "libraries=0"], f"error: checkpoint not found: {missing}")]
    if chromium_missing():  # where Chromium is installed, libraries=2 would run
        cases.append(([given, "libraries=2", "bench=0"], "error: libraries=2 times the pages in a browser, and "))
    results = run_cli_cases("benchmarks.explorer", [args for args, _ in cases])
    for (args, needle), result in zip(cases, results):
        assert result.returncode == 2 and needle in result.stderr, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and "explorer latency" not in result.stdout
