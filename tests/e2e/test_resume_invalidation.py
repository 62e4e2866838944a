"""A rerun over the same output skips the videos an earlier complete run finished, unless a
setting that changes what their rows hold changed since (RunConfig.outputs_hash): then
every video is done again. A rerun with nothing changed does nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.media import ffmpeg
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import RunOutcome, run

VIDEOS = ("a", "b")
# Cheap runs: tiny videos, no CLIP, ASR and OCR off unless the case is about them.
COMMON = ["--no-clip", "--teachers", "metadata", "--clip-media", "copy", "--keyframes", "1"]
PLAIN = ["--no-ocr", "--no-asr"]
OCR = ["--no-asr"]
ASR = ["--no-ocr", "--asr-model", "{whisper}"]

# case: (options of the first run, options of the rerun, whether the rerun redoes all)
CASES = {
    "keyframes": (PLAIN, [*PLAIN, "--keyframes", "2"], True),
    "clip-media": (PLAIN, [*PLAIN, "--clip-media", "none"], True),
    "ocr-on": (PLAIN, OCR, True),
    "ocr-settings": (OCR, [*OCR, "--ocr-min-confidence", "0.8"], True),
    "asr-settings": (ASR, [*ASR, "--asr-no-speech-threshold", "0.5"], True),
    "nothing": (PLAIN, PLAIN, False),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("resume-corpus")
    for name, (picture, tone) in zip(VIDEOS, (("testsrc2", 300), ("mandelbrot", 500)),
                                     strict=True):
        ffmpeg("-f", "lavfi", "-t", "3", "-i", f"{picture}=size=160x90:rate=10",
               "-f", "lavfi", "-t", "3", "-i", f"sine=frequency={tone}:sample_rate=16000",
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(d / f"{name}.mp4"))
    return d


@pytest.fixture(scope="module")
def first_runs(corpus: Path, whisper_tiny_en: Path, tmp_path_factory: pytest.TempPathFactory):
    """The first run of each option set, done once and shared: (outcome, output)."""
    done: dict[tuple[str, ...], tuple[RunOutcome, Path]] = {}

    def first(options: list[str]) -> tuple[RunOutcome, Path]:
        key = tuple(options)
        if key not in done:
            out = tmp_path_factory.mktemp("first") / "out"
            done[key] = run(_argv(corpus, out, options, whisper_tiny_en)), out
        return done[key]

    return first


def _argv(corpus: Path, out: Path, options: list[str], whisper: Path) -> list[str]:
    return ["--input", str(corpus), "--output", str(out), *COMMON,
            *(o.format(whisper=whisper) for o in options)]


def _run_ids(out: Path) -> dict[str, set[str]]:
    con = connect(str(out))
    return {table: {r for (r,) in con.sql(f"SELECT DISTINCT run_id FROM {table}").fetchall()}
            for table in ("videos", "clips")}


@pytest.mark.parametrize("case", list(CASES))
def test_a_changed_output_setting_redoes_every_video(case, corpus, first_runs,
                                                     whisper_tiny_en, tmp_path):
    before, after, redo = CASES[case]
    first, first_out = first_runs(before)
    assert first.counter("fetch", "processed") == len(VIDEOS)
    out = tmp_path / "out"
    shutil.copytree(first_out, out)  # the first run's output, as a rerun finds it
    again = run(_argv(corpus, out, after, whisper_tiny_en))
    hashes = first.config.outputs_hash, again.config.outputs_hash
    if redo:
        assert hashes[0] != hashes[1]
        assert again.counter("resume", "skipped") == 0
        assert again.counter("fetch", "processed") == len(VIDEOS)
        assert again.counter("cut_clips", "processed") >= len(VIDEOS)
        # The views show the new run's rows for every video, and its clips only.
        assert _run_ids(out) == {"videos": {again.run_id}, "clips": {again.run_id}}
    else:
        assert again.counter("resume", "skipped") == len(VIDEOS)
        for stage in ("fetch", "probe", "detect_scenes", "cut_clips"):
            assert again.counter(stage, "processed") == 0, stage
        assert _run_ids(out) == {"videos": {first.run_id}, "clips": {first.run_id}}
    assert connect(str(out)).sql("SELECT count(*) FROM videos").fetchall() == [(len(VIDEOS),)]
