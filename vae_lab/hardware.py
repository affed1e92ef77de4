"""What this machine's CPU can do fast, for the configs' choices (the `${vae_lab.cpu_precision:}` resolver)."""

import contextlib
import os
from pathlib import Path


def amx_cpu() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later): oneDNN's fastest bf16 kernels."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX512-BF16); elsewhere torch emulates it slowly."""
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return amx_cpu() or bool(probe and probe())


def cpu_precision() -> str:
    """The CPU trainer's precision: bf16 autocast where the CPU has it in hardware, fp32 where it would be emulated."""
    return "bf16-mixed" if native_bf16_cpu() else "32-true"


def cpu_description() -> str:
    """This CPU in a few words, for a measurement's record: its model name (Linux), cores, and whether bf16 is native."""
    name = "CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    bf16 = "AMX" if amx_cpu() else "AVX512-BF16" if native_bf16_cpu() else "no native bf16"
    return f"{name}, {os.cpu_count()} cores, {bf16}"
