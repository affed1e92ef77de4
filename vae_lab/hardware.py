"""What this machine's CPU can do fast, for the configs' choices (the `${vae_lab.cpu_precision:}` resolver)."""

import contextlib
import ctypes
import os
from pathlib import Path

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"  # Lightning sets it on import: torch then finds GPUs through NVML


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


def skip_missing_nvml() -> None:
    """Where NVML cannot load, have torch ask the CUDA runtime at once, not retry NVML at every optimiser step."""
    if os.environ.get(NVML_CHECK) != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ[NVML_CHECK]
