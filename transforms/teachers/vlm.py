"""vlm and vlm_fuse: captions from an OpenAI-compatible chat server (vLLM, llama.cpp,
Ollama) given --vlm-url and --vlm-model.

vlm sends up to --vlm-max-images keyframes with what else is known of the clip as
context (title, description, speech, on-screen text: Panda-70M prompted its teachers
with the title, description and subtitles) and asks for one caption. vlm_fuse runs
after the other teachers and asks the server to fuse their candidates into one caption
(HowToCaption / MMTrail style), text only. Failures are per clip: an error row for the
teacher, and the clip keeps the other candidates.
"""

from __future__ import annotations

from typing import Any

from vidcurate.transforms.teachers.base import ClipContext, Proposal, Teacher, register
from vidcurate.transforms.teachers.chat import ChatClient, image_part
from vidcurate.transforms.teachers.frames import keyframe_bytes
from vidcurate.transforms.teachers.text import as_sentence, clean_description, squash

CAPTION_PROMPT = (
    "Write one caption of at most 40 words for this video clip: what is shown and what "
    "happens, as a factual description of the frames. The frames are keyframes in time "
    "order. Context from the video's source follows; use it only where the frames agree "
    "with it.\n{context}\nAnswer with the caption only.")
FUSE_PROMPT = (
    "Several sources proposed these captions for one video clip:\n{candidates}\n{context}\n"
    "Write one caption of at most 40 words that keeps what the sources agree on and what "
    "is specific and visual, and drops what is uncertain. Answer with the caption only.")
MAX_CONTEXT_WORDS = 120


def _cut(text: str | None, limit: int = MAX_CONTEXT_WORDS) -> str | None:
    if not text:
        return None
    parts = squash(text).split()
    return " ".join(parts[:limit]) + (" …" if len(parts) > limit else "")


def context_lines(ctx: ClipContext) -> str:
    fields = [("Title", _cut(ctx.source.title, 30)),
              ("Description", _cut(clean_description(ctx.source.description, 60))),
              ("Tags", _cut(", ".join(ctx.tags), 30)),
              ("Speech", _cut(ctx.clip.transcript)),
              ("On-screen text", _cut(ctx.clip.ocr_text, 40))]
    lines = [f"{name}: {value}" for name, value in fields if value]
    return "\n".join(lines) if lines else "(no context)"


class _ChatTeacher(Teacher):
    @property
    def model_id(self) -> str:
        return f"openai-chat:{self.cfg.vlm.model}"

    def setup(self) -> None:
        self.client = ChatClient.shared(self.cfg.vlm)


@register
class VlmTeacher(_ChatTeacher):
    name = "vlm"

    def messages(self, ctx: ClipContext) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "text", "text": CAPTION_PROMPT.format(context=context_lines(ctx))}]
        content += [image_part(b) for b in keyframe_bytes(ctx.clip, self.cfg.vlm.max_images)]
        return [{"role": "user", "content": content}]

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        answer = self.client.complete(self.messages(ctx))
        return [Proposal(as_sentence(answer), prompt=CAPTION_PROMPT)]


@register
class VlmFuseTeacher(_ChatTeacher):
    name = "vlm_fuse"
    fuses = True

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        others = [c for c in ctx.candidates if c.teacher != self.name]
        if not others:
            return []
        listed = "\n".join(f"- ({c.teacher}) {c.text}" for c in others)
        prompt = FUSE_PROMPT.format(candidates=listed, context=context_lines(ctx))
        answer = self.client.complete([{"role": "user", "content": prompt}])
        return [Proposal(as_sentence(answer), prompt=FUSE_PROMPT)]
