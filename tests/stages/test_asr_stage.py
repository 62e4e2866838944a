"""Transcribe in a TestPipeline: one model per worker, per-video errors, dead letters."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from vidcurate.pipeline.options import AsrConfig
from vidcurate.schemas.records import Source
from vidcurate.transforms.asr import Transcribe
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.probe import probe_source


def _cfg(model, batch_size: int = 4):
    return AsrConfig(enabled=True, backend="faster-whisper", model=str(model),
                     model_path=str(model), language=None, beam_size=1, temperatures=(0.0,),
                     vad=True,
                     min_voiced=0.3, no_speech_threshold=0.6, logprob_threshold=-1.0,
                     compression_ratio_threshold=2.4, max_ngram_repeats=4,
                     batch_size=batch_size)


def _probed(path, vid):
    return probe_source(Source(uri=str(path), video_id=vid))


def test_transcribe_outputs_and_one_model_load(sounds, whisper_tiny_en, monkeypatch):
    import vidcurate.transforms.models.whisper as whisper_models

    loads = []
    real = whisper_models.load_backend
    monkeypatch.setattr(whisper_models, "load_backend",
                        lambda cfg: loads.append(cfg.model) or real(cfg))
    videos = [_probed(sounds / f"{n}.mp4", n)
              for n in ("silence", "tone", "short_audio", "no_audio", "corrupt_audio")]
    p = TestPipeline()
    out = p | beam.Create(videos) | Transcribe(_cfg(whisper_tiny_en, 2), "run1")
    assert_that(out["results"] | beam.Map(lambda r: (r.video_id, len(r.segments), r.note)),
                equal_to([("silence", 0, None), ("tone", 0, None), ("short_audio", 0, None),
                          ("no_audio", 0, "no audio stream")]), label="main")
    assert_that(out[ERRORS] | beam.Map(lambda e: (e.video_id, e.stage, e.error_type)),
                equal_to([("corrupt_audio", "asr", "audio_failed")]), label="errors")
    result = p.run()
    result.wait_until_finish()
    assert loads == [str(whisper_tiny_en)]  # one load for all batches in this process
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace("asr"))["counters"]}
    assert counters["processed"] == 3 and counters["failed"] == 1
    assert counters["skipped"] == 1


def test_a_batch_that_raises_becomes_error_rows(sounds, whisper_tiny_en, monkeypatch):
    import vidcurate.transforms.asr as asr

    def broken(model, audio, cfg):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(asr, "transcribe_array", broken)
    videos = [_probed(sounds / "tone.mp4", "tone")]
    with TestPipeline() as p:
        out = p | beam.Create(videos) | Transcribe(_cfg(whisper_tiny_en, 1), "run1")
        assert_that(out["results"], equal_to([]), label="main")
        assert_that(out[ERRORS] | beam.Map(lambda e: (e.video_id, e.stage,
                                                      "backend exploded" in e.message)),
                    equal_to([("tone", "asr", True)]), label="errors")


def test_guards_keep_the_records_of_what_they_dropped(whisper_tiny_en, tmp_path):
    """With VAD off and thresholds that reject everything, every segment is dropped and
    named, never silently lost."""
    cfg = dataclasses.replace(_cfg(whisper_tiny_en), vad=False, logprob_threshold=0.0)
    from tests.support.media import LIBRIVOX, ffmpeg
    from vidcurate.transforms.asr import transcribe_task
    from vidcurate.transforms.models.whisper import load_backend

    video = tmp_path / "speechy.mp4"  # not in the shared `sounds` folder: others list it
    ffmpeg("-f", "lavfi", "-t", "3", "-i", "mandelbrot=size=160x90:rate=25", "-i",
           str(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"), "-shortest",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(video))
    probed = _probed(video, "s")
    from vidcurate.schemas.records import AsrTask

    result = transcribe_task(AsrTask("s", probed.source.uri, probed.local_path, probed.info),
                             load_backend(cfg), cfg)
    assert result.segments == ()
    assert result.dropped and {d.guard for d in result.dropped} == {"low_logprob"}
    assert "young man" in " ".join(d.text for d in result.dropped).lower()
