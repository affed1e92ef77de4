"""`python -m benchmarks.bench` in a tiny configuration: both throughputs, a ratio and a parity verdict."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.bench import bench, reference_dataset, reference_loader
from tests.conftest import BENCH_CONF, CONF, compose_cfg, run_cli_cases


def test_bench_reports_both_paths(tmp_path, data_dir, capsys):
    out = tmp_path / "bench.json"
    cfg = compose_cfg(tmp_path, "warmup_steps=2", "repeats=2", "steps_per_repeat=3", "train_subset=1000",
                      "eval_images=500", "profile_steps=2", f"json={out}", "cases.burda=null", config="bench",
                      conf=BENCH_CONF)
    rows = bench(cfg, compose_case=lambda overrides: compose_cfg(tmp_path, *overrides))
    assert [r["case"] for r in rows] == ["cvae", "beta_vae"]  # cases.burda=null left that case out
    for row in rows:
        assert row["vae_lab_images_per_second"]["median"] > 0 and row["reference_images_per_second"]["median"] > 0
        assert row["speedup"] > 0 and row["flops_per_image"] > 1e6 and 0 < row["floor_fraction"] < 1
        assert row["parity"] in ("pass", "FAIL")
        assert row["trained_steps"] == {"vae_lab": 10, "reference": 10}  # parity compares equal training
        assert 0.01 < row["reference_data_fraction"] < 1
        profile = row["profile"]  # the 2 steps after the timed windows, largest operators first
        assert 0 < len(profile) <= 12 and 0 < sum(op["share"] for op in profile) <= 1 + 1e-9
        assert [op["ms_per_step"] for op in profile] == sorted((op["ms_per_step"] for op in profile), reverse=True)
        assert any(op["op"].startswith("aten::") for op in profile)
    printed = capsys.readouterr().out
    assert "beta_vae: matmul rate " in printed and "the floor is " in printed
    assert "cvae: the reference loop spent" in printed and "| operator | inputs | calls/step | ms/step |" in printed
    assert len(json.loads(out.read_text())["results"]) == 2


def test_with_several_steps_per_batch_the_reference_catches_up_for_parity(tmp_path, data_dir):
    """Lightning stops at a whole batch of 3 steps (9, past the 8 asked for): the reference takes the 9th too."""
    cfg = compose_cfg(tmp_path, "warmup_steps=2", "repeats=2", "steps_per_repeat=3", "train_subset=2000",
                      "eval_images=200", '~cases', '+cases={cvae:["+arm=cvae_seed_conv","data.steps_per_batch=3"]}',
                      config="bench", conf=BENCH_CONF)
    [row] = bench(cfg, compose_case=lambda overrides: compose_cfg(tmp_path, *overrides))
    assert row["trained_steps"] == {"vae_lab": 9, "reference": 9}


def test_the_reference_runs_unflushed_and_waits_for_the_device_only_at_window_edges(tmp_path, data_dir, monkeypatch):
    """vae_lab's fit flushes denormals around the reference's turns: the plain loop must not (nor keep it off
    after); on a GPU it synchronises where a window starts or ends and at a turn's end, not every step."""
    import benchmarks.bench as bench_module

    cfg = compose_cfg(tmp_path, "+arm=cvae_seed_conv", "data.train_subset=1000")
    loop = bench_module.ReferenceLoop(cfg, boundaries=[2, 5, 8])
    synced, flushed = [], []
    monkeypatch.setattr(bench_module, "synchronize", lambda: synced.append(len(loop.marks) + 1))
    step = loop.model.loss_terms
    monkeypatch.setattr(loop.model, "loss_terms", lambda batch: flushed.append(bench_module.denormals_flushed())
                        or step(batch))
    torch.set_flush_denormal(True)
    try:
        loop.run(5)
        loop.run(4)
        assert bench_module.denormals_flushed()  # as vae_lab had it
    finally:
        torch.set_flush_denormal(False)
    assert synced == [2, 5, 8, 9] and flushed == [False] * 9


def test_parity_allows_only_a_worse_loss_within_the_tolerance_whatever_its_sign():
    from benchmarks.bench import parity

    assert parity(100.9, 100.0, 0.01) == "pass" and parity(101.1, 100.0, 0.01) == "FAIL"
    assert parity(-99.1, -100.0, 0.01) == "pass" and parity(-98.9, -100.0, 0.01) == "FAIL"  # Gaussian NLLs
    assert parity(-120.0, -100.0, 0.01) == "pass"  # better is never a failure


def test_the_profiler_counts_the_steps_after_its_start():
    """Batches of 1, 4 and 2 steps with the profiler due after 3: it starts at the end of the 4-step batch (step 5)
    and counts the 2 steps after it."""
    from types import SimpleNamespace

    from benchmarks.bench import StepProfiler

    profiler, pair = StepProfiler(start=3), (torch.zeros(2, 1, 28, 28), torch.zeros(2))
    for batch in [pair, [pair] * 4, [pair] * 2]:
        profiler.on_train_batch_end(None, SimpleNamespace(device=torch.device("cpu")), None, batch, 0)
        torch.ones(64, 64) @ torch.ones(64, 64)
    profiler.on_train_end(None, SimpleNamespace())
    assert profiler.steps == 2 and profiler.clock == "host"
    assert {"op": "aten::mm", "inputs": "64×64, 64×64"}.items() <= next(
        op for op in profiler.shares() if op["op"] == "aten::mm").items()
    assert StepProfiler(start=100).shares() == []


def test_on_a_gpu_the_profile_ranks_kernels_by_their_gpu_time():
    """Events as Kineto records them: host operators (carrying their kernels' GPU time too) and the kernels. The
    device clock ranks the kernels alone by GPU time, each counted once; the host clock ranks host time."""
    from types import SimpleNamespace

    from benchmarks.bench import StepProfiler, profile_table

    cpu, cuda = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA

    def event(key, host, device, kind):
        return SimpleNamespace(key=key, count=4, self_cpu_time_total=host, self_device_time_total=device,
                               device_type=kind, input_shapes=[[8, 4], [], [4, 2]] if kind == cpu else [])

    events = [event("cudaGraphLaunch", 900.0, 0.0, cpu), event("aten::mm", 30.0, 300.0, cpu),
              event("gemm", 0.0, 300.0, cuda), event("relu", 0.0, 100.0, cuda)]
    profiler = StepProfiler(start=0)
    profiler.profiler, profiler.steps = SimpleNamespace(key_averages=lambda group_by_input_shape: events), 2
    assert [(op["op"], op["inputs"]) for op in profiler.shares()] == [("cudaGraphLaunch", "8×4, 4×2"),
                                                                     ("aten::mm", "8×4, 4×2")]
    profiler.clock = "device"
    assert profiler.shares() == [
        {"op": "gemm", "inputs": "", "calls_per_step": 2.0, "ms_per_step": 0.15, "share": 0.75},
        {"op": "relu", "inputs": "", "calls_per_step": 2.0, "ms_per_step": 0.05, "share": 0.25}]
    row = {"case": "c", "profile": [], "profile_clock": "host", "reference_data_fraction": 0.2}
    assert "no step was profiled" in profile_table(row)  # K steps per batch can overshoot a short profile


BENCH_BAD_INPUT = [
    (["warmup_steps=0"], "error: warmup_steps=0: must be a whole number ≥ 1"),
    (["repeats=abc"], "error: repeats='abc'"),
    (["parity_tolerance=-1"], "error: parity_tolerance=-1"),
    (["profile_steps=-2"], "error: profile_steps=-2"),
    (["dataset=cifar"], "error: dataset='cifar': choose one of ['fashion_mnist', 'mnist']"),
    (['overrides=["model=gan"]'], "error: case 'cvae': In 'train': Could not find 'model/gan' (available: beta_tcvae, beta_vae, cvae"),
    (['overrides=["data.batch_size=0"]'], "error: data.batch_size=0: must be at least 1"),
    (["nope=1"], "Key 'nope' is not in struct"),
]


@pytest.fixture(scope="module")
def bench_bad_input_runs(tmp_path_factory):
    """Every bad command line of BENCH_BAD_INPUT, each with its own JSON path, in one interpreter."""
    outs = [tmp_path_factory.mktemp("bench_bad_input") / "bench.json" for _ in BENCH_BAD_INPUT]
    cases = [[*args, "train_subset=500", f"json={out}"] for (args, _), out in zip(BENCH_BAD_INPUT, outs)]
    return list(zip(run_cli_cases("benchmarks.bench", cases), outs))


@pytest.mark.parametrize("case", range(len(BENCH_BAD_INPUT)), ids=[" ".join(a) for a, _ in BENCH_BAD_INPUT])
def test_bench_bad_input_gives_one_clear_line(bench_bad_input_runs, case):
    result, out = bench_bad_input_runs[case]
    needle = BENCH_BAD_INPUT[case][1]
    assert result.returncode != 0 and needle in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()


def test_bench_checks_every_case_and_its_json_path_before_running_any(tmp_path):
    """A bad second case, or a JSON path inside a file, would otherwise surface after the first case's minutes."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [['+cases={a:["+arm=vae"],b:["net=mpl"]}', "train_subset=500"],
             ["train_subset=500", f"json={blocker}/bench.json"],
             ["~cases", '+cases={a:["+arm=vae"],b:["+arm=vae","data.steps_per_batch=4"]}', "steps_per_repeat=3"]]
    needles = ["error: case 'b': In 'train': Could not find 'net/mpl'", f"error: json={blocker}/bench.json: cannot",
               "error: case 'b': data.steps_per_batch=4 is more than steps_per_repeat=3"]
    for result, needle in zip(run_cli_cases("benchmarks.bench", cases), needles):
        assert result.returncode != 0 and needle in result.stderr, result.stderr[-2000:]
        assert "benchmarking" not in result.stdout and "Traceback" not in result.stderr


def test_the_reference_loop_sees_vae_labs_batches_in_vae_labs_order(tmp_path, data_dir):
    """Parity compares arithmetic: the torchvision loop gets the same images, batched and shuffled the same way."""
    from hydra.utils import instantiate

    cfg = compose_cfg(tmp_path, "data.train_subset=300", "data.batch_size=64", "seed=3")
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    dataset = reference_dataset(cfg, datamodule)
    sampler = datamodule.train_dataloader().sampler
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        ours = [datamodule.splits["train"][index] for index in sampler]
        theirs = list(reference_loader(cfg, dataset, seed=3, epoch=epoch))
        assert [len(y) for _, y in ours] == [len(y) for _, y in theirs] == [64, 64, 64, 64, 44]
        for (x, y), (ref_x, ref_y) in zip(ours, theirs):
            assert torch.equal(y, ref_y) and torch.allclose(x, ref_x)


def test_the_reference_loop_in_turns_trains_as_it_would_alone(tmp_path, data_dir):
    """Its own random stream across turns: random draws between turns (vae_lab's training) change nothing."""
    from benchmarks.bench import ReferenceLoop

    cfg = compose_cfg(tmp_path, "model=vae", "data.train_subset=300", "data.batch_size=64")
    alone, in_turns = ReferenceLoop(cfg), ReferenceLoop(cfg)
    alone.run(5)
    in_turns.run(3)
    torch.randn(1000)
    in_turns.run(2)
    for a, b in zip(alone.model.parameters(), in_turns.model.parameters()):
        assert torch.equal(a, b)
    assert [m[:2] for m in in_turns.marks] == [m[:2] for m in alone.marks]


def test_the_speed_up_pairs_each_window_with_the_reference_window_next_to_it():
    """Rates 10, 30, 20 against 5, 20, 8 (images/s): ratios 2, 1.5, 2.5, median 2 — not the medians' 20 / 8."""
    from benchmarks.bench import speedup

    def marks(rates):
        out, t = [(0, 0, 0.0)], 0.0
        for i, rate in enumerate(rates, 1):
            t += 60 / rate
            out.append((i, 60 * i, t))
        return out

    assert speedup(marks([10, 30, 20]), marks([5, 20, 8]), warmup=0, repeats=3, steps=1) == pytest.approx(2.0)


def test_the_matmul_rate_is_the_best_of_its_windows(monkeypatch):
    import benchmarks.bench as bench_module

    real_repeat_for, rates = bench_module.repeat_for, iter([3.0, 7.0, 5.0])
    monkeypatch.setattr(bench_module, "repeat_for", lambda work, seconds, device: next(rates))
    assert bench_module.matmul_rate(torch.device("cpu"), torch.float32, n=8, windows=3) == 2 * 8**3 * 7.0
    calls = []
    assert real_repeat_for(lambda: calls.append(1), 0.01, torch.device("cpu")) > 0 and calls


@pytest.mark.parametrize("config", ["bench", "bench_gpu", "bench_gpu_large"])
def test_every_bench_config_composes_each_case(tmp_path, config):
    """The GPU configs run only where a GPU is lent: their cases must at least compose here."""
    from hydra import initialize_config_dir

    from benchmarks.bench import compose_train
    from vae_lab.train import check

    cfg = compose_cfg(tmp_path, config=config, conf=BENCH_CONF)
    with initialize_config_dir(str(CONF), version_base="1.3"):  # where `python -m benchmarks.bench` finds train.yaml
        for name, overrides in cfg.cases.items():
            case = compose_train(name, [*overrides, *cfg.overrides, f"data={cfg.dataset}"])
            check(case)  # and passes train's checks
            assert case.data.batch_size in (20, 64, 128, 1024)


def test_the_burda_case_runs_the_likelihood_preset_against_a_loop_that_binarizes_each_batch(tmp_path, data_dir):
    """Burda et al.'s workload on both sides: fp32, batch 20, Adam's ε = 1e-4, each batch drawn as Bernoulli(pixel)."""
    from benchmarks.bench import ReferenceLoop

    cfg = compose_cfg(tmp_path, "+experiment=burda_iwae_cpu", "+arm=elbo", "data.train_subset=200")
    loop, seen = ReferenceLoop(cfg), []
    step = loop.model.loss_terms
    loop.model.loss_terms = lambda batch: seen.append(batch[0]) or step(batch)
    loop.run(3)
    assert all(len(x) == 20 and set(x.unique().tolist()) <= {0.0, 1.0} for x in seen) and len(seen) == 3
    assert loop.optimiser.defaults["eps"] == 1e-4 and cfg.trainer.precision == "32-true"
