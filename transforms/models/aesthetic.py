"""The LAION improved-aesthetic-predictor head for RunInference (handler in models/handlers.py).

The head (christophschuhmann/improved-aesthetic-predictor) is a small MLP trained on
L2-normalised CLIP ViT-L/14 (OpenAI) image embeddings to predict a 1-10 rating:
Linear(768, 1024) Dropout(0.2) Linear(1024, 128) Dropout(0.2) Linear(128, 64)
Dropout(0.1) Linear(64, 16) Linear(16, 1), saved as a torch state_dict with the keys
``layers.0.weight`` ... ``layers.7.bias``. We read that format as it is, so the public
checkpoint loads unchanged and users can pass heads they trained the same way for another
CLIP (the input size is read from ``layers.0.weight``).

Users name the public checkpoint (downloaded once on their machine, before the graph is
built) or pass a local .pth. The head only means something over the embeddings it was
trained on: a head whose input size differs from the run's CLIP embedding is refused
before the graph runs, and a named head is refused with a CLIP model other than the one
it was trained for.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidcurate.transforms.core import AddArgument, ConfigError, check
from vidcurate.transforms.media.storage import file_digest
from vidcurate.transforms.models.device import use_cpu_threads
from vidcurate.transforms.models.loading import ProcessCache, fetching_weights


@dataclass(frozen=True)
class PublicHead:
    """A published head: where it is downloaded from and the CLIP it was trained on."""

    url: str
    clip_model: str  # open_clip architecture name
    clip_pretrained: str  # open_clip pretrained tag
    input_dim: int


# The checkpoint Open-Sora's scoring tools download (tools/scoring/README.md); trained on
# SAC, LAION-Logos and AVA ratings over OpenAI CLIP ViT-L/14 embeddings.
PUBLIC_HEADS: dict[str, PublicHead] = {
    "sac+logos+ava1-l14-linearMSE": PublicHead(
        url="https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
            "sac%2Blogos%2Bava1-l14-linearMSE.pth",
        clip_model="ViT-L-14", clip_pretrained="openai", input_dim=768),
}
DEFAULT_AESTHETIC_HEAD = "sac+logos+ava1-l14-linearMSE"

# The original MLP's Linear layers (their index in its nn.Sequential; Dropout layers sit
# between and hold no weights) and their output sizes.
_LINEAR_LAYERS = (0, 2, 4, 6, 7)
_HIDDEN = (1024, 128, 64, 16, 1)


@dataclass(frozen=True)
class AestheticConfig:
    model: str | None  # a public head's name or a local .pth; None: no aesthetic score
    batch_size: int
    checkpoint_path: str | None = None  # local file found by the launcher
    checkpoint_sha256: str | None = None
    input_dim: int | None = None  # read from the checkpoint by the launcher
    device: str = "cpu"  # resolved by models.device before the graph
    cpu_threads: int = 0  # the library's threads per worker process (0: its default)

    @property
    def enabled(self) -> bool:
        return self.model is not None

    @property
    def public(self) -> PublicHead | None:
        return PUBLIC_HEADS.get(self.model or "")

    @property
    def model_id(self) -> str:
        """aesthetic:<name>, or aesthetic:sha256:<prefix> for a local file."""
        if self.public is not None:
            return f"aesthetic:{self.model}"
        if self.checkpoint_sha256:
            return f"aesthetic:sha256:{self.checkpoint_sha256[:12]}"
        return f"aesthetic:{os.path.basename(self.model or '')}"

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("aesthetic-model", default=None,
            help="Score every clip with a LAION improved-aesthetic-predictor head over its "
            f"CLIP keyframe embeddings: a public head's name ({', '.join(PUBLIC_HEADS)}, "
            "downloaded once; needs --clip-model ViT-L-14 --clip-pretrained openai) or a "
            "local .pth state_dict in that format. Off by default.")
        add("aesthetic-batch-size", type=int, default=256,
            help="Clips per aesthetic head forward pass.")

    @classmethod
    def from_options(cls, o: Any) -> AestheticConfig:
        check((o.aesthetic_batch_size >= 1,
               f"--aesthetic-batch-size must be >= 1, got {o.aesthetic_batch_size}"))
        return cls(model=o.aesthetic_model or None, batch_size=o.aesthetic_batch_size)


def cache_dir() -> str:
    """Where named heads are kept once downloaded (XDG cache, like open_clip's hub cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vidcurate", "aesthetic")


def download(url: str, dest: str, timeout_s: float = 30.0) -> None:
    """Fetch url to dest atomically (a partial file never looks like weights)."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    part = f"{dest}.part"
    with urllib.request.urlopen(url, timeout=timeout_s) as r, open(part, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
    os.replace(part, dest)


def head_input_dim(state: dict[str, Any]) -> int:
    """The embedding size a state_dict in the predictor's format takes; raises
    ValueError when the keys or shapes are not that format."""
    expected = {f"layers.{i}.{p}" for i in _LINEAR_LAYERS for p in ("weight", "bias")}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError("not an improved-aesthetic-predictor state_dict (layers.0 ... "
                         f"layers.7): missing {missing[:4]}, unexpected {extra[:4]}")
    first = state["layers.0.weight"]
    if len(first.shape) != 2:
        raise ValueError(f"layers.0.weight has shape {tuple(first.shape)}, expected 2-d")
    for i, out in zip(_LINEAR_LAYERS, _HIDDEN, strict=True):
        if int(state[f"layers.{i}.weight"].shape[0]) != out:
            raise ValueError(f"layers.{i}.weight has {state[f'layers.{i}.weight'].shape[0]} "
                             f"outputs, the predictor's MLP has {out}")
    return int(first.shape[1])


def _load_state(path: str) -> dict[str, Any]:
    import torch

    # weights_only: a checkpoint is data, never code to run.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict")
    return state


def resolve_aesthetic(cfg: AestheticConfig, clip_model: str | None,
                      clip_pretrained: str | None, clip_local: bool,
                      clip_embed_dim: int | None) -> AestheticConfig:
    """Find the head's weights (downloading a named head once), read its input size and
    refuse a CLIP whose embeddings it was not trained on, before the graph is built.
    clip_model None means the run has no CLIP."""
    if not cfg.enabled:
        return cfg
    if clip_model is None:
        raise ConfigError("--aesthetic-model scores CLIP embeddings: run with CLIP "
                          "(drop --no-clip) or leave --aesthetic-model out")
    public = cfg.public
    if public is not None:
        # Another CLIP's embeddings may have the same size and still mean nothing to it.
        if clip_model != public.clip_model or (not clip_local
                                               and clip_pretrained != public.clip_pretrained):
            raise ConfigError(
                f"aesthetic head {cfg.model} was trained on CLIP {public.clip_model}/"
                f"{public.clip_pretrained} embeddings, but this run uses {clip_model}/"
                f"{clip_pretrained}: pass --clip-model {public.clip_model} --clip-pretrained "
                f"{public.clip_pretrained}, or leave --aesthetic-model out")
        path = os.path.join(cache_dir(), f"{cfg.model}.pth")
        if not os.path.isfile(path):
            with fetching_weights(f"aesthetic head {cfg.model} from {public.url}",
                                  "On a machine without internet copy that file here and "
                                  "pass --aesthetic-model PATH"):
                download(public.url, path)
    else:
        path = os.path.abspath(cfg.model or "")
        if not os.path.isfile(path):
            raise ConfigError(f"--aesthetic-model {cfg.model!r} is neither a file nor a known "
                              f"head ({', '.join(PUBLIC_HEADS)})")
    try:
        dim = head_input_dim(_load_state(path))
    except Exception as e:
        raise ConfigError(f"--aesthetic-model {cfg.model!r}: cannot read {path}: "
                          f"{type(e).__name__}: {e}") from e
    if clip_embed_dim is not None and dim != clip_embed_dim:
        raise ConfigError(
            f"aesthetic head {cfg.model!r} takes {dim}-d embeddings but CLIP {clip_model} "
            f"gives {clip_embed_dim}-d ones: the head is meant for another CLIP model "
            "(the public heads for ViT-L-14, 768-d)")
    return dataclasses.replace(cfg, checkpoint_path=path, input_dim=dim,
                               checkpoint_sha256=file_digest(path)[1])


def build_head(state: dict[str, Any]) -> Any:
    """The predictor's MLP with the checkpoint's weights, in eval mode (no dropout)."""
    import torch
    from torch import nn

    dim = head_input_dim(state)
    # The original's nn.Sequential, index for index, so its state_dict keys load as they are.
    layers = nn.Sequential(
        nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))
    model = nn.Module()
    model.layers = layers
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    model.eval()
    return model


def load_head(cfg: AestheticConfig) -> Any:
    """The head on the run's device, in float32 everywhere: it is a few small matrix
    products, and half precision would only move its scores."""
    use_cpu_threads(cfg.cpu_threads)
    return build_head(_load_state(cfg.checkpoint_path or cfg.model or "")).to(cfg.device)


def score_embeddings(head: Any, frames: np.ndarray) -> np.ndarray:
    """One score per row of frames (CLIP image embeddings), each L2-normalised first as
    the head was trained; raises ValueError for embeddings of another size."""
    import torch

    frames = np.asarray(frames, np.float32)
    dim = head.layers[0].in_features
    if frames.ndim != 2 or frames.shape[1] != dim:
        raise ValueError(f"the aesthetic head takes {dim}-d CLIP embeddings, got shape "
                         f"{frames.shape}: it is meant for another CLIP model")
    norms = np.linalg.norm(frames, axis=1, keepdims=True)
    x = torch.from_numpy(frames / np.maximum(norms, 1e-12))
    device = next(head.parameters()).device
    with torch.no_grad():
        scores = head.layers(x.to(device)).reshape(-1).cpu()
    return scores.numpy().astype(np.float64)


# One head per worker process, kept for its life (models.loading says why).
_PROCESS_HEADS: ProcessCache[Any] = ProcessCache()


def shared_head(cfg: AestheticConfig) -> Any:
    return _PROCESS_HEADS.get((cfg.model_id, cfg.device), lambda: load_head(cfg))
