"""The IDX file format of MNIST (LeCun et al.), read directly with gzip + numpy.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. MNIST uses type ``0x08``
(unsigned byte): images are ``0x00000803`` (N, rows, cols), labels ``0x00000801`` (N,).

Reading the bytes ourselves, rather than through ``torchvision.datasets.MNIST``, lets a folder
holding the four files work offline whatever their compression: torchvision checks the md5 of
the ``.gz`` files, which fails for files that were re-compressed but hold the same data.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

UBYTE = 0x08


def read_idx(path: str | os.PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (``.gz``-compressed or not) into a uint8 array.

    Parameters
    ----------
    path
        The file; a name ending in ``.gz`` is decompressed.
    ndim
        Expected number of dimensions (3 for MNIST images, 1 for labels); None accepts any.

    Returns
    -------
    numpy.ndarray
        uint8 array with the shape stored in the header.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        Not gzip data, a bad magic number, an unsupported type code, an unexpected number of
        dimensions, or a size that disagrees with the header; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path}: cannot read ({err}); expected an IDX file (gzip-compressed if named .gz)"
        ) from None
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    zeros, type_code, dims = data[:2], data[2], data[3]
    if zeros != b"\x00\x00":
        raise ValueError(
            f"{path}: magic number 0x{magic:08x} is not an IDX magic number (0x0000TTDD); "
            "is this an MNIST file?"
        )
    if type_code != UBYTE:
        raise ValueError(
            f"{path}: IDX type code 0x{type_code:02x}; only unsigned bytes (0x08) are supported"
        )
    if ndim is not None and dims != ndim:
        expected = 0x00000800 | ndim
        raise ValueError(
            f"{path}: magic number 0x{magic:08x} says {dims} dimensions; expected 0x{expected:08x} "
            f"({ndim} dimensions)"
        )
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated header ({len(data)} bytes for {dims} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected_size = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_size:
        raise ValueError(
            f"{path}: {len(data)} bytes, but the header's shape {shape} needs {expected_size} "
            "(truncated or trailing data)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_idx writes uint8 arrays, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx needs 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, UBYTE, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header)
        fh.write(array.tobytes())
    return path
