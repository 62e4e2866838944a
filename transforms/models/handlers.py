"""The RunInference model handlers: CLIP, Whisper, the aesthetic head and Open-NSFW.

They live apart from their models' configs and loading code because Beam's ML package
imports torch and scipy as it loads (apache_beam.ml.inference.model_manager, about 1.3 s
here): only a graph with a model stage imports this module, in its stage's expand(),
so a split-only run, `vidcurate --help` and every worker process of such a run start
without them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from vidcurate.schemas.records import AsrTask
from vidcurate.transforms.models import aesthetic, clip, nsfw, whisper
from vidcurate.transforms.models.aesthetic import AestheticConfig
from vidcurate.transforms.models.clip import ClipModelConfig, EmbedRequest, LoadedClip
from vidcurate.transforms.models.nsfw import LoadedNsfw, NsfwConfig
from vidcurate.transforms.models.whisper import AsrConfig

# The loaders are looked up on their modules at call time, so that whatever replaces one
# there (a test's stand-in) is what every handler uses, whenever this module was imported.


class ClipModelHandler(ModelHandler[EmbedRequest, tuple[Any, np.ndarray], LoadedClip]):
    """RunInference handler: one open_clip model per worker process, shared by every
    step that uses it. A batch may mix images and texts; each tower runs once per batch.
    Yields (key, embedding)."""

    def __init__(self, cfg: ClipModelConfig, namespace: str = "clip_model") -> None:
        super().__init__()
        self.cfg = cfg
        self.namespace = namespace

    def load_model(self) -> LoadedClip:
        return clip.shared_clip(self.cfg)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self.cfg.batch_size}

    def get_metrics_namespace(self) -> str:
        return self.namespace

    def share_model_across_processes(self) -> bool:
        # Beam's large_model path: the model is loaded in processes of its own, which
        # every SDK process of the machine calls; the steps still share it (same tag).
        return self.cfg.model_copies > 0

    def model_copies(self) -> int:
        return max(1, self.cfg.model_copies)

    def run_inference(self, batch: Sequence[EmbedRequest], model: LoadedClip,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[tuple[Any, np.ndarray]]:
        images = [r for r in batch if r.image is not None]
        texts = [r for r in batch if r.image is None]
        image_feats, text_feats = model.embed([r.image for r in images],
                                              [r.text or "" for r in texts])
        yield from ((r.key, f) for r, f in zip(images, image_feats, strict=True))
        yield from ((r.key, f) for r, f in zip(texts, text_feats, strict=True))


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
        return whisper.load_backend(self.cfg)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # Whole videos are large elements: small batches keep memory bounded (but
        # enough videos to keep every concurrent transcription busy).
        return {"min_batch_size": 1,
                "max_batch_size": max(self.max_batch_size, self.cfg.concurrency)}

    def get_metrics_namespace(self) -> str:
        return "asr_model"

    def run_inference(self, batch: Sequence[AsrTask], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Any]:
        """Outcomes in the batch's order; up to cfg.concurrency videos at once, in
        threads (the model has a replica for each; the processing around it is pure,
        and the stage counts its metrics afterwards, in the bundle's thread)."""
        workers = min(self.cfg.concurrency, len(batch))
        if workers <= 1:
            yield from ((task, self._outcome(task, model)) for task in batch)
            return
        with ThreadPoolExecutor(workers, thread_name_prefix="asr") as pool:
            futures = [pool.submit(self._outcome, task, model) for task in batch]
            yield from ((task, f.result()) for task, f in zip(batch, futures, strict=True))

    def _outcome(self, task: AsrTask, model: Any) -> Any:
        try:
            return self.transcribe(task, model)
        except Exception as e:  # one video's failure never fails its batch
            return e


class AestheticModelHandler(ModelHandler[tuple[Any, np.ndarray], tuple[Any, float], Any]):
    """RunInference handler over (key, keyframe embeddings k x d): yields (key, the mean
    of the keyframes' scores), as Open-Sora scores a video by the mean over its frames.
    One forward pass per batch, one head per worker process."""

    def __init__(self, cfg: AestheticConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def load_model(self) -> Any:
        return aesthetic.shared_head(self.cfg)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self.cfg.batch_size}

    def get_metrics_namespace(self) -> str:
        return "aesthetic_model"

    def run_inference(self, batch: Sequence[tuple[Any, np.ndarray]], model: Any,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[tuple[Any, float]]:
        frames = [np.atleast_2d(np.asarray(f, np.float32)) for _, f in batch]
        scores = (aesthetic.score_embeddings(model, np.concatenate(frames)) if frames
                  else np.zeros(0))
        start = 0
        for (key, _), f in zip(batch, frames, strict=True):
            yield key, float(scores[start:start + len(f)].mean())
            start += len(f)


class NsfwModelHandler(ModelHandler[tuple[Any, np.ndarray], tuple[Any, float], LoadedNsfw]):
    """RunInference handler over (key, one preprocessed keyframe, 224 x 224 x 3): yields
    (key, P(NSFW)). One forward pass per batch, one onnxruntime session per worker
    process."""

    def __init__(self, cfg: NsfwConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def load_model(self) -> LoadedNsfw:
        return nsfw.shared_nsfw(self.cfg)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self.cfg.batch_size}

    def get_metrics_namespace(self) -> str:
        return "nsfw_model"

    def run_inference(self, batch: Sequence[tuple[Any, np.ndarray]], model: LoadedNsfw,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[tuple[Any, float]]:
        scores = model.score(np.stack([image for _, image in batch]) if batch
                             else np.zeros((0, nsfw.CROP, nsfw.CROP, 3), np.float32))
        yield from ((key, float(s)) for (key, _), s in zip(batch, scores, strict=True))
