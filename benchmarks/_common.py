"""Pieces every benchmark script shares: the machine description and the JSON report file."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, report: Any) -> None:
    """Write ``report`` as indented JSON to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def torch_machine(device) -> dict[str, Any]:
    """The device, its name (CUDA), the CPU, torch's thread count and version."""
    import torch

    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def time_abba(
    paths: dict[str, Callable[[], tuple[float, float]]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run each ``path() -> (wall, cpu)`` ``repeats`` times, in ABBA order; both series per key.

    Reversing the order each repeat makes a slow drift of the machine's load hit every path alike.
    """
    seconds: dict[str, list[float]] = {key: [] for key in paths}
    cpu_seconds: dict[str, list[float]] = {key: [] for key in paths}
    order = list(paths)
    for _ in range(repeats):
        for key in order:
            wall, cpu = paths[key]()
            seconds[key].append(round(wall, 4))
            cpu_seconds[key].append(round(cpu, 4))
        order.reverse()
    return seconds, cpu_seconds


def wall_cpu_ms(fn: Callable[[int], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of ``fn(i)`` for ``i < repeats``, after a warm-up ``fn(-1)``."""
    fn(-1)
    wall, cpu = [], []
    for i in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return wall, cpu
