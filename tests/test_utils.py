"""Tests of misc/utils.py: atomic files and folders, scratch folders, and progress bars that stay readable in logs."""
import io
import os

import pytest

from misc import utils


def test_atomic_path_leaves_the_old_file_when_the_block_fails(tmp_path):
    path = tmp_path / "a.txt"
    utils.atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with utils.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_directory_replaces_and_cleans_up(tmp_path):
    out = tmp_path / "folder"
    out.mkdir()
    (out / "f").write_text("old")
    dead_pid = next(pid for pid in range(4_000_000, 4_100_000) if not utils._pid_alive(pid))
    (tmp_path / f".folder.tmp-{dead_pid}-x").mkdir()  # left by a killed writer
    (tmp_path / f".folder.tmp-{os.getpid()}-y").mkdir()  # a running one's: kept
    with utils.atomic_directory(out) as tmp:
        assert not out.samefile(tmp)
        (tmp / "f").write_text("new")
    assert (out / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".folder.tmp-{os.getpid()}-y", "folder"]


def test_atomic_directory_keeps_the_old_folder_when_the_block_fails(tmp_path):
    out = tmp_path / "folder"
    out.mkdir()
    (out / "f").write_text("old")
    with pytest.raises(RuntimeError):
        with utils.atomic_directory(out) as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("killed")
    assert (out / "f").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_scratch_directory_removes_itself_and_the_folders_of_killed_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(utils.tempfile, "tempdir", str(tmp_path))
    dead_pid = next(pid for pid in range(4_000_000, 4_100_000) if not utils._pid_alive(pid))
    (tmp_path / f"stackgan-worker-{dead_pid}-x").mkdir()  # a worker killed by SIGKILL
    (tmp_path / f"stackgan-worker-{os.getpid()}-y").mkdir()  # a running one's: kept
    (tmp_path / f"other-{dead_pid}-z").mkdir()  # another prefix: not ours
    with utils.scratch_directory("stackgan-worker-") as scratch:
        assert scratch.parent == tmp_path and scratch.name.startswith(f"stackgan-worker-{os.getpid()}-")
        (scratch / "model_1.weights.h5").write_text("copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"other-{dead_pid}-z", f"stackgan-worker-{os.getpid()}-y"]


def test_progress_in_a_log_writes_few_whole_lines(monkeypatch):
    log = io.StringIO()  # not a terminal
    monkeypatch.setattr(utils, "LOG_INTERVAL_S", 3600.0)
    for _ in utils.progress(range(5000), desc="steps", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("steps: 100%"), lines
