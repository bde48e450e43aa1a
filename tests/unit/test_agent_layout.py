"""The generation directory layout: atomic swaps, unchanged files not rewritten, orphans removed (real files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from artifact_agent.layout import DATA, GenerationDirectory
from artifact_agent.materializer import Directories, Materializer


def visible(path: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in path.iterdir() if not entry.name.startswith("..")}


def test_a_swap_publishes_exactly_the_files_through_symlinks(tmp_path: Path) -> None:
    directory = GenerationDirectory(tmp_path / "rules.d")
    assert directory.swap({"a.yaml": b"a", "b.yaml": b"b"})
    assert visible(directory.path) == {"a.yaml": b"a", "b.yaml": b"b"}
    assert os.readlink(directory.path / "a.yaml") == f"{DATA}/a.yaml"
    first = directory.current_generation()
    assert directory.swap({"a.yaml": b"a", "c.yaml": b"c"})
    assert visible(directory.path) == {"a.yaml": b"a", "c.yaml": b"c"}
    hidden = [entry.name for entry in directory.path.iterdir() if entry.name.startswith("..")]
    assert first is not None
    assert first.name not in hidden
    assert len(hidden) == 2, hidden


def test_nothing_is_touched_when_nothing_changed_and_unchanged_files_keep_their_inode(tmp_path: Path) -> None:
    directory = GenerationDirectory(tmp_path / "d")
    directory.swap({"same.yaml": b"same", "other.yaml": b"1"})
    inode = (directory.path / "same.yaml").stat().st_ino
    generation = directory.current_generation()
    assert not directory.swap({"same.yaml": b"same", "other.yaml": b"1"})
    assert directory.current_generation() == generation
    directory.swap({"same.yaml": b"same", "other.yaml": b"2"})
    assert (directory.path / "same.yaml").stat().st_ino == inode


def test_a_restarted_agent_adopts_the_disk_and_removes_orphans(tmp_path: Path) -> None:
    GenerationDirectory(tmp_path / "d").swap({"keep.yaml": b"k", "orphan.yaml": b"o"})
    (tmp_path / "d" / "..2020_01_01_00_00_00.dead").mkdir()  # a generation left by a crash mid-swap
    (tmp_path / "d" / "stray.yaml").write_bytes(b"s")
    adopted = GenerationDirectory(tmp_path / "d")
    assert adopted.read() == {"keep.yaml": b"k", "orphan.yaml": b"o"}
    adopted.swap({"keep.yaml": b"k"})
    assert visible(adopted.path) == {"keep.yaml": b"k"}
    assert len([e for e in adopted.path.iterdir() if e.name.startswith("..")]) == 2


def test_hidden_or_nested_names_are_refused(tmp_path: Path) -> None:
    for name in ("..data", "a/b.yaml", ""):
        with pytest.raises(ValueError, match="plain visible file name"):
            GenerationDirectory(tmp_path / "d").swap({name: b"x"})


def test_plugins_leave_only_after_the_config_that_loads_them(tmp_path: Path) -> None:
    directories = Directories(tmp_path / "rules.d", tmp_path / "config.d", tmp_path / "plugins")
    materializer = Materializer(directories)
    assert materializer.apply({"plugins": {"a.so": b"A"}, "config": {"p.yaml": b"load a"}, "rules": {}}) == [
        "plugins", "config"
    ]  # fmt: skip
    swapped = materializer.apply({"plugins": {"b.so": b"B"}, "config": {"p.yaml": b"load b"}, "rules": {}})
    assert swapped == ["plugins", "config", "plugins"]
    assert visible(directories.plugins) == {"b.so": b"B"}
    assert materializer.apply({"plugins": {"b.so": b"B"}, "config": {"p.yaml": b"load b"}, "rules": {}}) == []


def test_written_files_are_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    directory = GenerationDirectory(tmp_path / "d")
    before = os.umask(0o077)
    try:
        directory.swap({"a.yaml": b"a"})
    finally:
        os.umask(before)
    assert (directory.path / "a.yaml").stat().st_mode & 0o777 == 0o644


def test_a_generation_someone_nested_a_directory_in_is_still_removed(tmp_path: Path) -> None:
    directory = GenerationDirectory(tmp_path / "d")
    directory.swap({"a.yaml": b"a"})
    first = directory.current_generation()
    assert first is not None
    (first / "nested").mkdir()
    (first / "nested" / "x").write_bytes(b"x")
    directory.swap({"a.yaml": b"b"})
    assert not first.exists()
    assert visible(directory.path) == {"a.yaml": b"b"}


def test_a_visible_name_that_is_not_the_expected_link_is_replaced(tmp_path: Path) -> None:
    directory = GenerationDirectory(tmp_path / "d")
    directory.swap({"a.yaml": b"a"})
    (directory.path / "a.yaml").unlink()
    (directory.path / "a.yaml").write_bytes(b"foreign")
    directory.swap({"a.yaml": b"a2"})
    assert os.readlink(directory.path / "a.yaml") == f"{DATA}/a.yaml"
    assert visible(directory.path) == {"a.yaml": b"a2"}
