"""Shared fixtures: the real data in ../shared/data (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _sweeps import local_store, tiny_cifar, tiny_cropset  # noqa: F401 (shared fixtures)

REPO_ROOT = Path(__file__).resolve().parents[1]
# tests never touch the network: ImageNet weights come from the local cache only
os.environ["PHENOSSL_OFFLINE"] = "1"


def _shared_data_dir() -> Path:
    env = os.environ.get("PHENOSSL_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for a test: tiny tensors only gain synchronisation from intra-op
    threads on a busy 2-core CI machine, and the numbers are the same."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real data (BBBC021 CSVs + one field, MNIST); skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set PHENOSSL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bbbc021_root(shared_data: Path) -> Path:
    """The BBBC021 root with the official CSVs and one real field."""
    return _shared_folder(shared_data / "bbbc021", "BBBC021_v1_image.csv", "BBBC021 CSVs")


@pytest.fixture(scope="session")
def real_field_paths(bbbc021_root: Path) -> dict[str, Path]:
    """The three channel TIFFs of the one real field (Week2_24381, B02, site 1, DMSO)."""
    folder = bbbc021_root / "Week2" / "Week2_24381"
    files = sorted(folder.glob("Week2_180607_B02_s1_w*.tif"))
    by_channel = {}
    for f in files:
        tag = f.name.split("_s1_")[1][:2]
        by_channel[{"w1": "dapi", "w2": "tubulin", "w4": "actin"}[tag]] = f
    if len(by_channel) != 3:
        pytest.skip(f"the real field's three TIFFs are not all in {folder}")
    return by_channel


@pytest.fixture(scope="session")
def mnist_root(shared_data: Path) -> Path:
    """Folder holding the four official MNIST .gz files."""
    return _shared_folder(shared_data / "mnist", "train-images-idx3-ubyte.gz", "MNIST files")


def _shared_folder(root: Path, marker: str, what: str) -> Path:
    """``root``, or a skip naming ``what`` when its ``marker`` file is absent."""
    if not (root / marker).is_file():
        pytest.skip(f"{what} not found under {root}")
    return root
