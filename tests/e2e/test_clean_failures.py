"""Failures of the environment end a command with one line and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

from tests.support.media import Clip, make_cuts_video
from vidcurate.pipeline import cli, dead_runs


def test_a_full_output_disk_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_cuts_video(videos / "a.mp4", [Clip("testsrc2", 1.5)], size=(128, 72), fps=15,
                    audio=False)
    out = tmp_path / "out"

    def full_disk(obj, f):
        f.write("{")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dead_runs.json, "dump", full_disk)
    code = cli.main(["run", "--input", str(videos), "--output", str(out), "--work-dir",
                     str(tmp_path / "work"), "--no-clip", "--no-asr", "--no-ocr"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "No space left on device" in err and "nothing was written" in err
    assert not [p for p in Path(out).rglob("*") if ".active" in p.parts or p.is_file()]
