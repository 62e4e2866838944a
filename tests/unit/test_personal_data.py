"""Personal data in clip texts: known answers for each kind, the checks that keep
look-alikes out (Luhn, mod-97, phone validity), masking in plain texts and across a
transcript's words, and the column and flag a clip gets."""

from __future__ import annotations

import pytest

from vidcurate.pipeline.options import ConfigError, CurationOptions, PersonalDataConfig
from vidcurate.schemas.records import (
    CaptionCandidate,
    CaptionRow,
    ClipRecord,
    OcrLine,
    Span,
    Word,
)
from vidcurate.transforms.personal_data import (
    KINDS,
    find,
    find_in_clip,
    iban_ok,
    kinds_in,
    luhn_ok,
    redact,
    redact_pieces,
)

PLANTED = {
    "email": ["jane.doe@example.com", "a_b+tag@mail.example.co.uk"],
    "phone": ["+1 202-555-0143", "(415) 555-2671", "020 7946 0958", "+44 20 7946 0958",
              "+49 30 901820"],
    "url": ["https://shop.example.org/deal?id=7", "www.example.net", "example.com/about"],
    "payment_card": ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
             "FR14 2004 1010 0505 0001 3M02 606"],
}


@pytest.mark.parametrize("kind, value", [(k, v) for k, vs in PLANTED.items() for v in vs])
def test_each_planted_value_is_found_as_its_kind_and_masked(kind, value):
    text = f"Before it. {value} and after."
    finds = find(text)
    assert [(f.kind, text[f.start:f.end]) for f in finds] == [(kind, value)]
    masked, counts = redact(text)
    assert value not in masked and counts == {kind: 1}
    assert masked.startswith("Before it. [") and masked.endswith("] and after.")


@pytest.mark.parametrize("text", [
    "In 2019 we sold 12,000 units for $4,500 on 2024-05-01.",
    "Version 3.14.2 of Node.js, file bunny.mp4, ratio 16:9, 1080p at 29.97 fps.",
    "4111 1111 1111 1112",  # fails the Luhn check
    "1234 5678 9012 3456",  # no card network starts with 1
    "DE89 3704 0044 0532 0130 01",  # fails mod 97
    "call 555-0100",  # too short to be a valid number anywhere
    "an @ sign alone, user@localhost",
])
def test_look_alikes_are_not_personal_data(text):
    assert find(text) == []
    assert redact(text) == (text, {})


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82WEST1234569876543")  # a GB IBAN has 22 characters


def test_an_email_is_one_find_not_a_url_too():
    assert [f.kind for f in find("write to info@example.com today")] == ["email"]
    assert kinds_in(["info@example.com", None, "", "see www.example.org"]) == ("email",
                                                                                 "url")


def test_phone_regions_decide_national_numbers():
    text = "ring 030 901820"  # a Berlin number written nationally
    assert find(text, ("US",)) == []
    assert [f.kind for f in find(text, ("DE",))] == ["phone"]
    # With a + prefix the region does not matter.
    assert [f.kind for f in find("ring +49 30 901820", ("US",))] == ["phone"]


def test_a_value_spoken_across_words_is_masked_in_each_word():
    words = [" Write", " to", " jane", ".doe@example", ".com", " or", " call", " +1",
             " 202-555-0143."]
    masked, counts = redact_pieces(words)
    assert masked == [" Write", " to", " [EMAIL]", "", "", " or", " call", " [PHONE]", ""]
    assert counts == {"email": 1, "phone": 1}
    assert redact_pieces([" hello", None]) == ([" hello", None], {})


def _clip(**kw) -> ClipRecord:
    return ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 75, 0, 3), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=(), keyframe_times_s=(), run_id="r", **kw)


def _caption(text: str) -> CaptionRow:
    return CaptionRow(CaptionCandidate("c", "v", "metadata", None, None, text), None, None,
                      1, True, "priority", "r")


def test_a_clip_lists_the_kinds_in_all_its_texts_and_is_flagged():
    cfg = PersonalDataConfig()
    clip = _clip(ocr_text="SALE", ocr_lines=(OcrLine("IBAN GB82WEST12345698765432", 0.9,
                                                      (0.0,) * 8, 0),),
                 transcript="call +1 202-555-0143", quality_flags=("blurry",),
                 transcript_words=(Word(0, 1, " mail", 0.9), Word(1, 2, " jo@example", 0.9),
                                   Word(2, 3, ".com", 0.9)))
    found = find_in_clip(clip, [_caption("Buy at www.example.com")], cfg)
    assert found.personal_data == ("email", "phone", "url", "iban")
    assert found.quality_flags == ("blurry", "personal_data")
    clean = find_in_clip(_clip(ocr_text="Hello", quality_flags=()), [], cfg)
    assert clean.personal_data == () and clean.quality_flags == ()
    assert set(KINDS) == set(PLANTED)


def test_regions_are_checked():
    parse = lambda *a: PersonalDataConfig.from_options(CurationOptions(list(a)))  # noqa: E731
    assert parse().regions[:2] == ("US", "GB")
    assert parse("--personal-data-regions", "de, fr").regions == ("DE", "FR")
    with pytest.raises(ConfigError, match="XX"):
        parse("--personal-data-regions", "US,XX")
