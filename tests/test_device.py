import pytest
import torch

import phenossl._device as device_module
from phenossl._device import (
    amp_dtype,
    autocast,
    available_devices,
    cpu_has_native_bf16,
    memory_format,
    resolve_device,
)


def test_auto_resolves_to_an_available_device():
    dev = resolve_device("auto")
    assert dev.type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert dev.type in {"cpu", "mps"}


def test_every_device_offered_resolves():
    devices = available_devices()
    assert devices[:2] == ["auto", "cpu"]
    assert ("cuda:0" in devices) == torch.cuda.is_available()
    for name in devices:
        resolve_device(name)


def test_cpu_has_no_amp_and_contiguous_format():
    cpu = resolve_device("cpu")
    assert amp_dtype(cpu) is None
    assert memory_format(cpu) == torch.contiguous_format
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_when_asked_and_native(monkeypatch, native):
    cpu = resolve_device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert amp_dtype(cpu) is None  # not asked: full precision
    assert amp_dtype(cpu, cpu=True) == (torch.bfloat16 if native else None)
    with autocast(cpu, cpu=True):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == (torch.bfloat16 if native else torch.float32)
    with autocast(cpu, enabled=False, cpu=True):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_the_cpu_probe_agrees_with_torch():
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is None or not probe():
        pytest.skip("torch does not report AVX512-BF16 on this CPU")
    assert cpu_has_native_bf16()


def test_bad_device_name_says_what_was_expected():
    with pytest.raises(ValueError, match="expected 'auto'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
