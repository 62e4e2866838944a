"""Generated footage with burned-in subtitles (known lines at known times) and random
aesthetic heads written in the LAION improved-aesthetic-predictor checkpoint format."""

from __future__ import annotations

from pathlib import Path

from tests.support.media import FONTS, FPS, SOURCES, _escape, ffmpeg

SUBTITLES = ("Where are you going tonight", "To the harbour with my sister",
             "Bring a coat because it gets cold", "We will be back before ten")


def make_subtitled_video(path: Path, lines: tuple[str, ...] = SUBTITLES,
                         seconds_each: float = 1.5, size: tuple[int, int] = (960, 540),
                         top: bool = False, logo: str | None = None,
                         source: str = "gradients") -> Path:
    """One shot with `lines` burned in one after another, centred `size[1] // 12` from the
    bottom (or the top) edge, white with a black outline as subtitles are drawn; `logo`
    stays small in the bottom-right corner the whole time, as channels brand footage."""
    w, h = size
    margin = h // 12
    y = str(margin) if top else f"h-th-{margin}"
    filters = ["setsar=1", "format=yuv420p"]
    for i, line in enumerate(lines):
        start, end = i * seconds_each, (i + 1) * seconds_each
        filters.append(
            f"drawtext=fontfile={FONTS}/DejaVuSans.ttf:text='{_escape(line)}':fontsize={h // 14}"
            f":fontcolor=white:borderw=2:bordercolor=black:x=(w-tw)/2:y={y}"
            f":enable='between(t,{start},{end})'")
    if logo:
        filters.append(f"drawtext=fontfile={FONTS}/DejaVuSans-Bold.ttf:text='{_escape(logo)}'"
                       f":fontsize={h // 24}:fontcolor=yellow:x=w-tw-20:y=h-th-10")
    seconds = seconds_each * len(lines)
    ffmpeg("-f", "lavfi", "-t", f"{seconds}", "-i",
           SOURCES[source].format(w=w, h=h, fps=FPS), "-vf", ",".join(filters),
           "-c:v", "libx264", "-preset", "ultrafast", "-r", str(FPS), str(path))
    return path


def write_aesthetic_head(path: Path, input_dim: int = 768, seed: int = 0) -> Path:
    """A random head saved exactly as the original MLP's state_dict (a module whose
    `layers` is the nn.Sequential of simple_inference.py), so production code must read
    the real format: keys layers.0.weight ... layers.7.bias."""
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(input_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128),
                nn.Dropout(0.2), nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16),
                nn.Linear(16, 1))

    torch.manual_seed(seed)
    torch.save(MLP().state_dict(), path)
    return path


def random_tiny_clip(out_dir: Path, seed: int = 0):
    """The tiny CLIP of tiny_clip.py untrained: written in open_clip's formats in a blink,
    for tests that need real CLIP embeddings of the right size, not meaningful ones."""
    import torch

    from tests.support.tiny_clip import CHECKPOINT_NAME, CONFIG, MODEL_NAME, TinyClip, _write_config
    from vidcurate.transforms.models import import_open_clip

    open_clip = import_open_clip()
    config_path = _write_config(Path(out_dir))
    open_clip.add_model_config(str(config_path))
    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    checkpoint_path = Path(out_dir) / CHECKPOINT_NAME
    torch.save({"state_dict": model.state_dict()}, checkpoint_path)
    return TinyClip(MODEL_NAME, config_path, checkpoint_path, CONFIG["embed_dim"])
