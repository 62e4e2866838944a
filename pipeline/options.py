"""Every knob of a run, as a Beam PipelineOptions subclass, validated before the graph.

``CurationOptions`` follows Beam's convention so that any runner flag passes through
untouched. ``RunConfig.from_options`` turns it into small frozen configs for the
stages and raises ``ConfigError`` (with a message a user can act on) for bad values.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, replace

from apache_beam.options.pipeline_options import PipelineOptions

from vidcurate.transforms.clips import MediaConfig
from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.fetch import FetchConfig
from vidcurate.transforms.media import MediaLimits
from vidcurate.transforms.models.clip import ClipConfig
from vidcurate.transforms.models.ocr import OcrConfig
from vidcurate.transforms.models.whisper import AsrConfig
from vidcurate.transforms.split_config import SplitConfig, StitchConfig
from vidcurate.transforms.teachers.base import TeachersConfig, VlmConfig

# The stages' configs, composed here; importable from this module as before.
__all__ = ["AsrConfig", "ClipConfig", "ConfigError", "CurationOptions", "FetchConfig",
           "MediaConfig", "OcrConfig", "RunConfig", "SplitConfig", "StitchConfig",
           "TeachersConfig", "VlmConfig", "check_flags", "new_run_id"]

DETECTORS = ("content", "adaptive")
ASR_BACKENDS = ("faster-whisper", "openai-whisper")
CLIP_MEDIA_MODES = ("copy", "exact", "none")
DEFAULT_TEACHERS = "metadata,speech,ocr,zero_shot"
# Who wins when there are no CLIP scores to compare (and breaks ties when there are):
# models that look at the frames first, then the source's own words, then derived text.
DEFAULT_TEACHER_PRIORITY = "vlm_fuse,vlm,captioner,metadata,speech,ocr,zero_shot"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
# Defaults of PySceneDetect's detectors; Panda-70M used ContentDetector(threshold=25).
DEFAULT_THRESHOLDS = {"content": 25.0, "adaptive": 3.0}
VIDEO_EXTENSIONS = (
    "mp4,m4v,mov,mkv,webm,avi,flv,wmv,mpg,mpeg,ts,m2ts,mts,3gp,ogv,gif"
)


class CurationOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 - Beam's parser type
        def add(name: str, **kwargs) -> None:
            # Accept both --clip-media and --clip_media (Beam's own flags use underscores).
            dest = name.replace("-", "_")
            flags = [f"--{name}"] + ([f"--{dest}"] if dest != name else [])
            parser.add_argument(*flags, dest=dest, **kwargs)

        add("input", help="Folder of videos (searched recursively), a single video, or a "
            "CSV / JSONL / Parquet manifest with a `uri` column.")
        add("output", help="Output folder or bucket path; tables go to <output>/<table>/.")
        add("run-id", default=None, help="Name of this run (default: UTC time + random).")
        parser.add_argument("--force", dest="force", action="store_true",
                            help="Redo every video, even those an earlier run over the same "
                            "output completed with the same settings.")
        parser.add_argument("--no-retry-failed", "--no_retry_failed", dest="no_retry_failed",
                            action="store_true",
                            help="On a rerun, also leave videos that failed before alone.")
        add("video-extensions", default=VIDEO_EXTENSIONS,
            help="Comma-separated extensions picked up when --input is a folder.")
        # Fetch.
        add("allow-schemes", default="file,http,https,gs,s3",
            help="URI schemes a manifest may name; anything else is refused.")
        add("max-bytes", type=int, default=8 * 1024**3,
            help="Largest download in bytes, enforced while streaming (0: no limit).")
        add("connect-timeout", type=float, default=10.0, help="HTTP connect timeout, s.")
        add("read-timeout", type=float, default=30.0,
            help="HTTP read timeout, s: the longest wait for the next bytes.")
        add("fetch-retries", type=int, default=4,
            help="Retries of a transient failure (connection, timeout, 5xx, 429).")
        add("backoff", type=float, default=1.0,
            help="First retry waits up to this many seconds (exponential, full jitter).")
        add("backoff-max", type=float, default=60.0,
            help="Longest wait between retries, s (also caps Retry-After).")
        add("rate-per-host", type=float, default=2.0,
            help="Requests per second per host, per worker process (0: no limit).")
        add("concurrency-per-host", type=int, default=4,
            help="Simultaneous downloads per host, per worker process.")
        add("work-dir", default=None,
            help="Where downloads go: a local folder (default: a per-run folder in the temp "
            "dir), or a shared store such as gs://bucket/work for distributed runners.")
        parser.add_argument("--keep-downloads", "--keep_downloads", dest="keep_downloads",
                            action="store_true",
                            help="Keep downloaded files in --work-dir after the run.")
        parser.add_argument("--untrusted-input", "--untrusted_input",
                            "--refuse-private-addresses", "--refuse_private_addresses",
                            dest="untrusted", action="store_true",
                            help="For manifests made by others: rows may name http(s) URLs "
                            "only (no local paths, file:// or buckets), every connection "
                            "goes to the address that was checked, and only globally "
                            "routable addresses are reached (no private, loopback, "
                            "link-local, shared 100.64/10 or reserved ones). "
                            "--refuse-private-addresses is the old name.")
        add("download-deadline", type=float, default=3600.0,
            help="Longest time one download attempt may take, s, however it trickles.")
        add("min-download-rate", type=int, default=16 * 1024,
            help="Bytes per second a download must average after its first "
            "--read-timeout seconds, or it is stopped (0: no minimum).")
        # Limits on the ffmpeg / ffprobe processes that read untrusted media.
        add("tool-memory-mb", type=int, default=4096,
            help="Address space of one ffmpeg / ffprobe process, MB (0: no limit); past it "
            "the video ends as a memory_limit error row.")
        add("max-pixels", type=int, default=7680 * 4320,
            help="Largest frame (width x height) a source may have; larger ones end as "
            "frame_too_large error rows (default: 8K UHD).")
        add("tool-max-seconds", type=float, default=4 * 3600.0,
            help="Hard cap on the time of one ffmpeg / ffprobe process, s, whatever the "
            "video's length.")
        add("ytdlp-hosts", default="youtube.com,youtu.be,vimeo.com,dailymotion.com,"
            "twitch.tv,tiktok.com,bilibili.com",
            help="Hosts fetched through yt-dlp (the 'sites' extra) instead of plain HTTP.")
        add("max-height", type=int, default=720,
            help="yt-dlp picks the best format up to this height.")
        # Cut detection.
        add("detector", default="content", choices=DETECTORS,
            help="PySceneDetect detector: content (Panda-70M) or adaptive.")
        add("scene-threshold", type=float, default=None,
            help="Detector threshold (default 25 for content as Panda-70M, 3.0 for adaptive).")
        add("min-scene-len", type=int, default=15,
            help="Minimum shot length in frames between two detected cuts (Panda-70M: 15).")
        add("detect-width", type=int, default=256,
            help="Frames are downscaled to this width for cut detection (never upscaled).")
        add("max-cut-len", type=float, default=5.0,
            help="In a shot with no cut for --force-cut-after seconds, force a cut every "
            "this many seconds (Panda-70M: 5). 0 disables forced cuts.")
        add("force-cut-after", type=float, default=7.0,
            help="Shot length in seconds beyond which forced cuts apply (Panda-70M: 7).")
        # Clip rules.
        add("min-clip-s", type=float, default=2.5, help="Shortest clip kept, seconds (Panda: 2.5).")
        add("max-clip-s", type=float, default=60.0,
            help="Longest clip, seconds (Panda: 60); longer spans are split evenly.")
        add("trim-fraction", type=float, default=0.0,
            help="Fraction of each span cut from both ends (0 to <0.5).")
        # Clip media.
        add("clip-media", default="copy", choices=CLIP_MEDIA_MODES,
            help="copy: ffmpeg stream copy (fast, starts at the keyframe before the span); "
            "exact: frame-accurate re-encode; none: no clip files.")
        add("keyframes", type=int, default=3,
            help="JPEG keyframes per clip, spread from 5%% to 95%% of the clip (0 for none).")
        add("keyframe-width", type=int, default=1280,
            help="Keyframes are downscaled to at most this width (0 keeps full size); "
            "OCR reads them, so small on-screen text needs ~1280.")
        add("ffmpeg-threads", type=int, default=0,
            help="Threads per ffmpeg process (0 lets ffmpeg choose).")
        # OCR.
        parser.add_argument("--no-ocr", "--no_ocr", dest="no_ocr", action="store_true",
                            help="Skip OCR (the ocr_* columns stay null).")
        add("ocr-min-confidence", type=float, default=0.5,
            help="Recognised lines below this confidence are dropped.")
        add("ocr-det-side", type=int, default=960,
            help="OCR text detection works on frames resized so the long side is at most "
            "this many pixels (RapidOCR default 736 on the short side is slower on video).")
        # ASR.
        parser.add_argument("--no-asr", "--no_asr", dest="no_asr", action="store_true",
                            help="Skip speech recognition (transcript columns stay null).")
        add("asr-backend", default="faster-whisper", choices=ASR_BACKENDS,
            help="faster-whisper (CTranslate2, int8 on CPU) or openai-whisper.")
        add("asr-model", default="small",
            help="Official Whisper model name (tiny, base, small, medium, large-v3, ..., "
            "downloaded on first use) or a local path: a CTranslate2 model folder for "
            "faster-whisper, a .pt checkpoint for openai-whisper.")
        add("asr-language", default=None,
            help="Spoken language code (e.g. en); default: detected per video.")
        add("asr-beam-size", type=int, default=5, help="Beam size for decoding.")
        add("asr-temperature", default="0,0.2,0.4,0.6,0.8,1.0",
            help="Whisper's temperature schedule: decode greedily / by beam at the first, "
            "and fall back to sampling at the next ones when a window fails Whisper's "
            "quality checks. A single 0 makes decoding deterministic.")
        parser.add_argument("--no-asr-vad", "--no_asr_vad", dest="no_asr_vad",
                            action="store_true",
                            help="Turn the voice-activity guard off (Silero VAD: decode only "
                            "voiced audio, drop segments that are not voiced).")
        add("asr-min-voiced", type=float, default=0.3,
            help="Drop a segment when less than this fraction of it is voiced (VAD).")
        add("asr-no-speech-threshold", type=float, default=0.6,
            help="Drop a segment whose no_speech_prob is above this.")
        add("asr-logprob-threshold", type=float, default=-1.0,
            help="Drop a segment whose avg_logprob is below this.")
        add("asr-compression-ratio-threshold", type=float, default=2.4,
            help="Drop a segment whose gzip compression ratio is above this (repetition).")
        add("asr-max-ngram-repeats", type=int, default=4,
            help="Drop a segment in which one word 3-gram occurs more than this many times.")
        add("asr-window-s", type=float, default=120.0,
            help="Transcribe a video's audio in windows of at most this many seconds, each "
            "ending at a quiet moment, so memory does not grow with the video's length.")
        parser.add_argument("--ocr-angle-cls", "--ocr_angle_cls", dest="ocr_angle_cls",
                            action="store_true",
                            help="Run the text-angle classifier (rotated text; ~30%% slower).")
        # Teachers (candidate captions).
        add("teachers", default=DEFAULT_TEACHERS,
            help="Comma-separated caption teachers: metadata, speech, ocr, zero_shot, "
            "captioner, vlm, vlm_fuse (see README).")
        add("teacher-priority", default=DEFAULT_TEACHER_PRIORITY,
            help="Teacher order used when there are no CLIP scores, and to break ties.")
        add("vocabulary", default=None,
            help="zero_shot concept vocabulary, one concept per line (default: the list "
            "shipped with vidcurate).")
        add("zero-shot-templates", default="a video of {}.|a photo of {}.",
            help="'|'-separated prompt templates for zero_shot; {} is the concept.")
        add("zero-shot-top-k", type=int, default=2,
            help="zero_shot proposes its best k concepts, each as one candidate.")
        add("speech-max-words", type=int, default=30,
            help="speech condenses a clip's transcript to at most this many words.")
        add("captioner-model", default="Salesforce/blip-image-captioning-base",
            help="Hugging Face image-to-text model (BLIP / GIT style) or a local folder.")
        add("captioner-max-tokens", type=int, default=30, help="Longest caption, in tokens.")
        add("vlm-url", default=None,
            help="Base URL of an OpenAI-compatible server, e.g. http://localhost:8000/v1 "
            "(vLLM) or http://localhost:11434/v1 (Ollama).")
        add("vlm-model", default=None, help="Model name the server knows.")
        add("vlm-api-key-env", default="VLM_API_KEY",
            help="Environment variable that holds the server's API key, if it wants one.")
        add("vlm-timeout", type=float, default=120.0, help="Seconds per request.")
        add("vlm-retries", type=int, default=4,
            help="Retries on 429, 5xx, timeouts and connection errors.")
        add("vlm-concurrency", type=int, default=4,
            help="Requests in flight at once, per worker process.")
        add("vlm-max-images", type=int, default=3, help="Keyframes sent per clip.")
        add("vlm-max-tokens", type=int, default=120, help="Longest answer, in tokens.")
        # CLIP: embeddings, semantic stitching, caption scoring.
        parser.add_argument("--no-clip", "--no_clip", dest="no_clip", action="store_true",
                            help="Run without CLIP: no stitching, no embeddings, captions "
                            "selected by teacher priority (recorded in runs).")
        add("clip-model", default=DEFAULT_CLIP_MODEL,
            help="open_clip architecture name (see open_clip.list_models()), or the name "
            "defined by --clip-model-config.")
        add("clip-pretrained", default=DEFAULT_CLIP_PRETRAINED,
            help="open_clip pretrained tag (downloaded on first use) or a local checkpoint "
            "file (.pt / .bin / .safetensors in open_clip's format).")
        add("clip-model-config", default=None,
            help="JSON model config (open_clip's model_configs format) for an architecture "
            "open_clip does not know; its file name without .json is the model name.")
        add("clip-batch-size", type=int, default=32,
            help="Images or texts per CLIP forward pass.")
        parser.add_argument("--no-stitch", "--no_stitch", dest="no_stitch",
                            action="store_true",
                            help="Keep every cut-scene as its own event (no CLIP stitching).")
        add("stitch-positions", default="0.05,0.95",
            help="Where in each cut-scene its start and end frames are taken (Panda-70M: "
            "5%% and 95%%).")
        add("transition-distance", type=float, default=1.0,
            help="Drop a cut-scene whose start and end frames are further apart than this "
            "(a transition effect; Panda-70M: 1.0).")
        add("merge-distance", type=float, default=0.6,
            help="Merge a cut-scene into the previous event when their boundary frames are "
            "this close (Panda-70M: 0.6).")
        add("still-distance", type=float, default=0.15,
            help="Drop an event whose first and last frames are closer than this (nothing "
            "changes; Panda-70M: 0.15).")
        add("redundant-distance", type=float, default=0.3,
            help="Drop an event whose mean embedding is this close to one already kept in "
            "the same video (Panda-70M: 0.3). 0 disables.")
        add("stitch-scale", type=float, default=None,
            help="Multiplies the four distances above, to move Panda-70M's thresholds onto "
            "the scale of the CLIP model in use (default: the model's entry in the "
            "calibration table, else 1.0; see README).")


@dataclass(frozen=True)
class RunConfig:
    run_id: str
    input: str
    output: str
    video_extensions: tuple[str, ...]
    fetch: FetchConfig
    split: SplitConfig
    media: MediaConfig
    ocr: OcrConfig
    asr: AsrConfig
    clip: ClipConfig
    teachers: TeachersConfig
    force: bool = False
    retry_failed: bool = True

    @property
    def outputs_hash(self) -> str:
        """Every setting that changes what a video's rows hold. A rerun skips a video
        only if an earlier complete run had the same hash."""
        asr = asdict(self.asr)
        asr.pop("model_path")  # where the files sit differs per machine, not the model
        asr.pop("batch_size")  # how work is grouped, not what it makes
        clip = {"model_id": self.clip.model_id} if self.clip.enabled else None
        blob = json.dumps({"split": asdict(self.split), "clip": clip,
                           "clip_media": self.media.clip_media,
                           "keyframes": self.media.keyframes,
                           "keyframe_width": self.media.keyframe_width,
                           "ocr": asdict(self.ocr), "asr": asr,
                           "teachers": asdict(self.teachers)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_options(cls, options: PipelineOptions) -> RunConfig:
        o = options.view_as(CurationOptions)
        if not o.input:
            raise ConfigError("--input is required: a folder of videos or a manifest file")
        if not o.output:
            raise ConfigError("--output is required: where the tables are written")
        threshold = o.scene_threshold
        if threshold is None:
            threshold = DEFAULT_THRESHOLDS[o.detector]
        checks = [
            (threshold > 0, f"--scene-threshold must be > 0, got {threshold}"),
            (o.min_scene_len >= 1, f"--min-scene-len must be >= 1 frame, got {o.min_scene_len}"),
            (o.detect_width >= 16, f"--detect-width must be >= 16 pixels, got {o.detect_width}"),
            (o.max_cut_len >= 0, f"--max-cut-len must be >= 0, got {o.max_cut_len}"),
            (
                o.max_cut_len == 0 or o.force_cut_after >= o.max_cut_len,
                f"--force-cut-after ({o.force_cut_after}) must be >= --max-cut-len "
                f"({o.max_cut_len})",
            ),
            (o.min_clip_s >= 0, f"--min-clip-s must be >= 0, got {o.min_clip_s}"),
            (
                o.max_clip_s > o.min_clip_s,
                f"--max-clip-s ({o.max_clip_s}) must be greater than --min-clip-s "
                f"({o.min_clip_s})",
            ),
            (0 <= o.trim_fraction < 0.5, f"--trim-fraction must be in [0, 0.5), got "
             f"{o.trim_fraction}"),
            (0 <= o.keyframes <= 32, f"--keyframes must be in [0, 32], got {o.keyframes}"),
            (o.keyframe_width >= 0, f"--keyframe-width must be >= 0, got {o.keyframe_width}"),
            (o.ffmpeg_threads >= 0, f"--ffmpeg-threads must be >= 0, got {o.ffmpeg_threads}"),
            (o.max_bytes >= 0, f"--max-bytes must be >= 0, got {o.max_bytes}"),
            (o.connect_timeout > 0 and o.read_timeout > 0, "timeouts must be > 0"),
            (o.fetch_retries >= 0, f"--fetch-retries must be >= 0, got {o.fetch_retries}"),
            (o.backoff >= 0 and o.backoff_max >= o.backoff,
             "--backoff must be >= 0 and <= --backoff-max"),
            (o.rate_per_host >= 0, f"--rate-per-host must be >= 0, got {o.rate_per_host}"),
            (o.concurrency_per_host >= 1, "--concurrency-per-host must be >= 1"),
            (o.download_deadline > 0, f"--download-deadline must be > 0, got "
             f"{o.download_deadline}"),
            (o.min_download_rate >= 0, f"--min-download-rate must be >= 0, got "
             f"{o.min_download_rate}"),
            (o.tool_memory_mb == 0 or o.tool_memory_mb >= 256,
             f"--tool-memory-mb must be 0 (no limit) or >= 256, got {o.tool_memory_mb}"),
            (o.max_pixels >= 64 * 64, f"--max-pixels must be >= 4096, got {o.max_pixels}"),
            (o.tool_max_seconds >= 10, f"--tool-max-seconds must be >= 10, got "
             f"{o.tool_max_seconds}"),
            (o.max_height >= 144, f"--max-height must be >= 144, got {o.max_height}"),
            (0 <= o.ocr_min_confidence <= 1,
             f"--ocr-min-confidence must be in [0, 1], got {o.ocr_min_confidence}"),
            (o.ocr_det_side >= 32, f"--ocr-det-side must be >= 32, got {o.ocr_det_side}"),
            (o.asr_beam_size >= 1, f"--asr-beam-size must be >= 1, got {o.asr_beam_size}"),
            (o.asr_window_s >= 30, f"--asr-window-s must be >= 30 (Whisper reads 30 s at a "
             f"time), got {o.asr_window_s}"),
            (_temperatures(o.asr_temperature) is not None,
             f"--asr-temperature must be comma-separated numbers in [0, 1], got "
             f"{o.asr_temperature!r}"),
            (0 <= o.asr_min_voiced <= 1, f"--asr-min-voiced must be in [0, 1], got "
             f"{o.asr_min_voiced}"),
            (0 <= o.asr_no_speech_threshold <= 1,
             f"--asr-no-speech-threshold must be in [0, 1], got {o.asr_no_speech_threshold}"),
            (o.asr_compression_ratio_threshold > 0, "--asr-compression-ratio-threshold must "
             "be > 0"),
            (o.asr_max_ngram_repeats >= 1, "--asr-max-ngram-repeats must be >= 1"),
            (o.no_ocr or o.keyframes > 0,
             "OCR reads the clip keyframes: use --keyframes >= 1, or --no-ocr"),
            (o.no_clip or o.keyframes > 0,
             "CLIP embeds the clip keyframes: use --keyframes >= 1, or --no-clip"),
            (o.clip_batch_size >= 1, f"--clip-batch-size must be >= 1, got "
             f"{o.clip_batch_size}"),
            (_positions(o.stitch_positions) is not None,
             f"--stitch-positions must be two fractions start,end with 0 <= start < end <= 1,"
             f" got {o.stitch_positions!r}"),
            (min(o.transition_distance, o.merge_distance, o.still_distance,
                 o.redundant_distance) >= 0, "stitching distances must be >= 0"),
            (o.stitch_scale is None or o.stitch_scale > 0,
             f"--stitch-scale must be > 0, got {o.stitch_scale}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        extensions = tuple(
            e.strip().lower().lstrip(".") for e in o.video_extensions.split(",") if e.strip()
        )
        if not extensions:
            raise ConfigError("--video-extensions is empty")
        output = o.output.rstrip("/")
        if any(c in output for c in "[]*?"):
            raise ConfigError(f"--output {o.output!r} holds a glob character ([, ], * or ?): "
                              "Beam's file sinks read it as a pattern; choose another name")
        if "://" not in output or output.startswith("file://"):
            # Clip and keyframe uris are stored as given: make them absolute.
            output = os.path.abspath(output.removeprefix("file://"))
        run_id = o.run_id or new_run_id()
        if len(run_id) > MAX_RUN_ID or not run_id.replace("-", "").replace("_", "").isalnum():
            shown = run_id if len(run_id) <= 80 else run_id[:60] + f"… ({len(run_id)} chars)"
            raise ConfigError(f"--run-id may hold up to {MAX_RUN_ID} letters, digits, '-' "
                              f"and '_': {shown!r}")
        schemes = tuple(x.strip().lower() for x in o.allow_schemes.split(",") if x.strip())
        if not schemes:
            raise ConfigError("--allow-schemes is empty")
        if o.untrusted:
            from vidcurate.transforms.manifest import input_kind

            if input_kind(o.input, extensions) == "manifest":
                # The rows are someone else's: URLs on the web only, never this
                # machine's files or the buckets its credentials can read.
                schemes = tuple(x for x in schemes if x in ("http", "https"))
                if not schemes:
                    raise ConfigError("--untrusted-input takes http(s) URLs only, and "
                                      "--allow-schemes allows neither")
        # Downloads go to a folder of this run's own inside --work-dir, the only thing a
        # run removes afterwards (never the work dir itself: it may hold the user's files).
        work_dir = o.work_dir or os.path.join(tempfile.gettempdir(), "vidcurate-work")
        if "://" not in work_dir or work_dir.startswith("file://"):
            work_dir = os.path.abspath(work_dir.removeprefix("file://"))
            _check_work_dir(work_dir, output, o.input)
        work_dir = f"{work_dir.rstrip('/')}/run-{run_id}"
        clip = ClipConfig(
            enabled=not o.no_clip,
            model=o.clip_model,
            pretrained=o.clip_pretrained,
            model_config=o.clip_model_config,
            batch_size=o.clip_batch_size,
        )
        return cls(
            run_id=run_id,
            input=o.input,
            output=output,
            video_extensions=extensions,
            fetch=FetchConfig(
                allow_schemes=schemes,
                max_bytes=o.max_bytes,
                connect_timeout_s=o.connect_timeout,
                read_timeout_s=o.read_timeout,
                retries=o.fetch_retries,
                backoff_s=o.backoff,
                backoff_max_s=o.backoff_max,
                rate_per_host=o.rate_per_host,
                concurrency_per_host=o.concurrency_per_host,
                work_dir=work_dir.rstrip("/"),
                keep_downloads=o.keep_downloads,
                untrusted=o.untrusted,
                download_deadline_s=o.download_deadline,
                min_rate=o.min_download_rate,
                ytdlp_hosts=tuple(h.strip().lower() for h in o.ytdlp_hosts.split(",")
                                  if h.strip()),
                max_height=o.max_height,
            ),
            split=SplitConfig(
                detector=o.detector,
                threshold=float(threshold),
                min_scene_len=o.min_scene_len,
                detect_width=o.detect_width,
                max_cut_len=o.max_cut_len,
                force_cut_after=o.force_cut_after,
                min_clip_s=o.min_clip_s,
                max_clip_s=o.max_clip_s,
                trim_fraction=o.trim_fraction,
                stitch=_stitch_config(o, clip),
            ),
            media=MediaConfig(
                output=output,
                clip_media=o.clip_media,
                keyframes=o.keyframes,
                keyframe_width=o.keyframe_width,
                ffmpeg_threads=o.ffmpeg_threads,
                limits=MediaLimits(memory_bytes=o.tool_memory_mb * 1024**2,
                                   max_pixels=o.max_pixels,
                                   max_seconds=o.tool_max_seconds),
            ),
            ocr=OcrConfig(
                enabled=not o.no_ocr,
                min_confidence=o.ocr_min_confidence,
                det_side=o.ocr_det_side,
                angle_cls=o.ocr_angle_cls,
            ),
            asr=AsrConfig(
                enabled=not o.no_asr,
                backend=o.asr_backend,
                model=o.asr_model,
                model_path=None,
                language=o.asr_language,
                beam_size=o.asr_beam_size,
                temperatures=_temperatures(o.asr_temperature) or (0.0,),
                vad=not o.no_asr_vad,
                min_voiced=o.asr_min_voiced,
                no_speech_threshold=o.asr_no_speech_threshold,
                logprob_threshold=o.asr_logprob_threshold,
                compression_ratio_threshold=o.asr_compression_ratio_threshold,
                max_ngram_repeats=o.asr_max_ngram_repeats,
                window_s=o.asr_window_s,
            ),
            clip=clip,
            teachers=_teachers_config(o, clip),
            force=o.force,
            retry_failed=not o.no_retry_failed,
        )

    def with_clip(self, clip: ClipConfig) -> RunConfig:
        """The config with the resolved CLIP model; its id goes into the stitching
        parameters (another model stitches differently, so its clips get other ids)."""
        split = self.split
        if split.stitch is not None:
            split = replace(split, stitch=replace(split.stitch, model_id=clip.model_id))
        return replace(self, clip=clip, split=split)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _teachers_config(o: CurationOptions, clip: ClipConfig) -> TeachersConfig:
    from vidcurate.transforms.teachers import TEACHERS

    names = tuple(dict.fromkeys(n.strip() for n in o.teachers.split(",") if n.strip()))
    unknown = [n for n in names if n not in TEACHERS]
    if unknown:
        raise ConfigError(f"unknown teacher(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(TEACHERS))}")
    if "zero_shot" in names and not clip.enabled and o.teachers == DEFAULT_TEACHERS:
        names = tuple(n for n in names if n != "zero_shot")  # the default set, without CLIP
    if "zero_shot" in names and not clip.enabled:
        raise ConfigError("the zero_shot teacher needs CLIP: drop it from --teachers or "
                          "leave --no-clip out")
    if {"vlm", "vlm_fuse"} & set(names) and not (o.vlm_url and o.vlm_model):
        raise ConfigError("the vlm and vlm_fuse teachers need --vlm-url and --vlm-model")
    if o.vocabulary and not os.path.isfile(o.vocabulary):
        raise ConfigError(f"--vocabulary {o.vocabulary!r} is not a file")
    templates = tuple(t.strip() for t in o.zero_shot_templates.split("|") if t.strip())
    checks = [
        (all("{}" in t for t in templates) and templates,
         "--zero-shot-templates must be '|'-separated templates that each hold {}"),
        (o.zero_shot_top_k >= 1, "--zero-shot-top-k must be >= 1"),
        (o.speech_max_words >= 3, "--speech-max-words must be >= 3"),
        (o.captioner_max_tokens >= 1, "--captioner-max-tokens must be >= 1"),
        (o.vlm_timeout > 0 and o.vlm_retries >= 0 and o.vlm_concurrency >= 1
         and o.vlm_max_images >= 0 and o.vlm_max_tokens >= 1,
         "--vlm-timeout must be > 0, --vlm-retries >= 0, --vlm-concurrency >= 1, "
         "--vlm-max-images >= 0 and --vlm-max-tokens >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return TeachersConfig(
        names=names,
        priority=tuple(n.strip() for n in o.teacher_priority.split(",") if n.strip()),
        vocabulary=os.path.abspath(o.vocabulary) if o.vocabulary else None,
        zero_shot_templates=templates,
        zero_shot_top_k=o.zero_shot_top_k,
        speech_max_words=o.speech_max_words,
        captioner_model=o.captioner_model,
        captioner_max_tokens=o.captioner_max_tokens,
        vlm=VlmConfig(url=o.vlm_url.rstrip("/") if o.vlm_url else None, model=o.vlm_model,
                      api_key_env=o.vlm_api_key_env, timeout_s=o.vlm_timeout,
                      retries=o.vlm_retries, concurrency=o.vlm_concurrency,
                      max_images=o.vlm_max_images, max_tokens=o.vlm_max_tokens),
    )


def _stitch_config(o: CurationOptions, clip: ClipConfig) -> StitchConfig | None:
    if not clip.enabled or o.no_stitch:
        return None
    from vidcurate.transforms.stitch import default_scale

    scale = o.stitch_scale if o.stitch_scale is not None else default_scale(clip.model)
    start, end = _positions(o.stitch_positions) or (0.05, 0.95)
    return StitchConfig(
        model_id=clip.model_id, start_position=start, end_position=end,
        transition_distance=o.transition_distance * scale,
        merge_distance=o.merge_distance * scale,
        still_distance=o.still_distance * scale,
        redundant_distance=o.redundant_distance * scale, scale=scale)


def _positions(text: str) -> tuple[float, float] | None:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        return None
    if len(values) != 2 or not 0 <= values[0] < values[1] <= 1:
        return None
    return values[0], values[1]


def _temperatures(text: str) -> tuple[float, ...] | None:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        return None
    return values if values and all(0 <= v <= 1 for v in values) else None


def check_flags(argv: list[str]) -> None:
    """Reject a flag that is a near miss of one of ours (--min-clips-s): Beam would
    drop it with a warning and the run would go on with the default. Other unknown
    flags pass through to Beam and its runners."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    CurationOptions._add_argparse_args(parser)
    ours = [f for action in parser._actions for f in action.option_strings]
    known_elsewhere = set(PipelineOptions(argv).get_all_options(retain_unknown_options=False))
    for arg in argv:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        if flag in ours or flag[2:].replace("-", "_") in known_elsewhere:
            continue
        close = difflib.get_close_matches(flag, ours, n=1, cutoff=0.85)
        if close:
            raise ConfigError(f"unknown option {flag}: did you mean {close[0]}?")


MAX_RUN_ID = 64  # it names files and folders


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_work_dir(work_dir: str, output: str, input_uri: str) -> None:
    """--work-dir must be apart from the dataset and the inputs: a run writes and then
    removes its download folder there."""
    work = os.path.realpath(work_dir)
    named = []
    if "://" not in output:
        named.append(("--output", os.path.realpath(output)))
    if "://" not in input_uri or input_uri.startswith("file://"):
        source = os.path.realpath(input_uri.removeprefix("file://"))
        if os.path.isdir(source):  # a folder of videos (a file cannot hold the work dir)
            named.append(("--input", source))
    for flag, other in named:
        if _inside(work, other) or _inside(other, work):
            raise ConfigError(f"--work-dir {work_dir!r} must not be, contain or lie inside "
                              f"{flag} ({other}): choose a separate folder")


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"
