"""ocr: on-screen text turned into a caption where it is descriptive (slides, titles).

Only lines that read as words count (two or more words of letters, mostly letters:
not clocks, scores, prices, handles or watermarks). The most prominent line (the
tallest text) is the title. Text that covers much of the frame is a slide or a page:
'A slide titled "..."'; a smaller overlay becomes 'On-screen text: "..."'. A clip
without descriptive text gets no candidate.
"""

from __future__ import annotations

import re

from vidcurate.schemas.records import OcrLine
from vidcurate.transforms.teachers.base import ClipContext, Proposal, Teacher, register
from vidcurate.transforms.teachers.text import URL, squash, words

RULES_VERSION = "ocr-rules:1"
# Text covering at least this fraction of a keyframe makes it a slide or a page.
SLIDE_COVERAGE = 0.12
MAX_QUOTED_WORDS = 20


def is_descriptive(text: str) -> bool:
    if URL.search(text) or re.search(r"(?:^|\s)[@#]\w", text):
        return False
    found = words(text)
    letters = sum(ch.isalpha() for ch in text)
    visible = sum(not ch.isspace() for ch in text)
    return len(found) >= 2 and visible > 0 and letters / visible >= 0.6


def _height(line: OcrLine) -> float:
    ys = line.box[1::2]
    return max(ys) - min(ys) if ys else 0.0


def descriptive_lines(lines: tuple[OcrLine, ...]) -> list[OcrLine]:
    """Descriptive lines, each text once (the most prominent sighting), in reading order
    of the keyframe where it was first seen."""
    best: dict[str, OcrLine] = {}
    order: list[str] = []
    for line in lines:
        text = squash(line.text)
        if not is_descriptive(text):
            continue
        key = text.casefold()
        if key not in best:
            order.append(key)
            best[key] = line
        elif _height(line) > _height(best[key]):
            best[key] = line
    return [best[k] for k in order]


def _quote(text: str) -> str:
    parts = squash(text).split()
    short = " ".join(parts[:MAX_QUOTED_WORDS]) + ("…" if len(parts) > MAX_QUOTED_WORDS else "")
    return f'"{short}"'


@register
class OcrTeacher(Teacher):
    name = "ocr"

    @property
    def model_id(self) -> str:
        return RULES_VERSION

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        lines = descriptive_lines(ctx.clip.ocr_lines or ())
        if not lines:
            return []
        title = max(lines, key=_height)
        rest = [ln for ln in lines if ln is not title]
        if (ctx.clip.ocr_coverage_max or 0.0) >= SLIDE_COVERAGE:
            text = f"A slide titled {_quote(title.text)}"
            if rest:
                text += f" with the text {_quote(' '.join(ln.text for ln in rest))}"
            return [Proposal(text + ".", prompt="slide")]
        return [Proposal(f"On-screen text: {_quote(' '.join(ln.text for ln in lines))}.",
                         prompt="overlay")]
