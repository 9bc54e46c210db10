import pytest
import torch

from phenossl._device import amp_dtype, autocast, memory_format, resolve_device


def test_auto_resolves_to_an_available_device():
    dev = resolve_device("auto")
    assert dev.type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert dev.type in {"cpu", "mps"}


def test_cpu_has_no_amp_and_contiguous_format():
    cpu = resolve_device("cpu")
    assert amp_dtype(cpu) is None
    assert memory_format(cpu) == torch.contiguous_format
    with autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_bad_device_name_says_what_was_expected():
    with pytest.raises(ValueError, match="expected 'auto'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
