"""open_clip for RunInference (handler in models/handlers.py): image and text towers.

Users name a model and a pretrained tag (downloaded on their machine, e.g. ViT-B-32 /
laion2b_s34b_b79k) or pass a local checkpoint, plus a JSON model config for an
architecture open_clip does not ship. The launcher resolves the weights before the
graph is built (`resolve_clip`), so weights that cannot be had stop the run with a
message saying how to pass a local path; workers then load the model once per process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcurate.transforms.core import AddArgument, ConfigError, check
from vidcurate.transforms.media.storage import file_digest
from vidcurate.transforms.models import import_open_clip
from vidcurate.transforms.models.device import (
    is_cuda,
    oom_counter,
    split_on_oom,
    torch_dtype,
    use_cpu_threads,
)
from vidcurate.transforms.models.loading import ProcessCache, fetching_weights


@dataclass(frozen=True)
class ClipModelConfig:
    enabled: bool
    model: str
    pretrained: str  # a tag, or a local checkpoint path
    model_config: str | None  # JSON config path for an architecture open_clip lacks
    batch_size: int
    checkpoint_path: str | None = None  # local file found by the launcher
    checkpoint_sha256: str | None = None  # identifies local weights in model_id
    embed_dim: int | None = None  # from the model config, once resolved
    batch_size_given: bool = True  # --clip-batch-size was set: the device default waits
    device: str = "cpu"  # resolved by models.device before the graph
    cpu_threads: int = 0  # torch's threads in each worker process (0: torch's default)
    model_copies: int = 0  # >0: copies per worker machine, shared by its processes

    @property
    def local(self) -> bool:
        return os.path.exists(self.pretrained) or os.sep in self.pretrained

    @property
    def model_id(self) -> str:
        """open_clip:<model>/<tag>, or open_clip:<model>/sha256:<prefix> for local
        weights (a path says nothing about which weights it holds)."""
        if self.local:
            tag = f"sha256:{self.checkpoint_sha256[:12]}" if self.checkpoint_sha256 else \
                os.path.basename(self.pretrained)
        else:
            tag = self.pretrained
        return f"open_clip:{self.model}/{tag}"

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("no-clip", action="store_true",
            help="Run without CLIP: no stitching, no embeddings, captions "
            "selected by teacher priority (recorded in runs).")
        add("clip-model", default=DEFAULT_CLIP_MODEL,
            help="open_clip architecture name (see open_clip.list_models()), or the name "
            "defined by --clip-model-config.")
        add("clip-pretrained", default=DEFAULT_CLIP_PRETRAINED,
            help="open_clip pretrained tag (downloaded on first use) or a local checkpoint "
            "file (.pt / .bin / .safetensors in open_clip's format).")
        add("clip-model-config", default=None,
            help="JSON model config (open_clip's model_configs format) for an architecture "
            "open_clip does not know; its file name without .json is the model name.")
        add("clip-batch-size", type=int, default=None,
            help=f"Images or texts per CLIP forward pass (default {CPU_BATCH_SIZE} on the "
            f"CPU, {GPU_BATCH_SIZE} on a GPU; a batch that does not fit in GPU memory is "
            "split and retried).")
        add("clip-model-copies", type=int, default=0,
            help="Load this many copies of CLIP per worker machine, in processes of their "
            "own shared by all its SDK worker processes (Beam RunInference model_copies): "
            "many processes for decoding, few model copies on the GPU. 0 (default): one "
            "copy per worker process.")

    @classmethod
    def from_options(cls, o: Any) -> ClipModelConfig:
        given = o.clip_batch_size is not None
        check((not given or o.clip_batch_size >= 1, f"--clip-batch-size must be >= 1, got "
               f"{o.clip_batch_size}"),
              (o.clip_model_copies >= 0, f"--clip-model-copies must be >= 0, got "
               f"{o.clip_model_copies}"))
        return cls(enabled=not o.no_clip, model=o.clip_model, pretrained=o.clip_pretrained,
                   model_config=o.clip_model_config,
                   batch_size=o.clip_batch_size if given else CPU_BATCH_SIZE,
                   batch_size_given=given, model_copies=o.clip_model_copies)

    def on_device(self, device: str, cpu_threads: int = 0) -> ClipModelConfig:
        """The config for the run's device: a GPU takes larger batches unless
        --clip-batch-size was given (it always wins)."""
        size = self.batch_size if self.batch_size_given else default_batch_size(device)
        return dataclasses.replace(self, device=device, batch_size=size, cpu_threads=cpu_threads)


# Images per forward pass: 32 keeps the CPU's peak memory low; a GPU is only kept busy
# by larger batches (a batch too large for a big model is split: models.device).
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256


def default_batch_size(device: str) -> int:
    return GPU_BATCH_SIZE if is_cuda(device) else CPU_BATCH_SIZE


DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"


OFFLINE_HINT = (
    "On a machine without internet pass local weights with --clip-pretrained PATH (an "
    "open_clip checkpoint file, e.g. open_clip_model.safetensors from the model's Hugging "
    "Face repository, copied from a machine that has it) and, for an architecture "
    "open_clip does not know, --clip-model-config JSON; or run with --no-clip."
)


@dataclasses.dataclass(frozen=True)
class EmbedRequest:
    """One thing to embed: an RGB image (H x W x 3 uint8) or a text; key says whose."""

    key: Any
    image: np.ndarray | None = None
    text: str | None = None


@dataclasses.dataclass(frozen=True)
class LoadedClip:
    model: Any
    preprocess: Any
    tokenizer: Any
    dim: int
    device: str = "cpu"

    def embed(self, images: Sequence[np.ndarray], texts: Sequence[str]
              ) -> tuple[np.ndarray, np.ndarray]:
        """Both towers over one batch. A method, so that it also works through the proxy
        Beam hands run_inference when the model lives in a process of its own
        (--clip-model-copies): only the arrays and texts cross processes."""
        return embed_images(self, images), embed_texts(self, texts)


def _register_config(cfg: ClipModelConfig) -> None:
    open_clip = import_open_clip()
    if cfg.model_config:
        name = os.path.splitext(os.path.basename(cfg.model_config))[0]
        if name != cfg.model:
            raise ConfigError(f"--clip-model-config {cfg.model_config!r} defines model "
                              f"{name!r} (its file name) but --clip-model is {cfg.model!r}")
        open_clip.add_model_config(cfg.model_config)


def _cached_or_downloaded(pretrained_cfg: dict[str, Any]) -> str:
    """The weights file: from the local cache when present, else downloaded once."""
    open_clip = import_open_clip()
    hub = pretrained_cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors",
                                             "open_clip_pytorch_model.bin"]
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str):
                return hit
        # huggingface_hub retries an unreachable host for ~45 s: ask once, briefly.
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError

        with contextlib.suppress(EntryNotFoundError):  # reachable: open_clip tries others
            get_hf_file_metadata(hf_hub_url(repo, names[0]), timeout=10)
    path = open_clip.download_pretrained(pretrained_cfg)
    if not path or not os.path.isfile(path):
        raise FileNotFoundError("open_clip returned no weights file")
    return path


def resolve_clip(cfg: ClipModelConfig) -> ClipModelConfig:
    """Check the model and find its weights before the graph is built (download named
    weights once); raises ConfigError saying how to pass a local path when that fails."""
    if not cfg.enabled:
        return cfg
    if cfg.model_config and not os.path.isfile(cfg.model_config):
        raise ConfigError(f"--clip-model-config {cfg.model_config!r} is not a file")
    if cfg.model_config:
        try:
            with open(cfg.model_config) as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--clip-model-config {cfg.model_config!r} is not JSON: {e}") \
                from e
        if not {"embed_dim", "vision_cfg", "text_cfg"} <= set(config):
            raise ConfigError(f"--clip-model-config {cfg.model_config!r} lacks embed_dim, "
                              "vision_cfg or text_cfg (open_clip's model config format)")
    _register_config(cfg)
    open_clip = import_open_clip()
    if cfg.model not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {cfg.model!r}: pass --clip-model-config "
                          "JSON for your own architecture, or one of open_clip.list_models()")
    cfg = dataclasses.replace(cfg, embed_dim=int(open_clip.get_model_config(cfg.model)[
        "embed_dim"]))
    if cfg.local:
        if not os.path.isfile(cfg.pretrained):
            raise ConfigError(f"--clip-pretrained {cfg.pretrained!r} is not a file. "
                              + OFFLINE_HINT)
        path = os.path.abspath(cfg.pretrained)
        return dataclasses.replace(cfg, pretrained=path, checkpoint_path=path,
                                   checkpoint_sha256=file_digest(path)[1])
    pretrained_cfg = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained)
    if not pretrained_cfg:
        tags = open_clip.list_pretrained_tags_by_model(cfg.model)
        raise ConfigError(f"open_clip has no pretrained {cfg.pretrained!r} for "
                          f"{cfg.model}; known: {', '.join(tags) or 'none'}")
    with fetching_weights(f"CLIP weights {cfg.model}/{cfg.pretrained}", OFFLINE_HINT):
        path = _cached_or_downloaded(pretrained_cfg)
    return dataclasses.replace(cfg, checkpoint_path=path)


def load_clip(cfg: ClipModelConfig) -> LoadedClip:
    """The model in eval mode with its preprocessing and tokenizer (local weights when
    the launcher found them here, else by name)."""
    import torch

    _register_config(cfg)
    use_cpu_threads(cfg.cpu_threads)
    open_clip = import_open_clip()
    weights = cfg.checkpoint_path if cfg.checkpoint_path and os.path.exists(
        cfg.checkpoint_path) else cfg.pretrained
    model, _, preprocess = open_clip.create_model_and_transforms(cfg.model, pretrained=weights)
    # fp16 on CUDA (models.device.half_precision says why), fp32 on the CPU.
    model = model.to(device=cfg.device, dtype=torch_dtype(cfg.device))
    model.eval()
    tokenizer = open_clip.get_tokenizer(cfg.model)
    with torch.no_grad():
        dim = int(model.encode_text(tokenizer(["a"]).to(cfg.device)).shape[-1])
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer, dim=dim,
                      device=cfg.device)


def embed_images(clip: LoadedClip, images: Sequence[np.ndarray]) -> np.ndarray:
    """L2-normalised image embeddings, float32, one row per image."""
    import torch
    from PIL import Image

    if not images:
        return np.zeros((0, clip.dim), np.float32)
    batch = torch.stack([clip.preprocess(Image.fromarray(im).convert("RGB")) for im in images])
    dtype = torch_dtype(clip.device)

    def encode(part: Any) -> np.ndarray:
        with torch.no_grad():
            feats = clip.model.encode_image(part.to(device=clip.device, dtype=dtype))
        return feats.float().cpu().numpy()

    return _normalised(split_on_oom(encode, batch, np.concatenate, oom_counter("clip_model")))


def embed_texts(clip: LoadedClip, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised text embeddings, float32 (texts longer than the model's context are
    cut by its tokenizer)."""
    import torch

    if not texts:
        return np.zeros((0, clip.dim), np.float32)

    def encode(part: Any) -> np.ndarray:
        with torch.no_grad():
            feats = clip.model.encode_text(part.to(clip.device))
        return feats.float().cpu().numpy()

    return _normalised(split_on_oom(encode, clip.tokenizer(list(texts)), np.concatenate,
                                    oom_counter("clip_model")))


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


# One model per worker process for all the steps that use it (stitching, embeddings,
# scoring, zero-shot): RunInference loads a model per step, even with one
# model_identifier.
_PROCESS_MODELS: ProcessCache[LoadedClip] = ProcessCache()


def shared_clip(cfg: ClipModelConfig) -> LoadedClip:
    """This process's model for cfg, loaded on first use and kept."""
    return _PROCESS_MODELS.get((cfg.model_id, cfg.device), lambda: load_clip(cfg))
