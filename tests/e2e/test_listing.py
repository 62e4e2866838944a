"""What a folder run takes, refuses and passes over, told to the user (issue 29: an output
inside its input came back as new videos, files passed over and runs that processed
nothing went without a word)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.helpers import run_cli
from tests.support.media import Clip, make_cuts_video
from vidcurate.pipeline.query import connect

ARGS = ["--no-clip", "--no-asr", "--no-ocr", "--keyframes", "1"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("listing-video")
    make_cuts_video(d / "a.mp4", [Clip("testsrc2", 2.6), Clip("mandelbrot", 2.6)],
                    size=(128, 72), fps=15, audio=False, gop=15)
    return d / "a.mp4"


def _run(*args: str, cwd: Path | None = None):
    return run_cli("run", *args, *ARGS, cwd=cwd)


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink"])
def test_an_output_inside_the_input_is_refused_however_spelled(video, tmp_path, spelling):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(video, videos / "a.mp4")
    if spelling == "same":
        args = ["--input", str(videos), "--output", str(videos)]
    elif spelling == "relative":
        args = ["--input", "videos", "--output", "videos/out"]
    else:  # the output reached through a link that points into the input
        (tmp_path / "outputs").symlink_to(videos)
        args = ["--input", str(videos), "--output", str(tmp_path / "outputs" / "out")]
    done = _run(*args, "--work-dir", str(tmp_path / "work"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "lies inside, the input folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in videos.iterdir()) == ["a.mp4"]


def test_files_passed_over_are_counted_and_a_rerun_says_what_was_done(video, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(video, videos / "a.mp4")
    (videos / "song.m4a").write_bytes(b"not taken")
    out = tmp_path / "out"
    done = _run("--input", str(videos), "--output", str(out), "--work-dir",
                str(tmp_path / "work"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 file passed over (.m4a): see --video-extensions" in done.stdout
    counts = connect(str(out)).sql(
        "SELECT c.name, c.value FROM (SELECT unnest(counts) AS c FROM runs) "
        "WHERE c.stage = 'manifest' AND c.name LIKE 'passed_over:%'").fetchall()
    assert counts == [("passed_over:.m4a", 1)]

    again = _run("--input", str(videos), "--output", str(out), "--work-dir",
                 str(tmp_path / "work"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "inputs: 1 already done, 0 new" in again.stdout


def test_no_follow_symlinks_passes_links_over(video, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(video, videos / "own.mp4")
    (videos / "theirs.mp4").symlink_to(video)
    out = tmp_path / "out"
    done = _run("--input", str(videos), "--output", str(out), "--work-dir",
                str(tmp_path / "work"), "--no-follow-symlinks")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 file passed over (symlink): --no-follow-symlinks" in done.stdout
    sources = [os.path.basename(r[0]) for r in connect(str(out)).sql(
        "SELECT source_uri FROM videos").fetchall()]
    assert sources == ["own.mp4"]


def _nothing(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    folder.mkdir()
    if kind == "manifest":
        (folder / "m.csv").write_text("name,title\na.mp4,A\nb.mp4,B\n")
        return folder / "m.csv"
    if kind == "unreadable":
        (folder / "a.mp4").write_text("not a video")
        (folder / "b.mkv").write_bytes(os.urandom(2048))
    return folder


@pytest.mark.parametrize(("kind", "says"), [
    ("empty", "it lists no videos"),
    ("manifest", "2 unusable manifest rows"),
    ("unreadable", "all 2 videos failed")])
def test_a_run_where_no_input_was_usable_says_so_and_fails(tmp_path, kind, says):
    done = _run("--input", str(_nothing(tmp_path, kind)), "--output", str(tmp_path / "out"),
                "--work-dir", str(tmp_path / "work"))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no input was usable" in done.stderr and says in done.stderr
    assert "Traceback" not in done.stderr
    # The run still committed what it knows: its runs row, and the rows' errors.
    [(runs,)] = connect(str(tmp_path / "out")).sql("SELECT count(*) FROM runs").fetchall()
    assert runs == 1
