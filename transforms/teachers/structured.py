"""structured: one structured caption per clip (clips.caption_struct), and its `short`
text as a candidate that CLIP scores like the others.

The struct gathers measured facts (camera motion, motion level, lighting, on-screen
text, speech) and teacher outputs (zero-shot subjects; setting, style and shot type from
a VLM), each field with its source. It runs after the other teachers (it fuses) and
reads their candidates.

Without a VLM, `short` and `dense` are composed by the pure functions below from the
fields and the best teacher captions (first by --teacher-priority: CLIP scores come
later): every clause comes from a field or a teacher's text, nothing is invented, and
the same inputs give the same text.

With --vlm-url and --vlm-model, the server gets the keyframes and the measured facts and
must answer JSON matching ANSWER_SCHEMA (asked through response_format where the server
has it, --vlm-structured-output). An invalid answer is asked again once, with what was
wrong; a second invalid answer is the clip's error row and the clip gets no struct. Where
the answer contradicts a measurement (a camera motion other than the measured one, text
in quotes or in on_screen_text that OCR did not read), the measurement wins: the claim is
dropped, the struct keeps the measured value, and the conflict is listed in the struct
(`conflicts`, counted per clip as caption_conflicts and in the run's metrics).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from vidcurate.schemas.records import (
    CAPTION_STRUCT_FIELDS,
    CaptionCandidate,
    CaptionStruct,
    ClipRecord,
)
from vidcurate.transforms.camera_motion import CAMERA_LABELS
from vidcurate.transforms.teachers.base import (
    ClipContext,
    Proposal,
    Teacher,
    TeacherError,
    TeachersConfig,
    register,
)
from vidcurate.transforms.teachers.speech import condense
from vidcurate.transforms.teachers.text import as_sentence, sentences, squash

RULES_VERSION = "structured-rules:1"
NAME = "structured"

# motion_score (frame diagonals per second) to a level: below 0.005 is the 'static'
# flag's default; a slow pan is ~0.04, busy street shots 0.03-0.23 (docs/quality/signals).
MOTION_LEVELS = ((0.005, "still"), (0.03, "low"), (0.1, "moderate"), (float("inf"), "high"))
# brightness (mean luma 0-1): 'dark' and 'overexposed' at the quality flags' defaults.
BRIGHTNESS_LEVELS = ((0.15, "dark"), (0.3, "dim"), (0.65, "well lit"), (0.85, "bright"),
                     (float("inf"), "overexposed"))
# contrast (luma standard deviation 0-1)
CONTRAST_LEVELS = ((0.12, "low contrast"), (0.28, "normal contrast"),
                   (float("inf"), "high contrast"))
MAX_TEXT_LINES = 12  # distinct on-screen lines kept in the struct
MAX_QUOTED_WORDS = 20
# Teachers whose text is already a field of the struct (or is the struct's own).
FIELD_TEACHERS = frozenset({"zero_shot", "ocr", "speech", NAME})
STRUCT_MAX_TOKENS = 600  # a JSON answer with a dense caption needs more than one line

CAMERA_SHORT = {"static": "static camera", "pan_left": "camera pans left",
                "pan_right": "camera pans right", "tilt_up": "camera tilts up",
                "tilt_down": "camera tilts down", "zoom_in": "camera zooms in",
                "zoom_out": "camera zooms out", "shaky": "shaky camera",
                "mixed": "mixed camera motion"}
CAMERA_DENSE = {"static": "The camera is static.", "pan_left": "The camera pans left.",
                "pan_right": "The camera pans right.", "tilt_up": "The camera tilts up.",
                "tilt_down": "The camera tilts down.", "zoom_in": "The camera zooms in.",
                "zoom_out": "The camera zooms out.", "shaky": "The camera is shaky.",
                "mixed": "The camera motion is mixed."}
MOTION_SHORT = {"still": "no visible motion", "low": "little motion",
                "moderate": "moderate motion", "high": "fast motion"}
MOTION_DENSE = {"still": "Nothing visibly moves.", "low": "There is little motion.",
                "moderate": "There is moderate motion.", "high": "There is fast motion."}

# What a text says about the camera, for checking a VLM's sentences against the
# measured label (phrases a caption uses for each motion).
CAMERA_CLAIMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.I)) for label, pattern in (
        ("static", r"\b(?:static|still|stationary|fixed|locked[- ]off|steady|unmoving)"
                   r"\s+(?:camera|shot|frame|view)\b|\bcamera\s+(?:is|stays|remains)\s+"
                   r"(?:static|still|stationary|fixed|steady)\b"),
        ("pan_left", r"\bpan(?:s|ning|ned)?\s+(?:to\s+the\s+)?left(?:ward)?\b"),
        ("pan_right", r"\bpan(?:s|ning|ned)?\s+(?:to\s+the\s+)?right(?:ward)?\b"),
        ("tilt_up", r"\btilt(?:s|ing|ed)?\s+up(?:ward)?\b"),
        ("tilt_down", r"\btilt(?:s|ing|ed)?\s+down(?:ward)?\b"),
        ("zoom_in", r"\bzoom(?:s|ing|ed)?\s+in\b|\bpush(?:es|ing)?\s+in\b"),
        ("zoom_out", r"\bzoom(?:s|ing|ed)?\s+out\b|\bpull(?:s|ing)?\s+(?:back|out)\b"),
        ("shaky", r"\b(?:shaky|handheld|hand-held|shaking)\b"),
    ))
QUOTED = re.compile(r"[\"“”]([^\"“”]{2,}?)[\"“”]")


@dataclass(frozen=True)
class Fields:
    """The struct's fields other than short and dense, with their sources."""

    camera: str | None
    motion_level: str | None
    lighting: str | None
    on_screen_text: tuple[str, ...] | None
    speech: str | None
    subjects: tuple[str, ...] | None
    setting: str | None = None
    style: str | None = None
    shot_type: str | None = None
    sources: tuple[tuple[str, str], ...] = ()

    def source(self, name: str) -> str:
        return dict(self.sources)[name]


# --- measured fields (pure) -------------------------------------------------------------

def _level(value: float, levels: Sequence[tuple[float, str]]) -> str:
    return next(name for bound, name in levels if value < bound)


def camera_field(clip: ClipRecord) -> tuple[str | None, str]:
    """The measured camera motion label and its source. Read defensively: a run (or an
    older record) without camera motion leaves the field null and says so."""
    label = getattr(clip, "camera_motion", None)
    if label is None:
        return None, "camera_motion (not measured)"
    if label not in CAMERA_LABELS:
        return None, f"camera_motion (unknown label {label!r})"
    return label, "camera_motion"


def motion_field(clip: ClipRecord) -> tuple[str | None, str]:
    if clip.motion_score is None:
        return None, "motion_score (not measured)"
    return _level(clip.motion_score, MOTION_LEVELS), "motion_score"


def lighting_field(clip: ClipRecord) -> tuple[str | None, str]:
    if clip.brightness is None:
        return None, "brightness, contrast (not measured)"
    light = _level(clip.brightness, BRIGHTNESS_LEVELS)
    if clip.contrast is None:
        return light, "brightness"
    return f"{light}, {_level(clip.contrast, CONTRAST_LEVELS)}", "brightness, contrast"


def on_screen_text(clip: ClipRecord) -> tuple[tuple[str, ...] | None, str]:
    """Every line OCR read, once (case and spacing ignored), in the order first seen
    across the keyframes."""
    if clip.ocr_lines is None:
        return None, "ocr_lines (OCR did not run)"
    seen: dict[str, str] = {}
    for line in clip.ocr_lines:
        text = squash(line.text)
        key = _norm(text)
        if key and key not in seen:
            seen[key] = text
    return tuple(list(seen.values())[:MAX_TEXT_LINES]), "ocr_lines"


def speech_field(clip: ClipRecord, max_words: int) -> tuple[str | None, str]:
    if clip.transcript is None:
        return None, "transcript (null: ASR off, or no audio)"
    excerpt = condense(clip.transcript, max_words)
    return excerpt, "transcript (extractive:v1)" if excerpt else "transcript (no speech)"


def subjects_field(candidates: Iterable[CaptionCandidate], templates: Sequence[str]
                   ) -> tuple[tuple[str, ...] | None, str]:
    """The zero_shot teacher's concepts, read back out of its candidates' template, in
    alphabetical order (candidates carry no rank before CLIP scoring: this keeps the
    text the same whatever order they arrive in)."""
    found = sorted((c for c in candidates if c.teacher == "zero_shot"), key=lambda c: c.text)
    if not found:
        return None, "zero_shot (no candidates: the teacher did not run, or no CLIP)"
    template = " ".join((templates[0] if templates else "{}").split())
    before, _, after = template.partition("{}")
    pattern = re.compile(re.escape(before) + r"(.+?)" + re.escape(after.rstrip(".")) + r"\.?$")
    concepts = []
    for c in found:
        m = pattern.match(c.text)
        concept = m.group(1) if m else c.text
        if concept not in concepts:
            concepts.append(concept)
    return tuple(concepts), f"zero_shot ({found[0].model})"


def measured_fields(ctx: ClipContext, cfg: TeachersConfig) -> Fields:
    """Every field that needs no VLM, each with its source."""
    clip = ctx.clip
    values: dict[str, Any] = {}
    sources: list[tuple[str, str]] = []
    for name, (value, source) in (
            ("camera", camera_field(clip)),
            ("motion_level", motion_field(clip)),
            ("lighting", lighting_field(clip)),
            ("on_screen_text", on_screen_text(clip)),
            ("speech", speech_field(clip, cfg.speech_max_words)),
            ("subjects", subjects_field(ctx.candidates, cfg.zero_shot_templates))):
        values[name] = value
        sources.append((name, source))
    for name in ("setting", "style", "shot_type"):
        sources.append((name, "vlm (not configured)"))
    return Fields(**values, sources=tuple(sources))


def best_captions(candidates: Iterable[CaptionCandidate], priority: Sequence[str],
                  n: int = 2) -> list[CaptionCandidate]:
    """The n first describing candidates by teacher priority (then teacher, a title
    before other texts, text): the teachers whose text is not already a field of the
    struct. Candidates arrive sorted by text, not in the order proposed, hence the
    explicit title rule (metadata's title names what the video shows; its description
    often tells where it comes from)."""
    def rank(c: CaptionCandidate) -> tuple[int, str, bool, str]:
        return (priority.index(c.teacher) if c.teacher in priority else len(priority),
                c.teacher, c.prompt != "title", c.text)

    out: list[CaptionCandidate] = []
    for c in sorted((c for c in candidates if c.teacher not in FIELD_TEACHERS), key=rank):
        if all(_norm(c.text) != _norm(o.text) for o in out):
            out.append(c)
    return out[:n]


# --- deterministic composition (pure) ---------------------------------------------------

def _quote(text: str) -> str:
    parts = squash(text).split()
    return " ".join(parts[:MAX_QUOTED_WORDS]) + ("…" if len(parts) > MAX_QUOTED_WORDS else "")


def _first_sentence(text: str) -> str:
    found = sentences(text)
    return (found[0] if found else squash(text)).rstrip(".!?…").rstrip()


def compose_short(fields: Fields, best: Sequence[CaptionCandidate]) -> str:
    """One sentence: the best teacher caption's first sentence (else the first subject,
    else the on-screen text, else 'A clip'), with the camera and motion level."""
    if best:
        lead = _first_sentence(best[0].text)
    elif fields.subjects:
        lead = f"A video of {fields.subjects[0]}"
    elif fields.on_screen_text:
        lead = f'A clip with the on-screen text "{_quote(fields.on_screen_text[0])}"'
    else:
        lead = "A clip"
    notes = []
    if fields.camera:
        notes.append(CAMERA_SHORT[fields.camera])
    if fields.motion_level:
        notes.append(MOTION_SHORT[fields.motion_level])
    if fields.lighting and fields.lighting.split(",")[0] in ("dark", "overexposed"):
        notes.append(fields.lighting.split(",")[0])
    text = as_sentence(lead + (f" ({', '.join(notes)})" if notes else ""))
    return text if text[-1] in ".!?…" else text + "."  # after a closing quote


def compose_dense(fields: Fields, best: Sequence[CaptionCandidate]) -> str:
    """A few sentences, one per known field, after the best teacher captions."""
    out = [as_sentence(c.text) for c in best]
    if fields.subjects:
        out.append(f"Subjects: {', '.join(fields.subjects)}.")
    for name in ("setting", "style", "shot_type"):
        value = getattr(fields, name)
        if value:
            out.append(f"{name.replace('_', ' ').capitalize()}: {squash(value)}.")
    if fields.camera:
        out.append(CAMERA_DENSE[fields.camera])
    if fields.motion_level:
        out.append(MOTION_DENSE[fields.motion_level])
    if fields.lighting:
        out.append(f"The picture is {fields.lighting.replace(', ', ', with ')}.")
    if fields.on_screen_text:
        quoted = ", ".join(f'"{_quote(t)}"' for t in fields.on_screen_text[:3])
        out.append(f"On-screen text: {quoted}.")
    if fields.speech:
        out.append(f'Speech: "{fields.speech.rstrip(".")}".')
    return " ".join(out) if out else "A clip."


def compose(clip_id: str, fields: Fields, best: Sequence[CaptionCandidate]) -> CaptionStruct:
    """The struct without a VLM: same inputs, same text."""
    used = ", ".join(dict.fromkeys(c.teacher for c in best))
    source = RULES_VERSION + (f" (fields, {used})" if used else " (fields)")
    return _struct(clip_id, fields, compose_short(fields, best), compose_dense(fields, best),
                   source, source)


def _struct(clip_id: str, fields: Fields, short: str, dense: str, short_source: str,
            dense_source: str, conflicts: tuple[str, ...] = ()) -> CaptionStruct:
    sources = {"short": short_source, "dense": dense_source, **dict(fields.sources)}
    return CaptionStruct(
        clip_id=clip_id, short=short, dense=dense, camera=fields.camera,
        motion_level=fields.motion_level, lighting=fields.lighting,
        on_screen_text=fields.on_screen_text, speech=fields.speech,
        subjects=fields.subjects, setting=fields.setting, style=fields.style,
        shot_type=fields.shot_type,
        sources=tuple((name, sources[name]) for name in CAPTION_STRUCT_FIELDS),
        conflicts=conflicts)


# --- the VLM's answer: schema, validation, reconciliation (pure) ------------------------

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "short": {"type": "string", "description": "one sentence"},
        "dense": {"type": "string", "description": "two to five sentences"},
        "setting": {"type": "string"},
        "style": {"type": "string"},
        "shot_type": {"type": "string"},
        "camera": {"type": "string", "enum": list(CAMERA_LABELS)},
        "on_screen_text": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["short", "dense", "setting", "style", "shot_type", "camera",
                 "on_screen_text"],
    "additionalProperties": False,
}
PROMPT = (
    "Describe this video clip as JSON. The images are keyframes in time order. These "
    "facts were measured on the clip; keep to them and do not contradict them:\n{facts}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}\n"
    "short: one factual sentence of at most 30 words. dense: two to five factual "
    "sentences about what is visible and what happens. setting: where it takes place. "
    "style: the visual style (e.g. live action, animation, screen recording). "
    "shot_type: e.g. close-up, medium shot, wide shot, aerial. camera: the camera motion. "
    "on_screen_text: text written in the frames, exactly as it appears ([] if none). "
    "Quote on-screen text only if it is in the frames.")
RETRY_PROMPT = ("That answer is not valid: {reason}. Answer again with only one JSON "
                "object matching the schema.")


class InvalidAnswer(ValueError):
    """The server's answer does not match ANSWER_SCHEMA."""


def facts_text(fields: Fields) -> str:
    lines = [f"camera motion: {fields.camera}" if fields.camera else None,
             f"motion level: {fields.motion_level}" if fields.motion_level else None,
             f"lighting: {fields.lighting}" if fields.lighting else None,
             "on-screen text (OCR): " + (" | ".join(fields.on_screen_text) or "none")
             if fields.on_screen_text is not None else None,
             f"speech: {fields.speech}" if fields.speech else None,
             f"likely subjects: {', '.join(fields.subjects)}" if fields.subjects else None]
    return "\n".join(f"- {ln}" for ln in lines if ln) or "- (none)"


def response_format(mode: str) -> dict[str, Any] | None:
    """The chat API's structured-output option for --vlm-structured-output."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {
            "name": "caption_struct", "strict": True, "schema": ANSWER_SCHEMA}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def parse_answer(text: str) -> dict[str, Any]:
    """The answer as a dict that matches ANSWER_SCHEMA, else InvalidAnswer saying why.
    A Markdown code fence around the JSON is tolerated (servers without structured
    output often add one)."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    if fenced:
        body = fenced.group(1)
    try:
        answer = json.loads(body)
    except ValueError as e:
        raise InvalidAnswer(f"not JSON ({e.msg} at character {e.pos})") from e
    if not isinstance(answer, dict):
        raise InvalidAnswer(f"a JSON {type(answer).__name__}, not an object")
    props = ANSWER_SCHEMA["properties"]
    missing = [k for k in ANSWER_SCHEMA["required"] if k not in answer]
    extra = sorted(set(answer) - set(props))
    if missing or extra:
        raise InvalidAnswer("; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(extra)}"] if extra else [])))
    for key, spec in props.items():
        value = answer[key]
        if spec["type"] == "string":
            if not isinstance(value, str) or (key in ("short", "dense") and not value.strip()):
                raise InvalidAnswer(f"{key} must be a non-empty string" if key in
                                    ("short", "dense") else f"{key} must be a string")
            if "enum" in spec and value not in spec["enum"]:
                raise InvalidAnswer(f"{key} must be one of {', '.join(spec['enum'])}, "
                                    f"not {value!r}")
        elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidAnswer(f"{key} must be a list of strings")
    return answer


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def seen_in(text: str, reference: str) -> bool:
    """Whether OCR (or the transcript) holds this text: as a phrase, or at least 60 % of
    its words, a word matching a read word that differs by a letter or so (OCR, and a
    VLM, misread single letters)."""
    words, ref = _norm(text).split(), _norm(reference)
    if not words:
        return True
    if " ".join(words) in ref:
        return True
    known = set(ref.split())

    def found(word: str) -> bool:
        return word in known or (len(word) >= 4 and any(
            SequenceMatcher(None, word, k).ratio() >= 0.8 for k in known))

    return sum(found(w) for w in words) >= 0.6 * len(words)


def camera_claims(sentence: str) -> set[str]:
    return {label for label, pattern in CAMERA_CLAIMS if pattern.search(sentence)}


def _check_sentences(text: str, field: str, camera: str | None, ocr: str | None,
                     transcript: str) -> tuple[list[str], list[str]]:
    """The sentences of a VLM text that no measurement contradicts, and the conflicts
    found in the others."""
    kept, conflicts = [], []
    for sentence in sentences(squash(text)):
        found = []
        if camera is not None:
            wrong = sorted(camera_claims(sentence) - {camera})
            # "mixed" motion contains pans and zooms: only 'static' contradicts it.
            if camera == "mixed":
                wrong = [w for w in wrong if w == "static"]
            found += [f"{field}: says camera {w}, measured {camera}" for w in wrong]
        if ocr is not None:
            for quote in QUOTED.findall(sentence):
                if not seen_in(quote, ocr) and not seen_in(quote, transcript):
                    found.append(f'{field}: quotes "{_quote(quote)}", not read by OCR')
        if found:
            conflicts += found
        else:
            kept.append(sentence)
    return kept, conflicts


def reconcile(clip_id: str, fields: Fields, answer: dict[str, Any],
              best: Sequence[CaptionCandidate], clip: ClipRecord, model: str
              ) -> CaptionStruct:
    """The struct from a valid answer, measurements winning every contradiction: the
    measured camera label and OCR's lines stay; a sentence that contradicts them is
    dropped (an emptied text falls back to its composed form)."""
    conflicts: list[str] = []
    camera = fields.camera
    if camera is not None and answer["camera"] != camera and not (
            camera == "mixed" and answer["camera"] != "static"):
        conflicts.append(f"camera: says {answer['camera']}, measured {camera}")
    ocr = None if clip.ocr_lines is None else " ".join(fields.on_screen_text or ())
    if ocr is not None:
        conflicts += [f'on_screen_text: reads "{_quote(t)}", not read by OCR'
                      for t in answer["on_screen_text"] if not seen_in(t, ocr)]
    transcript = clip.transcript or ""
    vlm = {"setting": squash(answer["setting"]) or None,
           "style": squash(answer["style"]) or None,
           "shot_type": squash(answer["shot_type"]) or None}
    source = f"vlm ({model})"
    sources = tuple((k, source if k in vlm and vlm[k] else s) for k, s in fields.sources)
    fields = Fields(**{**{k: getattr(fields, k) for k in (
        "camera", "motion_level", "lighting", "on_screen_text", "speech", "subjects")},
        **vlm}, sources=sources)
    texts, text_sources = {}, {}
    for name in ("short", "dense"):
        kept, found = _check_sentences(answer[name], name, camera, ocr, transcript)
        conflicts += found
        if name == "short" and kept:
            kept = kept[:1]  # one sentence
        if kept and found and name == "dense" and camera:
            kept.append(CAMERA_DENSE[camera])  # the measurement, in place of the claim
        if kept:
            texts[name] = " ".join(as_sentence(s) for s in kept)
            text_sources[name] = f"{source}, checked against the measurements"
        else:  # everything it said contradicted a measurement: the composed text
            texts[name] = (compose_short if name == "short" else compose_dense)(fields, best)
            text_sources[name] = f"{RULES_VERSION} (the VLM's text was overruled)"
    return _struct(clip_id, fields, texts["short"], texts["dense"], text_sources["short"],
                   text_sources["dense"], tuple(conflicts))


# --- the teacher ------------------------------------------------------------------------

@register
class StructuredTeacher(Teacher):
    name = NAME
    fuses = True  # reads the zero_shot subjects and the best teacher captions

    @property
    def model_id(self) -> str:
        return f"openai-chat:{self.cfg.vlm.model}" if self._vlm else RULES_VERSION

    @property
    def _vlm(self) -> bool:
        return bool(self.cfg.vlm.url and self.cfg.vlm.model)

    def setup(self) -> None:
        if self._vlm:
            from vidcurate.transforms.teachers.chat import ChatClient

            self.client = ChatClient.shared(self.cfg.vlm)

    def structure(self, ctx: ClipContext) -> CaptionStruct:
        """The clip's struct: composed, or from the VLM and checked (TeacherError when the
        server fails, or answers invalid JSON twice)."""
        if not self._ready:
            self.setup()
            self._ready = True
        fields = measured_fields(ctx, self.cfg)
        best = best_captions(ctx.candidates, self.cfg.priority)
        if not self._vlm:
            return compose(ctx.clip.clip_id, fields, best)
        answer = self.ask(ctx, fields)
        return reconcile(ctx.clip.clip_id, fields, answer, best, ctx.clip, self.model_id)

    def ask(self, ctx: ClipContext, fields: Fields) -> dict[str, Any]:
        from vidcurate.transforms.teachers.chat import image_part
        from vidcurate.transforms.teachers.frames import keyframe_bytes

        prompt = PROMPT.format(facts=facts_text(fields),
                               schema=json.dumps(ANSWER_SCHEMA, sort_keys=True))
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        content += [image_part(b) for b in keyframe_bytes(ctx.clip, self.cfg.vlm.max_images)]
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        fmt = response_format(self.cfg.vlm.structured_output)
        reasons = []
        for _ in range(2):  # an invalid answer is asked again once, saying what was wrong
            text = self.client.complete(messages, max_tokens=max(
                self.cfg.vlm.max_tokens, STRUCT_MAX_TOKENS), response_format=fmt)
            try:
                return parse_answer(text)
            except InvalidAnswer as e:
                reasons.append(str(e))
                messages = [*messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": RETRY_PROMPT.format(reason=e)}]
        raise TeacherError("invalid_answer", "the server's answer did not match the schema "
                           f"twice: {reasons[0]}; then {reasons[1]}")

    def outputs(self, ctx: ClipContext) -> list[CaptionCandidate | CaptionStruct]:
        struct = self.structure(ctx)
        return [struct, *self._candidates(ctx, struct)]

    def _candidates(self, ctx: ClipContext, struct: CaptionStruct) -> list[CaptionCandidate]:
        prompt = dict(struct.sources)["short"]
        return [CaptionCandidate(clip_id=ctx.clip.clip_id, video_id=ctx.clip.video_id,
                                 teacher=self.name, model=self.model_id
                                 if prompt.startswith("vlm") else RULES_VERSION,
                                 prompt=prompt, text=" ".join(struct.short.split()))]

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        struct = self.structure(ctx)
        return [Proposal(struct.short, prompt=dict(struct.sources)["short"])]
