"""The teacher interface: what a teacher sees of a clip, and what it returns.

A teacher is one class in one module of this package, registered by name with
``@register``; the package imports every module in it, so adding a teacher needs no
change elsewhere. ``setup()`` runs once per worker (load models there, through a
process-wide ``models.loading.ProcessCache`` when they are large); ``propose()`` runs per
clip and returns zero or more proposals. Expected failures (a server that keeps
answering 500, an unreadable keyframe) raise ``TeacherError``: the clip gets an error
row for this teacher and keeps the other teachers' candidates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vidcurate.schemas.records import CaptionCandidate, CaptionStruct, ClipRecord, Source
from vidcurate.transforms.core import AddArgument, ConfigError, StageError, check
from vidcurate.transforms.models.clip import ClipModelConfig


@dataclass(frozen=True)
class VlmConfig:
    url: str | None
    model: str | None
    api_key_env: str
    timeout_s: float
    retries: int
    concurrency: int
    max_images: int
    max_tokens: int
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    structured_output: str = "json_schema"  # response_format the structured teacher asks


@dataclass(frozen=True)
class TeachersConfig:
    names: tuple[str, ...]
    priority: tuple[str, ...]
    vocabulary: str | None  # None: the shipped vocabulary
    zero_shot_templates: tuple[str, ...]
    zero_shot_top_k: int
    speech_max_words: int
    captioner_model: str
    captioner_max_tokens: int
    vlm: VlmConfig
    captioner_path: str | None = None  # local folder found by the launcher
    device: str = "cpu"  # where the captioner runs (resolved by models.device)
    cpu_threads: int = 0  # torch's threads per worker process (0: torch's default)

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("teachers", default=DEFAULT_TEACHERS,
            help="Comma-separated caption teachers: metadata, speech, ocr, zero_shot, "
            "captioner, vlm, vlm_fuse, structured (see the docs, Caption teachers).")
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
        add("vlm-structured-output", default="json_schema",
            choices=("json_schema", "json_object", "none"),
            help="How the structured teacher asks the server for JSON: response_format "
            "json_schema (vLLM, llama.cpp, OpenAI, Ollama), json_object, or none (the "
            "schema in the prompt only); every answer is validated either way.")

    @classmethod
    def from_options(cls, o: Any, clip_enabled: bool) -> TeachersConfig:
        """The teachers asked for (known names, what each needs), validated."""
        names = tuple(dict.fromkeys(n.strip() for n in o.teachers.split(",") if n.strip()))
        unknown = [n for n in names if n not in TEACHERS]
        if unknown:
            raise ConfigError(f"unknown teacher(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(TEACHERS))}")
        if "zero_shot" in names and not clip_enabled and o.teachers == DEFAULT_TEACHERS:
            names = tuple(n for n in names if n != "zero_shot")  # the default set, no CLIP
        if "zero_shot" in names and not clip_enabled:
            raise ConfigError("the zero_shot teacher needs CLIP: drop it from --teachers or "
                              "leave --no-clip out")
        if {"vlm", "vlm_fuse"} & set(names) and not (o.vlm_url and o.vlm_model):
            raise ConfigError("the vlm and vlm_fuse teachers need --vlm-url and --vlm-model")
        if o.vocabulary and not os.path.isfile(o.vocabulary):
            raise ConfigError(f"--vocabulary {o.vocabulary!r} is not a file")
        templates = tuple(t.strip() for t in o.zero_shot_templates.split("|") if t.strip())
        check(
            (all("{}" in t for t in templates) and templates,
             "--zero-shot-templates must be '|'-separated templates that each hold {}"),
            (o.zero_shot_top_k >= 1, "--zero-shot-top-k must be >= 1"),
            (o.speech_max_words >= 3, "--speech-max-words must be >= 3"),
            (o.captioner_max_tokens >= 1, "--captioner-max-tokens must be >= 1"),
            (o.vlm_timeout > 0 and o.vlm_retries >= 0 and o.vlm_concurrency >= 1
             and o.vlm_max_images >= 0 and o.vlm_max_tokens >= 1,
             "--vlm-timeout must be > 0, --vlm-retries >= 0, --vlm-concurrency >= 1, "
             "--vlm-max-images >= 0 and --vlm-max-tokens >= 1"),
        )
        return cls(
            names=names,
            priority=tuple(n.strip() for n in o.teacher_priority.split(",") if n.strip()),
            vocabulary=os.path.abspath(o.vocabulary) if o.vocabulary else None,
            zero_shot_templates=templates,
            zero_shot_top_k=o.zero_shot_top_k,
            speech_max_words=o.speech_max_words,
            captioner_model=o.captioner_model,
            captioner_max_tokens=o.captioner_max_tokens,
            vlm=VlmConfig(url=o.vlm_url.rstrip("/") if o.vlm_url else None,
                          model=o.vlm_model, api_key_env=o.vlm_api_key_env,
                          timeout_s=o.vlm_timeout, retries=o.vlm_retries,
                          concurrency=o.vlm_concurrency, max_images=o.vlm_max_images,
                          max_tokens=o.vlm_max_tokens,
                          structured_output=o.vlm_structured_output),
        )


DEFAULT_TEACHERS = "metadata,speech,ocr,zero_shot,structured"
# Who wins when there are no CLIP scores to compare (and breaks ties when there are):
# models that look at the frames first, then the source's own words, then derived text;
# structured last, since its text is built from the others' and the measurements.
DEFAULT_TEACHER_PRIORITY = "vlm_fuse,vlm,captioner,metadata,speech,ocr,zero_shot,structured"


TEACHERS: dict[str, type[Teacher]] = {}


@dataclass(frozen=True)
class ClipContext:
    """Everything known about a clip when teachers run."""

    clip: ClipRecord
    source: Source  # title, description, and extra manifest / video-site metadata
    candidates: tuple[CaptionCandidate, ...] = ()  # other teachers' (fusing teachers only)

    @property
    def tags(self) -> tuple[str, ...]:
        raw = self.source.metadata.get("tags") or ()
        if isinstance(raw, str):
            raw = raw.replace(";", ",").split(",")
        return tuple(str(t).strip() for t in raw if str(t).strip())


@dataclass(frozen=True)
class Proposal:
    text: str
    prompt: str | None = None  # the prompt or template that produced it, for auditing
    model: str | None = None  # when not the teacher's model_id (e.g. a fallback)


class TeacherError(StageError):
    """A teacher could not caption this clip; becomes an error row, never a crash."""


@dataclass
class Teacher:
    """Base class. Subclasses set ``name`` and implement ``propose``."""

    name: ClassVar[str]
    fuses: ClassVar[bool] = False  # runs after the others and reads their candidates
    cfg: TeachersConfig
    clip_model: ClipModelConfig
    _ready: bool = field(default=False, init=False, repr=False)

    @property
    def model_id(self) -> str | None:
        """What produced the text (a model id, or a rule set with its version)."""
        return None

    def setup(self) -> None:
        """Load models; called once per worker before the first clip."""

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        raise NotImplementedError

    def outputs(self, ctx: ClipContext) -> list[CaptionCandidate | CaptionStruct]:
        """What the Captioning stage takes from this teacher for a clip: its candidates,
        and a teacher that structures (``structured``) adds the clip's CaptionStruct.
        All or nothing: an exception leaves the clip with none of them."""
        return list(self.candidates(ctx))

    def candidates(self, ctx: ClipContext) -> list[CaptionCandidate]:
        if not self._ready:
            self.setup()
            self._ready = True
        seen: set[str] = set()
        out = []
        for p in self.propose(ctx):
            text = " ".join(p.text.split())
            if text and text not in seen:
                seen.add(text)
                out.append(CaptionCandidate(clip_id=ctx.clip.clip_id,
                                            video_id=ctx.clip.video_id, teacher=self.name,
                                            model=p.model or self.model_id, prompt=p.prompt,
                                            text=text))
        return out


def register(cls: type[Teacher]) -> type[Teacher]:
    if cls.name in TEACHERS and TEACHERS[cls.name] is not cls:
        raise ValueError(f"two teachers are called {cls.name!r}")
    TEACHERS[cls.name] = cls
    return cls
