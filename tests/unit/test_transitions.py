"""Gradual transitions: generated footage (lavfi sources and real footage) joined with
ffmpeg's xfade and hard cuts, with known transition frames; footage with none."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from tests.support.media import Clip, Join, JoinedTruth, ffmpeg, make_joined_video
from vidcurate.pipeline.options import ConfigError, RunConfig
from vidcurate.schemas.records import Source, Span, Transition
from vidcurate.transforms.clip_rules import apply_rules
from vidcurate.transforms.detect_scenes import detect_scenes, shots_from_cuts
from vidcurate.transforms.media.decoding import decode_frames_downscaled
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.stitch import stitch
from vidcurate.transforms.transitions import (
    TransitionConfig,
    TransitionObserver,
    detect_transitions,
)

TOLERANCE_FRAMES = 3
# A smoothly moving colour field, like lavfi's gradients but the same on every run (the
# gradients source moves randomly even when seeded, so its frames differed run to run).
GRADIENTS = ("nullsrc=size={w}x{h}:rate={fps},geq=r='128+90*sin(X/37+T*0.4)':"
             "g='128+90*sin(Y/23-T*0.3)':b='128+90*cos((X+Y)/51+T*0.35)'")
LIFE = ("life=size={w}x{h}:rate={fps}:mold=10:ratio=0.2:death_color=#204060:"
        "life_color=#e0c040")
# Every xfade kind the issue names, 0.4-1.5 s, and a hard cut, between lavfi sources and
# real footage (an animated scene, a busy street, a man in a moving car).
EDITED_SHOTS = [Clip("testsrc2", 3), Clip("mandelbrot", 3), Clip("bunny", 4),
                Clip("street", 2.4), Clip("car", 3.5), Clip(LIFE, 3), Clip("smpte", 3),
                Clip(GRADIENTS, 3), Clip("cellauto", 3), Clip("testsrc2", 3)]
EDITED_JOINS = [Join("fade", 1.0), Join("dissolve", 0.8), Join("fadeblack", 1.2), Join("cut"),
                Join("wipeleft", 0.6), Join("fadewhite", 1.0), Join("wiperight", 1.5),
                Join("fade", 0.4), Join("dissolve", 1.5)]
KINDS = {"fade": {"dissolve"}, "dissolve": {"dissolve"}, "wipeleft": {"wipe"},
         "wiperight": {"wipe"}, "fadeblack": {"fade_out", "fade_in"},
         "fadewhite": {"fade_out", "fade_in", "flash"}}


@dataclass(frozen=True)
class Footage:
    edited: Path
    truth: list[JoinedTruth]
    pan: Path  # a slow pan over real footage, one shot
    flash: Path  # a busy street with a camera flash: two white frames, same shot around
    bright_flash: Path  # the same with two frames brightened, not white
    hue: Path  # one shot whose colours cycle at constant brightness
    zoom: Path  # one shot zooming steadily into a fractal (Mandelbrot)


@pytest.fixture(scope="session")
def footage(tmp_path_factory: pytest.TempPathFactory, sample_footage: Path) -> Footage:
    d = tmp_path_factory.mktemp("transitions")
    edited, truth = make_joined_video(d / "edited.mp4", EDITED_SHOTS, EDITED_JOINS,
                                      footage=sample_footage)
    pan = d / "pan.mp4"
    ffmpeg("-i", str(sample_footage / "bigbuckbunny.mp4"), "-vf",
           "crop=640:360:x='40*t':y=180,scale=256:144,setsar=1", "-an", "-c:v", "libx264",
           "-preset", "ultrafast", str(pan))
    flash, bright = d / "flash.mp4", d / "bright_flash.mp4"
    street = ["-ss", "3.04", "-t", "2.44", "-i", str(sample_footage / "bikes.mp4")]
    for path, effect in ((flash, "drawbox=color=white:t=fill"),
                         (bright, "eq=brightness=0.45:contrast=0.6")):
        ffmpeg(*street, "-vf", f"scale=256:144,setsar=1,{effect}:enable='between(n,30,31)'",
               "-an", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    hue, zoom = d / "hue.mp4", d / "zoom.mp4"
    for path, source in ((hue, "zoom"), (zoom, "mandelbrot")):
        make_joined_video(path, [Clip(source, 6)], [])
    return Footage(edited, truth, pan, flash, bright, hue, zoom)


def _scened(path: Path, split_cfg, **transitions):
    cfg = dataclasses.replace(split_cfg, transitions=TransitionConfig(**transitions))
    video = probe_source(Source(uri=str(path), video_id="t"))
    return detect_scenes(video, cfg), cfg


def _covering(found: tuple[Transition, ...], truth: JoinedTruth) -> list[Transition]:
    """Detected transitions overlapping a true one, and the ones touching those (a fade
    through black is a fade out then a fade in)."""
    near = [t for t in found if t.start_frame < truth.end + TOLERANCE_FRAMES
            and t.end_frame > truth.start - TOLERANCE_FRAMES]
    return near


def test_every_transition_found_within_three_frames(footage, split_cfg):
    scened, _ = _scened(footage.edited, split_cfg)
    found = scened.transitions
    matched: set[Transition] = set()
    for truth in footage.truth:
        if truth.kind == "cut":
            # A hard cut is the cut detector's, never inside a transition.
            assert not [t for t in found if t.start_frame < truth.start < t.end_frame - 1]
            assert min(abs(b.frame - truth.start) for b in scened.boundaries
                       if b.kind == "detected") <= 2  # the golden cut tolerance
            continue
        near = _covering(found, truth)
        assert near, f"{truth} not found; found {found}"
        start, end = min(t.start_frame for t in near), max(t.end_frame for t in near)
        assert abs(start - truth.start) <= TOLERANCE_FRAMES, (truth, near)
        assert abs(end - truth.end) <= TOLERANCE_FRAMES, (truth, near)
        assert {t.kind for t in near} <= KINDS[truth.kind], (truth, near)
        matched.update(near)
    assert set(found) == matched, f"false transitions: {set(found) - matched}"
    # Recorded in seconds too, on the video's clock.
    assert all(t.start_s == t.start_frame / 25 for t in found)


def test_no_clip_holds_a_transition_frame(footage, split_cfg):
    scened, cfg = _scened(footage.edited, dataclasses.replace(split_cfg, min_clip_s=1.0))
    spans = apply_rules(scened, cfg).spans
    # Shots of 2.4-4 s lose their transitions and guards: clips are left in most.
    assert len(spans) >= len(EDITED_SHOTS) // 2
    for truth in footage.truth:
        if truth.kind == "cut":
            continue
        for span in spans:
            assert span.end_frame <= truth.start or span.start_frame >= truth.end, (
                truth, span)
    # Without the detector the same video's clips hold transitions (the bug).
    off = detect_scenes(probe_source(Source(uri=str(footage.edited), video_id="t")),
                        dataclasses.replace(cfg, transitions=None))
    assert off.transitions == ()
    holding = [s for s in apply_rules(off, cfg).spans for t in footage.truth
               if t.kind != "cut" and s.start_frame < t.end and s.end_frame > t.start]
    assert holding


@pytest.mark.parametrize("name", ["pan", "flash", "bright_flash", "hue", "zoom"])
def test_no_false_transitions(footage, split_cfg, name):
    scened, _ = _scened(getattr(footage, name), split_cfg)
    assert scened.transitions == ()


def test_no_false_transition_in_a_zoom_between_two_hard_cuts(text_video, split_cfg):
    """The text video's fourth shot (3 s of a fractal zoom under a moving news ticker,
    hard cuts on both sides) changes steadily: with too little of the shot either side
    of a 2 s window to show that, it once passed for a dissolve and its clip was lost."""
    scened, cfg = _scened(text_video, split_cfg)
    assert scened.transitions == ()
    assert len(apply_rules(scened, cfg).spans) == 5  # one clip per shot, as without


def test_no_false_transitions_on_a_fast_street_scene_and_cuts_unchanged(sample_footage,
                                                                        split_cfg):
    # bikes.mp4: a busy street, five hard cuts (golden frames in test_scenes.py).
    scened, _ = _scened(sample_footage / "bikes.mp4", split_cfg)
    assert scened.transitions == ()
    off = detect_scenes(probe_source(Source(uri=str(sample_footage / "bikes.mp4"),
                                            video_id="t")), split_cfg)
    assert scened.boundaries == off.boundaries and scened.shots == off.shots


def test_flash_between_two_shots_is_a_transition(split_cfg):
    # Two white frames between unrelated shots: an edit (a flash cut), kept out of clips.
    rng = np.random.default_rng(0)
    first, second = (rng.integers(20, 200, (9, 16, 3)) for _ in range(2))
    a = [(first + i % 3).astype(np.uint8) for i in range(30)]
    b = [(second + i % 3).astype(np.uint8) for i in range(30)]
    white = [np.full((9, 16, 3), 250, np.uint8)] * 2
    found = detect_transitions(np.stack(a + white + b), 25.0, TransitionConfig())
    assert [(t.kind, t.start_frame, t.end_frame) for t in found] == [("flash", 30, 32)]
    # The same white frames inside one shot: a camera flash, no transition.
    found = detect_transitions(np.stack(a + white + a), 25.0, TransitionConfig())
    assert found == ()


def test_transitions_are_zones_no_shot_or_forced_cut_crosses(split_cfg):
    # A 20 s video at 25 fps, one cut at 100, a dissolve over [240, 270).
    zone = Transition("dissolve", 240, 270, 9.6, 10.8)
    boundaries, shots = shots_from_cuts([100], 500, 25.0, split_cfg, [zone])
    # Zone [240, 270) plus a guard of 5 frames a side.
    assert [(s.start_frame, s.end_frame) for s in shots] == [
        (0, 100), (100, 235), (275, 400), (400, 500)]
    assert [(b.frame, b.kind) for b in boundaries] == [(100, "detected"), (400, "forced")]
    # Without the zone the forced cut lands at 225 and the shot after holds the dissolve.
    _, plain = shots_from_cuts([100], 500, 25.0, split_cfg)
    assert any(s.start_frame < 270 and s.end_frame > 240 for s in plain)
    # A detected cut inside a zone stays a boundary (auditing) but starts no shot.
    boundaries, shots = shots_from_cuts([100, 255], 500, 25.0, split_cfg, [zone])
    assert 255 in [b.frame for b in boundaries]
    assert all(s.end_frame <= 235 or s.start_frame >= 275 for s in shots)


def test_stitching_never_merges_across_a_transition(split_cfg):
    from vidcurate.pipeline.options import StitchConfig

    cfg = StitchConfig(model_id="t", start_position=0.05, end_position=0.95,
                       transition_distance=1.0, merge_distance=0.6, still_distance=0.15,
                       redundant_distance=0.0, scale=1.0)
    split_cfg = dataclasses.replace(split_cfg, max_cut_len=0.0)
    _, shots = shots_from_cuts([], 200, 10.0, split_cfg,
                               [Transition("dissolve", 90, 100, 9.0, 10.0)])
    x = np.array([1, 0, 0, 0], np.float32)
    y = np.array([1, 0.5, 0, 0], np.float32) / np.float32(np.hypot(1, 0.5))  # |x - y| 0.47
    # The same scene either side (each shot's end 0.47 from the next one's start, under
    # the merge distance): merged when adjacent, never across the zone.
    result = stitch(shots, [x, x], [y, y], (), 10.0, cfg, split_cfg)
    assert [(e.start_frame, e.end_frame) for e in result.events] == [(0, 85), (105, 200)]
    adjacent = [Span(0, 90, 0, 9), Span(90, 200, 9, 20)]
    merged = stitch(adjacent, [x, x], [y, y], (), 10.0, cfg, split_cfg)
    assert [(e.start_frame, e.end_frame) for e in merged.events] == [(0, 200)]


def _cfg(*args: str) -> RunConfig:
    return RunConfig.from_options(PipelineOptions(["--input", "in", "--output", "out/",
                                                   *args]))


def test_options_switch_and_validate():
    on = _cfg().split
    assert on.transitions == TransitionConfig()
    assert _cfg("--no-transitions").split.transitions is None
    assert _cfg("--no-transitions").split.params_hash != on.params_hash
    assert _cfg("--transition-min-change", "30").split.transitions.min_change == 30
    for args, flag in [(["--transition-min-change", "0"], "--transition-min-change"),
                       (["--transition-max-residual", "1.5"], "--transition-max-residual"),
                       (["--transition-max-s", "0"], "--transition-max-s"),
                       (["--flash-max-s", "-1"], "--flash-max-s")]:
        with pytest.raises(ConfigError, match=flag):
            _cfg(*args)


def test_search_in_chunks_holds_bounded_memory_and_finds_the_same(footage, split_cfg):
    # The edited video's grids three times over (1719 frames, hard cuts between copies),
    # searched whole and as frames stream in chunks of one overlap.
    from vidcurate.transforms import transitions

    cfg = TransitionConfig()
    whole_video = TransitionObserver(cfg, 25.0, chunk_s=3600.0)
    video = probe_source(Source(uri=str(footage.edited), video_id="t"))
    with decode_frames_downscaled(video.local_path, video.info, split_cfg.detect_width) as fs:
        for frame in fs:
            whole_video.observe(frame)
    grids = np.concatenate([np.stack(whole_video.grids)] * 3)
    whole = detect_transitions(grids, 25.0, cfg)
    chunked = TransitionObserver(cfg, 25.0, chunk_s=1.0)
    original = transitions.grid_of
    transitions.grid_of = lambda frame: frame  # the frames are grids already
    try:
        for grid in grids:
            chunked.observe(grid)
    finally:
        transitions.grid_of = original
    assert chunked.chunk + chunked.overlap < len(grids) / 2  # it did search in chunks
    assert chunked.peak <= chunked.chunk + chunked.overlap
    found = chunked.transitions()
    # Every gradual transition of the three copies is there (an empty search would
    # otherwise agree with itself).
    gradual = [t for t in footage.truth if t.kind != "cut"]
    assert gradual and len(whole) >= 3 * len(gradual)
    assert len(found) == len(whole) == 3 * len(detect_transitions(grids[:573], 25.0, cfg))
    for a, b in zip(found, whole, strict=True):
        assert a.kind == b.kind
        assert abs(a.start_frame - b.start_frame) <= 2 and abs(a.end_frame - b.end_frame) <= 2
