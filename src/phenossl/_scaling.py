"""Per-channel input statistics, and image batches scaled into a model's input.

One rule for the trainer, the evaluation and the embedding: uint8 pixels are divided by 255,
float pixels are taken as already in [0, 1]; then ``(x - mean) / std`` per channel, computed as
one fused ``x * scale + shift``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F


def per_channel(
    values: Any, channels: int, what: str = "values", *, positive: bool = False
) -> tuple[float, ...]:
    """One finite float per channel; a single value is repeated ``channels`` times.

    Parameters
    ----------
    values
        A number or a sequence of numbers (list, tuple, array, tensor).
    channels
        How many channels the values are for.
    what
        Names the values in the error message.
    positive
        Also require every value to be > 0 (a standard deviation).

    Raises
    ------
    ValueError
        The count is neither 1 nor ``channels``, or a value is not finite (or not positive).

    Examples
    --------
    >>> per_channel(0.5, 3)
    (0.5, 0.5, 0.5)
    >>> per_channel([0.1, 0.2], 2, "mean")
    (0.1, 0.2)
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    flat = [float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64)).reshape(-1)]
    if len(flat) == 1:
        flat *= channels
    if len(flat) != channels:
        raise ValueError(f"{what} has {len(flat)} values but the images have {channels} channels")
    if not all(math.isfinite(v) for v in flat):
        raise ValueError(f"{what} {flat} must be finite")
    if positive and min(flat) <= 0:
        raise ValueError(f"{what} {flat} must be > 0")
    return tuple(flat)


class InputScaler:
    """Pixels -> model input: ``(x / 255 - mean) / std`` for uint8, ``(x - mean) / std`` for float.

    Parameters
    ----------
    mean, std
        One value per channel, in [0, 1] pixel units (see :func:`per_channel`).
    device
        Where the batches are scaled (they are moved there, non-blocking).
    input_size
        Resize to ``input_size`` pixels square (bilinear, antialiased) after scaling; None keeps
        the size (bilinear resizing commutes with the per-channel affine map).
    memory_format
        Of the scaled batch (channels_last for CUDA convnets).

    Examples
    --------
    >>> scaler = InputScaler([0.5], [0.25], torch.device("cpu"))
    >>> x = scaler(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8))  # (1 - 0.5) / 0.25
    >>> round(x[0, 0, 0, 0].item(), 5)
    2.0
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        *,
        input_size: int | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = {torch.uint8: 1.0 / (255.0 * std_t), torch.float32: 1.0 / std_t}
        self.shift = -mean_t / std_t
        self.device = device
        self.input_size = input_size
        self.memory_format = memory_format

    def __call__(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        """The scaled float32 batch; written into ``out`` (same shape) when given."""
        if self.device.type == "cuda":  # scaled in float32 whatever the caller's autocast
            with torch.autocast("cuda", enabled=False):
                return self._scale(x, out)
        return self._scale(x, out)

    def _scale(self, x: Tensor, out: Tensor | None) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        if out is None:
            out = torch.empty(
                x.shape, dtype=torch.float32, device=self.device, memory_format=self.memory_format
            )
        x = torch.addcmul(self.shift, x, self.scale[x.dtype], out=out)
        size = self.input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            x = x.contiguous(memory_format=self.memory_format)
        return x
