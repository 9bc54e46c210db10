"""A private random stream for a training run, isolated from torch's global RNG.

The augmentations draw from torch's global RNG on the batch's device (and the CPU one for the
colour-jitter order). :class:`RunRng` keeps the run's own generator states and swaps them in
only inside ``with rng:`` blocks, so that

- a run is reproducible from its seed whatever the caller does with torch's RNG between two
  progress events (a GUI, another run interleaved in the same process),
- the caller's RNG state is the same after a block as before it,
- the states go into a checkpoint (:meth:`state_dict`) and come back on resume.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["RunRng"]


class RunRng:
    """The CPU and (for a CUDA device) CUDA generator states of one run.

    Parameters
    ----------
    seed
        Seed of both streams (``torch.manual_seed`` semantics).
    device
        The training device; its generator is tracked when it is a CUDA device.
    """

    def __init__(self, seed: int, device: torch.device) -> None:
        self.cuda_index = _cuda_index(device)
        # what torch.manual_seed(seed) gives the global generators, without touching them
        cuda = None
        if self.cuda_index is not None:
            cuda = torch.Generator(f"cuda:{self.cuda_index}").manual_seed(seed).get_state()
        self._state = {"cpu": torch.Generator().manual_seed(seed).get_state(), "cuda": cuda}
        self._outer: list[dict[str, Tensor | None]] = []

    def _get(self) -> dict[str, Tensor | None]:
        cuda = None if self.cuda_index is None else torch.cuda.get_rng_state(self.cuda_index)
        return {"cpu": torch.get_rng_state(), "cuda": cuda}

    def _set(self, state: dict[str, Tensor | None]) -> None:
        cpu, cuda = state["cpu"], state.get("cuda")
        assert cpu is not None  # always saved; only the CUDA state may be None
        torch.set_rng_state(cpu)
        if self.cuda_index is not None and cuda is not None:
            torch.cuda.set_rng_state(cuda, self.cuda_index)

    def __enter__(self) -> RunRng:
        self._outer.append(self._get())
        self._set(self._state)
        return self

    def __exit__(self, *exc: object) -> None:
        self._state = self._get()
        self._set(self._outer.pop())

    def state_dict(self) -> dict[str, Any]:
        """The run's generator states (CPU uint8 tensors; ``cuda`` None off CUDA)."""
        return {key: None if value is None else value.clone() for key, value in self._state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a CUDA state is ignored off CUDA and vice versa."""
        cpu = state.get("cpu")
        if not isinstance(cpu, Tensor) or cpu.dtype != torch.uint8:
            raise ValueError("RNG state: expected a uint8 tensor under 'cpu'")
        self._state = {"cpu": cpu.clone(), "cuda": self._state["cuda"]}
        cuda = state.get("cuda")
        if self.cuda_index is not None and isinstance(cuda, Tensor):
            self._state["cuda"] = cuda.clone()


def _cuda_index(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return torch.cuda.current_device() if device.index is None else device.index
