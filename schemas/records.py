"""Typed records passed between pipeline stages.

Stages pass these small records (URIs, numbers, short strings), never video bytes.
Every record that becomes a table row has ``to_row()``, whose keys are exactly the
columns of its schema in :mod:`schemas.tables` (a unit test holds them together).
Rows carry uris and messages with their secrets redacted (:mod:`schemas.redact`); the
records themselves keep the real uris, which the stages fetch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidcurate.schemas.redact import redact_text, redact_url

VIDEO_STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class Source:
    """One input of the run: a video uri and what the manifest said about it."""

    uri: str  # normalised: absolute local path or scheme://...
    video_id: str
    title: str | None = None
    description: str | None = None
    license: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # extra manifest columns
    origin: str = ""  # manifest path and row, or the folder the file was found in


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe tells about a file, plus its size and content hash."""

    duration_s: float
    start_time_s: float  # first video timestamp: frame 0, where all our times start
    container_start_s: float  # ffmpeg's -ss counts from here (earliest stream start)
    fps: float  # average frame rate (frames / duration); what times are computed from
    is_vfr: bool
    width: int
    height: int
    rotation: int  # degrees, as the display matrix says; players rotate by it
    video_codec: str
    pix_fmt: str | None
    audio_codec: str | None
    has_audio: bool
    audio_start_s: float | None  # first audio timestamp
    container: str
    bit_rate: int | None
    nb_frames: int | None
    bytes: int
    content_sha256: str

    @property
    def seek_offset_s(self) -> float:
        """Add to a time measured from frame 0 to get ffmpeg's -ss position."""
        return self.start_time_s - self.container_start_s

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height after rotation, as ffmpeg decodes (autorotate) and players show."""
        if self.rotation % 180 == 90:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class Fetched:
    """A source materialised as a local file, with its size and content hash."""

    source: Source
    local_path: str
    bytes: int
    sha256: str
    downloaded: bool  # we made the file (removed when the video is done)
    attempts: int = 1
    final_url: str | None = None  # after redirects
    content_type: str | None = None

    @property
    def video_id(self) -> str:
        return self.source.video_id


@dataclass(frozen=True)
class ProbedVideo:
    source: Source
    local_path: str
    info: VideoInfo

    @property
    def video_id(self) -> str:
        return self.source.video_id


@dataclass(frozen=True)
class Skip:
    """A valid input that yields nothing, with the reason (becomes status 'skipped')."""

    video_id: str
    stage: str
    reason: str


@dataclass(frozen=True)
class Transition:
    """A gradual transition (dissolve, fade, wipe, flash): frames [start_frame,
    end_frame) belong to no clip."""

    kind: str  # dissolve | fade_out | fade_in | wipe | flash
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class DecodeError:
    """Where the decoder reported damaged data (time on the video's clock, approximate
    to a few frames) and what it said."""

    time_s: float
    message: str


@dataclass(frozen=True)
class DecodeLog:
    """ffmpeg's error lines during the one downscaled decode (damaged data). Every line
    is placed at the number of frames read when it arrived; the damaged frame is at or
    after that, by at most the frames ffmpeg had decoded ahead (`lag_frames`).
    Bounded: positions are per frame (at most one entry per frame of the video), texts
    are kept for the first lines only."""

    fps: float
    lag_frames: int  # how far ahead of the reader the decoder can be
    frames: np.ndarray = field(compare=False, repr=False)  # int32, distinct positions, sorted
    counts: np.ndarray = field(compare=False, repr=False)  # int32, lines at each position
    kept: tuple[DecodeError, ...] = ()  # the first lines, time = position / fps
    total: int = 0  # all lines, kept or not


@dataclass(frozen=True)
class FrameSignals:
    """Compact picture statistics of one video, measured on the cut detector's frames:
    every `stride`-th frame (frame i = j * stride for sample j) is a sample. Arrays are
    per sample; a few bytes each, so an hour at 30 fps (27k samples) takes about 1.2 MB.
    transforms/frame_signals.py measures them and aggregates them per clip."""

    fps: float
    stride: int
    frame_count: int  # frames observed (samples = ceil(frame_count / stride))
    width: int  # the measured frame (the detect frame resampled to a fixed width)
    height: int
    source_width: int  # the picture as ffmpeg decodes it (rotated), source pixels
    source_height: int
    brightness: np.ndarray = field(compare=False, repr=False)  # float32, mean luma 0-1
    contrast: np.ndarray = field(compare=False, repr=False)  # float32, luma std 0-1
    sharpness: np.ndarray = field(compare=False, repr=False)  # float32, Laplacian variance
    # Motion from sample j-1 to j (NaN at j = 0), in frame diagonals per second: the mean
    # over the picture, and the least moving grid cell.
    motion: np.ndarray = field(compare=False, repr=False)  # float32
    motion_patch_min: np.ndarray = field(compare=False, repr=False)  # float32
    # The camera model fitted to the same flow (transforms/camera_motion.py, its units),
    # per pair as motion: pan, tilt, zoom rates and the subject motion it leaves.
    camera_pan: np.ndarray = field(compare=False, repr=False)  # float32
    camera_tilt: np.ndarray = field(compare=False, repr=False)  # float32
    camera_zoom: np.ndarray = field(compare=False, repr=False)  # float32
    subject_motion: np.ndarray = field(compare=False, repr=False)  # float32
    # Per sample [x0, y0, x1, y1) of the lit picture in measured-frame pixels; all zero
    # when the frame is black.
    boxes: np.ndarray = field(compare=False, repr=False)  # int16, (samples, 4)

    @property
    def samples(self) -> int:
        return len(self.brightness)


@dataclass(frozen=True)
class ClipSignals:
    """A clip's picture signals (ClipRecord's columns of the same names; None when the
    clip holds no sample)."""

    motion_score: float | None = None
    motion_patch_min: float | None = None
    camera_motion: str | None = None
    camera_pan: float | None = None
    camera_tilt: float | None = None
    camera_zoom: float | None = None
    subject_motion: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    sharpness: float | None = None
    content_box: tuple[int, int, int, int] | None = None
    decode_error_count: int | None = None


@dataclass(frozen=True)
class Boundary:
    """A shot boundary: the first frame of a new shot."""

    frame: int
    time_s: float
    kind: str  # "detected" by the cut detector or "forced" in a long shot
    # Set by semantic stitching: the CLIP distance across the boundary (end frame of the
    # event before, start frame of the shot after) and whether the two were merged.
    distance: float | None = None
    merged: bool | None = None


@dataclass(frozen=True)
class Span:
    """A half-open frame range [start_frame, end_frame) and its times in seconds."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class FrameSample:
    """Frames the cut-detection decode also kept at keyframe size, as JPEG files: image
    k is frame k * stride of the detect decode (frame i at i / fps). Stitching and the
    keyframes take their frames from it, so nothing decodes the video again. A
    per-video scratch folder of ours, removed when the video is done; at most
    decoding.MAX_SAMPLE_FRAMES images (disk: that many JPEGs at the keyframe width)."""

    folder: str  # local folder holding the images, {k:08d}.jpg
    stride: int  # frames of the detect decode between two images
    count: int  # images written: frames 0, stride, ... (count - 1) * stride
    fps: float  # the detect decode's constant rate
    width: int  # images are at most this wide (0: full size), as --keyframe-width

    def path(self, k: int) -> str:
        return f"{self.folder}/{k:08d}.jpg"

    def frame(self, k: int) -> int:
        return k * self.stride


@dataclass(frozen=True)
class ScenedVideo:
    """A probed video with its shot boundaries and shots (cut-scenes)."""

    video: ProbedVideo
    boundaries: tuple[Boundary, ...]
    shots: tuple[Span, ...]
    decoded_frames: int
    detect_note: str | None = None  # e.g. the decoder stopped early on a damaged file
    # Semantic stitching: events (merged cut-scenes) replace shots for the clip rules;
    # None when stitching is off.
    events: tuple[Span, ...] | None = None
    stitch_dropped: tuple[DroppedShot, ...] = ()
    # Gradual transitions: their frames are in no shot, event or clip.
    transitions: tuple[Transition, ...] = ()
    signals: FrameSignals | None = None  # picture statistics of the detect decode
    decode_log: DecodeLog | None = None  # the decoder's error lines (damaged data)
    sample: FrameSample | None = None  # keyframe-size frames of the same decode

    @property
    def units(self) -> tuple[Span, ...]:
        """What the clip rules split: events when stitched, else the shots."""
        return self.shots if self.events is None else self.events


@dataclass(frozen=True)
class DroppedShot:
    """A cut-scene or event that stitching dropped, with the rule and the distance."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    reason: str  # transition | frames_unreadable | still | redundant
    distance: float | None


@dataclass(frozen=True)
class SplitVideo:
    """A video after the clip rules: the spans that become clips, or why there are none."""

    scened: ScenedVideo
    spans: tuple[Span, ...]
    reason: str | None  # set when spans is empty


@dataclass(frozen=True)
class ClipTask:
    """Everything a worker needs to cut one clip; made when a video fans out to clips."""

    clip_id: str
    clip_index: int
    video_id: str
    source_uri: str
    local_path: str
    span: Span
    fps: float
    video_codec: str
    audio_codec: str | None
    keyframe_before_start_s: float | None  # for copy mode: where stream copy really starts
    seek_offset_s: float = 0.0  # VideoInfo.seek_offset_s of the source
    video_start_s: float = 0.0  # VideoInfo.start_time_s: frame 0 on the source's timeline
    # Copy mode: the packets an exact stream copy takes from that keyframe, and where its
    # last frame ends (from frame 0); None: the copy is cut by time (no packet times).
    copy_packets: int | None = None
    copy_end_s: float | None = None
    frame_size: tuple[int, int] | None = None  # VideoInfo.display_size of the source
    signals: ClipSignals | None = None  # aggregated over the span when the task is made
    sample: FrameSample | None = None  # the video's frame sample: keyframes come from it


@dataclass(frozen=True)
class OcrLine:
    """One line of on-screen text read in one keyframe."""

    text: str
    confidence: float
    box: tuple[float, ...]  # x1, y1, ... x4, y4 as fractions of the frame width / height
    frame_index: int  # index into the clip's keyframes


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the video's first frame
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class DroppedSegment:
    """A segment a hallucination guard removed, and which guard."""

    start: float
    end: float
    text: str
    guard: str


@dataclass(frozen=True)
class AsrTask:
    video_id: str
    source_uri: str
    local_path: str
    info: VideoInfo


@dataclass(frozen=True)
class AsrResult:
    """Whisper over a whole video (times from its first frame), after the guards."""

    video_id: str
    source_uri: str
    model_id: str
    segments: tuple[Segment, ...] = ()
    dropped: tuple[DroppedSegment, ...] = ()
    language: str | None = None
    language_probability: float | None = None
    audio_s: float = 0.0
    note: str | None = None  # why there is no transcript (no audio stream)


# caption_struct's fields, in column order; each records its source in `sources`.
CAPTION_STRUCT_FIELDS = ("short", "dense", "camera", "motion_level", "lighting",
                         "on_screen_text", "speech", "subjects", "setting", "style",
                         "shot_type")


@dataclass(frozen=True)
class CaptionStruct:
    """One structured caption of a clip (transforms/teachers/structured.py): measured
    facts and teacher outputs, each field with its source (a measurement or a teacher),
    and the VLM's claims that a measurement overruled."""

    clip_id: str
    short: str
    dense: str
    camera: str | None = None
    motion_level: str | None = None
    lighting: str | None = None
    on_screen_text: tuple[str, ...] | None = None
    speech: str | None = None
    subjects: tuple[str, ...] | None = None
    setting: str | None = None
    style: str | None = None
    shot_type: str | None = None
    sources: tuple[tuple[str, str], ...] = ()  # (field, source), every field once
    conflicts: tuple[str, ...] = ()

    def to_struct(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in CAPTION_STRUCT_FIELDS:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["sources"] = dict(self.sources)
        out["conflicts"] = list(self.conflicts)
        return out


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    video_id: str
    source_uri: str
    clip_index: int
    span: Span
    split_params_hash: str
    media_mode: str
    media_uri: str | None
    media_start_s: float | None
    media_end_s: float | None
    keyframe_uris: tuple[str, ...]
    keyframe_times_s: tuple[float, ...]
    run_id: str
    # The source's width and height as displayed (VideoInfo.display_size): what pixel
    # boxes (content_box, subtitle_box) are measured in. Not a column (videos has it).
    frame_size: tuple[int, int] | None = None
    # OCR (null when OCR did not run on the clip).
    ocr_text: str | None = None
    ocr_lines: tuple[OcrLine, ...] | None = None
    ocr_coverage_max: float | None = None
    ocr_coverage_mean: float | None = None
    # ASR (null when ASR did not run for the clip's video).
    transcript: str | None = None
    transcript_segments: tuple[Segment, ...] | None = None
    transcript_words: tuple[Word, ...] | None = None
    transcript_dropped: tuple[DroppedSegment, ...] | None = None
    # CLIP: the mean of the keyframes' L2-normalised embeddings (written), and the
    # keyframe embeddings themselves (kept for caption scoring, not written).
    clip_embedding: np.ndarray | None = field(default=None, compare=False)
    keyframe_embeddings: np.ndarray | None = field(default=None, compare=False, repr=False)
    clip_model: str | None = None
    best_caption: str | None = None
    best_teacher: str | None = None
    clip_score: float | None = None  # the selected caption's cosine with the clip embedding
    selection_method: str | None = None  # clip | priority (no CLIP scores to compare)
    # Quality signals (docs/quality/index.md; null when not measured).
    # Picture signals (docs/quality/signals.md), from the cut detector's decode
    # (transforms/frame_signals.py): about 8 sampled frames a second, 256 px wide, inside
    # each frame's lit area (without black bars).
    motion_score: float | None = None  # mean optical flow, frame diagonals per second
    motion_patch_min: float | None = None  # the least moving cell of a ~4-wide grid, same
    # Camera motion (transforms/camera_motion.py): a label of CAMERA_LABELS, the net pan
    # (frame widths/s, > 0 right), tilt (frame heights/s, > 0 up) and zoom (log scale/s,
    # > 0 in) of a camera model fitted to the flow, and the motion it leaves (diagonals/s).
    camera_motion: str | None = None
    camera_pan: float | None = None
    camera_tilt: float | None = None
    camera_zoom: float | None = None
    subject_motion: float | None = None
    brightness: float | None = None  # mean luma, 0-1
    contrast: float | None = None  # luma standard deviation, 0-1
    sharpness: float | None = None  # variance of the Laplacian of luma 0-255, 256 px wide
    # x0, y0, x1, y1 (x1, y1 exclusive) in source pixels of the picture as decoded
    # (after rotation): the union of the sampled frames' lit areas, without black bars
    content_box: tuple[int, int, int, int] | None = None
    decode_error_count: int | None = None  # decoder error lines that can touch the span
    subtitle_box: tuple[int, int, int, int] | None = None  # burned-in subtitle band
    aesthetic_score: float | None = None  # LAION aesthetic head over clip_embedding
    nsfw_score: float | None = None  # Open-NSFW, the most explicit keyframe's P(NSFW)
    # Kinds of personal data found in the clip's texts (never the values themselves).
    personal_data: tuple[str, ...] | None = None
    quality_flags: tuple[str, ...] | None = None
    # The structured caption (null when its teacher did not run or failed on the clip),
    # and how many of the VLM's claims a measurement overruled.
    caption_struct: CaptionStruct | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "clip_id": self.clip_id,
            "video_id": self.video_id,
            "source_uri": redact_url(self.source_uri),
            "clip_index": self.clip_index,
            "start_s": self.span.start_s,
            "end_s": self.span.end_s,
            "duration_s": self.span.duration_s,
            "start_frame": self.span.start_frame,
            "end_frame": self.span.end_frame,
            "split_params_hash": self.split_params_hash,
            "media_mode": self.media_mode,
            "media_uri": self.media_uri,
            "media_start_s": self.media_start_s,
            "media_end_s": self.media_end_s,
            "keyframe_uris": list(self.keyframe_uris),
            "keyframe_times_s": list(self.keyframe_times_s),
            "ocr_text": self.ocr_text,
            "ocr_lines": None if self.ocr_lines is None else [
                {**dataclasses.asdict(line), "box": list(line.box)} for line in self.ocr_lines],
            "ocr_coverage_max": self.ocr_coverage_max,
            "ocr_coverage_mean": self.ocr_coverage_mean,
            "transcript": self.transcript,
            "transcript_segments": None if self.transcript_segments is None else [
                {k: v for k, v in dataclasses.asdict(seg).items() if k != "words"}
                for seg in self.transcript_segments],
            "transcript_words": None if self.transcript_words is None else [
                dataclasses.asdict(w) for w in self.transcript_words],
            "transcript_dropped": None if self.transcript_dropped is None else [
                dataclasses.asdict(d) for d in self.transcript_dropped],
            "clip_embedding": None if self.clip_embedding is None else
            self.clip_embedding.astype(np.float32).tolist(),
            "clip_model": self.clip_model,
            "best_caption": self.best_caption,
            "best_teacher": self.best_teacher,
            "clip_score": self.clip_score,
            "selection_method": self.selection_method,
            "motion_score": self.motion_score,
            "motion_patch_min": self.motion_patch_min,
            "camera_motion": self.camera_motion,
            "camera_pan": self.camera_pan,
            "camera_tilt": self.camera_tilt,
            "camera_zoom": self.camera_zoom,
            "subject_motion": self.subject_motion,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "sharpness": self.sharpness,
            "content_box": None if self.content_box is None else list(self.content_box),
            "decode_error_count": self.decode_error_count,
            "subtitle_box": None if self.subtitle_box is None else list(self.subtitle_box),
            "aesthetic_score": self.aesthetic_score,
            "nsfw_score": self.nsfw_score,
            "personal_data": None if self.personal_data is None else list(self.personal_data),
            "quality_flags": None if self.quality_flags is None else list(self.quality_flags),
            "caption_struct": None if self.caption_struct is None else
            self.caption_struct.to_struct(),
            "caption_conflicts": None if self.caption_struct is None else
            len(self.caption_struct.conflicts),
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class CaptionCandidate:
    """One caption a teacher proposes for a clip."""

    clip_id: str
    video_id: str
    teacher: str
    model: str | None
    prompt: str | None
    text: str


@dataclass(frozen=True)
class CaptionRow:
    """A candidate after scoring: its CLIP scores, rank among the clip's candidates and
    whether it was selected."""

    candidate: CaptionCandidate
    clip_score: float | None  # cosine of text and clip embedding; None without CLIP
    clip_score_max_frame: float | None  # best cosine with any single keyframe
    rank: int
    selected: bool
    selection_method: str  # clip | priority
    run_id: str

    def to_row(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "clip_id": c.clip_id,
            "video_id": c.video_id,
            "teacher": c.teacher,
            "model": c.model,
            "prompt": c.prompt,
            "text": c.text,
            "clip_score": self.clip_score,
            "clip_score_max_frame": self.clip_score_max_frame,
            "rank": self.rank,
            "selected": self.selected,
            "selection_method": self.selection_method,
            "run_id": self.run_id,
        }


@dataclass(frozen=True)
class ErrorRecord:
    stage: str
    source_uri: str
    error_type: str
    message: str
    run_id: str
    video_id: str | None = None
    clip_id: str | None = None
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def to_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "stage": self.stage,
            # A uri, or a manifest row ("m.csv#row=3"); messages quote URLs (HTTP 404 from ..).
            "source_uri": self.source_uri and redact_url(self.source_uri),
            "video_id": self.video_id,
            "clip_id": self.clip_id,
            "error_type": self.error_type,
            "message": redact_text(self.message),
            "time": self.time,
        }


@dataclass(frozen=True)
class VideoRow:
    """The one `videos` row every input ends as, whatever happened to it."""

    source: Source
    status: str
    reason: str | None
    run_id: str
    info: VideoInfo | None = None
    boundaries: tuple[Boundary, ...] = ()
    shot_count: int | None = None
    clip_count: int = 0
    failed_clip_count: int = 0
    asr: AsrResult | None = None
    fetched: Fetched | None = None
    event_count: int | None = None  # after stitching; None when stitching is off
    stitch_dropped: tuple[DroppedShot, ...] = ()
    transitions: tuple[Transition, ...] = ()
    decode_errors: tuple[DecodeError, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in VIDEO_STATUSES:
            raise ValueError(f"unknown video status {self.status!r}")

    def to_row(self) -> dict[str, Any]:
        info = dataclasses.asdict(self.info) if self.info else dict.fromkeys(_INFO_FIELDS)
        return {
            "video_id": self.source.video_id,  # the hash of the full uri, as fetched
            "source_uri": redact_url(self.source.uri),
            "title": self.source.title,
            "description": self.source.description,
            "license": self.source.license,
            "metadata_json": redact_text(json.dumps(self.source.metadata, sort_keys=True,
                                                    default=str))
            if self.source.metadata
            else None,
            "status": self.status,
            "reason": self.reason and redact_text(self.reason),  # skips quote other uris
            **info,
            "shot_boundaries": [dataclasses.asdict(b) for b in self.boundaries],
            "transitions": [dataclasses.asdict(t) for t in self.transitions],
            "decode_errors": [dataclasses.asdict(d) for d in self.decode_errors],
            "shot_count": self.shot_count,
            "event_count": self.event_count,
            "stitch_dropped": [dataclasses.asdict(d) for d in self.stitch_dropped],
            "clip_count": self.clip_count,
            "failed_clip_count": self.failed_clip_count,
            "language": self.asr.language if self.asr else None,
            "language_probability": self.asr.language_probability if self.asr else None,
            "asr_model": self.asr.model_id if self.asr else None,
            "asr_note": self.asr.note if self.asr else None,
            "final_url": redact_url(self.fetched.final_url)
            if self.fetched and self.fetched.final_url else None,
            "fetch_attempts": self.fetched.attempts if self.fetched else None,
            "run_id": self.run_id,
        }


_INFO_FIELDS = [f.name for f in dataclasses.fields(VideoInfo)]
