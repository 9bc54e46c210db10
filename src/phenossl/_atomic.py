"""Write files atomically: into a unique temporary sibling, renamed over the target on success.

Every file the package writes goes through here, so a crash, a kill or a full disk leaves either
the old file or the new one, never half of one, and two writers never share a temporary name.
The sibling sits in the target's folder (same file system: :func:`os.replace` is atomic) and is
opened with mode ``"x"``, which honours the umask (``tempfile.mkstemp`` would make it 0600).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """A fresh temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    For writers that take a file name (``savefig``, ``np.savez``); ``suffix`` keeps the
    extension they infer the format from. On an exception the temporary file is removed and
    ``path`` is left as it was. The parent folder must exist.

    Examples
    --------
    >>> import numpy as np
    >>> with atomic_path("emb.npz", suffix=".npz") as tmp:  # doctest: +SKIP
    ...     np.savez(tmp, x=np.zeros(3))
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, fsync: bool = False) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` on success.

    ``mode`` is ``"w"`` (text, UTF-8, newlines written as given) or ``"wb"``. ``fsync`` flushes
    the data to the disk before the rename (checkpoints: worth their cost).

    Examples
    --------
    >>> with atomic_open("table.csv") as handle:  # doctest: +SKIP
    ...     handle.write("a,b\\n1,2\\n")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}; expected 'w' or 'wb'")
    text: dict[str, Any] = {} if "b" in mode else {"newline": "", "encoding": "utf-8"}
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), **text) as handle:
        yield handle
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def write_text(path: str | os.PathLike, text: str, *, parents: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; ``parents`` creates missing folders.

    Examples
    --------
    >>> write_text("run/config.yaml", "a: 1\\n", parents=True)  # doctest: +SKIP
    PosixPath('run/config.yaml')
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:
        handle.write(text)
    return path
