"""The step clock and its windows' throughput (vae_lab.timing): what the timing pass and the benchmark time with."""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from vae_lab.timing import StepClock, throughput


def test_throughput_windows_count_optimiser_steps_when_batches_hold_several():
    """Marks every 4 steps of 10 images, one second apart: 40 images/s whatever the window's step boundaries."""
    marks = [(4 * i, 40 * i, float(i)) for i in range(1, 21)]
    rates = throughput(marks, warmup=8, repeats=3, steps=20)
    assert rates == {"median": 40.0, "min": 40.0, "max": 40.0}
    assert throughput([(1, 10, 1.0), (2, 20, 3.0), (3, 40, 4.0)], warmup=1, repeats=2, steps=1)["min"] == 5.0


def test_the_step_clock_runs_each_turn_at_its_step_count_off_its_own_clock():
    """Turns (the benchmark's reference loop) run once each when the step count reaches them (two in one batch of 4
    steps if due), and the time they take is missing from the clock's marks: a window spanning a 0.2 s turn still
    measures well under 0.2 s."""
    ran = []
    turns = {2: lambda: ran.append(2) or time.sleep(0.2), 5: lambda: ran.append(5), 6: lambda: ran.append(6)}
    clock, module = StepClock(turns), SimpleNamespace(device=torch.device("cpu"))
    pair = (torch.zeros(3, 1, 28, 28), torch.zeros(3))
    for batch in [pair, pair, [pair] * 4, pair]:
        clock.on_train_batch_end(None, module, None, batch, 0)
    assert ran == [2, 5, 6] and [m[:2] for m in clock.marks] == [(1, 3), (2, 6), (6, 18), (7, 21)]
    assert clock.marks[3][2] - clock.marks[0][2] < 0.1
