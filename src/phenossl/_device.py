"""Device selection and the fast paths (AMP, channels_last), in one place.

Mixed precision: on CUDA bf16 where supported, fp16 otherwise; on the CPU bf16 only when asked
(``cpu=True``) and only on CPUs with bf16 instructions (AVX512-BF16 or AMX), where oneDNN runs
the convolutions in bf16: the trainer ran 1.6x (MoCoV2+/VGG11-BN, 32 px) to 1.9x (SimCLR/ResNet18,
32 px) faster on 2 cores of an AMD EPYC with AVX512-BF16 (``benchmarks/bench_cpu_precision.py``).
Elsewhere bf16 is emulated and slower, so it stays off.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to use.

    ``"auto"`` picks CUDA, then Apple MPS, then CPU. Any other value is passed to
    :class:`torch.device`; asking for CUDA on a machine without it is an error that says so.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"device={device!r} is not a valid device; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device={device!r} was requested but MPS is not available here")
    return dev


def available_devices() -> list[str]:
    """The ``device`` values that can run here: ``auto``, ``cpu`` and each accelerator torch sees.

    Examples
    --------
    >>> available_devices()[:2]
    ['auto', 'cpu']
    """
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX tiles).

    Examples
    --------
    >>> cpu_has_native_bf16() in (True, False)
    True
    """
    # torch's own probes (private, so looked up with a fallback)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def amp_dtype(device: torch.device, *, cpu: bool = False) -> torch.dtype | None:
    """The autocast dtype used on ``device`` (None: full precision).

    CUDA: bf16 where supported, fp16 otherwise. CPU: bf16 with ``cpu=True`` on a CPU with bf16
    instructions (:func:`cpu_has_native_bf16`), else None. Other devices: None.

    Examples
    --------
    >>> amp_dtype(torch.device("cpu")) is None
    True
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu and cpu_has_native_bf16():
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True, *, cpu: bool = False) -> Iterator[None]:
    """Mixed precision in :func:`amp_dtype`'s dtype; a no-op where that is None."""
    dtype = amp_dtype(device, cpu=cpu)
    if not enabled or dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (tensor cores prefer NHWC), contiguous elsewhere."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format
