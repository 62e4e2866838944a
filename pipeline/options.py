"""Every knob of a run, as a Beam PipelineOptions subclass, validated before the graph.

Each stage declares its own flags and checks their values, next to the code that uses
them (`add_arguments` / `from_options` on its config dataclass); this module adds the
program's own flags and composes the rest. ``CurationOptions`` follows Beam's
convention, so any runner flag passes through untouched. ``RunConfig.from_options``
raises ``ConfigError`` (with a message a user can act on) for bad values.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from vidcurate.transforms.core import ConfigError, check, is_local
from vidcurate.transforms.cut_clips import CLIP_MEDIA_MODES, MediaConfig
from vidcurate.transforms.fetch_config import FetchConfig
from vidcurate.transforms.judge_clips import QualityConfig
from vidcurate.transforms.manifest import input_kind
from vidcurate.transforms.models.aesthetic import AestheticConfig
from vidcurate.transforms.models.clip import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
    ClipModelConfig,
)
from vidcurate.transforms.models.device import DeviceConfig
from vidcurate.transforms.models.nsfw import NsfwConfig
from vidcurate.transforms.models.ocr import OcrConfig
from vidcurate.transforms.models.transnetv2 import TransNetConfig
from vidcurate.transforms.models.whisper import ASR_BACKENDS, AsrConfig
from vidcurate.transforms.personal_data import PersonalDataConfig
from vidcurate.transforms.split_config import (
    DETECTORS,
    LEARNED_DETECTORS,
    SplitConfig,
    StitchConfig,
    add_split_arguments,
    split_config,
)
from vidcurate.transforms.teachers.base import (
    DEFAULT_TEACHER_PRIORITY,
    DEFAULT_TEACHERS,
    TeachersConfig,
    VlmConfig,
)

# The stages' configs and defaults, composed here; importable from this module too.
__all__ = ["ASR_BACKENDS", "CLIP_MEDIA_MODES", "DEFAULT_CLIP_MODEL", "DEFAULT_CLIP_PRETRAINED",
           "DEFAULT_TEACHERS", "DEFAULT_TEACHER_PRIORITY", "DETECTORS", "AestheticConfig",
           "AsrConfig", "ClipModelConfig", "ConfigError", "CurationOptions", "DeviceConfig",
           "FetchConfig",
           "MediaConfig", "NsfwConfig", "OcrConfig", "PersonalDataConfig", "QualityConfig",
           "RunConfig", "SplitConfig",
           "StitchConfig", "TeachersConfig", "VlmConfig", "check_flags", "new_run_id"]

VIDEO_EXTENSIONS = (
    "mp4,m4v,mov,mkv,webm,avi,flv,wmv,mpg,mpeg,ts,m2ts,mts,3gp,ogv,gif"
)
MAX_RUN_ID = 64  # it names files and folders
# Videos per batch on the in-memory runner: about 30 KB of held state per short video
# split only (more with clips, embeddings and captions), so tens to a few hundred MB a
# batch, while a pipeline's start (~1 s) stays small against a batch's work.
DEFAULT_BATCH_VIDEOS = 1000
# The DirectRunner and the runners it delegates to, by the names --runner takes: the
# runners whose --direct_running_mode and --direct_num_workers apply.
DIRECT_RUNNERS = frozenset({"directrunner", "direct", "fnapirunner",
                            "bundlebaseddirectrunner", "switchingdirectrunner"})
# Runners that keep every collection in one machine's memory: those, and Prism, the
# DirectRunner's local successor.
IN_MEMORY_RUNNERS = DIRECT_RUNNERS | {"prismrunner", "prism"}


class CurationOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 - Beam's parser type
        def add(name: str, *, aliases: tuple[str, ...] = (), dest: str | None = None,
                **kwargs: Any) -> None:
            # Accept both --clip-media and --clip_media (Beam's own flags use underscores).
            underscored = name.replace("-", "_")
            flags = [f"--{name}"] + ([f"--{underscored}"] if underscored != name else [])
            parser.add_argument(*flags, *aliases, dest=dest or underscored, **kwargs)

        # The run as a whole.
        add("input", help="Required. Folder of videos (searched recursively), a single "
            "video, or a CSV / JSONL / Parquet manifest with a `uri` column.")
        add("output", help="Required. Output folder or bucket path; tables go to "
            "<output>/<table>/.")
        add("run-id", default=None, help="Name of this run: up to 64 letters, digits, '-' and "
            "'_', never reused in one output (default: UTC time + random).")
        add("force", action="store_true",
            help="Redo every video, even those an earlier run over the same output "
            "completed with the same settings.")
        add("no-retry-failed", action="store_true",
            help="On a rerun, also leave videos that failed before alone.")
        add("video-extensions", default=VIDEO_EXTENSIONS,
            help="Comma-separated extensions picked up when --input is a folder; other "
            "files are passed over and counted in the run's summary.")
        add("no-follow-symlinks", action="store_true",
            help="In an input folder, do not follow symbolic links (files or folders): "
            "for folders assembled by others, whose links could name any file this user "
            "can read. Links passed over are counted in the summary.")
        add("batch-videos", type=int, default=None, metavar="N",
            help="Run the input in batches of at most N videos, one pipeline and one "
            "commit (runs row) each, in listing order: Beam's in-memory DirectRunner "
            "holds every collection between stages whole, so one pass over many videos "
            "needs memory for all of them. A killed run resumes at its first "
            "uncommitted batch. 0: one pass (the listing stays inside the pipeline). "
            f"Default: {DEFAULT_BATCH_VIDEOS} on the DirectRunner (and Prism), 0 on other "
            "runners (Dataflow, Flink, Spark, DaskRunner stream their collections).")
        # Where every model stage runs (they all use the one device).
        DeviceConfig.add_arguments(add)
        # Each stage's own flags, in graph order.
        FetchConfig.add_arguments(add)
        add_split_arguments(add)
        MediaConfig.add_arguments(add)
        OcrConfig.add_arguments(add)
        AsrConfig.add_arguments(add)
        TeachersConfig.add_arguments(add)
        ClipModelConfig.add_arguments(add)
        QualityConfig.add_arguments(add)
        AestheticConfig.add_arguments(add)
        NsfwConfig.add_arguments(add)
        PersonalDataConfig.add_arguments(add)


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
    clip_model: ClipModelConfig
    teachers: TeachersConfig
    quality: QualityConfig = QualityConfig()
    aesthetic: AestheticConfig = AestheticConfig(model=None, batch_size=256)
    nsfw: NsfwConfig = NsfwConfig(enabled=False)
    # Where --detector transnetv2 / ensemble runs its network (the cuts are the split's).
    transnet: TransNetConfig = TransNetConfig()
    personal_data: PersonalDataConfig = PersonalDataConfig()
    force: bool = False
    retry_failed: bool = True
    device: DeviceConfig = DeviceConfig()
    batch_videos: int = 0  # videos per batch; 0: one pass (how work is grouped: not hashed)
    follow_symlinks: bool = True  # in an input folder (what is listed: not hashed)

    @property
    def outputs_hash(self) -> str:
        """Every setting that changes what a video's rows hold. A rerun skips a video
        only if an earlier complete run had the same hash."""
        asr = asdict(self.asr)
        asr.pop("model_path")  # where the files sit differs per machine, not the model
        asr.pop("batch_size")  # how work is grouped, not what it makes
        ocr, teachers = asdict(self.ocr), asdict(self.teachers)
        for part in (asr, ocr, teachers):
            # Where the models ran (and on how many threads) is recorded in runs, not
            # hashed: a run resumed on a GPU machine skips the videos a CPU run finished
            # (fp16 moves numbers in the last digits, not the clips or texts).
            part.pop("device")
            part.pop("cpu_threads")
        asr.pop("concurrency")  # how many at once, not what each makes
        clip = {"model_id": self.clip_model.model_id} if self.clip_model.enabled else None
        blob = json.dumps({"split": asdict(self.split), "clip": clip,
                           "clip_media": self.media.clip_media,
                           "keyframes": self.media.keyframes,
                           "keyframe_width": self.media.keyframe_width,
                           "ocr": ocr, "asr": asr,
                           "teachers": teachers,
                           # Flags and the aesthetic score are written columns too.
                           "quality": asdict(self.quality),
                           "aesthetic": self.aesthetic.model_id
                           if self.aesthetic.enabled else None,
                           "nsfw": self.nsfw.model_id if self.nsfw.enabled else None,
                           "personal_data": asdict(self.personal_data)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_options(cls, options: PipelineOptions) -> RunConfig:
        o = options.view_as(CurationOptions)
        if not o.input:
            raise ConfigError("--input is required: a folder of videos or a manifest file")
        if not o.output:
            raise ConfigError("--output is required: where the tables are written")
        # What one stage needs of another is checked here, where both are known.
        check(
            (o.no_ocr or o.keyframes > 0,
             "OCR reads the clip keyframes: use --keyframes >= 1, or --no-ocr"),
            (o.no_clip or o.keyframes > 0,
             "CLIP embeds the clip keyframes: use --keyframes >= 1, or --no-clip"),
            (not o.aesthetic_model or not o.no_clip,
             "--aesthetic-model scores CLIP embeddings: drop --no-clip, or leave "
             "--aesthetic-model out"),
        )
        extensions = tuple(
            e.strip().lower().lstrip(".") for e in o.video_extensions.split(",") if e.strip()
        )
        if not extensions:
            raise ConfigError("--video-extensions is empty")
        output = o.output.rstrip("/")
        if any(c in output for c in "[]*?"):
            raise ConfigError(f"--output {o.output!r} holds a glob character ([, ], * or ?): "
                              "Beam's file sinks read it as a pattern; choose another name")
        if is_local(output):
            # Clip and keyframe uris are stored as given: make them absolute.
            output = os.path.abspath(output.removeprefix("file://"))
        run_id = o.run_id or new_run_id()
        if len(run_id) > MAX_RUN_ID or not run_id.replace("-", "").replace("_", "").isalnum():
            shown = run_id if len(run_id) <= 80 else run_id[:60] + f"… ({len(run_id)} chars)"
            raise ConfigError(f"--run-id may hold up to {MAX_RUN_ID} letters, digits, '-' "
                              f"and '_': {shown!r}")
        clip = ClipModelConfig.from_options(o)
        if o.batch_videos is not None and o.batch_videos < 0:
            raise ConfigError(f"--batch-videos must be >= 0 (0: one pass), got {o.batch_videos}")
        return cls(
            run_id=run_id,
            input=o.input,
            output=output,
            video_extensions=extensions,
            fetch=FetchConfig.from_options(
                o, run_id=run_id, output=output,
                input_is_manifest=input_kind(o.input, extensions) == "manifest"),
            split=split_config(o, clip.model if clip.enabled else None, clip.model_id),
            media=MediaConfig.from_options(o, output, in_memory_concurrency(options),
                                         direct_workers(options)),
            ocr=OcrConfig.from_options(o),
            asr=AsrConfig.from_options(o, in_memory_concurrency(options)),
            clip_model=clip,
            teachers=TeachersConfig.from_options(o, clip.enabled),
            quality=QualityConfig.from_options(o),
            aesthetic=AestheticConfig.from_options(o),
            nsfw=NsfwConfig.from_options(o),
            personal_data=PersonalDataConfig.from_options(o),
            force=o.force,
            retry_failed=not o.no_retry_failed,
            device=DeviceConfig.from_options(o, direct_worker_processes(options)),
            batch_videos=default_batch_videos(options) if o.batch_videos is None
            else o.batch_videos,
            follow_symlinks=not o.no_follow_symlinks,
        )

    @property
    def runs_models(self) -> bool:
        """Whether any model stage is in the graph (so --device has something to place)."""
        return (self.clip_model.enabled or self.asr.enabled or self.ocr.enabled
                or self.split.detector in LEARNED_DETECTORS
                or self.aesthetic.enabled or self.nsfw.enabled
                or "captioner" in self.teachers.names)

    def with_device(self, device: DeviceConfig) -> RunConfig:
        """The config with the resolved device handed to every model stage (the one
        place that decides it: models.device.resolve_device, before the graph)."""
        from vidcurate.transforms.models.device import usable_cores

        on, threads = device.resolved, device.cpu_threads
        return replace(
            self, device=device, clip_model=self.clip_model.on_device(on, threads),
            asr=self.asr.on_device(on, threads, usable_cores()),
            ocr=replace(self.ocr, device=on, cpu_threads=threads),
            teachers=replace(self.teachers, device=on, cpu_threads=threads),
            aesthetic=replace(self.aesthetic, device=on, cpu_threads=threads),
            nsfw=replace(self.nsfw, device=on, cpu_threads=threads),
            transnet=replace(self.transnet, device=on, cpu_threads=threads))

    def with_clip_model(self, clip_model: ClipModelConfig) -> RunConfig:
        """The config with the resolved CLIP model; its id goes into the stitching
        parameters (another model stitches differently, so its clips get other ids)."""
        split = self.split
        if split.stitch is not None:
            split = replace(split, stitch=replace(split.stitch,
                                                  model_id=clip_model.model_id))
        return replace(self, clip_model=clip_model, split=split)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name, lower case ("directrunner" when none is given), whether
    --runner names it bare, by module path, or a test passes the object."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    name = (runner if isinstance(runner, str) else type(runner).__name__ if runner
            else "DirectRunner")
    return name.rsplit(".", 1)[-1].lower()


def in_memory_concurrency(options: PipelineOptions) -> int:
    """--video-concurrency auto: the usable cores on the in-memory DirectRunner (one
    thread runs each stage's whole input there), else 1."""
    from apache_beam.options.pipeline_options import DirectOptions

    from vidcurate.transforms.models.device import usable_cores

    in_memory = options.view_as(DirectOptions).direct_running_mode in (None, "in_memory")
    return usable_cores() if runner_name(options) in DIRECT_RUNNERS and in_memory else 1


def direct_workers(options: PipelineOptions) -> int | None:
    """How many workers (processes or threads) the DirectRunner runs on this machine, 1
    in memory; None on other runners, whose workers per machine the launcher cannot
    know."""
    from apache_beam.options.pipeline_options import DirectOptions

    from vidcurate.transforms.models.device import usable_cores

    if runner_name(options) not in DIRECT_RUNNERS:
        return None
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode in (None, "in_memory"):
        return 1
    return direct.direct_num_workers if direct.direct_num_workers > 0 else usable_cores()


def direct_worker_processes(options: PipelineOptions) -> int | None:
    """How many worker processes the DirectRunner starts on this machine (1 in memory or
    with threads, which share one process's model pools); None on other runners."""
    from apache_beam.options.pipeline_options import DirectOptions

    workers = direct_workers(options)
    if workers is None:
        return None
    multi = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    return workers if multi else 1


def default_batch_videos(options: PipelineOptions) -> int:
    """DEFAULT_BATCH_VIDEOS on a runner that holds collections in memory, else 0."""
    return DEFAULT_BATCH_VIDEOS if runner_name(options) in IN_MEMORY_RUNNERS else 0


def check_flags(argv: list[str]) -> None:
    """Reject, before the graph, a flag no options class knows (--min-clips-s,
    --direct_num_worker): Beam would drop it with a warning and the run would go on with
    the default. Known are ours (both spellings) and every flag of Beam's registered
    options classes, spelt as Beam registers them (--direct_num_workers, not
    --direct-num-workers); a runner's own options class is registered once its module is
    imported, which is done here for a --runner given by module path. --runner must name
    a runner Beam knows (any case, "Runner" optional) or an importable class."""
    runner = _check_runner(argv)
    if runner is not None and "." in runner:
        import importlib

        module = runner.rsplit(".", 1)[0]
        try:  # what Beam does when it starts the runner: registers its options
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"--runner {runner}: cannot import {module} ({e})") from e
    parsers: list[Any] = []
    # Beam's own parser with every registered options class (ours among them).
    PipelineOptions([]).get_all_options(add_extra_args_fn=parsers.append)
    known = sorted({f for action in parsers[0]._actions for f in action.option_strings
                    if f.startswith("--")})
    for arg in argv:
        if arg == "--":
            break  # Beam stops reading there too
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        if flag in known:
            continue
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
        hint = f": did you mean {close[0]}?" if close else (
            " (`vidcurate run --help` lists the options; Beam's are at "
            "https://beam.apache.org/releases/pydoc/current/"
            "apache_beam.options.pipeline_options.html)")
        raise ConfigError(f"unknown option {flag}{hint}")


def _check_runner(argv: list[str]) -> str | None:
    """The --runner value, if given, checked against the runners Beam knows by name;
    a dotted path is left to its import."""
    import argparse

    from apache_beam.options.pipeline_options import StandardOptions

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runner")
    runner = parser.parse_known_args(argv)[0].runner
    if runner is None or "." in runner:
        return runner
    names = [*StandardOptions.KNOWN_RUNNER_NAMES, "PythonRPCDirectRunner", "DaskRunner"]
    by_key = {n.lower(): n for n in names}
    key = runner.lower()
    if key in by_key or f"{key}runner" in by_key:  # as Beam's create_runner matches
        return runner
    # Also against the short names ("flink"), so that --runner Fink finds FlinkRunner.
    by_key |= {k.removesuffix("runner"): n for k, n in by_key.items()}
    close = difflib.get_close_matches(key, by_key, n=1, cutoff=0.6)
    hint = f"did you mean {by_key[close[0]]}? " if close else ""
    raise ConfigError(f"unknown --runner {runner}: {hint}Known runners: "
                      f"{', '.join(sorted(set(names)))}, or the module path of a "
                      "PipelineRunner class")


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"
