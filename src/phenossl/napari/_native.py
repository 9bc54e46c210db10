"""Load torch's native pieces safely inside napari.

torchvision imports ``torch._dynamo``, which imports triton when it is installed (it is with
PyPI's CUDA builds of torch). triton's ``libtriton`` carries its own LLVM; when the process has
already loaded Mesa's ``libLLVM`` (napari's OpenGL canvas on llvmpipe, radeonsi, Xvfb...), loading
it segfaults. The GUI never needs triton (phenossl runs eager PyTorch, no ``torch.compile``), so in
that situation it is hidden from torch, which then runs without it.
"""

from __future__ import annotations

import sys


def llvm_loaded() -> bool:
    """Whether a system LLVM library is mapped into this process (Linux; False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


def preload_torch() -> None:
    """Import torchvision's models and the embedding code on the GUI thread, without triton
    when it would clash with the OpenGL driver's LLVM."""
    if "triton" not in sys.modules and llvm_loaded():
        sys.modules["triton"] = None  # `import triton` raises ImportError: torch goes without
    import torchvision.models  # noqa: F401

    import phenossl.embedding
    import phenossl.pipeline  # noqa: F401


def preload_training() -> None:
    """:func:`preload_torch`, plus the trainer and its augmentations (kornia)."""
    preload_torch()
    import phenossl.augment
    import phenossl.training.trainer  # noqa: F401
