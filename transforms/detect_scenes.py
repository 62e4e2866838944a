"""DetectScenes: shot boundaries with PySceneDetect, one downscaled decode per video.

ffmpeg decodes and downscales (in its own threads, overlapping with detection), and
the frames are fed straight to a PySceneDetect detector. The same ffmpeg process keeps
a frame sample at keyframe size (FrameSample: every few frames, as JPEG in a scratch
folder) from which stitching and the keyframes take their frames: nothing else
decodes the video. Shots longer than ``force_cut_after`` get Panda-70M's forced cuts ("cut the
first max_cut_len seconds as a new shot while the shot is longer than
force_cut_after"), so fades and unedited footage still split. Every boundary is
kept with its kind (detected / forced) for auditing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import apache_beam as beam
import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, SceneDetector
from scenedetect.common import FrameTimecode

from vidcurate.schemas.records import (
    Boundary,
    FrameSample,
    ProbedVideo,
    ScenedVideo,
    Span,
    Transition,
)
from vidcurate.schemas.redact import redact_url
from vidcurate.transforms.core import is_remote, private_dir
from vidcurate.transforms.errors import ERRORS, ConcurrentSteps, StageMetrics, guarded
from vidcurate.transforms.frame_signals import (
    DecodeErrorCollector,
    FrameSignalsObserver,
    decoder_lag_frames,
)
from vidcurate.transforms.learned_cuts import (
    TransNetObserver,
    cuts_from_single,
    ensemble_cuts,
    merge_zones,
    zones_from_many,
)
from vidcurate.transforms.media.decoding import (
    STITCH_FRAME_WIDTH,
    SampleRequest,
    clear_sample,
    decode_frames_downscaled,
    nvdec_suits,
    sample_count,
    sample_folder,
    sample_stride,
)
from vidcurate.transforms.media.limits import (
    DEFAULT_LIMITS,
    MediaError,
    MediaLimits,
    ToolStopped,
)
from vidcurate.transforms.models.device import gpu_index, is_cuda
from vidcurate.transforms.models.transnetv2 import TransNetConfig
from vidcurate.transforms.split_config import LEARNED_DETECTORS, SplitConfig
from vidcurate.transforms.transitions import ZONE_GUARD_FRAMES, TransitionObserver

STAGE = "detect_scenes"
log = logging.getLogger("vidcurate")
# ffmpeg's lines about writing the frame sample's images (the image2 muxer, a full disk).
_SAMPLE_WRITE_ERROR = re.compile(r"\[image2[ @\]]|av_interleaved_write_frame|"
                                 r"Error muxing|Error writing|No space left on device")
# A decode that stops this much short of the probed duration is reported on the video.
_SHORT_DECODE_S = 1.0


@dataclasses.dataclass(frozen=True)
class FrameSampleConfig:
    """The frame sample the detect decode keeps for stitching and keyframes: images at
    most `width` wide (0: full size) in per-video folders under `root`, a scratch folder
    of this run (the fetch work folder; RemoveDownloads empties them)."""

    root: str
    width: int

    @classmethod
    def for_run(cls, work_dir: str, keyframes: int, keyframe_width: int,
                stitching: bool) -> FrameSampleConfig | None:
        """At --keyframe-width when there are keyframes (their JPEG bytes are the
        sample's), never narrower than stitching reads; None when nothing needs frames,
        or when the work dir is remote (gs://, s3://): the stages after a shuffle run on
        other workers, which could neither read nor remove a sample on this one's disk,
        so they read frames from the video as before."""
        if is_remote(work_dir):
            return None
        root = work_dir.removeprefix("file://")
        if keyframes > 0:
            width = keyframe_width
            if stitching and 0 < width < STITCH_FRAME_WIDTH:
                width = STITCH_FRAME_WIDTH
            return cls(root, width)
        return cls(root, STITCH_FRAME_WIDTH) if stitching else None


def make_detector(cfg: SplitConfig) -> SceneDetector | None:
    """PySceneDetect's detector for cfg; None for transnetv2 (the network alone)."""
    if cfg.detector in ("content", "ensemble"):
        return ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_scene_len)
    if cfg.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=cfg.threshold, min_scene_len=cfg.min_scene_len)
    if cfg.detector == "transnetv2":
        return None
    raise ValueError(f"unknown detector {cfg.detector!r}")


class FrameObserver(Protocol):
    """Anything else that reads the cut detector's frames (transitions, quality
    signals): it sees every frame of the one downscaled decode, in order, so no
    analysis decodes the video again."""

    def observe(self, frame: np.ndarray) -> None:
        """One BGR frame, ``detect_width`` wide, frame i at i / fps."""


def detect_cut_frames(
    frames: Iterable[np.ndarray], fps: float, detector: SceneDetector | None,
    observers: Sequence[FrameObserver] = (),
) -> tuple[list[int], int]:
    """Frame numbers where a new shot starts (none without a detector), and the number
    of frames seen; every frame is also shown to each observer."""
    cuts: list[int] = []
    n = 0
    for n, frame in enumerate(frames, start=1):  # noqa: B007 - n is the count afterwards
        for observer in observers:
            observer.observe(frame)
        if detector is not None:
            cuts.extend(tc.frame_num
                        for tc in detector.process_frame(FrameTimecode(n - 1, fps), frame))
    if n and detector is not None:
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
                  limits: MediaLimits = DEFAULT_LIMITS,
                  sample_cfg: FrameSampleConfig | None = None, decode_device: str = "cpu",
                  on_decode: Callable[[str], None] | None = None,
                  transnet: TransNetConfig | None = None) -> ScenedVideo:
    """Decode once (downscaled), detect cuts, add forced cuts, and keep the frame sample
    when asked (in the same decode); raises MediaError (then no sample is left).

    With decode_device cuda:N a stream NVDEC suits is decoded on that GPU; when that
    decode fails (no driver, a stream the GPU refuses) the video is decoded again on
    the CPU. on_decode hears how it went: "nvdec", "nvdec_fallback" or "cpu".
    `transnet` places the network of --detector transnetv2 / ensemble (its weights
    resolved before the graph)."""
    info = video.info
    request = None
    if sample_cfg is not None:
        # The sample is read back by later stages: it lives in the run's private folder.
        folder = sample_folder(private_dir(sample_cfg.root, what="run folder"),
                               video.video_id)
        clear_sample(folder)  # an earlier attempt's images would be counted
        os.makedirs(folder, exist_ok=True)
        keyframes_only = cfg.min_clip_s if cfg.stitch is None else None
        request = SampleRequest(folder, sample_stride(info.fps, info.duration_s,
                                                      cfg.min_scene_len,
                                                      keyframes_only_min_clip_s=keyframes_only),
                                sample_cfg.width)
    try:
        scened, sample_failed = _detect_on_device(video, cfg, threads, limits, request,
                                                  decode_device, on_decode, transnet)
    except BaseException:
        if request is not None:
            clear_sample(request.folder)
        raise
    if request is None:
        return scened
    if sample_failed is not None:
        # ffmpeg stops every output when one fails (a full disk), so the detection
        # stream ended early too: detect again without a sample. Stitching and the
        # keyframes then read their frames from the video.
        clear_sample(request.folder)
        log.warning("frame sample of %s could not be written (%s); cut detection decodes "
                    "again without it", video.video_id, sample_failed)
        return _detect(video, cfg, threads, limits, None, None, transnet)[0]
    sample = FrameSample(folder=request.folder, stride=request.stride,
                         count=sample_count(request.folder), fps=info.fps,
                         width=request.width)
    return dataclasses.replace(scened, sample=sample)


def _detect_on_device(video: ProbedVideo, cfg: SplitConfig, threads: int,
                      limits: MediaLimits, request: SampleRequest | None,
                      decode_device: str, on_decode: Callable[[str], None] | None,
                      transnet: TransNetConfig | None = None
                      ) -> tuple[ScenedVideo, str | None]:
    """On NVDEC where asked and the stream suits it, else (or after it failed) on the CPU."""
    tell = on_decode or (lambda _: None)
    if is_cuda(decode_device) and nvdec_suits(video.info):
        try:
            result = _detect(video, cfg, threads, limits, request, gpu_index(decode_device),
                             transnet)
        except MediaError as e:
            # Killed from outside or out of time: a CPU decode would meet the same. The
            # decoder's own failure, a crash (the driver) or memory (CUDA maps much
            # address space) may be NVDEC's: the CPU decode decides.
            if (isinstance(e, ToolStopped) and not e.crashed
                    and e.error_type != "memory_limit"):
                raise
            log.warning("NVDEC decode of %s failed (%s); decoding it on the CPU",
                        redact_url(video.source.uri), e)
            tell("nvdec_fallback")
            if request is not None:  # the CPU decode writes the sample afresh
                clear_sample(request.folder)
                os.makedirs(request.folder, exist_ok=True)
        else:
            tell("nvdec")
            return result
    else:
        tell("cpu")
    return _detect(video, cfg, threads, limits, request, None, transnet)


def learned_cuts(cfg: SplitConfig, content_cuts: list[int], learned: TransNetObserver,
                 fps: float, transitions: tuple[Transition, ...]
                 ) -> tuple[list[int], tuple[Transition, ...]]:
    """The cuts of --detector transnetv2 / ensemble from the network's two heads, and the
    transitions with its gradual ones added (when transitions are searched)."""
    single, many = learned.result()
    if cfg.detector == "ensemble":
        cuts = ensemble_cuts(content_cuts, single, min_gap=cfg.min_scene_len)
    else:
        cuts = cuts_from_single(single, cfg.threshold, cfg.min_scene_len)
    if cfg.transitions is not None:
        transitions = merge_zones(transitions, zones_from_many(many, fps))
    return cuts, transitions


class _SampleWriteWatch:
    """Passes ffmpeg's error lines on to the decode-error collector, except those of
    writing the frame sample (no picture damage): it keeps the first of those."""

    def __init__(self, inner: DecodeErrorCollector) -> None:
        self.inner = inner
        self.failed: str | None = None

    def __call__(self, line: str, frames: int) -> None:
        if _SAMPLE_WRITE_ERROR.search(line):
            self.failed = self.failed or line
            return
        self.inner(line, frames)


def _detect(video: ProbedVideo, cfg: SplitConfig, threads: int, limits: MediaLimits,
            sample: SampleRequest | None, gpu: int | None,
            transnet: TransNetConfig | None = None) -> tuple[ScenedVideo, str | None]:
    """The scened video, and the first error writing the sample (None: written)."""
    info = video.info
    # Transitions and picture signals are read from the same frames (no second decode).
    transition_observer = (TransitionObserver(cfg.transitions, info.fps)
                           if cfg.transitions is not None else None)
    signals = FrameSignalsObserver(info.fps, info.display_size)
    observers: list[FrameObserver] = [signals]
    if transition_observer is not None:
        observers.append(transition_observer)
    learned = None
    if cfg.detector in LEARNED_DETECTORS:
        learned = TransNetObserver(transnet or TransNetConfig())
        observers.append(learned)
    errors = DecodeErrorCollector(info.fps, decoder_lag_frames(threads),
                                  audio_codec=info.audio_codec)
    watch = _SampleWriteWatch(errors)
    with decode_frames_downscaled(video.local_path, info, cfg.detect_width, threads,
                                  limits, on_stderr=watch, sample=sample, gpu=gpu) as frames:
        cut_frames, n_frames = detect_cut_frames(frames, info.fps, make_detector(cfg),
                                                 observers)
    transitions = transition_observer.transitions() if transition_observer else ()
    if learned is not None:
        cut_frames, transitions = learned_cuts(cfg, cut_frames, learned, info.fps,
                                               transitions)
    boundaries, shots = shots_from_cuts(cut_frames, n_frames, info.fps, cfg, transitions)
    note = None
    decoded_s = n_frames / info.fps
    if info.duration_s - decoded_s > _SHORT_DECODE_S:
        note = (f"decoder stopped at {decoded_s:.2f} s of {info.duration_s:.2f} s "
                f"(damaged or truncated file); split the decodable part")
    return ScenedVideo(video=video, boundaries=boundaries, shots=shots,
                       decoded_frames=n_frames, detect_note=note, transitions=transitions,
                       signals=signals.result(), decode_log=errors.result()), watch.failed


class _DetectFn(beam.DoFn):
    def __init__(self, cfg: SplitConfig, threads: int, run_id: str,
                 limits: MediaLimits, sample: FrameSampleConfig | None,
                 decode_device: str, concurrency: int = 1,
                 transnet: TransNetConfig | None = None) -> None:
        self.cfg = cfg
        self.transnet = transnet
        self.threads = threads
        self.run_id = run_id
        self.limits = limits
        self.sample = sample
        self.decode_device = decode_device
        self.concurrency = concurrency
        self.metrics = StageMetrics(STAGE)
        self.steps: ConcurrentSteps | None = None
        # Videos decoded on NVDEC, and those whose NVDEC decode failed and were decoded
        # again on the CPU (with --decode-device cuda; in the runs row).
        self.decodes = {"nvdec": beam.metrics.Metrics.counter(STAGE, "nvdec_decodes"),
                        "nvdec_fallback": beam.metrics.Metrics.counter(STAGE,
                                                                       "nvdec_fallbacks")}

    def setup(self) -> None:
        if self.concurrency > 1:
            self.steps = ConcurrentSteps(self.metrics, self.concurrency, then=self._counted)

    def start_bundle(self) -> None:
        if self.steps is not None:
            self.steps.start()

    def process(self, video: ProbedVideo, place=beam.DoFn.WindowedValueParam
                ) -> Iterator[Any]:
        if self.steps is None:  # one video at a time, in this thread
            yield from guarded(self.metrics, self._detect_and_count, video,
                               source_uri=video.source.uri, run_id=self.run_id,
                               video_id=video.video_id)
            return
        yield from self.steps.submit(self._detect, video, place, source_uri=video.source.uri,
                                     run_id=self.run_id, video_id=video.video_id)

    def finish_bundle(self) -> Iterator[Any]:
        if self.steps is not None:
            yield from self.steps.finish()

    def teardown(self) -> None:
        if self.steps is not None:
            self.steps.close()

    def _detect(self, video: ProbedVideo) -> list[tuple[ScenedVideo, list[str]]]:
        # How it was decoded is counted by _counted, in the bundle's thread: Beam's
        # metrics are not counted from other threads.
        decodes: list[str] = []
        return [(detect_scenes(video, self.cfg, self.threads, self.limits, self.sample,
                               self.decode_device, on_decode=decodes.append,
                               transnet=self.transnet), decodes)]

    def _detect_and_count(self, video: ProbedVideo) -> list[ScenedVideo]:
        return [out for detected in self._detect(video) for out in self._counted(detected)]

    def _counted(self, detected: tuple[ScenedVideo, list[str]]) -> list[ScenedVideo]:
        scened, decodes = detected
        for how in decodes:
            if how in self.decodes:
                self.decodes[how].inc()
        return [scened]


class DetectScenes(beam.PTransform):
    """ProbedVideo -> ScenedVideo (main) and ErrorRecord ('errors'). With a sample
    config each ScenedVideo carries its frame sample (a scratch folder)."""

    def __init__(self, cfg: SplitConfig, threads: int, run_id: str,
                 limits: MediaLimits = DEFAULT_LIMITS,
                 sample: FrameSampleConfig | None = None, decode_device: str = "cpu",
                 concurrency: int = 1, transnet: TransNetConfig | None = None) -> None:
        super().__init__()
        self.transnet = transnet
        self.cfg, self.threads, self.run_id, self.limits = cfg, threads, run_id, limits
        self.sample, self.decode_device, self.concurrency = sample, decode_device, concurrency

    def expand(self, videos: beam.PCollection) -> dict[str, beam.PCollection]:
        return (
            videos
            | "Detect" >> beam.ParDo(_DetectFn(self.cfg, self.threads, self.run_id,
                                               self.limits, self.sample, self.decode_device,
                                               self.concurrency, self.transnet))
            .with_outputs(ERRORS, main="scened"))
