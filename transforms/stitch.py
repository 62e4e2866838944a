"""Stitch: Panda-70M semantic stitching of cut-scenes into events, with CLIP.

For every cut-scene two frames are embedded, at 5% and 95% of its length (Panda's
positions). Then, as in Panda-70M's event_stitching.py:
1. a cut-scene whose own start and end frames are far apart holds a transition
   effect (fade, wipe) and is dropped; so is one whose frames cannot be read;
2. a cut-scene that directly follows the previous event is merged into it when the
   event's last frame and the cut-scene's first frame are close (a cut between two
   views of the same scene);
3. event rules: an event whose first and last frames are nearly identical is still
   and dropped; an event whose mean embedding is close to one already kept in the same
   video is redundant and dropped. Length rules (min / max / trim) stay in ApplyClipRules,
   and an event too short to become a clip is never the reference of a redundancy.

Distances are L2 between L2-normalised embeddings (Panda used ImageBind's vision tower,
which is OpenCLIP ViT-H-14). Dropping everything is a valid outcome: the video gets
zero clips and a reason (Panda's own code crashes there).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

import apache_beam as beam
import numpy as np

from vidcurate.schemas.records import Boundary, DroppedShot, ScenedVideo, Span
from vidcurate.transforms.errors import ERRORS, StageMetrics
from vidcurate.transforms.media.cutting import extract_frames
from vidcurate.transforms.media.decoding import (
    STITCH_FRAME_WIDTH,
    frames_by_number,
    nearest_sample,
    read_sample_image,
)
from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    MediaError,
    MediaLimits,
    ToolStopped,
)
from vidcurate.transforms.media.probing import mean_keyframe_interval_s
from vidcurate.transforms.models.clip import (
    ClipModelConfig,
    EmbedRequest,
)
from vidcurate.transforms.models.clip_embedding import EmbedByOwner
from vidcurate.transforms.split_config import SplitConfig, StitchConfig

STAGE = "stitch"
# Boundary frames are read at most this wide: CLIP looks at 224 px.
FRAME_WIDTH = STITCH_FRAME_WIDTH
# Frames read per ffmpeg process (one input, one seek each).
FRAMES_PER_CALL = 16
# The fixed cost of reading one frame by seeking (a decoder opened, a JPEG written and
# read back), in seconds of video a sequential decode gets through meanwhile (measured:
# 24 seeks into a 60 s 720p video with 10 s GOPs took 3x one pass over it).
SEEK_COST_S = 2.0

def boundary_frames(span: Span, start_position: float, end_position: float) -> tuple[int, int]:
    """The frames embedded for a cut-scene (Panda: int(0.95*s + 0.05*(e-1)) and the
    mirror at 95%)."""
    last = span.end_frame - 1
    length = last - span.start_frame
    return (int(span.start_frame + start_position * length),
            int(span.start_frame + end_position * length))


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))


@dataclasses.dataclass
class _Event:
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    features: list[np.ndarray]  # start and end features of every member, in order

    def span(self) -> Span:
        return Span(self.start_frame, self.end_frame, self.start_s, self.end_s)


@dataclasses.dataclass(frozen=True)
class Stitched:
    events: tuple[Span, ...]
    dropped: tuple[DroppedShot, ...]
    boundaries: tuple[Boundary, ...]  # the input boundaries, with distance / merged set


def _dropped(span: Span, reason: str, distance: float | None) -> DroppedShot:
    return DroppedShot(span.start_frame, span.end_frame, span.start_s, span.end_s,
                       reason, distance)


def stitch(shots: Sequence[Span], starts: Sequence[np.ndarray | None],
           ends: Sequence[np.ndarray | None], boundaries: Sequence[Boundary], fps: float,
           cfg: StitchConfig, split: SplitConfig) -> Stitched:
    """Events from cut-scenes and their start / end embeddings (None: unreadable)."""
    dropped: list[DroppedShot] = []
    events: list[_Event] = []
    at_boundary: dict[int, tuple[float, bool]] = {}
    for shot, start, end in zip(shots, starts, ends, strict=True):
        if start is None or end is None:
            dropped.append(_dropped(shot, "frames_unreadable", None))
            continue
        inner = _dist(start, end)
        if inner > cfg.transition_distance:
            dropped.append(_dropped(shot, "transition", inner))
            continue
        if events and events[-1].end_frame == shot.start_frame:
            across = _dist(events[-1].features[-1], start)
            merge = across <= cfg.merge_distance
            at_boundary[shot.start_frame] = (across, merge)
            if merge:
                events[-1].end_frame, events[-1].end_s = shot.end_frame, shot.end_s
                events[-1].features += [start, end]
                continue
        events.append(_Event(shot.start_frame, shot.end_frame, shot.start_s, shot.end_s,
                             [start, end]))

    kept: list[Span] = []
    kept_means: list[np.ndarray] = []
    min_frames = split.min_clip_s * fps
    for event in events:
        span = event.span()
        length = event.end_frame - event.start_frame
        trimmed = length - 2 * math.floor(length * split.trim_fraction)
        if trimmed < min_frames:
            kept.append(span)  # ApplyClipRules drops it, with its length rule's reason
            continue
        inner = _dist(event.features[0], event.features[-1])
        if inner < cfg.still_distance:
            dropped.append(_dropped(span, "still", inner))
            continue
        mean = np.mean(np.stack(event.features), axis=0)
        nearest = min((_dist(mean, m) for m in kept_means), default=math.inf)
        if nearest < cfg.redundant_distance:
            dropped.append(_dropped(span, "redundant", nearest))
            continue
        kept.append(span)
        kept_means.append(mean)
    marked = tuple(
        dataclasses.replace(b, distance=at_boundary[b.frame][0], merged=at_boundary[b.frame][1])
        if b.frame in at_boundary else b for b in boundaries)
    dropped.sort(key=lambda d: d.start_frame)
    return Stitched(events=tuple(kept), dropped=tuple(dropped), boundaries=marked)


def read_frames(path: str, times_s: Sequence[float], width: int = FRAME_WIDTH,
                limits: MediaLimits = DEFAULT_LIMITS) -> list[np.ndarray | None]:
    """RGB frames at the given times, read by seeking; None where a frame cannot be read
    (a chunk that fails is retried frame by frame, so one bad frame costs only itself)."""
    from PIL import Image

    out: list[np.ndarray | None] = [None] * len(times_s)
    scratch = tempfile.mkdtemp(prefix="vidcurate-stitch-")
    try:
        def read(indices: list[int]) -> bool:
            dsts = [os.path.join(scratch, f"{i}.jpg") for i in indices]
            try:
                extract_frames(path, [times_s[i] for i in indices], dsts, width, limits)
            except ToolStopped:
                raise  # not a bad frame: the run's environment stopped ffmpeg
            except MediaError:
                return False
            for i, dst in zip(indices, dsts, strict=True):
                with Image.open(dst) as im:
                    out[i] = np.asarray(im.convert("RGB"))
                os.remove(dst)
            return True

        for lo in range(0, len(times_s), FRAMES_PER_CALL):
            chunk = list(range(lo, min(lo + FRAMES_PER_CALL, len(times_s))))
            if not read(chunk) and len(chunk) > 1:
                for i in chunk:
                    read([i])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def sequential_is_cheaper(times_s: Sequence[float], keyframe_interval_s: float | None
                          ) -> bool:
    """One decode up to the last wanted frame, or one seek per frame? A seek decodes from
    the keyframe before its frame (half a GOP on average) plus a fixed cost; unknown
    keyframe spacing counts as a long GOP."""
    if not times_s:
        return False
    if keyframe_interval_s is None:
        return True
    return max(times_s) <= len(times_s) * (keyframe_interval_s / 2 + SEEK_COST_S)


def seek_time_s(frame: int, fps: float, offset_s: float) -> float:
    """Where to seek so that frame `frame` is the first one read: ffmpeg starts at the
    first frame whose time is at or after the seek time, so aim half a frame early."""
    return offset_s + max(0.0, (frame - 0.5) / fps)


def sampled_boundary_frames(scened: ScenedVideo, cfg: StitchConfig
                            ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(shot index, start / end, RGB frame) for the boundary frames the detect decode's
    frame sample holds: the sampled frame nearest to each, inside its cut-scene (so
    within half a sample interval of Panda's position, and never across the cut)."""
    sample = scened.sample
    if sample is None:
        return
    images: dict[int, np.ndarray] = {}  # a short shot's start and end can share one
    for i, shot in enumerate(scened.shots):
        for pos, frame in enumerate(boundary_frames(shot, cfg.start_position,
                                                    cfg.end_position)):
            k = nearest_sample(sample, frame, shot.start_frame, shot.end_frame)
            if k is None:
                continue
            if k not in images:
                try:
                    images = {k: read_sample_image(sample, k, FRAME_WIDTH)}
                except MediaError:
                    continue  # read from the video below
            yield i, pos, images[k]


def boundary_frames_of(scened: ScenedVideo, cfg: StitchConfig,
                       limits: MediaLimits = DEFAULT_LIMITS
                       ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(shot index, 0 for start / 1 for end, RGB frame) for every cut-scene, streamed.

    From the frame sample where the video has one (no decoding). The frames it lacks
    (a cut-scene shorter than the sample interval, no sample) are read from the video:
    dense ones (short cut-scenes, long GOPs) in one sequential decode, sparse ones by
    seeking; frames the sequential decode could not give are retried by seeking.
    Unreadable frames are left out; none readable at all raises MediaError.
    """
    info = scened.video.info
    from_sample: set[tuple[int, int]] = set()
    for i, pos, image in sampled_boundary_frames(scened, cfg):
        from_sample.add((i, pos))
        yield i, pos, image
    wanted: dict[int, list[tuple[int, int]]] = {}
    for i, shot in enumerate(scened.shots):
        for pos, frame in enumerate(boundary_frames(shot, cfg.start_position,
                                                    cfg.end_position)):
            if (i, pos) not in from_sample:
                wanted.setdefault(frame, []).append((i, pos))
    numbers = sorted(wanted)
    path = scened.video.local_path
    read: set[int] = set()
    times = [n / info.fps for n in numbers]
    # Cheaper even if every frame were a keyframe? Then the keyframes need no listing.
    if sequential_is_cheaper(times, 0.0) or sequential_is_cheaper(
            times, mean_keyframe_interval_s(path, limits=limits) if times else None):
        try:
            for number, image in frames_by_number(path, info, numbers, FRAME_WIDTH, limits):
                read.add(number)
                for i, pos in wanted[number]:
                    yield i, pos, image
        except ToolStopped:
            raise  # not a bad frame: the run's environment stopped ffmpeg
        except MediaError:
            pass  # the frames it did not give are read by seeking below
    rest = [n for n in numbers if n not in read]
    images = read_frames(path, [seek_time_s(n, info.fps, info.seek_offset_s) for n in rest],
                         limits=limits) if rest else []
    for number, image in zip(rest, images, strict=True):
        if image is not None:
            read.add(number)
            for i, pos in wanted[number]:
                yield i, pos, image
    if numbers and not read and not from_sample:
        raise MediaError("frames_unreadable",
                         f"none of the {len(numbers)} stitching frames could be read")


def frame_requests(scened: ScenedVideo, cfg: StitchConfig,
                   limits: MediaLimits = DEFAULT_LIMITS) -> Iterator[EmbedRequest]:
    """The boundary frames of every cut-scene as embedding requests keyed
    (video_id, shot index, 0 for start / 1 for end); unreadable frames are left out.
    A generator, so a long video's frames go to CLIP as they are read."""
    for i, pos, image in boundary_frames_of(scened, cfg, limits):
        yield EmbedRequest(key=(scened.video.video_id, i, pos), image=image)


def stitch_video(scened: ScenedVideo, features: dict[tuple[int, int], np.ndarray],
                 cfg: StitchConfig, split: SplitConfig) -> ScenedVideo:
    n = len(scened.shots)
    result = stitch(scened.shots, [features.get((i, 0)) for i in range(n)],
                    [features.get((i, 1)) for i in range(n)], scened.boundaries,
                    scened.video.info.fps, cfg, split)
    return dataclasses.replace(scened, events=result.events, stitch_dropped=result.dropped,
                               boundaries=result.boundaries)


class _FramesFn(beam.DoFn):
    def __init__(self, cfg: StitchConfig, run_id: str, limits: MediaLimits) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.limits = limits
        self.metrics = StageMetrics(STAGE)

    def process(self, scened: ScenedVideo) -> Iterator[EmbedRequest | beam.pvalue.TaggedOutput]:
        try:
            # Streamed: frames already yielded when a later one fails go to CLIP for
            # nothing, but the video is not joined (no 'videos' output), so no clip.
            yield from frame_requests(scened, self.cfg, self.limits)
        except Exception as e:
            yield self.metrics.failure(e, source_uri=scened.video.source.uri,
                                       run_id=self.run_id, video_id=scened.video.video_id)
            return
        yield beam.pvalue.TaggedOutput("videos", (scened.video.video_id, scened))


class _StitchFn(beam.DoFn):
    def __init__(self, cfg: StitchConfig, split: SplitConfig, run_id: str) -> None:
        self.cfg, self.split, self.run_id = cfg, split, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, joined: tuple[str, dict[str, list]]
                ) -> Iterator[ScenedVideo | beam.pvalue.TaggedOutput]:
        _, parts = joined
        for scened in parts["videos"]:
            if parts["failed"]:
                yield self.metrics.failure(
                    RuntimeError(f"CLIP could not embed the stitching frames: "
                                 f"{parts['failed'][0]}"),
                    source_uri=scened.video.source.uri, run_id=self.run_id,
                    video_id=scened.video.video_id)
                continue
            with self.metrics.timed():
                features = dict(parts["features"])  # by (cut-scene, start/end)
                stitched = stitch_video(scened, features, self.cfg, self.split)
            (self.metrics.processed if stitched.events else self.metrics.skipped).inc()
            yield stitched


class Stitch(beam.PTransform):
    """ScenedVideo -> ScenedVideo with events (main) and ErrorRecord ('errors')."""

    def __init__(self, clip_model: ClipModelConfig, split: SplitConfig, run_id: str,
                 limits: MediaLimits = DEFAULT_LIMITS) -> None:
        super().__init__()
        if split.stitch is None:
            raise ValueError("Stitch needs a split config with stitching on")
        self.clip_model, self.split, self.run_id, self.limits = clip_model, split, run_id, limits

    def expand(self, scened: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self.split.stitch
        assert cfg is not None
        frames = (
            scened
            | "BoundaryFrames" >> beam.ParDo(_FramesFn(cfg, self.run_id, self.limits))
            .with_outputs(ERRORS, "videos", main="requests"))
        embedded = frames["requests"] | "Embed" >> EmbedByOwner(self.clip_model)
        stitched = (
            {"videos": frames["videos"], **embedded}
            | "Join" >> beam.CoGroupByKey()
            | "Stitch" >> beam.ParDo(_StitchFn(cfg, self.split, self.run_id))
            .with_outputs(ERRORS, main="scened"))
        errors = (frames[ERRORS], stitched[ERRORS]) | "Errors" >> beam.Flatten()
        return {"scened": stitched["scened"], ERRORS: errors}
