"""Videos of still-composed synthetic scenes (tiny_clip's shapes) with fresh sensor
noise in every frame: the tiny CLIP knows what they show."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np

from tests.support.tiny_clip import render


class _At:
    """A stand-in rng for tiny_clip.render that puts the shape where the test wants it:
    uniform(lo, hi) returns lo + f * (hi - lo) for the next fraction f."""

    def __init__(self, fractions: list[float], seed: int) -> None:
        self.fractions = list(fractions)
        self.noise = random.Random(seed)

    def uniform(self, lo: float, hi: float) -> float:
        f = self.fractions.pop(0) if self.fractions else self.noise.random()
        return lo + f * (hi - lo)


def scene_video(path: Path, scenes: list[tuple[str, str, str, list[float]]],
                 seconds: float = 3.0, fps: int = 10) -> Path:
    """A video of still-composed scenes with fresh sensor noise in every frame; each scene
    is (shape, colour, background, [size, x, y, tilt] fractions)."""
    w, h = 320, 240
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
         "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-preset",
         "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps), str(path)],
        stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for n, (shape, colour, bg, where) in enumerate(scenes):
        for i in range(int(seconds * fps)):
            # Colours fixed per scene, sensor noise new in every frame.
            frame = render(shape, colour, bg, _At([*where, *[0.5] * 6], n * 1000 + i), w, h)
            proc.stdin.write(np.asarray(frame).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    return path
