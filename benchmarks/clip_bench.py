"""CLIP benchmark: encoder throughput and stitching overhead per video-minute; and the
calibration of stitching distances for a model.

Throughput: images/s and texts/s of the CLIP towers at --clip-batch-size, on this
machine's cores, through the same functions the pipeline's ModelHandler calls. Speed
does not depend on the weights, so without --clip-pretrained the architecture runs with
random weights (said in the output).
Stitching overhead: on a generated 720p video of --minutes minutes with a cut every few
seconds, the time to read the boundary frames, embed them and stitch, per minute of
video, next to the time cut detection takes on the same file.

Calibration (--calibrate FOLDER): within-shot and across-cut distance quantiles of the
model on your videos, and --stitch-scale = the model's median across-cut distance over
the reference's (ViT-H-14 by default: Panda-70M's own scale), from
--reference-model/--reference-pretrained or a --reference-median measured before.

Prints a markdown table; every figure is measured in this one run.
Usage: python benchmarks/clip_bench.py [--clip-model ViT-B-32] [--minutes 2]
       python benchmarks/clip_bench.py --calibrate VIDEOS --clip-model X --clip-pretrained Y
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from tests.support.media import Clip, make_cuts_video  # noqa: E402
from vidcurate.pipeline.options import ClipModelConfig, SplitConfig, StitchConfig  # noqa: E402
from vidcurate.schemas.records import ProbedVideo, Source  # noqa: E402
from vidcurate.transforms.detect_scenes import detect_scenes  # noqa: E402
from vidcurate.transforms.manifest import video_id_for  # noqa: E402
from vidcurate.transforms.media.limits import MediaError  # noqa: E402
from vidcurate.transforms.models import import_open_clip  # noqa: E402
from vidcurate.transforms.models.clip import (  # noqa: E402
    LoadedClip,
    embed_images,
    embed_texts,
    load_clip,
    resolve_clip,
)
from vidcurate.transforms.probe import probe_source  # noqa: E402
from vidcurate.transforms.stitch import frame_requests, stitch_video  # noqa: E402

SPLIT = SplitConfig(detector="content", threshold=25.0, min_scene_len=15, detect_width=256,
                    max_cut_len=5.0, force_cut_after=7.0, min_clip_s=2.5, max_clip_s=60.0,
                    trim_fraction=0.0)
SOURCES = ["testsrc2", "mandelbrot", "gradients", "cellauto", "smpte", "zoom"]


def load(model: str, pretrained: str | None, config: str | None) -> tuple[LoadedClip, str]:
    if pretrained:
        cfg = resolve_clip(ClipModelConfig(enabled=True, model=model, pretrained=pretrained,
                                      model_config=config, batch_size=32))
        return load_clip(cfg), cfg.model_id
    oc = import_open_clip()
    if config:
        oc.add_model_config(config)
    net, _, preprocess = oc.create_model_and_transforms(model, pretrained=None)
    net.eval()
    tokenizer = oc.get_tokenizer(model)
    dim = int(oc.get_model_config(model)["embed_dim"])
    return LoadedClip(net, preprocess, tokenizer, dim), f"{model} (random weights: speed only)"


def _probe(path: Path) -> ProbedVideo:
    uri = str(path.resolve())
    return probe_source(Source(uri=uri, video_id=video_id_for(uri)))


def throughput(clip: LoadedClip, batch: int, rounds: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8) for _ in range(batch)]
    texts = [f"a video of a person doing thing number {i} in a kitchen" for i in range(batch)]
    embed_images(clip, images[:2])  # warm-up
    embed_texts(clip, texts[:2])
    start = time.perf_counter()
    for _ in range(rounds):
        embed_images(clip, images)
    img_s = rounds * batch / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        embed_texts(clip, texts)
    return img_s, rounds * batch / (time.perf_counter() - start)


def stitch_cost(clip: LoadedClip, video: Path, model_id: str, batch: int) -> dict[str, float]:
    probed = _probe(video)
    start = time.perf_counter()
    scened = detect_scenes(probed, SPLIT)
    detect_s = time.perf_counter() - start
    cfg = StitchConfig(model_id=model_id, start_position=0.05, end_position=0.95,
                       transition_distance=1.0, merge_distance=0.6, still_distance=0.15,
                       redundant_distance=0.3, scale=1.0)
    start = time.perf_counter()
    requests = list(frame_requests(scened, cfg))
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    feats = {}
    for i in range(0, len(requests), batch):
        chunk = requests[i:i + batch]
        for r, f in zip(chunk, embed_images(clip, [r.image for r in chunk]), strict=True):
            feats[(r.key[1], r.key[2])] = f
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    stitched = stitch_video(scened, feats, cfg, SPLIT)
    rules_s = time.perf_counter() - start
    return {"minutes": probed.info.duration_s / 60, "shots": len(scened.shots),
            "events": len(stitched.events or ()), "detect_s": detect_s, "read_s": read_s,
            "embed_s": embed_s, "rules_s": rules_s}


def boundary_distances(clip: LoadedClip, videos: list[Path]) -> tuple[list[float], list[float]]:
    """(within-shot, across-cut) distances of a model on the videos' cut-scenes."""
    within, across = [], []
    cfg = StitchConfig(model_id="calibration", start_position=0.05, end_position=0.95,
                       transition_distance=1.0, merge_distance=0.6, still_distance=0.15,
                       redundant_distance=0.3, scale=1.0)
    for video in videos:
        try:
            probed = _probe(video)
        except MediaError as e:
            print(f"skipped {video}: {e}")
            continue
        scened = detect_scenes(probed, SPLIT)
        requests = list(frame_requests(scened, cfg))
        feats = dict(zip([(r.key[1], r.key[2]) for r in requests],
                         embed_images(clip, [r.image for r in requests]), strict=True))
        detected = {b.frame for b in scened.boundaries if b.kind == "detected"}
        for i, shot in enumerate(scened.shots):
            if (i, 0) in feats and (i, 1) in feats:
                within.append(float(np.linalg.norm(feats[(i, 0)] - feats[(i, 1)])))
            if shot.start_frame in detected and (i - 1, 1) in feats and (i, 0) in feats:
                across.append(float(np.linalg.norm(feats[(i - 1, 1)] - feats[(i, 0)])))
    return within, across


def _quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    q = np.quantile(values, [0.1, 0.5, 0.9])
    return f"{q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} (n={len(values)})"


def calibrate(args: argparse.Namespace) -> None:
    folder = Path(args.calibrate)
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in
                    {".mp4", ".mkv", ".mov", ".webm", ".avi"})
    clip, model_id = load(args.clip_model, args.clip_pretrained, args.clip_model_config)
    within, across = boundary_distances(clip, videos)
    print(f"## Stitching distances of {model_id} on {len(videos)} videos\n")
    print("| pairs | p10 / p50 / p90 |\n|---|---|")
    print(f"| within a cut-scene (5 % vs 95 %) | {_quantiles(within)} |")
    print(f"| across a detected cut | {_quantiles(across)} |")
    reference = args.reference_median
    if reference is None and args.reference_pretrained:
        ref, ref_id = load(args.reference_model, args.reference_pretrained, None)
        reference = float(np.median(boundary_distances(ref, videos)[1]))
        print(f"\nreference {ref_id}: median across-cut distance {reference:.3f}")
    if reference and across:
        print(f"\n--stitch-scale {float(np.median(across)) / reference:.3f}")
    else:
        print("\nno reference: pass --reference-pretrained (ViT-H-14 weights) or "
              "--reference-median to get --stitch-scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--clip-pretrained", default=None,
                        help="tag or checkpoint; none: random weights (speed only)")
    parser.add_argument("--clip-model-config", default=None)
    parser.add_argument("--clip-batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--calibrate", metavar="FOLDER")
    parser.add_argument("--reference-model", default="ViT-H-14")
    parser.add_argument("--reference-pretrained", default=None)
    parser.add_argument("--reference-median", type=float, default=None)
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args)
        return
    clip, model_id = load(args.clip_model, args.clip_pretrained, args.clip_model_config)
    import torch

    img_s, txt_s = throughput(clip, args.clip_batch_size, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        n = max(2, int(args.minutes * 60 / 4))
        shots = [Clip(SOURCES[i % len(SOURCES)], 4) for i in range(n)]
        video = make_cuts_video(Path(tmp) / "bench.mp4", shots, size=(1280, 720), audio=False)
        cost = stitch_cost(clip, video, model_id, args.clip_batch_size)
    per_min = {k: cost[k] / cost["minutes"] for k in ("detect_s", "read_s", "embed_s",
                                                       "rules_s")}
    stitch_total = per_min["read_s"] + per_min["embed_s"] + per_min["rules_s"]
    print(f"## CLIP: {model_id}, batch {args.clip_batch_size}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cores\n")
    print("| measure | value |\n|---|---|")
    print(f"| image tower | {img_s:.1f} images/s (720p frames, preprocessing included) |")
    print(f"| text tower | {txt_s:.1f} texts/s |")
    print(f"| video | {cost['minutes']:.1f} min 720p, {cost['shots']} cut-scenes -> "
          f"{cost['events']} events |")
    print(f"| cut detection | {per_min['detect_s']:.2f} s per video-minute |")
    print(f"| stitching: read boundary frames | {per_min['read_s']:.2f} s per video-minute |")
    print(f"| stitching: embed them | {per_min['embed_s']:.2f} s per video-minute |")
    print(f"| stitching: rules | {per_min['rules_s'] * 1000:.1f} ms per video-minute |")
    print(f"| stitching overhead | {stitch_total:.2f} s per video-minute = "
          f"{stitch_total / per_min['detect_s']:.2f}x cut detection |")


if __name__ == "__main__":
    main()
