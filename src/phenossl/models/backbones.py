"""Convolutional backbones that map images to global-pooled feature vectors.

:func:`build_backbone` returns a :class:`Backbone`: an ``nn.Module`` mapping ``(N, C, H, W)`` to
``(N, D)`` features (no classifier), for inputs from 28 px (MNIST, CIFAR) to 196 px (cell crops).
Names follow torchvision:

========================  ====  ==================================================================
name                      D     notes
========================  ====  ==================================================================
``vgg11`` ... ``vgg19``   512   conv stack + global average pool; ``_bn`` variants add BatchNorm
                                (the SSL presets use the ``_bn`` variants, which train stably from
                                scratch with Adam). The last max-pool uses ``ceil_mode`` so a
                                1-pixel map survives it (inputs down to 16 px); for even map sizes
                                (every input that is a multiple of 32) it equals torchvision's.
``resnet18``/``34``       512   torchvision ResNet without ``fc``
``resnet50``/101/152      2048
``convnext_tiny``         768   features, global average pool, then the final LayerNorm of
                                torchvision's classifier (its pre-logits features)
========================  ====  ==================================================================

``cifar_stem=True`` adapts the stem to 28-32 px inputs:

- ResNet: the 7x7 stride-2 first conv becomes a 3x3 stride-1 conv and the max-pool is removed
  (overall stride 8 instead of 32), as in the usual CIFAR ResNets.
- ConvNeXt-Tiny: the 4x4 stride-4 "patchify" stem becomes a 3x3 stride-1 conv (same width, same
  LayerNorm), so the overall stride is 8 instead of 32. Without it ConvNeXt needs inputs >= 32 px.
- VGG: no change. VGG's first conv is already 3x3 stride 1 and its pools work from 16 px, so the
  flag is accepted (presets may set it for every backbone) and only recorded.

The new stem is randomly initialised, so ``cifar_stem=True`` cannot be combined with ImageNet
weights for ResNet and ConvNeXt (an error says so).

Input channels: ``in_channels`` sets the first conv's input width. With ImageNet weights and
``in_channels != 3`` the pretrained RGB filters are adapted: for 1 channel they are summed over
RGB (a grey image then gives the same response as the grey image replicated to RGB); otherwise
input channel ``c`` takes the RGB filter ``c mod 3``, scaled by ``3 / in_channels`` so that the
response to a constant image is unchanged. Channel ``c`` of the data always goes to input
channel ``c``: for BBBC021 crops DAPI -> R, Tubulin -> G, Actin -> B.

Each backbone carries the input statistics it expects (``input_mean``, ``input_std``, one value
per input channel): ImageNet's for ImageNet weights (the mean of the three for one channel,
RGB channel ``c mod 3`` otherwise) and 0.5 / 0.25 for random init.

``weights="imagenet"`` loads torchvision's default ImageNet weights for the name (IMAGENET1K_V2 for
ResNet50/101/152, IMAGENET1K_V1 for the others) from the local torch hub cache only,
``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``. When the file is absent,
torchvision's downloader fetches it there with a progress bar; with downloads switched off
(environment variable ``PHENOSSL_OFFLINE=1``, which the test suite sets) a
:class:`FileNotFoundError` names the path and the URL to fetch it from instead.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_MEAN = 0.5
RANDOM_INIT_STD = 0.25

# VGG (torchvision's configurations A, B, D, E): convs per stage; each stage ends in a max-pool
_VGG_STAGE_WIDTHS = (64, 128, 256, 512, 512)
_VGG_CONVS_PER_STAGE = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_RESNET_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "resnet152": 2048,
}
_BACKBONES: tuple[str, ...] = (
    *(f"{vgg}{bn}" for vgg in _VGG_CONVS_PER_STAGE for bn in ("", "_bn")),
    *_RESNET_DIMS,
    "convnext_tiny",
)
_WEIGHTS = (None, "imagenet")
_SEEDED_BUILD = threading.Lock()  # one seeded build at a time (see build_backbone)


def available_backbones() -> tuple[str, ...]:
    """Names accepted by :func:`build_backbone`, in family and size order."""
    return _BACKBONES


class Backbone(nn.Module):
    """A feature extractor ``(N, C, H, W) -> (N, feature_dim)``; see the module docstring.

    Attributes
    ----------
    name, feature_dim, in_channels, cifar_stem, weights
        What :func:`build_backbone` was asked for (``weights`` is None or ``"imagenet"``).
    input_mean, input_std
        Per-channel statistics the inputs should be normalised with, after scaling to [0, 1].
    min_input_size
        Smallest height/width the architecture accepts.
    input_size, crop_size
        What a shipped model expects (set by :mod:`phenossl.models.pretrained`), else None.
    embedding_norm
        How its embeddings are compared, as a shipped model or checkpoint records it
        (``"l2"``: by their cosine; see :func:`phenossl.embed`), else None.
    """

    input_size: int | None = None
    crop_size: int | None = None
    embedding_norm: str | None = None

    def __init__(
        self,
        body: nn.Module,
        *,
        name: str,
        feature_dim: int,
        in_channels: int,
        cifar_stem: bool,
        weights: str | None,
        input_mean: Sequence[float],
        input_std: Sequence[float],
        min_input_size: int,
    ) -> None:
        super().__init__()
        self.body = body
        self.name = name
        self.feature_dim = feature_dim
        self.in_channels = in_channels
        self.cifar_stem = cifar_stem
        self.weights = weights
        self.input_mean = tuple(float(v) for v in input_mean)
        self.input_std = tuple(float(v) for v in input_std)
        self.min_input_size = min_input_size

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"backbone {self.name!r} expects input (N, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        if min(x.shape[-2:]) < self.min_input_size:
            hint = " (use cifar_stem=True for small images)" if not self.cifar_stem else ""
            raise ValueError(
                f"backbone {self.name!r} needs inputs of at least {self.min_input_size} px, "
                f"got {tuple(x.shape[-2:])}{hint}"
            )
        return self.body(x)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, feature_dim={self.feature_dim}, in_channels={self.in_channels}, "
            f"cifar_stem={self.cifar_stem}, weights={self.weights!r}"
        )


def build_backbone(
    name: str,
    *,
    weights: str | None = None,
    in_channels: int = 3,
    cifar_stem: bool = False,
    seed: int | None = None,
) -> Backbone:
    """Build a backbone by torchvision name.

    Parameters
    ----------
    name
        One of :func:`available_backbones`.
    weights
        None (random init) or ``"imagenet"`` (torchvision's default ImageNet weights, read from the
        local torch hub cache only; see the module docstring).
    in_channels
        Number of input channels (>= 1).
    cifar_stem
        Small-image stem (ResNet, ConvNeXt); see the module docstring.
    seed
        Seed for the random initialisation; None uses torch's global RNG. The global RNG state is
        left untouched when a seed is given, and seeded builds in concurrent threads take turns,
        so each gets the same weights as alone.

    Returns
    -------
    Backbone
        In training mode on the CPU, as any freshly built ``nn.Module``.

    Raises
    ------
    ValueError
        Unknown name or weights, bad ``in_channels``, or ImageNet weights with a CIFAR stem.
    FileNotFoundError
        ImageNet weights requested but not in the torch hub cache.
    """
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(_BACKBONES)}")
    if weights not in _WEIGHTS:
        raise ValueError(f"weights={weights!r} is not supported; expected None or 'imagenet'")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels={in_channels!r}; expected an integer >= 1")
    if weights == "imagenet" and cifar_stem and not name.startswith("vgg"):
        raise ValueError(
            f"cifar_stem=True replaces the first layer of {name!r} with a new, randomly "
            "initialised one, so it cannot be combined with weights='imagenet'"
        )
    state = _cached_imagenet_state_dict(name) if weights == "imagenet" else None
    if seed is None:
        return _build(name, state, in_channels, cifar_stem)
    # torchvision initialises from torch's process-wide RNG: seeding it is only safe while no other
    # seeded build runs (the napari widgets embed in thread workers)
    with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(name, state, in_channels, cifar_stem)


def imagenet_weights_path(name: str) -> tuple[Path, str]:
    """Where :func:`build_backbone` looks for the ImageNet weights of ``name``: ``(path, url)``."""
    from torchvision.models import get_model_weights

    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(_BACKBONES)}")
    url = get_model_weights(name).DEFAULT.url
    filename = Path(urlparse(url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename, url


def downloads_allowed() -> bool:
    """False when ``PHENOSSL_OFFLINE`` is set to 1/true/yes: ImageNet weights then come from the
    local cache only."""
    return os.environ.get("PHENOSSL_OFFLINE", "").strip().lower() not in ("1", "true", "yes")


def _cached_imagenet_state_dict(name: str) -> dict[str, Tensor]:
    path, url = imagenet_weights_path(name)
    if not path.is_file() and downloads_allowed():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
        except Exception as err:  # no network, proxy, disk full...
            path.unlink(missing_ok=True)
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise FileNotFoundError(
                f"ImageNet weights for {name!r} could not be downloaded from {url} ({reason}); "
                f"fetch the file and save it as {path} (torch.hub.get_dir()/checkpoints, set by "
                "$TORCH_HOME)"
            ) from err
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {name!r} not found at {path} and downloads are off "
            f"(PHENOSSL_OFFLINE). Fetch {url} and save it there (the folder is "
            "torch.hub.get_dir()/checkpoints, set by $TORCH_HOME)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "weights_only" in str(err):  # never pass on torch's advice to unpickle the file
            reason = "it holds Python objects other than tensors, which phenossl never unpickles"
        raise ValueError(
            f"cannot read ImageNet weights for {name!r} from {path}: {reason}"
        ) from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def _build(
    name: str, state: dict[str, Tensor] | None, in_channels: int, cifar_stem: bool
) -> Backbone:
    if name.startswith("vgg"):
        body, dim, min_size = _vgg(name, state, in_channels)
    elif name.startswith("resnet"):
        body, dim, min_size = _resnet(name, state, in_channels, cifar_stem)
    else:
        body, dim, min_size = _convnext(name, state, in_channels, cifar_stem)
    mean, std = _input_statistics(state is not None, in_channels)
    return Backbone(
        body,
        name=name,
        feature_dim=dim,
        in_channels=in_channels,
        cifar_stem=cifar_stem,
        weights=None if state is None else "imagenet",
        input_mean=mean,
        input_std=std,
        min_input_size=min_size,
    )


def _vgg(
    name: str, state: dict[str, Tensor] | None, in_channels: int
) -> tuple[nn.Module, int, int]:
    batch_norm = name.endswith("_bn")
    convs_per_stage = _VGG_CONVS_PER_STAGE[name.removesuffix("_bn")]
    layers: list[nn.Module] = []
    width = 3  # built for RGB so that torchvision's state dict loads; adapted below
    for stage, (n_convs, out) in enumerate(zip(convs_per_stage, _VGG_STAGE_WIDTHS)):
        for _ in range(n_convs):
            layers.append(nn.Conv2d(width, out, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            width = out
        # ceil_mode on the last pool only: keeps a 1x1 map alive (small inputs) and equals
        # floor mode whenever the map size is even
        last = stage == len(convs_per_stage) - 1
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=last))
    features = nn.Sequential(*layers)
    if state is None:
        for m in features.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                _kaiming_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    else:
        prefix = "features."  # torchvision's file also holds the classifier, which we drop
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        _load_strict(features, own, f"ImageNet weights of {name!r}")
    first = cast(nn.Conv2d, features[0])  # VGG's first layer
    features[0] = _first_conv(first, in_channels, state is not None, _kaiming_init)
    body = nn.Sequential(
        OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1))
    )
    # the floor-mode pools must leave >= 1 px for the last, ceil-mode one
    return body, _VGG_STAGE_WIDTHS[-1], 2 ** (len(convs_per_stage) - 1)


def _torchvision_model(name: str, state: dict[str, Tensor] | None) -> Any:
    """torchvision's model ``name``, holding ``state`` (its ImageNet weights) when given."""
    from torchvision.models import get_model

    model = get_model(name, weights=None)
    if state is not None:
        _load_strict(model, state, f"ImageNet weights of {name!r}")
    return model


def _resnet(
    name: str, state: dict[str, Tensor] | None, in_channels: int, cifar_stem: bool
) -> tuple[nn.Module, int, int]:
    model = _torchvision_model(name, state)
    model.fc = nn.Identity()
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        _kaiming_init(model.conv1)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = _first_conv(model.conv1, in_channels, state is not None, _kaiming_init)
    return model, _RESNET_DIMS[name], 1


def zero_init_residual_(backbone: nn.Module) -> int:
    """Zero the scale of the last BatchNorm of every ResNet residual block, in place.

    torchvision's ``zero_init_residual`` (Goyal et al. 2017): each block then starts as the
    identity. Modules other than torchvision's ``BasicBlock``/``Bottleneck`` are left alone, so
    a VGG or ConvNeXt backbone is unchanged.

    Returns
    -------
    int
        The number of blocks changed (0 for a backbone without ResNet blocks).

    Examples
    --------
    >>> zero_init_residual_(build_backbone("resnet18"))
    8
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    count = 0
    for module in backbone.modules():
        last = {BasicBlock: "bn2", Bottleneck: "bn3"}.get(type(module))
        if last is not None:
            nn.init.zeros_(getattr(module, last).weight)
            count += 1
    return count


def _convnext(
    name: str, state: dict[str, Tensor] | None, in_channels: int, cifar_stem: bool
) -> tuple[nn.Module, int, int]:
    model = _torchvision_model(name, state)
    model.classifier[-1] = nn.Identity()  # keep the LayerNorm + flatten: pre-logits features
    stem = model.features[0]
    if cifar_stem:
        stem[0] = nn.Conv2d(in_channels, stem[0].out_channels, kernel_size=3, stride=1, padding=1)
        _trunc_normal_init(stem[0])
    else:
        stem[0] = _first_conv(stem[0], in_channels, state is not None, _trunc_normal_init)
    # three 2x2 stride-2 downsamplings follow the stem; the last needs a map of >= 2 px
    stem_stride = 1 if cifar_stem else 4
    return model, model.classifier[0].normalized_shape[0], stem_stride * 8


def _kaiming_init(conv: nn.Conv2d) -> None:
    # torchvision's VGG and ResNet conv initialisation
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _trunc_normal_init(conv: nn.Conv2d) -> None:
    # torchvision's ConvNeXt conv initialisation
    nn.init.trunc_normal_(conv.weight, std=0.02)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _first_conv(
    conv: nn.Conv2d, in_channels: int, pretrained: bool, init: Callable[[nn.Conv2d], None]
) -> nn.Conv2d:
    """``conv`` with ``in_channels`` inputs: adapted filters if pretrained, else re-initialised."""
    if in_channels == conv.in_channels:
        return conv
    geometry: dict[str, Any] = {  # torch types these as tuple[int, ...], takes tuple[int, int]
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
    }
    new = nn.Conv2d(in_channels, conv.out_channels, **geometry, bias=conv.bias is not None)
    if not pretrained:
        init(new)
        return new
    with torch.no_grad():
        new.weight.copy_(adapt_rgb_filters(conv.weight, in_channels))
        if conv.bias is not None and new.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def adapt_rgb_filters(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt RGB conv filters ``(O, 3, k, k)`` to ``in_channels`` inputs.

    One channel: the sum over RGB. Otherwise channel ``c`` takes RGB filter ``c mod 3`` scaled
    by ``3 / in_channels``, which keeps the response to a constant image.
    """
    if weight.shape[1] != 3:
        raise ValueError(f"expected RGB filters (O, 3, k, k), got shape {tuple(weight.shape)}")
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    index = torch.arange(in_channels) % 3
    return weight[:, index] * (3.0 / in_channels)


def _input_statistics(imagenet: bool, in_channels: int) -> tuple[list[float], list[float]]:
    if not imagenet:
        return [RANDOM_INIT_MEAN] * in_channels, [RANDOM_INIT_STD] * in_channels
    if in_channels == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    return (
        [IMAGENET_MEAN[c % 3] for c in range(in_channels)],
        [IMAGENET_STD[c % 3] for c in range(in_channels)],
    )


def _load_strict(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names both sides."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{what} do not match the architecture {type(module).__name__}: {err}"
        ) from err
