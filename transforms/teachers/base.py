"""The teacher interface: what a teacher sees of a clip, and what it returns.

A teacher is one class in one module of this package, registered by name with
``@register``; the package imports every module in it, so adding a teacher needs no
change elsewhere. ``setup()`` runs once per worker (load models there, through a
process-wide ``shared.Shared`` handle when they are large); ``propose()`` runs per
clip and returns zero or more proposals. Expected failures (a server that keeps
answering 500, an unreadable keyframe) raise ``TeacherError``: the clip gets an error
row for this teacher and keeps the other teachers' candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vidcurate.schemas.records import CaptionCandidate, ClipRecord, Source
from vidcurate.transforms.core import StageError
from vidcurate.transforms.models.clip import ClipConfig


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
    clip: ClipConfig
    _ready: bool = field(default=False, init=False, repr=False)

    @property
    def model_id(self) -> str | None:
        """What produced the text (a model id, or a rule set with its version)."""
        return None

    def setup(self) -> None:
        """Load models; called once per worker before the first clip."""

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        raise NotImplementedError

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
