"""Memory estimates made before big work, so a too-large input is refused with what to lower.

A raw allocator error ("DefaultCPUAllocator: can't allocate memory", a killed process) names
neither the setting at fault nor a way out; these checks run first and do.
"""

from __future__ import annotations

import os

import torch
from torch import nn

GiB = 1024**3
#: share of the free memory one step may plan to take
HEADROOM = 0.8


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new allocations on ``device``; None when unknown (no check then)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(need: int, device: torch.device, what: str, lower: str) -> None:
    """Raise a :class:`MemoryError` when ``need`` bytes exceed the free memory's headroom.

    Examples
    --------
    >>> check_fits(1024, torch.device("cpu"), "a tiny step", "nothing")
    """
    free = available_memory(device)
    if free is not None and need > HEADROOM * free:
        raise MemoryError(
            f"{what} needs about {need / GiB:.1f} GiB, {free / GiB:.1f} GiB free on {device}; "
            f"lower {lower}"
        )


def activation_bytes(
    net: nn.Module, channels: int, size: int, batch: int, *, probe: int = 64, itemsize: int = 4
) -> int:
    """Peak activation memory of an inference pass, from one small probe pass.

    The largest output of any layer is measured at ``probe`` pixels and scaled by the pixel
    count; twice that (a layer's input and output live together) times the batch.
    """
    largest = 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, probe, probe, device=device))
    finally:
        for handle in handles:
            handle.remove()
    scale = (size / probe) ** 2
    return int(2 * largest * scale * batch * itemsize)
