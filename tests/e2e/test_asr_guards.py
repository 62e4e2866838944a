"""The hallucination guards in a real run. With Silero VAD on, audio without speech never
reaches Whisper, so nothing there tests the guards; with --no-asr-vad, Whisper tiny.en
invents words on silence, a pure tone and music. Every invented segment must be dropped:
no transcript text, each segment kept in clips.transcript_dropped with its guard's name,
and counted under asr/dropped_<guard>."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import RunOutcome, run
from vidcurate.transforms.asr import GUARDS

SOUNDS = ("silence", "tone", "music")  # made by the `sounds` fixture in conftest


@pytest.fixture(scope="module")
def unvoiced_run(sounds: Path, whisper_tiny_en: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[RunOutcome, Path]:
    corpus = tmp_path_factory.mktemp("no-speech")
    for name in SOUNDS:
        shutil.copy(sounds / f"{name}.mp4", corpus / f"{name}.mp4")
    out = tmp_path_factory.mktemp("no-speech-out") / "out"
    # Beam 5 at temperature 0 only: deterministic decoding, and tiny.en hallucinates on
    # all three ("You" on silence, loops on the tone and the music).
    outcome = run(["--input", str(corpus), "--output", str(out), "--asr-model",
                   str(whisper_tiny_en), "--no-asr-vad", "--asr-beam-size", "5",
                   "--asr-temperature", "0", "--no-clip", "--no-ocr", "--teachers", "metadata",
                   "--clip-media", "none", "--keyframes", "1"])
    return outcome, out


def test_no_invented_words_reach_a_transcript(unvoiced_run):
    _, out = unvoiced_run
    clips = connect(str(out)).sql(
        "SELECT source_uri, transcript, transcript_dropped FROM clips").fetchall()
    assert {Path(uri).stem for uri, _, _ in clips} == set(SOUNDS)
    for uri, transcript, _ in clips:
        assert transcript == "", (Path(uri).stem, transcript)
    dropped = {name: [d for uri, _, ds in clips if Path(uri).stem == name for d in ds]
               for name in SOUNDS}
    # Whisper did invent words on each sound: the empty transcripts above are the
    # guards' work, not Whisper's silence.
    for name, segments in dropped.items():
        assert segments, f"Whisper invented nothing on {name}: the guards went untested"
        for d in segments:
            assert d["guard"] in GUARDS and d["text"].strip() and d["end"] >= d["start"]


def test_each_dropped_segment_is_counted_under_its_guard(unvoiced_run):
    outcome, out = unvoiced_run
    kept = Counter(d["guard"] for (ds,) in connect(str(out)).sql(
        "SELECT transcript_dropped FROM clips").fetchall() for d in ds)
    counted = {g: outcome.counter("asr", f"dropped_{g}") for g in GUARDS}
    assert counted == {g: kept.get(g, 0) for g in GUARDS}
    assert sum(counted.values()) >= len(SOUNDS)
    # VAD is off: the voice-activity guard cannot be what dropped them.
    assert counted["unvoiced"] == 0
