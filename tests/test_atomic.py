"""Atomic writes: the old file or the new one, never half of one, and no temporary file left."""

from __future__ import annotations

import os

import numpy as np
import pytest

from phenossl._atomic import atomic_open, atomic_path, write_text


def test_write_text_replaces_and_creates_parents(tmp_path):
    path = write_text(tmp_path / "a" / "b.txt", "one\n", parents=True)
    write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = write_text(tmp_path / "t.csv", "old\n")

    def fail() -> None:
        with atomic_open(path) as handle:
            handle.write("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fail()
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_atomic_path_keeps_the_suffix_writers_read_the_format_from(tmp_path):
    with atomic_path(tmp_path / "e.npz", suffix=".npz") as tmp:
        assert tmp.name.endswith(".npz") and tmp.parent == tmp_path
        np.savez(tmp, x=np.arange(3))  # np.savez would append .npz to any other name
    assert np.load(tmp_path / "e.npz")["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["e.npz"]


def test_files_honour_the_umask_and_binary_mode_fsyncs(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "c.bin", "wb", fsync=True) as handle:
            handle.write(b"\x00\x01")
    finally:
        os.umask(old)
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_only_write_modes():
    with pytest.raises(ValueError, match="expected 'w' or 'wb'"), atomic_open("x", "a"):
        pass
