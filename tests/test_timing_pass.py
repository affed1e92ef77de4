"""`python -m vae_lab.timing_pass DIR`: its arms are the report's groups; bad input is one `error:` line, before any
work. (A real pass over a tiny sweep: tests/test_report.py's compare-sweep test.)"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli_cases

BAD_INPUT = [(["missing"], "missing: no such folder"), ([], "no folder given"),
             (["runs", "timing_options.steps=0"], "timing_options.steps"),
             (["runs"], "overrides.yaml is missing")]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Every bad command line of BAD_INPUT in one interpreter, in a folder holding one finished run without its
    .hydra/overrides.yaml (a pass cannot rebuild its arm)."""
    folder = tmp_path_factory.mktemp("timing_bad_input")
    run = folder / "runs" / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": "vae", "net": "mlp", "dataset": "mnist", "seed": 0,
                                                  "status": "ok"}))
    return run_cli_cases("vae_lab.timing_pass", [args for args, _ in BAD_INPUT], cwd=folder), folder


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[" ".join(a) or "none" for a, _ in BAD_INPUT])
def test_bad_input_gives_one_error_line(bad_input_runs, case):
    results, folder = bad_input_runs
    result, needle = results[case], BAD_INPUT[case][1]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert not (folder / "runs" / "timing.json").exists()


def test_the_arms_are_the_report_groups_one_run_each(tmp_path):
    from tests.test_results import _config, _run
    from vae_lab.timing_pass import timed_arms

    for seed in (1, 0):
        _run(tmp_path, f"a{seed}", _config(seed=seed, batch_size=64))
    _run(tmp_path, "b", _config(batch_size=128))
    _run(tmp_path, "b_again", _config(batch_size=128))  # a repeat: the same arm
    arms = timed_arms([str(tmp_path)])
    assert [(name, group) for name, group, _ in arms] == [
        ("a0", {"model": "vae", "net": "mlp", "dataset": "mnist", "data.batch_size": 64}),
        ("b", {"model": "vae", "net": "mlp", "dataset": "mnist", "data.batch_size": 128})]
