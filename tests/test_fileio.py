"""Atomic writes: complete or absent, never truncated; usual file permissions."""

import os
import stat

import pytest

from scnn.fileio import atomic_write, atomic_write_text


def test_replaces_the_file_whole(tmp_path):
    path = tmp_path / "out" / "result.txt"
    atomic_write_text(path, "first\n")
    atomic_write_text(path, "second\n")
    assert path.read_text() == "second\n"
    assert os.listdir(path.parent) == ["result.txt"]


def test_an_error_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "result.txt"
    atomic_write_text(path, "complete\n")
    with pytest.raises(RuntimeError), atomic_write(path) as handle:
        handle.write("half of a new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["result.txt"]


def test_mode_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
