"""A tiny open_clip CLIP trained from scratch in seconds on synthetic shape frames.

The model is saved in open_clip's own formats (a model-config json and a checkpoint), so
production code loads it by path exactly as it would load a real CLIP:

    open_clip.add_model_config(str(tc.config_path))
    model, _, preprocess = open_clip.create_model_and_transforms(
        tc.model_name, pretrained=str(tc.checkpoint_path))
    tokenizer = open_clip.get_tokenizer(tc.model_name)

Run ``python tests/tiny_clip.py`` to train it once and print time, accuracy and distances.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from vidcurate.transforms.models import import_open_clip

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "purple": (150, 50, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "black": (15, 15, 15),
}
MODEL_NAME = "vidcurate-tiny-clip"
CHECKPOINT_NAME = "tiny_clip.pt"

CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    # A ModifiedResNet: a tiny ViT learns colour at once but shape only slowly from scratch.
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 2},
}

Rng = random.Random | np.random.Generator


@dataclass(frozen=True)
class TinyClip:
    """Where a trained tiny CLIP lies; the config file's stem is its open_clip model name."""

    model_name: str
    config_path: Path
    checkpoint_path: Path
    embed_dim: int


def caption(shape: str, colour: str, background: str) -> str:
    """The one caption of a content, e.g. "a red circle on a white background"."""
    return f"a {colour} {shape} on a {background} background"


def all_contents() -> list[tuple[str, str, str]]:
    """Every (shape, colour, background) combination, in a fixed order."""
    return list(itertools.product(SHAPES, COLOURS, BACKGROUNDS))


def _uniform(rng: Rng, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        corners = [(math.pi / 4 + k * math.pi / 2, r * 0.85) for k in range(4)]
    elif shape == "triangle":
        corners = [(-math.pi / 2 + k * 2 * math.pi / 3, r) for k in range(3)]
    elif shape == "star":
        corners = [(-math.pi / 2 + k * math.pi / 5, r if k % 2 == 0 else r * 0.42)
                   for k in range(10)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + d * math.cos(a + angle), cy + d * math.sin(a + angle)) for a, d in corners]


def render(shape: str, colour: str, background: str, rng: Rng, width: int = 160,
           height: int = 120) -> Image.Image:
    """A frame with one shape of random size, position and tilt inside the central square.

    Deterministic given the rng's state; the shape stays inside the centred
    ``min(width, height)`` square, so open_clip's resize + centre crop keeps all of it.
    """
    side = min(width, height)
    x0, y0 = (width - side) / 2, (height - side) / 2
    r = _uniform(rng, 0.15, 0.27) * side
    margin = r + 0.03 * side
    cx = x0 + _uniform(rng, margin, side - margin)
    cy = y0 + _uniform(rng, margin, side - margin)
    angle = math.radians(_uniform(rng, -15, 15))
    # Small brightness jitter: video frames never show the exact same colour twice.
    bg = tuple(int(np.clip(c + _uniform(rng, -12, 12), 0, 255)) for c in BACKGROUNDS[background])
    fg = tuple(int(np.clip(c + _uniform(rng, -15, 15), 0, 255)) for c in COLOURS[colour])
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, angle), fill=fg)
    noise_rng = np.random.default_rng(int(_uniform(rng, 0, 2**31)))
    arr = np.asarray(img, dtype=np.int16) + noise_rng.integers(-6, 7, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    """Round-trip through JPEG, as keyframes extracted from H.264 video are."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _render_batch(contents: Sequence[tuple[str, str, str]], rng: random.Random,
                  preprocess: Callable[[Image.Image], torch.Tensor],
                  jpeg_fraction: float = 0.5) -> torch.Tensor:
    """Preprocessed renders, part of them JPEG round-tripped at a random quality."""
    out = []
    for shape, colour, background in contents:
        img = render(shape, colour, background, rng)
        if rng.random() < jpeg_fraction:
            img = jpeg(img, quality=rng.randint(60, 90))
        out.append(preprocess(img))
    return torch.stack(out)


def _write_config(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{MODEL_NAME}.json"
    path.write_text(json.dumps(CONFIG, indent=2))
    return path


def train_tiny_clip(out_dir: Path, seed: int = 0, steps: int = 300, per_content: int = 2,
                    pool_per_content: int = 100, lr: float = 2e-3,
                    image_loss: float = 1.0) -> TinyClip:
    """Train the tiny CLIP from scratch and write its config and checkpoint into out_dir.

    Every step sees each of the 40 contents ``per_content`` times, drawn from a pool of
    pre-rendered frames; deterministic given the seed.
    """
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    open_clip = import_open_clip()
    config_path = _write_config(Path(out_dir))
    open_clip.add_model_config(str(config_path))
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)

    contents = all_contents()
    n_contents = len(contents)
    texts = tokenizer([caption(*c) for c in contents])
    # Pre-render a pool through the real preprocess; steps then draw batches from it.
    pool = _render_batch(contents * pool_per_content, rng, preprocess)
    pool_labels = torch.arange(n_contents).repeat(pool_per_content)
    by_content = pool_labels.argsort(stable=True).view(n_contents, pool_per_content)

    # channels_last roughly halves the CPU time of the convolutions.
    model = model.to(memory_format=torch.channels_last)
    pool = pool.contiguous(memory_format=torch.channels_last)

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup)
        * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_contents).repeat_interleave(per_content)
    positives = F.one_hot(labels, n_contents).T.bool()  # caption x image
    eye = torch.eye(len(labels), dtype=torch.bool)
    other_content = (labels[:, None] != labels[None, :]) | eye
    model.train()
    for _ in range(steps):
        pick = torch.randint(pool_per_content, (n_contents, per_content), generator=gen)
        images = pool[by_content.gather(1, pick).flatten()]
        img_f = F.normalize(model.encode_image(images), dim=-1)
        txt_f = F.normalize(model.encode_text(texts), dim=-1)
        scale = model.logit_scale.exp()
        logits = scale * img_f @ txt_f.T  # image x caption: every caption is distinct
        loss_i = F.cross_entropy(logits, labels)
        # Caption -> image has several positives per caption: multi-positive InfoNCE.
        lt = logits.T
        loss_t = (lt.logsumexp(1) - lt.masked_fill(~positives, -1e4).logsumexp(1)).mean()
        loss = (loss_i + loss_t) / 2
        if image_loss and per_content > 1:
            # Image <-> image term: pulls renders of one content together, as downstream
            # compares frame embeddings with each other, not only with captions.
            li = (scale * img_f @ img_f.T).masked_fill(eye, -1e4)
            loss_ii = (li.logsumexp(1) - li.masked_fill(other_content, -1e4).logsumexp(1)).mean()
            loss = loss + image_loss * loss_ii
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    model = model.to(memory_format=torch.contiguous_format).eval()

    checkpoint_path = Path(out_dir) / CHECKPOINT_NAME
    torch.save({"state_dict": model.state_dict()}, checkpoint_path)
    return TinyClip(MODEL_NAME, config_path, checkpoint_path, CONFIG["embed_dim"])


def load(tc: TinyClip) -> tuple[Any, Callable[[Image.Image], torch.Tensor], Any]:
    """Model, val preprocess and tokenizer, loaded the way production loads a CLIP."""
    open_clip = import_open_clip()
    open_clip.add_model_config(str(tc.config_path))
    model, _, preprocess = open_clip.create_model_and_transforms(
        tc.model_name, pretrained=str(tc.checkpoint_path))
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(tc.model_name)


def _distractors(content: tuple[str, str, str], k: int | None,
                 rng: random.Random) -> list[tuple[str, str, str]]:
    """k other contents, preferring those that differ in one attribute only (the hard ones)."""
    others = [c for c in all_contents() if c != content]
    if k is None:
        return others
    near = [c for c in others if sum(a != b for a, b in zip(c, content, strict=True)) == 1]
    far = [c for c in others if c not in near]
    rng.shuffle(near)
    rng.shuffle(far)
    return (near + far)[:k]


@torch.no_grad()
def accuracy(model: Any, preprocess: Callable[[Image.Image], torch.Tensor], tokenizer: Any,
             n: int = 200, seed: int = 1234, distractors: int | None = 4) -> float:
    """Fraction of fresh JPEG'd renders whose own caption beats the distractors' captions.

    Distractors differing in one attribute only come first. ``distractors=None`` competes
    against every other caption.
    """
    model.eval()  # BatchNorm in the ResNet tower: train mode would use batch statistics
    rng = random.Random(seed)
    contents = all_contents()
    captions = [caption(*c) for c in contents]
    txt = F.normalize(model.encode_text(tokenizer(captions)), dim=-1)
    picks = [contents[rng.randrange(len(contents))] for _ in range(n)]
    images = torch.stack([preprocess(jpeg(render(*c, rng))) for c in picks])
    img = F.normalize(model.encode_image(images), dim=-1)
    sims = img @ txt.T
    right = 0
    for i, content in enumerate(picks):
        candidates = [content, *_distractors(content, distractors, rng)]
        scores = sims[i, [contents.index(c) for c in candidates]]
        right += int(scores.argmax()) == 0
    return right / n


@torch.no_grad()
def pair_distances(model: Any, preprocess: Callable[[Image.Image], torch.Tensor],
                   n: int = 100, seed: int = 99) -> dict[str, np.ndarray]:
    """L2 distances between normalised image embeddings of n render pairs of each kind.

    "same": same content, another size/position; "different": another shape or colour
    on the same background; "background": only the background differs.
    """
    model.eval()  # BatchNorm in the ResNet tower: train mode would use batch statistics
    rng = random.Random(seed)
    contents = all_contents()

    def emb(c: tuple[str, str, str]) -> torch.Tensor:
        img = preprocess(jpeg(render(*c, rng))).unsqueeze(0)
        return F.normalize(model.encode_image(img), dim=-1)[0]

    out: dict[str, list[float]] = {"same": [], "different": [], "background": []}
    for _ in range(n):
        a = contents[rng.randrange(len(contents))]
        b = a
        while b[:2] == a[:2]:
            b = (rng.choice(SHAPES), rng.choice(list(COLOURS)), a[2])
        c = (a[0], a[1], next(bg for bg in BACKGROUNDS if bg != a[2]))
        ea = emb(a)
        out["same"].append(float((ea - emb(a)).norm()))
        out["different"].append(float((ea - emb(b)).norm()))
        out["background"].append(float((ea - emb(c)).norm()))
    return {k: np.array(v) for k, v in out.items()}


if __name__ == "__main__":
    import sys
    import tempfile

    for seed in [int(s) for s in sys.argv[1:]] or [0]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            tc = train_tiny_clip(Path(tmp), seed=seed)
            took = time.perf_counter() - t0
            # The loading contract, exactly as production does it.
            open_clip = import_open_clip()
            open_clip.add_model_config(str(tc.config_path))
            model, _, preprocess = open_clip.create_model_and_transforms(
                tc.model_name, pretrained=str(tc.checkpoint_path))
            model.eval()
            tokenizer = open_clip.get_tokenizer(tc.model_name)
            assert tokenizer.context_length == CONFIG["text_cfg"]["context_length"]
            acc = accuracy(model, preprocess, tokenizer, n=200, distractors=4)
            acc_all = accuracy(model, preprocess, tokenizer, n=200, distractors=None)
            d = pair_distances(model, preprocess)
            print(f"seed {seed}: trained in {took:.1f}s; accuracy with 4 distractors {acc:.3f}, "
                  f"among all {len(all_contents())} captions {acc_all:.3f}; L2 same "
                  f"{d['same'].mean():.3f} (max {d['same'].max():.3f}), different shape/colour "
                  f"{d['different'].mean():.3f} (min {d['different'].min():.3f}), background "
                  f"only {d['background'].mean():.3f} (min {d['background'].min():.3f})",
                  flush=True)


def write_random_clip(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """The tiny architecture with random weights, written as (model config, checkpoint):
    loaded by the production path in a second, for tests of how a model is run (device,
    precision, batching) rather than of what it knows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"{MODEL_NAME}.json"
    config_path.write_text(json.dumps(CONFIG))
    open_clip = import_open_clip()
    open_clip.add_model_config(str(config_path))
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    checkpoint = out_dir / "random_tiny_clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return config_path, checkpoint
