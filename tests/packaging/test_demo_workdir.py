"""The demo wipes its work directory at each run: only ever one it made itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_atlasflex.testing.demo import WORKDIR_MARKER, prepare_workdir


def test_a_directory_the_demo_did_not_make_is_left_alone(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(SystemExit, match="not empty and was not made by the demo"):
        prepare_workdir(tmp_path)
    assert precious.read_text() == "keep me"


def test_the_demos_own_directory_is_emptied_and_marked(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    prepare_workdir(workdir)
    (workdir / "exports").mkdir()
    prepare_workdir(workdir)
    assert sorted(p.name for p in workdir.iterdir()) == [WORKDIR_MARKER]


def test_a_new_or_empty_directory_is_used(tmp_path: Path) -> None:
    prepare_workdir(tmp_path)
    assert (tmp_path / WORKDIR_MARKER).exists()
