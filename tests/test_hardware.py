"""What the CPU can do fast: the CPU trainer's precision, and a measurement's description of the machine."""

from __future__ import annotations

import os

import pytest
import torch

from tests.conftest import compose_cfg
from vae_lab.hardware import cpu_description


@pytest.mark.parametrize("amx, avx512_bf16, expected", [(True, False, "bf16-mixed"), (False, True, "bf16-mixed"),
                                                        (False, False, "32-true")])
def test_the_cpu_trainer_takes_bf16_only_where_the_cpu_has_it_in_hardware(tmp_path, monkeypatch, amx, avx512_bf16,
                                                                          expected):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert compose_cfg(tmp_path).trainer.precision == expected
    assert compose_cfg(tmp_path, "trainer=ddp").trainer.precision == expected
    assert compose_cfg(tmp_path, "trainer.precision=32-true").trainer.precision == "32-true"
    assert compose_cfg(tmp_path, "trainer=gpu").trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("amx, avx512_bf16, words", [(True, True, "AMX"), (False, True, "AVX512-BF16"),
                                                     (False, False, "no native bf16")])
def test_the_machine_description_names_the_cores_and_the_bf16_support(monkeypatch, amx, avx512_bf16, words):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    description = cpu_description()
    assert description.endswith(f", {os.cpu_count()} cores, {words}") and len(description) > len(words) + 12


def test_without_nvml_torch_asks_the_cuda_runtime_at_once(monkeypatch):
    """Lightning's NVML route costs ~0.2 ms per optimiser step where NVML cannot load; where it can, it stays."""
    import ctypes

    from vae_lab import hardware

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setenv(hardware.NVML_CHECK, "1")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())
    hardware.skip_missing_nvml()
    assert os.environ[hardware.NVML_CHECK] == "1"
    monkeypatch.setattr(ctypes, "CDLL", missing)
    hardware.skip_missing_nvml()
    assert hardware.NVML_CHECK not in os.environ
