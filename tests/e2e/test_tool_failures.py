"""A tool the run's environment stops is a failure to retry, never damage in the file
(issue 29): an ffmpeg killed by a signal while it decodes for cut detection or cuts
the clips, one past --tool-memory-mb or past --tool-max-seconds leaves its video an
error row with status failed and no clip, and the next run over the same output does
the video again, whole, once the tool is healthy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.faulty_ffmpeg import faulty_calls, faulty_ffmpeg
from tests.support.helpers import run_cli
from tests.support.media import Clip, make_cuts_video
from vidcurate.pipeline.query import connect

ARGS = ["--no-clip", "--no-asr", "--no-ocr", "--keyframes", "1", "--clip-media", "copy"]
# The cuts video (16 s, 25 fps, 320x180, shots of 3, 4, 3, 3, 3 s): five clips.
CLIPS = 5
# The cut detector's frames of it: 256x144 BGR (--detect-width 256).
FRAME_BYTES = 256 * 144 * 3


def _run(video: Path, out: Path, *extra: str, env: dict[str, str] | None = None,
         fails: bool = False) -> None:
    """A run to its commit; one whose only video `fails` may exit 1 ("no input was
    usable")."""
    proc = run_cli("run", "--input", str(video), "--output", str(out), "--work-dir",
                   f"{out}-work", *ARGS, *extra, env=env)
    assert proc.returncode in ((0, 1) if fails else (0,)), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _video_row(out: Path) -> dict:
    rel = connect(str(out)).sql("SELECT status, reason, clip_count, run_id FROM videos")
    rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    assert len(rows) == 1
    return rows[0]


def _error_types(out: Path, run_id: str) -> set[tuple[str, str]]:
    return set(connect(str(out)).execute(
        "SELECT stage, error_type FROM errors_all WHERE run_id = $run",
        {"run": run_id}).fetchall())


def _clip_count(out: Path, run_id: str) -> int:
    return connect(str(out)).execute("SELECT count(*) FROM clips_all WHERE run_id = $run",
                                     {"run": run_id}).fetchall()[0][0]


def _failed_then_redone(video: Path, out: Path, stage: str, error_type: str,
                        clips: int = CLIPS) -> None:
    """The first run left the video failed on the environment's error, without clips;
    a healthy rerun does it again and keeps all its clips."""
    first = _video_row(out)
    assert first["status"] == "failed", first
    assert "damaged or truncated" not in (first["reason"] or "")
    assert (stage, error_type) in _error_types(out, first["run_id"]), first
    assert _error_types(out, first["run_id"]) <= {(stage, error_type)}
    assert _clip_count(out, first["run_id"]) == 0
    _run(video, out)
    again = _video_row(out)
    assert again["run_id"] != first["run_id"], "resume took the failed video as done"
    assert again["status"] == "ok" and again["reason"] is None, again
    assert again["clip_count"] == clips == _clip_count(out, again["run_id"])


@pytest.mark.parametrize("signal", ["SIGINT", "SIGKILL"])
def test_a_signal_during_the_cut_detection_decode_is_not_a_truncated_file(
        videos, tmp_path, signal):
    out = tmp_path / "out"
    # 300 of the 400 frames reach the detector, then the signal. Before: SIGINT (ffmpeg
    # flushes what it had read and exits 255) was a normal end, status ok; stopped while
    # still reading the file, its frames end early, "damaged or truncated" with clips
    # missing. SIGKILL was taken for the memory limit.
    env = faulty_ffmpeg(tmp_path / "bin", "decode", signal, after_bytes=300 * FRAME_BYTES)
    _run(videos.cuts, out, env=env, fails=True)
    assert faulty_calls(tmp_path / "bin") == 1
    _failed_then_redone(videos.cuts, out, "detect_scenes", "tool_killed")


def test_a_signal_while_cutting_fails_the_video_not_some_clips(videos, tmp_path):
    out = tmp_path / "out"
    # The process cutting all clips, and the two it would cut again one by one: it
    # kept the other clips, status ok with "2 of 5 clips failed to cut".
    env = faulty_ffmpeg(tmp_path / "bin", "cut", "SIGINT", times=3)
    _run(videos.cuts, out, env=env, fails=True)
    assert faulty_calls(tmp_path / "bin") == 1  # no clip cut again after it
    _failed_then_redone(videos.cuts, out, "cut_clips", "tool_killed")


def test_the_time_limit_while_cutting_fails_the_video_not_some_clips(videos, tmp_path):
    out = tmp_path / "out"
    # The cutting process writes its clips and never ends; --tool-max-seconds stops it.
    env = faulty_ffmpeg(tmp_path / "bin", "cut", "hang", times=2)
    _run(videos.cuts, out, "--tool-max-seconds", "10", env=env, fails=True)
    assert faulty_calls(tmp_path / "bin") == 1
    _failed_then_redone(videos.cuts, out, "cut_clips", "timeout")


def test_the_memory_limit_is_not_bad_data(tmp_path):
    # A 4K picture: probing and listing fit in 320 MB, decoding does not. ffmpeg says
    # so only as "get_buffer() failed" / "Resource temporarily unavailable" among
    # lines that read like damage ("decode_slice_header error", "Invalid data found").
    video = make_cuts_video(tmp_path / "uhd.mp4", [Clip("testsrc2", 3)], size=(3840, 2160),
                            audio=False)
    out = tmp_path / "out"
    _run(video, out, "--tool-memory-mb", "320", "--ffmpeg-threads", "1", fails=True)
    _failed_then_redone(video, out, "detect_scenes", "memory_limit", clips=1)
