"""Behaviour kept: tiny fp32 runs of five objectives give the test metrics recorded before the redesign.

`python -m tests.test_golden` re-records tests/known_answers/golden_metrics.json (only when a change of values is
deliberate: say which and why in the commit). The tolerances hold across thread counts and CPUs (reductions reorder):
measured between 1 and 2 torch threads on a 2-core Xeon, the largest relative difference was 3.9e-6, and 1.4% for
FID (a matrix square root of 300 samples' features, the most sensitive to the order of sums).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

from tests.conftest import FAST, ROOT, run_cli_cases

GOLDEN = ROOT / "tests" / "known_answers" / "golden_metrics.json"
COMMON = [*FAST, "trainer.precision=32-true", "seed=0", "eval.enabled=true", "++eval.iwae_samples=4"]
CASES = {
    "vae": ["model=vae"],
    "cvae": ["model=cvae"],
    "beta_vae_capacity": ["model=beta_vae", "model.capacity_max=25", "model.capacity_steps=4"],
    "factor_vae": ["model=factor_vae"],
    "dip_vae": ["model=dip_vae"],
}
RELATIVE = {"test/fid": 0.05}  # about three times the largest cross-thread difference measured
DEFAULT_RELATIVE = 1e-4


def run_cases(folder: Path) -> dict[str, dict[str, float]]:
    """Each case's test metrics (test/*), trained and evaluated in `folder`."""
    lines = [[*COMMON, *args, f"hydra.run.dir={folder / name}"] for name, args in CASES.items()]
    results = run_cli_cases("vae_lab.train", lines)
    out = {}
    for name, result in zip(CASES, results, strict=True):
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        record = json.loads((folder / name / "metrics.json").read_text())
        out[name] = {k: v for k, v in record.items() if k.startswith("test/") and isinstance(v, (int, float))}
    return out


def test_golden_metrics(tmp_path, data_dir) -> None:
    golden = json.loads(GOLDEN.read_text())
    measured = run_cases(tmp_path)
    for name, metrics in golden.items():
        assert set(measured[name]) >= set(metrics), f"{name}: metrics missing: {set(metrics) - set(measured[name])}"
        for key, value in metrics.items():
            assert math.isclose(measured[name][key], value, rel_tol=RELATIVE.get(key, DEFAULT_RELATIVE), abs_tol=1e-6), \
                f"{name} {key}: {measured[name][key]!r} != golden {value!r}"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        values = run_cases(Path(folder))
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN
    target.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    print(f"wrote {target}")
