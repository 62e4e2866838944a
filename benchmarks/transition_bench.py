"""Transition detection: quality per kind on xfade-joined footage, and its cost as a
share of cut detection, measured side by side on the same files.

  cuts s         detect_scenes with --no-transitions (one downscaled decode + detector)
  with s         the same with the transition detector observing the same frames
  share          (with - cuts) / cuts (target <= 15%)

Usage: python -m benchmarks.transition_bench [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from tests.support.media import Clip, Join, make_joined_video
from vidcurate.pipeline.demo import sample_dir
from vidcurate.schemas.records import Source
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.scenes import detect_scenes
from vidcurate.transforms.split_config import SplitConfig
from vidcurate.transforms.transitions import TransitionConfig

CFG = SplitConfig("content", 25.0, 15, 256, 5.0, 7.0, 2.5, 60.0, 0.0)
TOLERANCE = 3
SHOTS = [Clip("testsrc2", 3), Clip("mandelbrot", 3), Clip("bunny", 4), Clip("street", 2.4),
         Clip("car", 3.5), Clip("zoom", 3), Clip("smpte", 3), Clip("gradients", 3),
         Clip("cellauto", 3), Clip("testsrc2", 3), Clip("mandelbrot", 3)]
JOINS = [Join("fade", 1.0), Join("dissolve", 0.8), Join("fadeblack", 1.2), Join("cut"),
         Join("wipeleft", 0.6), Join("fadewhite", 1.0), Join("wiperight", 1.5),
         Join("fade", 0.4), Join("dissolve", 1.5), Join("fadeblack", 0.6)]


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    on = dataclasses.replace(CFG, transitions=TransitionConfig())
    with tempfile.TemporaryDirectory() as d:
        path, truth = make_joined_video(Path(d) / "edited.mp4", SHOTS, JOINS,
                                        footage=sample_dir())
        print("| transition | truth frames | found | start error | end error | within 3 |")
        print("|---|---|---|---|---|---|")
        video = probe_source(Source(uri=str(path), video_id="bench"))
        found = detect_scenes(video, on).transitions
        used = set()
        for t in truth:
            if t.kind == "cut":
                continue
            near = [f for f in found if f.start_frame < t.end + TOLERANCE
                    and f.end_frame > t.start - TOLERANCE]
            used.update(near)
            if not near:
                print(f"| {t.kind} | {t.start}-{t.end} | missed | | | no |")
                continue
            s, e = min(f.start_frame for f in near), max(f.end_frame for f in near)
            kinds = "+".join(f.kind for f in near)
            ok = abs(s - t.start) <= TOLERANCE and abs(e - t.end) <= TOLERANCE
            print(f"| {t.kind} | {t.start}-{t.end} | {kinds} {s}-{e} | {s - t.start:+d} | "
                  f"{e - t.end:+d} | {'yes' if ok else 'no'} |")
        print(f"\nfalse transitions on the edited video: {len(set(found) - used)}")
        files = [("edited 256x144", path), ("bikes.mp4 640x272", sample_dir() / "bikes.mp4"),
                 ("bigbuckbunny.mp4 1280x720", sample_dir() / "bigbuckbunny.mp4")]
        print("\n| file | frames | cuts s | with transitions s | share | transitions |")
        print("|---|---|---|---|---|---|")
        for name, f in files:
            v = probe_source(Source(uri=str(f), video_id="bench"))
            t_cuts = best_of(args.repeat, lambda v=v: detect_scenes(v, CFG))
            result = {}
            t_on = best_of(args.repeat, lambda v=v, r=result: r.update(s=detect_scenes(v, on)))
            s = result["s"]
            print(f"| {name} | {s.decoded_frames} | {t_cuts:.3f} | {t_on:.3f} | "
                  f"{(t_on - t_cuts) / t_cuts:.0%} | {len(s.transitions)} |")


if __name__ == "__main__":
    main()
