"""Clip files hold exactly what their row says (#18): each clip's decoded frames are the
source's decoded frames over the row's media span [media_start_s, media_end_s), frame
for frame, and never a frame past the span's end; and all clips of a video are cut by
one ffmpeg process.

Compared with ffmpeg's framemd5 of the decoded frames (copy mode: bit-identical) and,
for re-encoded clips (exact mode), frame by frame within encoding noise, on a source
with hard cuts and a keyframe every 2 s, a B-frame source (3 B-frames, pyramid, 10 s
GOP) and a variable-frame-rate source with B-frames.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.media import Clip, damage_at, ffmpeg, make_cuts_video
from vidcurate.pipeline.options import MediaConfig, SplitConfig
from vidcurate.schemas.records import ClipRecord, Source
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.cut_clips import cut_video, plan_clips
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.probe import probe_source

# Spans end at the hard cuts 3, 7 and 10 s: a frame too many is a frame of the next shot.
SHOTS = [Clip("testsrc2", 3), Clip("mandelbrot", 4), Clip("cellauto", 3), Clip("smpte", 2)]
SPLIT = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 1.0, 60.0, 0.0)
B_FRAMES = 3
SAME_TIME_S = 1e-3


def _vfr_with_b_frames(path: Path) -> Path:
    """25 fps, then 10 fps, then 25 fps again (hard cuts between), 3 B-frames."""
    parts = [("testsrc2", 25), ("mandelbrot", 10), ("cellauto", 25)]
    args: list[str] = []
    for name, rate in parts:
        spec = {"testsrc2": "testsrc2", "mandelbrot": "mandelbrot",
                "cellauto": "cellauto=rule=30:random_fill_ratio=0.5:scroll=1:seed=7"}[name]
        sep = ":" if "=" in spec else "="
        args += ["-f", "lavfi", "-t", "3", "-i", f"{spec}{sep}size=320x180:rate={rate}"]
    graph = "".join(f"[{i}:v]setsar=1,format=yuv420p[v{i}];" for i in range(3))
    graph += "[v0][v1][v2]concat=n=3:v=1:a=0[v]"
    ffmpeg(*args, "-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "fast", "-g", "250", "-sc_threshold", "0",
           "-x264-params", f"bframes={B_FRAMES}:b-adapt=0", "-video_track_timescale", "1000",
           str(path))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("exactness")
    return {
        # No B-frames, a keyframe every 2 s: copy clips start before their span.
        "cuts": make_cuts_video(d / "cuts.mp4", SHOTS),
        # Every fourth frame a P-frame, the three between B-frames referencing it.
        "bframes": make_cuts_video(d / "bframes.mp4", SHOTS, gop=250, preset="fast",
                                   x264_params=f"bframes={B_FRAMES}:b-adapt=0"),
        "vfr": _vfr_with_b_frames(d / "vfr.mp4"),
    }


def _split(path: Path, name: str):
    return apply_rules(detect_scenes(probe_source(Source(uri=str(path), video_id=name)),
                                     SPLIT), SPLIT)


def _cut(path: Path, name: str, mode: str, out: Path) -> list[ClipRecord]:
    split = _split(path, name)
    media = MediaConfig(output=str(out), clip_media=mode, keyframes=0, keyframe_width=160,
                        ffmpeg_threads=1)
    records = cut_video(plan_clips(split, media, "h"), media, "h", "run")
    assert all(isinstance(r, ClipRecord) for r in records), records
    return records


def frame_hashes(path: Path | str) -> list[tuple[float, str]]:
    """(time from the first frame, md5) of every decoded video frame, in display order."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "framemd5", "-"],
                         capture_output=True, text=True, check=True).stdout
    tb = 1.0
    rows = []
    for line in out.splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":", 1)[1].strip().split("/")
            tb = int(num) / int(den)
        elif not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            rows.append((int(fields[2]) * tb, fields[5]))
    return [(t - rows[0][0], h) for t, h in rows]


def grey_frames(path: Path | str) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-pix_fmt", "gray", "-f", "rawvideo", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, 180, 320).astype(np.float32)


def _in_span(frames: list[tuple[float, str]], start: float, end: float) -> list[int]:
    return [i for i, (t, _) in enumerate(frames)
            if start - SAME_TIME_S <= t < end - SAME_TIME_S]


@pytest.mark.parametrize("name", ["cuts", "bframes", "vfr"])
def test_copy_clips_hold_exactly_the_source_frames_of_their_media_span(sources, name,
                                                                       tmp_path):
    source = frame_hashes(sources[name])
    records = _cut(sources[name], name, "copy", tmp_path / "out")
    assert len(records) >= 3
    for rec in records:
        span = rec.span
        # Never a frame past the span: a span ending at a cut has nothing of the next shot.
        assert rec.media_start_s <= span.start_s + SAME_TIME_S
        assert span.start_s < rec.media_end_s <= span.end_s + SAME_TIME_S
        wanted = _in_span(source, rec.media_start_s, rec.media_end_s)
        got = [h for _, h in frame_hashes(rec.media_uri)]
        # Every frame decodes bit for bit as in the source, and none is missing.
        assert got == [source[i][1] for i in wanted], (name, span, rec.media_end_s)
        # Frames of the span the copy could not keep (they need a reference from past
        # the end): at most the B-frame depth.
        dropped = _in_span(source, rec.media_end_s, span.end_s)
        assert len(dropped) <= B_FRAMES, (name, span, rec.media_end_s)


@pytest.mark.parametrize("name", ["cuts", "bframes", "vfr"])
def test_exact_clips_hold_exactly_the_frames_of_their_span(sources, name, tmp_path):
    source_times = frame_hashes(sources[name])
    source = grey_frames(sources[name])
    records = _cut(sources[name], name, "exact", tmp_path / "out")
    for rec in records:
        span = rec.span
        assert rec.media_start_s == pytest.approx(span.start_s, abs=SAME_TIME_S)
        assert rec.media_end_s == pytest.approx(span.end_s, abs=SAME_TIME_S)
        wanted = _in_span(source_times, span.start_s, span.end_s)
        clip = grey_frames(rec.media_uri)
        # Frame-exact at both ends: the same frames, each its source frame up to the
        # re-encode's noise (a neighbour from another shot differs by far more).
        assert len(clip) == len(wanted), (name, span)
        diff = np.abs(clip - source[wanted]).mean(axis=(1, 2))
        assert diff.max() < 4.0, (name, span, diff.argmax(), diff.max())


def test_one_ffmpeg_process_cuts_all_clips_of_a_video(sources, tmp_path, monkeypatch):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from vidcurate.transforms.cut_clips import CutClips
    from vidcurate.transforms.errors import ERRORS
    from vidcurate.transforms.media import cutting

    calls: list[str] = []
    run_tool = cutting.run_tool

    def counting(args, timeout_s, what, limits):
        calls.append(what)
        return run_tool(args, timeout_s, what, limits)

    monkeypatch.setattr(cutting, "run_tool", counting)
    split = _split(sources["cuts"], "cuts")
    media = MediaConfig(output=str(tmp_path / "out"), clip_media="copy", keyframes=0,
                        keyframe_width=160, ffmpeg_threads=1)
    with TestPipeline() as p:
        out = p | beam.Create([split]) | CutClips(media, "h", "run")
        assert_that(out["clips"] | beam.Map(lambda c: c.clip_index),
                    equal_to(list(range(len(split.spans)))), label="clips")
        assert_that(out[ERRORS], equal_to([]), label="errors")
    assert len(split.spans) == 4
    assert [c for c in calls if "cutting" in c] == ["cutting 4 clips"]


def test_a_damaged_stretch_costs_only_its_own_clips(sources, tmp_path, monkeypatch):
    """When the shared process fails, the clips are cut again one at a time: only the
    clip that cannot be cut ends as an error row; the others are still exact."""
    from vidcurate.transforms.media import cutting
    from vidcurate.transforms.media.limits import MediaError

    damaged = damage_at(sources["cuts"], tmp_path / "damaged.mp4", 5.0, length=16384)
    split = _split(damaged, "damaged")
    media = MediaConfig(output=str(tmp_path / "out"), clip_media="copy", keyframes=0,
                        keyframe_width=160, ffmpeg_threads=1)
    tasks = plan_clips(split, media, "h")
    bad = next(i for i, t in enumerate(tasks) if t.span.start_s <= 5.0 < t.span.end_s)
    # The clip over the damaged stretch makes ffmpeg fail: as if its packets were
    # unreadable (ffmpeg tolerates most damage in stream copy, so the failure is forced).
    output_args = cutting._output_args

    def failing(index, cut, threads):
        args = output_args(index, cut, threads)
        if cut.dst.endswith(f"clip{bad}.mp4"):
            args[-1:-1] = ["-bsf:v", "no_such_filter"]
        return args

    monkeypatch.setattr(cutting, "_output_args", failing)
    records = cut_video(tasks, media, "h", "run")
    assert isinstance(records[bad], MediaError) and records[bad].error_type == "cut_failed"
    clean = [r for i, r in enumerate(records) if i != bad]
    assert clean and all(isinstance(r, ClipRecord) for r in clean)
    source = frame_hashes(damaged)
    for rec in clean:
        wanted = _in_span(source, rec.media_start_s, rec.media_end_s)
        assert [h for _, h in frame_hashes(rec.media_uri)] == [source[i][1] for i in wanted]
    # Nothing of the failed clip is published.
    assert not list((tmp_path / "out" / "media").rglob(f"{tasks[bad].clip_id}*"))
