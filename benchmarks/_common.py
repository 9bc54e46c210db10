"""Pieces every benchmark script shares: the machine description and the JSON report file."""

from __future__ import annotations

import json
import platform
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
