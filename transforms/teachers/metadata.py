"""metadata: the source's own title and description, cleaned into captions.

URLs, hashtags, @mentions, emoji, bracketed boilerplate ("[HD]", "(Official Video)")
and channel suffixes ("... | Channel") are removed; file-name-like, placeholder and
too-short titles are rejected. The description gives a second candidate: its first
descriptive sentences, without calls to action, credits or chapter lists.
"""

from __future__ import annotations

from vidcurate.transforms.teachers.base import ClipContext, Proposal, Teacher, register
from vidcurate.transforms.teachers.text import as_sentence, clean_description, clean_title

RULES_VERSION = "metadata-rules:1"


@register
class MetadataTeacher(Teacher):
    name = "metadata"

    @property
    def model_id(self) -> str:
        return RULES_VERSION

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        out = []
        title = clean_title(ctx.source.title)
        if title:
            out.append(Proposal(as_sentence(title), prompt="title"))
        description = clean_description(ctx.source.description)
        if description:
            out.append(Proposal(as_sentence(description), prompt="description"))
        return out
