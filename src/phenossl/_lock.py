"""An exclusive lock on an output folder, so two processes never write one run at once.

The lock is an OS file lock (``fcntl.flock``) on ``<folder>/.lock``: the OS releases it when the
holder exits or is killed, so a crash leaves no stale lock. The file names the holder (host, pid,
start time) for the error message of a second process. Where ``fcntl`` does not exist (Windows)
the folder is not locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class FolderLockedError(BlockingIOError):
    """Another process holds the folder's lock (the message names it)."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created) for the duration of the block.

    Raises
    ------
    FolderLockedError
        Another process holds the lock; the message names its host, pid and start time.
    OSError
        The folder cannot be created or written (named in the message).

    Examples
    --------
    >>> with folder_lock("runs/cifar10_simclr", "run folder"):  # doctest: +SKIP
    ...     ...  # write the run
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole block
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = _describe(handle.read())
                raise FolderLockedError(
                    f"{what} {folder} is in use by {holder}; wait for it to finish or stop it"
                ) from None
        handle.seek(0)
        handle.truncate()
        info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        handle.write(json.dumps(info))
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"process {info['pid']} on {info['host']} (since {since})"
    except (ValueError, KeyError, TypeError):
        return "another process"
