"""Camera motion: the test set's confusion table, and what the fit adds to cut detection.

Prints, all measured in this one run:
  1. every case of the camera-motion test set (tests/support/camera_set.py: real
     pictures and vtest.avi footage moved by known cameras) with its true and measured
     label and rates, then the confusion table (truth rows, measured columns);
  2. detect_scenes on real footage with the camera fit and with it replaced by a no-op
     (the same decode and flow; runs interleaved): CPU seconds of the whole stage (ours,
     OpenCV's threads and ffmpeg's) as medians, the extra as a ratio, and the fit's own
     thread time over the stage without it (issue 31's target: <= 5 %).

Usage: python -m benchmarks.camera_motion_bench [--repeat 3] [--cases DIR]
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]

from tests.support.camera_set import SPLIT, clip_of, confusion, make_camera_set  # noqa: E402
from vidcurate.pipeline.demo import sample_dir  # noqa: E402
from vidcurate.schemas.records import Source  # noqa: E402
from vidcurate.transforms import frame_signals  # noqa: E402
from vidcurate.transforms.detect_scenes import detect_scenes  # noqa: E402
from vidcurate.transforms.probe import probe_source  # noqa: E402

OPENCV = ROOT / "build" / "media" / "opencv-doc"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def label_table(dest: Path) -> None:
    cases = make_camera_set(dest, Path(sample_dir()), OPENCV)
    print("| case | truth | measured | camera_pan | camera_tilt | camera_zoom | "
          "subject_motion | motion_score |")
    print("|---|---|---|---|---|---|---|---|")
    pairs = []
    for name, (path, truth) in cases.items():
        clip = clip_of(path, SPLIT)
        pairs.append((truth, clip.camera_motion))
        mark = "" if clip.camera_motion == truth else " ✗"
        print(f"| {name} | {truth} | {clip.camera_motion}{mark} | {_fmt(clip.camera_pan)} | "
              f"{_fmt(clip.camera_tilt)} | {_fmt(clip.camera_zoom)} | "
              f"{clip.subject_motion:.4f} | {clip.motion_score:.4f} |")
    right = sum(t == p for t, p in pairs)
    print(f"\n{right} of {len(pairs)} right\n")
    print(confusion(pairs))


def _cpu_now() -> float:
    """CPU seconds of this process and its finished children (ffmpeg) so far."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class _TimedFit:
    """fit_camera, adding up its own thread time."""

    cpu_s = 0.0

    def __init__(self, fit) -> None:
        self.fit = fit

    def __call__(self, *args):
        start = time.thread_time()
        out = self.fit(*args)
        _TimedFit.cpu_s += time.thread_time() - start
        return out


def _no_fit(*args) -> tuple[float, float, float, float]:
    return (math.nan,) * 4


def fit_cost(path: Path, repeat: int) -> dict[str, float]:
    video = probe_source(Source(uri=str(path), video_id="v"))
    timed = _TimedFit(frame_signals.fit_camera)
    cpu: dict[str, list[float]] = {"with": [], "without": []}
    own = []
    for _ in range(repeat):
        for key, fit in (("without", _no_fit), ("with", timed)):
            _TimedFit.cpu_s = 0.0
            start = _cpu_now()
            with mock.patch.object(frame_signals, "fit_camera", fit):
                detect_scenes(video, SPLIT)
            cpu[key].append(_cpu_now() - start)
        own.append(_TimedFit.cpu_s)
    with_cpu, without_cpu = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    return {"with": with_cpu, "without": without_cpu,
            "extra": (with_cpu - without_cpu) / without_cpu,
            "own": statistics.median(own) / without_cpu,
            "frames": video.info.duration_s * video.info.fps}


def cost_table(repeat: int) -> None:
    samples = Path(sample_dir())
    videos = [samples / "bikes.mp4", samples / "bigbuckbunny.mp4", OPENCV / "vtest.avi"]
    print("\n| footage | frames | stage CPU without fit (s) | with fit (s) | extra CPU "
          "(whole stage) | fit's own CPU / stage |")
    print("|---|---|---|---|---|---|")
    for path in videos:
        r = fit_cost(path, repeat)
        print(f"| {path.name} | {r['frames']:.0f} | {r['without']:.2f} | {r['with']:.2f} | "
              f"{100 * r['extra']:+.1f} % | {100 * r['own']:.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", type=Path, default=None,
                        help="folder to keep the test set's videos in (default: temporary)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        label_table(args.cases or Path(tmp))
    cost_table(args.repeat)


if __name__ == "__main__":
    main()
