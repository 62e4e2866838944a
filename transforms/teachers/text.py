"""Text clean-up shared by the text teachers (metadata, speech, ocr)."""

from __future__ import annotations

import re
import unicodedata

URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+|\b[\w.-]+\.(?:com|net|org|io|ly|be|tv)/\S*")
HASHTAG = re.compile(r"(?<![\w&])#[\w-]+")
MENTION = re.compile(r"(?<![\w.])@[\w.]+")
# Bracketed boilerplate in video titles: [HD], (Official Video), 【4K】, (Lyrics) ...
BOILERPLATE_WORDS = (
    r"official|video|music video|lyrics?|lyric video|audio|hd|hq|4k|8k|uhd|1080p|720p|480p|"
    r"60fps|full|episode|ep\.?\s*\d+|part\s*\d+|remastered|subtitled|subs?|eng sub|cc|"
    r"free download|download|new|live|visualizer|explicit|clean|sped up|slowed|reverb|"
    r"#?shorts?|vlog|compilation"
)
BRACKETED = re.compile(r"[\[(【〔{]([^\])】〕}]*)[\])】〕}]")
BOILERPLATE_ONLY = re.compile(rf"(?i)^\s*(?:(?:{BOILERPLATE_WORDS})[\s,/&+-]*)+\s*$")
CALL_TO_ACTION = re.compile(
    r"(?i)\b(subscribe|like and share|like & subscribe|hit the bell|click the link|link in "
    r"(?:bio|description)|follow (?:me|us)|check out my|don'?t forget to|patreon|merch|"
    r"sponsored|affiliate|use code|discount code|all rights reserved|copyright|"
    r"business inquiries|contact us|instagram|twitter|tiktok|facebook)\b")
FILE_NAME = re.compile(
    r"(?i)^(?:img|vid|dsc|dscn|mov|mvi|gopr|gp|pxl|dji|screen ?recording|video|clip|"
    r"untitled|new video|my video|test|sample)[\s_-]*[\d_.-]*(?:\.\w{2,4})?$")
GENERIC = {"untitled", "video", "my video", "new video", "test", "test video", "sample",
           "sample video", "no title", "clip", "home video", "vlog", "youtube video"}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
FILLERS = re.compile(r"(?i)\b(?:um+|uh+|erm+|er|ah+|hmm+|mm+|you know|i mean|like,)\s*,?\s*")


def strip_emoji(text: str) -> str:
    """Drop emoji and pictographs (symbols, joiners, variation selectors); letters of
    every script stay."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("So", "Cs", "Co") or ch in "\u200d\ufe0f\ufe0e\u20e3":
            continue
        out.append(ch)
    return "".join(out)


def squash(text: str) -> str:
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r"([,.!?;:])\1+", r"\1", text)
    return text.strip(" -|,;:/•·~_*")


def words(text: str) -> list[str]:
    return re.findall(r"[^\W\d_][\w'’-]*", text)


def clean_title(title: str | None) -> str | None:
    """A video title as a caption, or None when nothing descriptive is left."""
    if not title:
        return None
    text = strip_emoji(URL.sub(" ", title))
    text = MENTION.sub(" ", HASHTAG.sub(" ", text))
    text = BRACKETED.sub(lambda m: " " if BOILERPLATE_ONLY.match(m.group(1)) else m.group(0),
                         text)
    # "What it shows | Channel name": keep the most descriptive part.
    parts = [squash(p) for p in re.split(r"\s[|•·]\s|\s//\s", text) if squash(p)]
    if not parts:
        return None
    text = max(parts, key=lambda p: len(words(p)))
    text = re.sub(r"[!?]{2,}", "!", text)
    if text.isupper() and len(words(text)) > 1:
        text = text.capitalize()  # SHOUTED TITLES read better as a sentence
    text = squash(text)
    if is_generic(text):
        return None
    return text


def is_generic(text: str, min_words: int = 3) -> bool:
    """File-name-like, placeholder or too short to describe anything."""
    low = text.casefold().strip(" .!")
    if not low or low in GENERIC or FILE_NAME.match(low):
        return True
    return len(words(text)) < min_words


def clean_description(description: str | None, max_words: int = 40) -> str | None:
    """The first descriptive sentences of a description (no links, hashtags, calls to
    action or credits), at most max_words words; None when nothing is left."""
    if not description:
        return None
    kept: list[str] = []
    count = 0
    for line in description.splitlines():
        line = strip_emoji(MENTION.sub(" ", HASHTAG.sub(" ", URL.sub(" ", line))))
        if CALL_TO_ACTION.search(line) or re.match(r"^\s*(?:\d{1,2}:)?\d{1,2}:\d{2}", line):
            continue  # promotion, or a chapter list ("0:00 Intro")
        for sentence in SENTENCE_END.split(squash(line)):
            sentence = squash(sentence)
            n = len(words(sentence))
            if n < 5 or CALL_TO_ACTION.search(sentence):
                continue
            if count + n > max_words:
                return " ".join(kept) or _clip_words(sentence, max_words)
            kept.append(sentence)
            count += n
    return " ".join(kept) or None


def _clip_words(text: str, max_words: int) -> str:
    parts = text.split()
    return " ".join(parts[:max_words]) + ("…" if len(parts) > max_words else "")


def remove_fillers(text: str) -> str:
    text = FILLERS.sub("", text)
    # "the the", "I I I": a stutter in the transcript, not in the meaning.
    text = re.sub(r"(?i)\b(\w+)(\s+\1\b)+", r"\1", text)
    text = re.sub(r"([.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return squash(text)


def sentences(text: str) -> list[str]:
    return [s for s in (squash(s) for s in SENTENCE_END.split(text)) if s]


def as_sentence(text: str) -> str:
    text = squash(text)
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?…\"”'":
        text += "."
    return text
