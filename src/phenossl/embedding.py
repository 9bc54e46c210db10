"""Embeddings of cell crops: a backbone turns each crop into one float32 feature vector.

Inputs (``crops``):

- a CropSet-like object: ``len(crops)`` and ``crops.iter_batches(batch_size)`` yielding uint8
  ``(b, C, S, S)`` arrays (the on-disk :class:`phenossl.CropSet`);
- a numpy array or torch tensor ``(N, C, H, W)``, uint8 or float, or an object holding one as
  ``images`` (the result of ``crop_cells``);
- an iterable of such batches (any sizes; larger ones are split to ``batch_size``). The number of
  crops is known in advance only for a list or tuple of batches; otherwise progress events have
  ``total == 0``.

Scaling: uint8 is divided by 255, floats are taken as already in [0, 1]; then ``(x - mean) / std``
with the model's statistics: ImageNet's for ImageNet weights, the checkpoint's ``input_mean`` /
``input_std`` for checkpoints, 0.5 / 0.25 for random init (and for a plain ``nn.Module`` without
``input_mean``/``input_std`` attributes). Channel ``c`` of the crops goes to input channel ``c`` of
the model: for BBBC021 crops DAPI, Tubulin, Actin (R, G, B for ImageNet weights).

Normalisation (``normalize``): ``"l2"`` divides each embedding by its Euclidean length, so that
KMeans compares cells by the cosine of their embeddings, the geometry contrastive methods train
in; ``"none"`` keeps the network's output; ``"auto"`` (the default) takes what the model records
(``embedding_norm`` of a shipped model or checkpoint: ``phenossl-cells`` records ``"l2"``, see
docs/cell-model.md), else ``"none"``. It acts on each cell alone, so a cell's embedding does not
depend on which other cells are embedded with it.

On CUDA the model runs under autocast (bf16 where supported) in channels_last; batches travel as
uint8 from pinned memory with non-blocking copies and are scaled on the GPU, and the host prepares
batch i+1 while the GPU computes batch i.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from phenossl._device import amp_dtype, autocast, memory_format, resolve_device
from phenossl._progress import Progress, ProgressCallback, ProgressGenerator, drives
from phenossl._scaling import InputScaler, per_channel
from phenossl.models import NORMALIZE_CHOICES
from phenossl.models.backbones import RANDOM_INIT_MEAN, RANDOM_INIT_STD, available_backbones

Batch = np.ndarray | Tensor
_NP_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


def iter_embed(
    crops: Any,
    model: str | os.PathLike | nn.Module = "vgg13_bn",
    *,
    weights: str | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 64,
    input_size: int | None = None,
    amp: bool = True,
    cpu_amp: bool = False,
    seed: int = 0,
    normalize: str = "auto",
) -> ProgressGenerator[np.ndarray]:
    """Embed crops batch by batch, yielding :class:`~phenossl.Progress` after each batch.

    Parameters
    ----------
    crops
        A CropSet-like object, an array/tensor ``(N, C, H, W)`` (uint8 or float in [0, 1]), a
        ``crop_cells`` result, or an iterable of batches; see the module docstring.
    model
        A shipped model's name (``"phenossl-cells"``: :mod:`phenossl.models.pretrained`), a
        backbone name (:func:`~phenossl.models.backbones.available_backbones`), built with
        ``in_channels`` = the crops' channels; ``"features"``: the hand-crafted measurements of
        :mod:`phenossl.cells.features`, z-scored over ``crops`` (CPU worker processes; no
        network); a checkpoint path (``load_backbone``); or an
        ``nn.Module`` mapping ``(N, C, H, W)`` to ``(N, D)``, which is moved to ``device`` and
        run in eval mode (its training flag is restored afterwards).
    weights
        For a backbone name only: None (random init) or ``"imagenet"`` (from the local cache).
    device
        ``"auto"`` (CUDA, MPS, CPU), or any torch device.
    batch_size
        Crops per forward pass.
    input_size
        Resize crops (bilinear, antialiased, on the device) to ``input_size`` pixels square
        before the model; None keeps the crops' size, or uses the ``input_size`` a shipped
        model was trained at. Smaller inputs trade detail for speed
        (the cost of a convnet grows with the pixel count).
    amp
        Autocast on CUDA (ignored elsewhere); ``False`` computes in float32.
    cpu_amp
        With ``amp``, also bf16 autocast on a CPU with bf16 instructions (AVX512-BF16 or AMX;
        ignored on other CPUs): about 1.8x faster, features at bf16 precision.
    seed
        Seed of the random initialisation when ``model`` is a name and ``weights`` is None.
    normalize
        ``"auto"`` (the model's recorded ``embedding_norm``, else none), ``"none"`` or ``"l2"``
        (each embedding scaled to unit length); see the module docstring.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, D)``, rows in input order.

    Raises
    ------
    ValueError
        Bad crops (shape, dtype, channels), unknown model, or non-finite features (the message
        names the model and the rows).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected an integer >= 1")
    if input_size is not None and (
        isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1
    ):
        raise ValueError(f"input_size={input_size!r}; expected None or an integer >= 1")
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"normalize={normalize!r}; expected one of {', '.join(NORMALIZE_CHOICES)}")
    if isinstance(model, str) and model == "features":  # hand-crafted: phenossl.cells.features
        from phenossl.cells.features import iter_feature_embedding

        if weights is not None:
            raise ValueError("weights applies to a backbone name, not to model='features'")
        features = (yield from iter_feature_embedding(*_batches(crops, batch_size))).features
        return l2_normalize(features) if normalize == "l2" else features
    dev = resolve_device(device)
    batches, total = _batches(crops, batch_size)
    first = next(batches, None)
    channels = _channels(first, crops)
    net, label, mean, std = _resolve_model(model, weights, channels, seed)
    yield Progress(0, total, f"embedding with {label} on {dev}")

    was_training = net.training
    net.to(dev).to(memory_format=memory_format(dev)).eval()
    try:
        if first is None:
            return _empty(net, label)
        if input_size is None:  # a shipped model says which size it was trained at
            input_size = getattr(net, "input_size", None)
        _check_memory(net, label, first, channels, input_size, dev, amp)
        if normalize == "auto":  # a shipped model or checkpoint says how it is compared
            normalize = getattr(net, "embedding_norm", None) or "none"
        runner = _Runner(
            net, label, dev, mean, std, amp=amp, cpu_amp=cpu_amp, input_size=input_size
        )
        result = _Rows(total)
        pending: tuple[Tensor, int] | None = None  # output on the device, not yet fetched
        for index, batch in enumerate(itertools.chain([first], batches)):
            host = _host_tensor(batch, index, channels, pin=dev.type == "cuda")
            if pending is not None:  # the GPU computed it while the host prepared `host`
                result.add(runner.fetch(*pending))
                yield Progress(result.done, total, f"{label}: {result.done} cells")
            pending = (runner.launch(host), result.done)
        if pending is not None:
            result.add(runner.fetch(*pending))
            yield Progress(result.done, total, f"{label}: {result.done} cells")
        return l2_normalize(result.array()) if normalize == "l2" else result.array()
    finally:
        net.train(was_training)


@drives(iter_embed)
def embed(*, progress: ProgressCallback | None = None) -> np.ndarray:
    """Embed crops into float32 ``(N, D)`` features; see :func:`iter_embed`.

    ``progress`` is called with every :class:`~phenossl.Progress` event.

    Examples
    --------
    A randomly initialised ResNet-18 (no download) on two blank crops:

    >>> x = embed(np.zeros((2, 3, 32, 32), np.uint8), model="resnet18", device="cpu")
    >>> x.shape, x.dtype
    ((2, 512), dtype('float32'))

    Unit-length embeddings, as the shipped model ``phenossl-cells`` gives by default:

    >>> x = embed(np.full((2, 3, 32, 32), 128, np.uint8), "resnet18", device="cpu", normalize="l2")
    >>> np.linalg.norm(x, axis=1).round(3)
    array([1., 1.], dtype=float32)
    """


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Each row of ``features`` divided by its Euclidean length (all-zero rows stay zero).

    Examples
    --------
    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32))
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    """
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def load_model(
    model: str | os.PathLike | nn.Module = "vgg13_bn",
    *,
    weights: str | None = None,
    in_channels: int = 3,
    seed: int = 0,
) -> nn.Module:
    """Resolve ``model`` (name, checkpoint path or module) once, for repeated :func:`embed` calls.

    The returned module carries ``input_mean``/``input_std``, so passing it to :func:`embed`
    normalises exactly as passing the name or path would.
    """
    net, _, mean, std = _resolve_model(model, weights, in_channels, seed)
    net.input_mean, net.input_std = mean, std  # type: ignore[assignment]  # any value is fine
    return net


class Embedder:
    """A model loaded once that embeds batch after batch: the pipeline's streaming use.

    ``Embedder(model, ...)(crops)`` equals ``embed(crops, model, ...)`` without reloading the
    model for every field.
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = "vgg13_bn",
        *,
        weights: str | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 64,
        input_size: int | None = None,
        in_channels: int = 3,
        amp: bool = True,
        cpu_amp: bool = False,
        seed: int = 0,
        normalize: str = "auto",
    ) -> None:
        self.net = load_model(model, weights=weights, in_channels=in_channels, seed=seed)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.input_size = input_size
        self.amp = amp
        self.cpu_amp = cpu_amp
        self.normalize = normalize

    @property
    def feature_dim(self) -> int:
        """Length of one embedding."""
        return int(self.net.feature_dim)  # type: ignore[arg-type]  # an int on every backbone

    def __call__(self, crops: Any) -> np.ndarray:
        return embed(
            crops,
            self.net,
            device=self.device,
            batch_size=self.batch_size,
            input_size=self.input_size,
            amp=self.amp,
            cpu_amp=self.cpu_amp,
            normalize=self.normalize,
        )


def save_embeddings(
    path: str | os.PathLike,
    features: np.ndarray,
    cell_ids: np.ndarray,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write embeddings, their cell ids and JSON metadata to one ``.npz`` file (atomically)."""
    import json

    from phenossl._atomic import atomic_path

    features = np.asarray(features, dtype=np.float32)
    cell_ids = np.asarray(cell_ids)
    if features.ndim != 2 or len(features) != len(cell_ids):
        raise ValueError(
            f"features {features.shape} and cell_ids {cell_ids.shape} do not match; expected "
            "(N, D) features and N cell ids"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp, embeddings=features, cell_id=cell_ids, metadata=json.dumps(dict(metadata or {}))
        )
    return path


def load_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a file written by :func:`save_embeddings`: ``(features, cell_ids, metadata)``."""
    import json
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return (
                data["embeddings"],
                data["cell_id"],
                json.loads(str(data["metadata"])),
            )
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(
            f"{path} is not a phenossl embeddings file, or it is truncated (expected an .npz "
            "with embeddings, cell_id and metadata)"
        ) from err


class _Runner:
    """Scales a host batch on the device and runs the model on it."""

    def __init__(
        self,
        net: nn.Module,
        label: str,
        device: torch.device,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        amp: bool,
        cpu_amp: bool = False,
        input_size: int | None = None,
    ) -> None:
        self.net = net
        self.input_size = input_size
        self.label = label
        self.device = device
        self.cpu_amp = cpu_amp
        self.amp = amp and amp_dtype(device, cpu=cpu_amp) is not None
        self.scale = InputScaler(
            mean, std, device, input_size=input_size, memory_format=memory_format(device)
        )
        self._buffer: Tensor | None = None

    def launch(self, host: Tensor) -> Tensor:
        with torch.inference_mode():
            x = self.scale(host, out=self._input_buffer(host))
            with autocast(self.device, enabled=self.amp, cpu=self.cpu_amp):
                out = self.net(x)
        if out.ndim != 2 or out.shape[0] != host.shape[0]:
            raise ValueError(
                f"model {self.label!r} returned shape {tuple(out.shape)} for a batch of "
                f"{host.shape[0]} crops; expected (n, D) features"
            )
        return out

    def _input_buffer(self, x: Tensor) -> Tensor:
        """A reused float32 buffer for the scaled batch, in the device's memory format.

        Reusing it matters on CPU: a fresh 30 MB tensor per batch (64 x 3 x 196 x 196) is
        mmapped and page-faulted anew each time, which cost ~8% of ResNet18's throughput. On CUDA
        the stream orders the write for batch i+1 after the model's reads of batch i.
        """
        buffer = self._buffer
        if buffer is None or buffer.shape[1:] != x.shape[1:] or len(buffer) < len(x):
            buffer = torch.empty(
                x.shape,
                dtype=torch.float32,
                device=self.device,
                memory_format=memory_format(self.device),
            )
            self._buffer = buffer
        return buffer[: len(x)]

    def fetch(self, out: Tensor, start: int) -> np.ndarray:
        with torch.inference_mode():  # a copy: the output may be a view of the reused buffer
            rows = out.to("cpu", torch.float32, copy=True).numpy()
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            bad = start + np.flatnonzero(~finite)
            hint = " or embed with amp=False" if self.amp else ""
            raise ValueError(
                f"model {self.label!r} produced non-finite features for {bad.size} crop(s), "
                f"rows {bad[:10].tolist()}; check those crops for NaN/inf{hint}"
            )
        return rows


class _Rows:
    """Collects output rows: preallocated when the total is known, else concatenated."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._out: np.ndarray | None = None
        self._parts: list[np.ndarray] = []

    def add(self, rows: np.ndarray) -> None:
        if self.total:
            if self._out is None:
                self._out = np.empty((self.total, rows.shape[1]), dtype=np.float32)
            if self.done + len(rows) > self.total:
                raise ValueError(f"crops yielded more than the announced {self.total} crops")
            self._out[self.done : self.done + len(rows)] = rows
        else:
            self._parts.append(rows)
        self.done += len(rows)

    def array(self) -> np.ndarray:
        if not self.total:
            return np.concatenate(self._parts).astype(np.float32, copy=False)
        if self.done != self.total:
            raise ValueError(f"crops yielded {self.done} crops but announced {self.total}")
        assert self._out is not None  # total > 0 rows were added
        return self._out


def _batches(crops: Any, batch_size: int) -> tuple[Iterator[Batch], int]:
    """An iterator over batches of at most ``batch_size`` crops, and the total (0 if unknown)."""
    if isinstance(crops, np.ndarray | Tensor):
        if crops.ndim != 4:
            raise ValueError(f"crops has shape {tuple(crops.shape)}; expected (N, C, H, W)")
        n = len(crops)
        return (crops[i : i + batch_size] for i in range(0, n, batch_size)), n
    if hasattr(crops, "iter_batches") and hasattr(crops, "__len__"):
        return iter(crops.iter_batches(batch_size)), len(crops)
    if isinstance(getattr(crops, "images", None), np.ndarray):  # the result of crop_cells()
        return _batches(crops.images, batch_size)
    if isinstance(crops, str | bytes | os.PathLike) or not isinstance(crops, Iterable):
        raise TypeError(
            f"crops is a {type(crops).__name__}; expected a CropSet, an array or tensor "
            "(N, C, H, W), or an iterable of such batches"
        )
    total = 0
    if isinstance(crops, list | tuple):
        total = sum(len(b) for b in crops if isinstance(b, np.ndarray | Tensor) and b.ndim == 4)
    return _split(crops, batch_size), total


def _split(batches: Iterable[Batch], batch_size: int) -> Iterator[Batch]:
    for batch in batches:
        if isinstance(batch, np.ndarray | Tensor) and len(batch) > batch_size:
            yield from (batch[i : i + batch_size] for i in range(0, len(batch), batch_size))
        else:
            yield batch


def _channels(first: Batch | None, crops: Any) -> int:
    if first is not None:
        dims = tuple(getattr(first, "shape", ()))
        if len(dims) != 4:
            raise ValueError(f"crops batch 0 has shape {dims}; expected (b, C, H, W)")
        return int(dims[1])
    shape = getattr(crops, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) == 4 else 3


def _host_tensor(batch: Batch, index: int, channels: int, *, pin: bool) -> Tensor:
    """A uint8 or float32 tensor of one batch (pinned for CUDA copies)."""
    if isinstance(batch, np.ndarray):
        array = batch
        if array.dtype.kind == "f" and array.dtype != np.float32:
            array = array.astype(np.float32)
        _check_batch(array.shape, array.dtype, index, channels)
        if not (array.flags.c_contiguous and array.flags.writeable):  # e.g. a read-only memmap
            array = np.array(array, order="C")
        tensor = torch.from_numpy(array)
    elif isinstance(batch, Tensor):
        tensor = batch.detach()
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            tensor = tensor.float()
        _check_batch(tuple(tensor.shape), tensor.dtype, index, channels)
    else:
        raise TypeError(
            f"crops batch {index} is a {type(batch).__name__}; expected a numpy array or tensor"
        )
    if tensor.is_floating_point() and tensor.numel():
        # 0..255 floats would give features off by orders of magnitude; NaN/inf are left to
        # the output check, which names the rows
        finite = tensor[torch.isfinite(tensor)]
        low, high = (float(v) for v in torch.aminmax(finite)) if finite.numel() else (0.0, 0.0)
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"crops batch {index}: float values span [{low:g}, {high:g}]; expected [0, 1] "
                "(pass 0..255 crops as uint8, or divide them by 255)"
            )
    if pin and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor


def _check_batch(shape: tuple, dtype: Any, index: int, channels: int) -> None:
    if len(shape) != 4 or shape[1] != channels:
        raise ValueError(
            f"crops batch {index} has shape {tuple(shape)}; expected (b, {channels}, H, W) "
            "like the first batch"
        )
    if dtype not in (
        (torch.uint8, torch.float32) if isinstance(dtype, torch.dtype) else _NP_DTYPES
    ):
        raise ValueError(f"crops batch {index} has dtype {dtype}; expected uint8 or float")


def _resolve_model(
    model: Any, weights: str | None, channels: int, seed: int
) -> tuple[nn.Module, str, tuple[float, ...], tuple[float, ...]]:
    """The module to run, a label for messages, and its input mean/std per channel."""
    from phenossl.models.backbones import build_backbone
    from phenossl.models.checkpoint import load_backbone
    from phenossl.models.pretrained import PRETRAINED, load_pretrained

    if isinstance(model, nn.Module):
        if weights is not None:
            raise ValueError("weights applies to a backbone name, not to an nn.Module model")
        net, label = model, str(getattr(model, "name", type(model).__name__))
    elif isinstance(model, str | os.PathLike):
        text = os.fspath(model)
        if text in available_backbones():
            net = build_backbone(text, weights=weights, in_channels=channels, seed=seed)
            label = text
        elif text in PRETRAINED:
            if weights is not None:
                raise ValueError(f"weights applies to a backbone name, not to {text!r}")
            net, _ = load_pretrained(text)
            label = text
        elif Path(text).is_file():
            if weights is not None:
                raise ValueError("weights applies to a backbone name, not to a checkpoint")
            net, _ = load_backbone(text)
            label = f"checkpoint {text}"
        else:
            raise ValueError(
                f"model={text!r} is neither a shipped model ({', '.join(PRETRAINED)}), a "
                f"backbone name ({', '.join(available_backbones())}) nor an existing checkpoint "
                "file"
            )
    else:
        raise TypeError(
            f"model is a {type(model).__name__}; expected a backbone name, a checkpoint path "
            "or an nn.Module"
        )
    mean, std = (_input_stats(net, what, label, channels) for what in ("mean", "std"))
    return net, label, mean, std


def _input_stats(net: nn.Module, what: str, label: str, channels: int) -> tuple[float, ...]:
    value = getattr(net, f"input_{what}", RANDOM_INIT_MEAN if what == "mean" else RANDOM_INIT_STD)
    try:
        return per_channel(value, channels, f"input {what}", positive=what == "std")
    except ValueError as err:
        n = np.size(value)
        if n in (1, channels):  # not a channel mismatch: non-finite or non-positive values
            raise ValueError(f"model {label!r}: {err}") from err
        raise ValueError(
            f"model {label!r} expects {n}-channel inputs (input {what}), "
            f"but the crops have {channels} channels"
        ) from err


def _empty(net: nn.Module, label: str) -> np.ndarray:
    dim = getattr(net, "feature_dim", None)
    if dim is None:
        raise ValueError(f"no crops to embed, and model {label!r} has no feature_dim attribute")
    return np.zeros((0, int(dim)), dtype=np.float32)


def _check_memory(
    net: nn.Module,
    label: str,
    first: Batch,
    channels: int,
    input_size: int | None,
    device: torch.device,
    amp: bool,
) -> None:
    """Refuse a batch whose activations cannot fit, naming what to lower (before any work)."""
    from phenossl._memory import activation_bytes, check_fits

    size = input_size or int(max(first.shape[-2:]))
    if size <= 256:  # the paper's 196 px and below fit any machine that holds the model
        return
    itemsize = 2 if amp and device.type == "cuda" else 4
    need = activation_bytes(net, channels, size, int(first.shape[0]), itemsize=itemsize)
    check_fits(
        need,
        device,
        f"embedding with {label} at {size} px, {int(first.shape[0])} crops a batch,",
        "--batch-size or --input-size (batch_size/input_size)",
    )
