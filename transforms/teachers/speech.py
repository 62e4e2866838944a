"""speech: the clip's transcript condensed into one caption-length sentence.

Extractive by default: fillers and stutters removed, then the run of whole sentences
(at most --speech-max-words words) whose content words recur most across the clip's
speech: the central statement, not the greeting at its start.
With --vlm-url and --vlm-model set, the same server condenses the transcript instead
(text only); when the server fails, the extractive caption is proposed instead and its
prompt column says why.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from vidcurate.transforms.teachers.base import (
    ClipContext,
    Proposal,
    Teacher,
    TeacherError,
    register,
)
from vidcurate.transforms.teachers.text import as_sentence, remove_fillers, sentences, words

_STOPWORD_TEXT = """a an the and or but if then so of to in on at by for with from as is are
was were be been being it its this that these those i you he she we they me him her us them my
your his our their what which who whom whose when where why how all any both each few more most
other some such no nor not only own same than too very can will just do does did have has had
there here up down out over under again further once about into through during before after
above below off s t don now yeah okay ok oh well really going gonna get got like know think
hi hello hey everyone guys welcome back thanks thank watching subscribe bye today
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
EXTRACTIVE = "extractive:v1"
LLM_PROMPT = ("Condense this speech from a video clip into one factual caption sentence of at "
              "most {n} words describing what the clip is about. Answer with the sentence "
              "only.\n\nSpeech: {text}")


def condense(transcript: str, max_words: int) -> str | None:
    """The most central stretch of the transcript, at most max_words words."""
    text = remove_fillers(transcript)
    all_words = text.split()
    if len(words(text)) < 3:
        return None
    if len(all_words) <= max_words:
        return as_sentence(text)
    counts = Counter(w.casefold() for w in words(text) if w.casefold() not in STOPWORDS
                     and len(w) > 2)
    # What the speaker comes back to is what the clip is about: a word said once adds
    # nothing, each repeat adds one.
    weights = {w: n - 1 for w, n in counts.items() if n > 1}

    def score(chunk: list[str]) -> float:
        content = [w for w in words(" ".join(chunk)) if w.casefold() in weights]
        if not content:
            return 0.0
        return sum(weights[w.casefold()] for w in content) / math.sqrt(len(chunk) or 1)

    # Candidates: runs of whole sentences that fit, else windows at sentence starts.
    sents = [s.split() for s in sentences(text)]
    best: tuple[float, list[str]] | None = None
    for i in range(len(sents)):
        chunk: list[str] = []
        for s in sents[i:]:
            if len(chunk) + len(s) > max_words:
                break
            chunk += s
        if not chunk:
            chunk = sents[i][:max_words]
        cand = (score(chunk), chunk)
        if best is None or cand[0] > best[0]:
            best = cand
    assert best is not None
    out = " ".join(best[1])
    if len(best[1]) == max_words and not re.search(r"[.!?]$", out):
        out = out.rstrip(",;:") + "…"
    return as_sentence(out)


@register
class SpeechTeacher(Teacher):
    name = "speech"

    @property
    def model_id(self) -> str:
        return f"openai-chat:{self.cfg.vlm.model}" if self._llm else EXTRACTIVE

    @property
    def _llm(self) -> bool:
        return bool(self.cfg.vlm.url and self.cfg.vlm.model)

    def setup(self) -> None:
        if self._llm:
            from vidcurate.transforms.teachers.chat import ChatClient

            self.client = ChatClient.shared(self.cfg.vlm)

    def propose(self, ctx: ClipContext) -> list[Proposal]:
        transcript = ctx.clip.transcript or ""
        extractive = condense(transcript, self.cfg.speech_max_words)
        if extractive is None:
            return []
        if not self._llm:
            return [Proposal(extractive, prompt=f"extractive, max {self.cfg.speech_max_words} "
                             "words")]
        prompt = LLM_PROMPT.format(n=self.cfg.speech_max_words, text=transcript.strip())
        try:
            answer = self.client.complete([{"role": "user", "content": prompt}])
        except TeacherError as e:
            return [Proposal(extractive, prompt=f"extractive fallback ({e.error_type}: {e})",
                             model=EXTRACTIVE)]
        return [Proposal(as_sentence(answer), prompt=LLM_PROMPT)]
