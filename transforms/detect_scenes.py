"""DetectScenes: shot boundaries with PySceneDetect, one downscaled decode per video.

ffmpeg decodes and downscales (in its own threads, overlapping with detection), and
the frames are fed straight to a PySceneDetect detector; nothing else decodes the
video. Shots longer than ``force_cut_after`` get Panda-70M's forced cuts ("cut the
first max_cut_len seconds as a new shot while the shot is longer than
force_cut_after"), so fades and unedited footage still split. Every boundary is
kept with its kind (detected / forced) for auditing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import apache_beam as beam
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, SceneDetector
from scenedetect.common import FrameTimecode

from vidcurate.schemas.records import Boundary, ProbedVideo, ScenedVideo, Span, Transition
from vidcurate.schemas.redact import redact_url
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.frame_signals import (
    DecodeErrorCollector,
    FrameSignalsObserver,
    decoder_lag_frames,
)
from vidcurate.transforms.media.decoding import decode_frames_downscaled, nvdec_suits
from vidcurate.transforms.media.limits import DEFAULT_LIMITS, MediaError, MediaLimits
from vidcurate.transforms.models.device import gpu_index, is_cuda
from vidcurate.transforms.split_config import SplitConfig
from vidcurate.transforms.transitions import ZONE_GUARD_FRAMES, TransitionObserver

STAGE = "detect_scenes"
log = logging.getLogger("vidcurate")
# A decode that stops this much short of the probed duration is reported on the video.
_SHORT_DECODE_S = 1.0


def make_detector(cfg: SplitConfig) -> SceneDetector:
    if cfg.detector == "content":
        return ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_scene_len)
    if cfg.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=cfg.threshold, min_scene_len=cfg.min_scene_len)
    raise ValueError(f"unknown detector {cfg.detector!r}")


class FrameObserver(Protocol):
    """Anything else that reads the cut detector's frames (transitions, quality
    signals): it sees every frame of the one downscaled decode, in order, so no
    analysis decodes the video again."""

    def observe(self, frame: np.ndarray) -> None:
        """One BGR frame, ``detect_width`` wide, frame i at i / fps."""


def detect_cut_frames(
    frames: Iterable[np.ndarray], fps: float, detector: SceneDetector,
    observers: Sequence[FrameObserver] = (),
) -> tuple[list[int], int]:
    """Frame numbers where a new shot starts, and the number of frames seen; every
    frame is also shown to each observer."""
    cuts: list[int] = []
    n = 0
    for n, frame in enumerate(frames, start=1):  # noqa: B007 - n is the count afterwards
        for observer in observers:
            observer.observe(frame)
        cuts.extend(tc.frame_num for tc in detector.process_frame(FrameTimecode(n - 1, fps), frame))
    if n:
        cuts.extend(tc.frame_num for tc in detector.post_process(FrameTimecode(n - 1, fps)))
    return sorted({c for c in cuts if 0 < c < n}), n


def forced_cut_frames(
    start: int, end: int, fps: float, max_cut_len: float, force_cut_after: float
) -> list[int]:
    """Panda-70M: while the rest of a shot is longer than force_cut_after seconds, cut
    max_cut_len seconds off its start."""
    if max_cut_len <= 0:
        return []
    step = max(1, int(round(max_cut_len * fps)))
    limit = force_cut_after * fps
    cuts = []
    at = start
    while end - at > limit:
        at += step
        cuts.append(at)
    return cuts


def shots_from_cuts(
    cut_frames: list[int], n_frames: int, fps: float, cfg: SplitConfig,
    transitions: Sequence[Transition] = (),
) -> tuple[tuple[Boundary, ...], tuple[Span, ...]]:
    """Boundaries (detected and forced) and the shots between them, covering every frame
    outside the transitions. A transition is a boundary zone: its frames belong to no
    shot (so to no clip, and stitching never merges across it, the shots either side
    not being adjacent), and forced cuts are placed in the pieces between zones, so
    none puts a clip across one. Every detected cut stays a boundary, for auditing,
    even one inside a zone (a fade that tripped the detector)."""
    # Widened by the detector's end tolerance: a transition's first and last frames are
    # nearly all one shot, and found to within a few frames.
    zones = sorted((max(0, t.start_frame - ZONE_GUARD_FRAMES),
                    min(n_frames, t.end_frame + ZONE_GUARD_FRAMES)) for t in transitions)
    in_zone = np.zeros(n_frames + 1, bool)
    for a, b in zones:
        in_zone[a:b] = True
    edges = sorted({0, n_frames, *cut_frames, *(f for zone in zones for f in zone)})
    boundaries = [Boundary(frame=f, time_s=f / fps, kind="detected") for f in cut_frames]
    pieces = []
    for a, b in zip(edges, edges[1:], strict=False):
        if b <= a or in_zone[a]:
            continue  # a zone's frames: no shot
        forced = forced_cut_frames(a, b, fps, cfg.max_cut_len, cfg.force_cut_after)
        boundaries.extend(Boundary(frame=f, time_s=f / fps, kind="forced") for f in forced)
        bounds = [a, *forced, b]
        pieces.extend(zip(bounds, bounds[1:], strict=False))
    boundaries.sort(key=lambda x: x.frame)
    shots = tuple(Span(s, e, s / fps, e / fps) for s, e in pieces if e > s)
    return tuple(boundaries), shots


def detect_scenes(video: ProbedVideo, cfg: SplitConfig, threads: int = 0,
                  limits: MediaLimits = DEFAULT_LIMITS, decode_device: str = "cpu",
                  on_decode: Callable[[str], None] | None = None) -> ScenedVideo:
    """Decode once (downscaled), detect cuts, add forced cuts; raises MediaError.

    With decode_device cuda:N a stream NVDEC suits is decoded on that GPU; when that
    decode fails (no driver, a stream the GPU refuses) the video is decoded again on
    the CPU. on_decode hears how it went: "nvdec", "nvdec_fallback" or "cpu"."""
    tell = on_decode or (lambda _: None)
    if is_cuda(decode_device) and nvdec_suits(video.info):
        try:
            scened = _detect_scenes(video, cfg, threads, limits, gpu_index(decode_device))
        except MediaError as e:
            if e.error_type == "timeout":  # a second decode would take as long again
                raise
            log.warning("NVDEC decode of %s failed (%s); decoding it on the CPU",
                        redact_url(video.source.uri), e)
            tell("nvdec_fallback")
        else:
            tell("nvdec")
            return scened
    else:
        tell("cpu")
    return _detect_scenes(video, cfg, threads, limits, None)


def _detect_scenes(video: ProbedVideo, cfg: SplitConfig, threads: int,
                   limits: MediaLimits, gpu: int | None) -> ScenedVideo:
    info = video.info
    # Transitions and picture signals are read from the same frames (no second decode).
    transition_observer = (TransitionObserver(cfg.transitions, info.fps)
                           if cfg.transitions is not None else None)
    signals = FrameSignalsObserver(info.fps, info.display_size)
    observers: list[FrameObserver] = [signals]
    if transition_observer is not None:
        observers.append(transition_observer)
    errors = DecodeErrorCollector(info.fps, decoder_lag_frames(threads),
                                  audio_codec=info.audio_codec)
    with decode_frames_downscaled(video.local_path, info, cfg.detect_width, threads,
                                  limits, on_stderr=errors, gpu=gpu) as frames:
        cut_frames, n_frames = detect_cut_frames(frames, info.fps, make_detector(cfg),
                                                 observers)
    transitions = transition_observer.transitions() if transition_observer else ()
    boundaries, shots = shots_from_cuts(cut_frames, n_frames, info.fps, cfg, transitions)
    note = None
    decoded_s = n_frames / info.fps
    if info.duration_s - decoded_s > _SHORT_DECODE_S:
        note = (f"decoder stopped at {decoded_s:.2f} s of {info.duration_s:.2f} s "
                f"(damaged or truncated file); split the decodable part")
    return ScenedVideo(video=video, boundaries=boundaries, shots=shots,
                       decoded_frames=n_frames, detect_note=note, transitions=transitions,
                       signals=signals.result(), decode_log=errors.result())


class _DetectFn(beam.DoFn):
    def __init__(self, cfg: SplitConfig, threads: int, run_id: str,
                 limits: MediaLimits, decode_device: str) -> None:
        self.cfg = cfg
        self.threads = threads
        self.run_id = run_id
        self.limits = limits
        self.decode_device = decode_device
        self.metrics = StageMetrics(STAGE)
        # Videos decoded on NVDEC, and those whose NVDEC decode failed and were decoded
        # again on the CPU (with --decode-device cuda; in the runs row).
        self.decodes = {"nvdec": beam.metrics.Metrics.counter(STAGE, "nvdec_decodes"),
                        "nvdec_fallback": beam.metrics.Metrics.counter(STAGE,
                                                                       "nvdec_fallbacks")}

    def process(self, video: ProbedVideo) -> Iterator[ScenedVideo | beam.pvalue.TaggedOutput]:
        yield from guarded(self.metrics, self._detect, video, source_uri=video.source.uri,
                           run_id=self.run_id, video_id=video.video_id)

    def _detect(self, video: ProbedVideo) -> list[ScenedVideo]:
        return [detect_scenes(video, self.cfg, self.threads, self.limits, self.decode_device,
                              on_decode=self._count_decode)]

    def _count_decode(self, how: str) -> None:
        if how in self.decodes:
            self.decodes[how].inc()


class DetectScenes(beam.PTransform):
    """ProbedVideo -> ScenedVideo (main) and ErrorRecord ('errors')."""

    def __init__(self, cfg: SplitConfig, threads: int, run_id: str,
                 limits: MediaLimits = DEFAULT_LIMITS, decode_device: str = "cpu") -> None:
        super().__init__()
        self.cfg, self.threads, self.run_id, self.limits = cfg, threads, run_id, limits
        self.decode_device = decode_device

    def expand(self, videos: beam.PCollection) -> dict[str, beam.PCollection]:
        return (
            videos
            | "Detect" >> beam.ParDo(_DetectFn(self.cfg, self.threads, self.run_id, self.limits,
                                               self.decode_device))
            .with_outputs(ERRORS, main="scened"))
