"""Atomic writes: complete or absent, never truncated; usual file permissions."""

import os
import stat
import sys

import pytest

from scnn import fileio
from scnn.fileio import atomic_write, atomic_write_text, replaced_directory


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


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a").write_text("old a")
    (folder / "b").write_text("old b")
    with pytest.raises(RuntimeError), replaced_directory(folder) as new:
        (new / "a").write_text("new a")
        raise RuntimeError("killed halfway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "old a", "b": "old b"}
    with replaced_directory(folder) as new:
        (new / "a").write_text("new a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "new a"}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask  # as mkdir makes it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_on_linux_the_folders_swap_in_one_call_so_the_path_is_never_missing(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a").write_text("old a")

    def rename(*args):  # the two-step fallback, whose middle leaves no folder at the path
        raise AssertionError("renamed aside instead of swapped")

    monkeypatch.setattr(os, "rename", rename)
    with replaced_directory(folder) as new:
        (new / "b").write_text("new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"b": "new b"}


def test_without_the_swap_the_folder_is_renamed_aside_and_in(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a").write_text("old a")
    monkeypatch.setattr(fileio, "_exchange", lambda first, second: False)
    with replaced_directory(folder) as new:
        (new / "b").write_text("new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"b": "new b"}
