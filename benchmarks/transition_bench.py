"""Transition detection: quality per kind on xfade-joined footage, false transitions on
one-shot footage, and its cost as a share of cut detection, measured side by side on
the same files. Twin comparison (Zhang, Kankanhalli and Smoliar 1993) runs on the same
grids as the baseline it was compared with.

  cuts s         detect_scenes with --no-transitions (one downscaled decode + detector)
  with s         the same with the transition detector observing the same frames
  share          (with - cuts) / cuts (target <= 15%)

Usage: python -m benchmarks.transition_bench [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.support.media import Clip, Join, JoinedTruth, ffmpeg, make_joined_video
from vidcurate.pipeline.demo import sample_dir
from vidcurate.schemas.records import Source, Transition
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.media.decoding import decode_frames_downscaled
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.split_config import SplitConfig
from vidcurate.transforms.transitions import TransitionConfig, detect_transitions, grid_of

CFG = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
TOLERANCE = 3
# A smoothly moving colour field, like lavfi's gradients but the same on every run (the
# gradients source moves randomly even when seeded, so its frames differed run to run).
GRADIENTS = ("nullsrc=size={w}x{h}:rate={fps},geq=r='128+90*sin(X/37+T*0.4)':"
             "g='128+90*sin(Y/23-T*0.3)':b='128+90*cos((X+Y)/51+T*0.35)'")
SHOTS = [Clip("testsrc2", 3), Clip("mandelbrot", 3), Clip("bunny", 4), Clip("street", 2.4),
         Clip("car", 3.5), Clip("zoom", 3), Clip("smpte", 3), Clip(GRADIENTS, 3),
         Clip("cellauto", 3), Clip("testsrc2", 3), Clip("mandelbrot", 3)]
JOINS = [Join("fade", 1.0), Join("dissolve", 0.8), Join("fadeblack", 1.2), Join("cut"),
         Join("wipeleft", 0.6), Join("fadewhite", 1.0), Join("wiperight", 1.5),
         Join("fade", 0.4), Join("dissolve", 1.5), Join("fadeblack", 0.6)]


def median_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def grids_of(path: Path) -> tuple[np.ndarray, float]:
    video = probe_source(Source(uri=str(path), video_id="bench"))
    with decode_frames_downscaled(video.local_path, video.info, CFG.detect_width) as frames:
        return np.stack([grid_of(f) for f in frames]), video.info.fps


def twin_comparison(grids: np.ndarray, fps: float, high: float = 25.0,
                    tolerance: int = 2) -> tuple[Transition, ...]:
    """Zhang et al. 1993 on the same 16x9 grids: a step over the low threshold Ts starts
    a candidate; the difference between its first frame and the current one is
    accumulated while steps stay over Ts (up to `tolerance` frames under it); a
    candidate whose accumulated difference reaches the high threshold Tb is a gradual
    transition (a single step over Tb is a cut, not counted). Ts adapts to the video:
    the median step plus three median absolute deviations, the usual in-shot level."""
    g = grids.reshape(len(grids), -1).astype(np.float32)
    step = np.r_[0.0, np.abs(np.diff(g, axis=0)).mean(1)]
    mad = float(np.median(np.abs(step - np.median(step))))
    low = float(np.median(step)) + 3 * mad
    out, t, n = [], 1, len(g)
    while t < n:
        if not low < step[t] < high:
            t += 1
            continue
        start, end, under = t, t, 0
        while end + 1 < n and under <= tolerance and step[end + 1] < high:
            end += 1
            under = under + 1 if step[end] <= low else 0
        end -= under  # the last frames under Ts are shot again
        if np.abs(g[end] - g[start - 1]).mean() >= high and end - start >= 2:
            out.append(Transition("gradual", start, end + 1, start / fps, (end + 1) / fps))
        t = end + 1
    return tuple(out)


def score(found: tuple[Transition, ...], truth: list[JoinedTruth]) -> tuple[list[str], int]:
    """Rows of the quality table, and the number of false transitions."""
    rows, used = [], set()
    for t in truth:
        if t.kind == "cut":
            continue
        near = [f for f in found if f.start_frame < t.end + TOLERANCE
                and f.end_frame > t.start - TOLERANCE]
        used.update(near)
        if not near:
            rows.append(f"{t.kind} | {t.start}-{t.end} | missed | | | no")
            continue
        s, e = min(f.start_frame for f in near), max(f.end_frame for f in near)
        kinds = "+".join(f.kind for f in near)
        ok = abs(s - t.start) <= TOLERANCE and abs(e - t.end) <= TOLERANCE
        rows.append(f"{t.kind} | {t.start}-{t.end} | {kinds} {s}-{e} | {s - t.start:+d} | "
                    f"{e - t.end:+d} | {'yes' if ok else 'no'}")
    return rows, len(set(found) - used)


def one_shot_footage(d: Path) -> dict[str, Path]:
    """Footage with no transition: a slow pan, a camera flash, a hue cycle, a zoom."""
    pan = d / "pan.mp4"
    ffmpeg("-i", str(sample_dir() / "bigbuckbunny.mp4"), "-vf",
           "crop=640:360:x='40*t':y=180,scale=256:144,setsar=1", "-an", "-c:v", "libx264",
           "-preset", "ultrafast", str(pan))
    flash = d / "flash.mp4"
    ffmpeg("-ss", "3.04", "-t", "2.44", "-i", str(sample_dir() / "bikes.mp4"), "-vf",
           "scale=256:144,setsar=1,drawbox=color=white:t=fill:enable='between(n,30,31)'",
           "-an", "-c:v", "libx264", "-preset", "ultrafast", str(flash))
    out = {"slow pan": pan, "camera flash": flash, "street (5 cuts)": sample_dir() / "bikes.mp4"}
    for name, source in (("hue cycle", "zoom"), ("fractal zoom", "mandelbrot")):
        out[name] = make_joined_video(d / f"{source}.mp4", [Clip(source, 6)], [])[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    on = dataclasses.replace(CFG, transitions=TransitionConfig())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        path, truth = make_joined_video(d / "edited.mp4", SHOTS, JOINS, footage=sample_dir())
        grids, fps = grids_of(path)
        methods = {"blend/switch models (chosen)": lambda g, f: detect_transitions(
            g, f, TransitionConfig()), "twin comparison": twin_comparison}
        for name, method in methods.items():
            rows, false = score(method(grids, fps), truth)
            within = sum(r.endswith("yes") for r in rows)
            print(f"\n{name}: {within} of {len(rows)} within {TOLERANCE} frames, "
                  f"{false} false on the edited video")
            print("| transition | truth frames | found | start error | end error | within 3 |")
            print("|---|---|---|---|---|---|")
            for r in rows:
                print(f"| {r} |")
        print("\nfalse transitions on footage with none:")
        print("| footage | " + " | ".join(methods) + " |")
        print("|---|" + "---|" * len(methods))
        for name, f in one_shot_footage(d).items():
            g, rate = grids_of(f)
            print(f"| {name} | " + " | ".join(str(len(m(g, rate))) for m in methods.values())
                  + " |")
        files = [("edited 256x144", path), ("bikes.mp4 640x272", sample_dir() / "bikes.mp4"),
                 ("bigbuckbunny.mp4 1280x720", sample_dir() / "bigbuckbunny.mp4")]
        print(f"\ncost, median of {args.repeat} side by side:")
        print("| file | frames | cuts s | with transitions s | share | transitions |")
        print("|---|---|---|---|---|---|")
        for name, f in files:
            v = probe_source(Source(uri=str(f), video_id="bench"))
            result: dict[str, object] = {}
            cuts, with_t = [], []
            for _ in range(args.repeat):  # interleaved, so load drifts hit both alike
                cuts.append(median_of(1, lambda v=v: detect_scenes(v, CFG)))
                with_t.append(median_of(1, lambda v=v, r=result: r.update(
                    s=detect_scenes(v, on))))
            t_cuts, t_on = statistics.median(cuts), statistics.median(with_t)
            s = result["s"]
            print(f"| {name} | {s.decoded_frames} | {t_cuts:.3f} | {t_on:.3f} | "  # type: ignore[attr-defined]
                  f"{(t_on - t_cuts) / t_cuts:.0%} | {len(s.transitions)} |")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
