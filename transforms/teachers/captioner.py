"""captioner: a Hugging Face image-to-text model (BLIP, GIT style) on the keyframes.

Each keyframe is captioned (one batch per clip) and every distinct caption is a
candidate; CLIP then judges them against the whole clip. The model is named for users
(default Salesforce/blip-image-captioning-base, downloaded on their machine) or a local
folder saved with save_pretrained (model and processor); it is resolved before the
graph is built and loaded once per worker process.
"""

from __future__ import annotations

import io
import os
from typing import Any, ClassVar

from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.models import import_transformers
from vidcurate.transforms.models.device import (
    oom_counter,
    split_on_oom,
    torch_dtype,
    use_cpu_threads,
)
from vidcurate.transforms.models.loading import ProcessCache, fetching_weights
from vidcurate.transforms.teachers.base import (
    ClipContext,
    Proposal,
    Teacher,
    TeacherError,
    register,
)
from vidcurate.transforms.teachers.frames import keyframe_bytes
from vidcurate.transforms.teachers.text import as_sentence

OFFLINE_HINT = ("On a machine without internet pass a local folder with --captioner-model "
                "PATH (saved with save_pretrained: the model and its processor), or drop "
                "captioner from --teachers.")
MAX_FRAMES = 3


def resolve_captioner(name: str) -> str:
    """The model folder: a local path as given, or a named model from the local cache or
    downloaded once; ConfigError with the offline how-to when it cannot be had."""
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ConfigError(f"--captioner-model {name!r} has no config.json. " + OFFLINE_HINT)
        return os.path.abspath(name)
    if os.sep in name.strip("/").split("/", 1)[-1] or os.path.exists(name):
        raise ConfigError(f"--captioner-model {name!r} is not a folder. " + OFFLINE_HINT)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:
        pass
    with fetching_weights(f"captioner model {name!r}", OFFLINE_HINT):
        from huggingface_hub import model_info

        model_info(name, timeout=10)  # fails fast without a network
        return snapshot_download(name)


def load_captioner(path: str, device: str = "cpu", cpu_threads: int = 0) -> tuple[Any, Any]:
    """(processor, model) in eval mode on the device (fp16 on CUDA, fp32 on the CPU);
    image-text-to-text models first, GIT-style causal models second."""
    use_cpu_threads(cpu_threads)
    tf = import_transformers()
    processor = tf.AutoProcessor.from_pretrained(path)
    try:
        model = tf.AutoModelForImageTextToText.from_pretrained(path)
    except ValueError:
        model = tf.AutoModelForCausalLM.from_pretrained(path)
    model = model.to(device=device, dtype=torch_dtype(device))
    model.eval()
    return processor, model


def caption_images(processor: Any, model: Any, images: list[Any], max_tokens: int) -> list[str]:
    """One caption per image, generated on the model's device; a batch that does not fit
    in GPU memory is captioned in smaller parts (greedy decoding: the same captions)."""
    import torch

    def generate(part: list[Any]) -> list[str]:
        inputs = processor(images=part, return_tensors="pt").to(model.device)
        # Only the floating inputs (pixel values) take the model's dtype; ids stay ints.
        inputs = {k: v.to(model.dtype) if v.is_floating_point() else v
                  for k, v in inputs.items()}
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=max_tokens)
        return [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]

    return split_on_oom(generate, images, lambda parts: [t for p in parts for t in p],
                        oom_counter("captioning"))


@register
class CaptionerTeacher(Teacher):
    name = "captioner"
    _models: ClassVar[ProcessCache[tuple[Any, Any]]] = ProcessCache()

    @property
    def model_id(self) -> str:
        model = self.cfg.captioner_model
        name = os.path.basename(model.rstrip("/")) if os.path.isdir(model) else model
        return f"transformers:{name}"

    def setup(self) -> None:
        path = self.cfg.captioner_path or self.cfg.captioner_model
        device = self.cfg.device
        self.processor, self.model = self._models.get(
            (path, device), lambda: load_captioner(path, device, self.cfg.cpu_threads))

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        from PIL import Image, UnidentifiedImageError

        frames = keyframe_bytes(ctx.clip, MAX_FRAMES)
        if not frames:
            return []
        try:
            images = [Image.open(io.BytesIO(b)).convert("RGB") for b in frames]
        except (OSError, UnidentifiedImageError) as e:
            raise TeacherError("keyframe_unreadable", f"cannot decode a keyframe: {e}") from e
        texts = caption_images(self.processor, self.model, images,
                               self.cfg.captioner_max_tokens)
        return [Proposal(as_sentence(t), prompt=f"keyframe {i + 1} of {len(texts)}")
                for i, t in enumerate(texts) if t]
