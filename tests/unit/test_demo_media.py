"""`vidcurate demo` finds the opencv-doc samples `make demo` extracted, or says which
videos it runs without them (issue 29: it ran 2 of 4 videos without a word)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from vidcurate.pipeline import demo as demo_module


class _Stop(Exception):
    pass


def _media(root: Path) -> Path:
    folder = root / "build" / "media" / "opencv-doc"
    folder.mkdir(parents=True)
    (folder / demo_module.FILM.file).write_bytes(b"x")
    return root / "build" / "media"


def test_the_samples_are_found_where_make_demo_puts_them(tmp_path):
    assert demo_module.find_media(cwd=_media(tmp_path / "project").parents[1]) == (
        tmp_path / "project" / "build" / "media")


def test_without_the_samples_the_demo_says_what_it_skips(tmp_path, monkeypatch, capsys):
    import vidcurate.pipeline.run as run_module

    monkeypatch.setattr(demo_module, "find_media", lambda cwd=None: None)
    monkeypatch.setattr(run_module, "run", lambda argv: (_ for _ in ()).throw(_Stop()))
    with pytest.raises(_Stop):
        demo_module.demo(str(tmp_path / "out"), ["--no-asr", "--no-clip"])
    said = capsys.readouterr().out
    assert "runs 2 of its 4 videos" in said
    assert demo_module.TEXT_PAGE.file in said and demo_module.FILM.file in said
    assert "--media build/media" in said
    with (tmp_path / "out" / "demo-manifest.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
