"""FindPersonalData: which kinds of personal data a clip's texts hold, and how to mask them.

Looked for in the clip's on-screen text (OCR), its transcript and every candidate
caption: e-mail addresses, phone numbers (Google's libphonenumber through the
`phonenumbers` package, valid numbers only, in the regions of --personal-data-regions
and any number written with a + prefix), URLs (a scheme, www., or a host under a
common top-level domain), payment-card numbers (13-19 digits, a card network's first
digit, Luhn-checked) and IBANs (country length and mod-97 checked). The clip gets the
kinds in ``personal_data`` and the ``personal_data`` flag; the values themselves go
nowhere (no column, log line or error message holds them). ``redact`` masks them;
`vidcurate publish --redact-text` applies it to every published text field.

What it misses: names and postal addresses (no reliable pattern), numbers spelt out in
words ("five five five ..."), values broken across OCR lines or speech segments, and
anything OCR or ASR misread.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from vidcurate.schemas.records import CaptionRow, ClipRecord
from vidcurate.transforms.core import AddArgument, ConfigError
from vidcurate.transforms.errors import ERRORS, StageMetrics, guarded
from vidcurate.transforms.judge_clips import with_flag

STAGE = "personal_data"

# The vocabulary of the personal_data column, in the order a clip lists them.
KINDS = ("email", "phone", "url", "payment_card", "iban")
MASKS = {"email": "[EMAIL]", "phone": "[PHONE]", "url": "[URL]",
         "payment_card": "[CARD]", "iban": "[IBAN]"}
# National numbers (without a + prefix) are read as numbers of these regions.
DEFAULT_REGIONS = ("US", "GB", "CA", "AU", "IN", "DE", "FR", "ES", "IT", "NL", "BR")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_TLDS = ("com|org|net|edu|gov|int|mil|io|co|ai|app|dev|info|biz|me|tv|ly|uk|us|de|fr|"
         "es|it|nl|eu|ca|au|in|br|ru|jp|cn")
_URL = re.compile(
    r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"']+"
    rf"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS})\b"
    r"(?:[/?#][^\s<>\"']*)?", re.IGNORECASE)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}")
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "DO": 28, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22,
    "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31,
    "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24,
    "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}


@dataclass(frozen=True)
class PersonalDataConfig:
    regions: tuple[str, ...] = DEFAULT_REGIONS

    @staticmethod
    def add_arguments(add: AddArgument) -> None:
        add("personal-data-regions", default=",".join(DEFAULT_REGIONS),
            help="Comma-separated ISO country codes whose national phone numbers (written "
            "without a + prefix) are looked for in clip texts; numbers with a + prefix are "
            "found whatever the region.")

    @classmethod
    def from_options(cls, o: Any) -> PersonalDataConfig:
        import phonenumbers

        regions = tuple(r.strip().upper() for r in o.personal_data_regions.split(",")
                        if r.strip())
        known = phonenumbers.SUPPORTED_REGIONS
        bad = [r for r in regions if r not in known]
        if not regions or bad:
            raise ConfigError(f"--personal-data-regions takes ISO country codes (US, GB, "
                              f"DE, ...): {', '.join(bad) or 'none given'}")
        return cls(regions=regions)


@dataclass(frozen=True)
class Found:
    kind: str
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 check."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ibans(text: str) -> Iterator[Found]:
    for m in _IBAN_START.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # The rest in groups, single spaces allowed between characters (printed IBANs
        # come in groups of four).
        chars, i = [], m.start()
        while i < len(text) and len(chars) < want:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch.upper())
            elif not (ch == " " and chars and i + 1 < len(text) and text[i + 1] != " "):
                break
            i += 1
        after_ok = i >= len(text) or not (text[i].isascii() and text[i].isalnum())
        if len(chars) == want and after_ok and iban_ok("".join(chars)):
            yield Found("iban", m.start(), i)


def _cards(text: str) -> Iterator[Found]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        # Card networks' first digits: 2 and 5 Mastercard, 3 Amex/Diners/JCB, 4 Visa,
        # 6 Discover/UnionPay.
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits):
            yield Found("payment_card", m.start(), m.end())


def _phones(text: str, regions: Sequence[str]) -> Iterator[Found]:
    import phonenumbers

    for region in regions:
        for m in phonenumbers.PhoneNumberMatcher(text, region,
                                                 leniency=phonenumbers.Leniency.VALID):
            yield Found("phone", m.start, m.end)


def _urls(text: str) -> Iterator[Found]:
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?)]}'\"":
            end -= 1  # sentence punctuation after a link is not part of it
        yield Found("url", m.start(), end)


def find(text: str, regions: Sequence[str] = DEFAULT_REGIONS) -> list[Found]:
    """Non-overlapping finds in text order. Where two overlap the more specific wins:
    an e-mail over the URL of its domain, an IBAN or card number over a phone number
    read in its digits."""
    if not text:
        return []
    candidates: list[Found] = []
    for finds in ([Found("email", m.start(), m.end()) for m in _EMAIL.finditer(text)],
                  list(_ibans(text)), list(_cards(text)), list(_urls(text)),
                  list(_phones(text, regions))):
        candidates += finds
    kept: list[Found] = []
    for f in candidates:  # in priority order: a later kind never overlaps an earlier one
        if f.end > f.start and all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def kinds_in(texts: Iterable[str | None], regions: Sequence[str] = DEFAULT_REGIONS
             ) -> tuple[str, ...]:
    """The kinds found in any of texts, in KINDS order."""
    found = {f.kind for text in texts if text for f in find(text, regions)}
    return tuple(k for k in KINDS if k in found)


def redact(text: str | None, regions: Sequence[str] = DEFAULT_REGIONS
           ) -> tuple[str | None, Counter[str]]:
    """text with every find replaced by its kind's mask, and how many of each."""
    if not text:
        return text, Counter()
    finds = find(text, regions)
    out, last = [], 0
    for f in finds:
        out += [text[last:f.start], MASKS[f.kind]]
        last = f.end
    out.append(text[last:])
    return "".join(out), Counter(f.kind for f in finds)


def redact_pieces(pieces: Sequence[str | None], regions: Sequence[str] = DEFAULT_REGIONS
                  ) -> tuple[list[str | None], Counter[str]]:
    """Pieces of one text (a transcript's words) masked as one: a value spoken across
    several words ("jane@example.com" as three) is found in the joined text and every
    piece it touches becomes the mask (the first) or empty (the rest), its leading space
    kept."""
    joined, spans, pos = "", [], 0
    for piece in pieces:
        spans.append((pos, pos + len(piece or "")))
        joined += piece or ""
        pos += len(piece or "")
    finds = find(joined, regions)
    out = list(pieces)
    for f in finds:
        touched = [i for i, (a, b) in enumerate(spans) if a < f.end and b > f.start]
        for n, i in enumerate(touched):
            piece = pieces[i] or ""
            lead = piece[:len(piece) - len(piece.lstrip())]
            out[i] = lead + MASKS[f.kind] if n == 0 else ""
    return out, Counter(f.kind for f in finds)


def clip_texts(clip: ClipRecord, captions: Iterable[CaptionRow]) -> list[str | None]:
    """Every text of a clip that is published: on-screen text (lines and joined),
    transcript, every candidate caption."""
    texts: list[str | None] = [clip.ocr_text, clip.transcript, clip.best_caption]
    texts += [line.text for line in clip.ocr_lines or ()]
    texts += [row.candidate.text for row in captions]
    if clip.transcript_words:
        texts.append("".join(w.word for w in clip.transcript_words))
    return texts


def find_in_clip(clip: ClipRecord, captions: Iterable[CaptionRow],
                 cfg: PersonalDataConfig) -> ClipRecord:
    """The clip with personal_data (the kinds found) and, when any, the flag."""
    kinds = kinds_in(clip_texts(clip, captions), cfg.regions)
    flags = clip.quality_flags
    if kinds:
        flags = with_flag(flags, "personal_data")
    return dataclasses.replace(clip, personal_data=kinds, quality_flags=flags)


class _FindFn(beam.DoFn):
    def __init__(self, cfg: PersonalDataConfig, run_id: str) -> None:
        self.cfg, self.run_id = cfg, run_id
        self.metrics = StageMetrics(STAGE)

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterator[Any]:
        _, parts = joined
        for clip in parts["clips"]:
            out = list(guarded(self.metrics, lambda c: [
                find_in_clip(c, parts["captions"], self.cfg)], clip,
                source_uri=clip.source_uri, run_id=self.run_id, video_id=clip.video_id,
                clip_id=clip.clip_id))
            yield from out
            if not any(isinstance(o, ClipRecord) for o in out):
                yield clip  # the error row is out; the clip goes on unscanned (null)


class FindPersonalData(beam.PTransform):
    """{'clips': ClipRecord, 'captions': CaptionRow} -> ClipRecord with personal_data
    (main 'clips') and ErrorRecord ('errors')."""

    def __init__(self, cfg: PersonalDataConfig, run_id: str) -> None:
        super().__init__()
        self.cfg, self.run_id = cfg, run_id

    def expand(self, inputs: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        found = (
            {"clips": inputs["clips"] | "KeyClips" >> beam.Map(lambda c: (c.clip_id, c)),
             "captions": inputs["captions"]
             | "KeyCaptions" >> beam.Map(lambda r: (r.candidate.clip_id, r))}
            | "Join" >> beam.CoGroupByKey()
            | "Find" >> beam.ParDo(_FindFn(self.cfg, self.run_id))
            .with_outputs(ERRORS, main="clips"))
        return {"clips": found["clips"], ERRORS: found[ERRORS]}
