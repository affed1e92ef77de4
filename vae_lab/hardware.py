"""What this machine's CPU can do fast, for the configs' choices (the `${vae_lab.cpu_precision:}` resolver)."""

from __future__ import annotations


def amx_cpu() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later): oneDNN's fastest bf16 kernels."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX512-BF16); elsewhere torch emulates it, several times
    slower than fp32."""
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return amx_cpu() or bool(probe and probe())


def cpu_precision() -> str:
    """The CPU trainer's precision: bf16 autocast where the CPU has it in hardware, fp32 where it would be emulated."""
    return "bf16-mixed" if native_bf16_cpu() else "32-true"
