"""FindPersonalData in a TestPipeline: each clip joined with its caption rows, the kinds
found in its texts and captions as personal_data, the flag raised; clips without
captions are scanned too."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from vidcurate.schemas.records import CaptionCandidate, CaptionRow, ClipRecord, Span
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.personal_data import FindPersonalData, PersonalDataConfig


def _clip(clip_id: str, **kw) -> ClipRecord:
    return ClipRecord(clip_id=clip_id, video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 75, 0, 3), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=(), keyframe_times_s=(), run_id="r",
                      quality_flags=(), **kw)


def _row(clip_id: str, text: str, rank: int) -> CaptionRow:
    return CaptionRow(CaptionCandidate(clip_id, "v", "metadata", None, None, text), None,
                      None, rank, rank == 1, "priority", "r")


def test_clips_get_the_kinds_in_their_texts_and_captions():
    clips = [_clip("ocr", ocr_text="Pay to GB82WEST12345698765432"),
             _clip("caption", transcript="nothing here"),
             _clip("clean", ocr_text="Hello", transcript="world")]
    rows = [_row("caption", "A talk", 1), _row("caption", "mail jo@example.com", 2),
            _row("clean", "A quiet street", 1)]
    p = TestPipeline()
    out = ({"clips": p | "Clips" >> beam.Create(clips),
            "captions": p | "Rows" >> beam.Create(rows)}
           | FindPersonalData(PersonalDataConfig(), "r"))
    assert_that(out["clips"] | beam.Map(lambda c: (c.clip_id, c.personal_data,
                                                   c.quality_flags)),
                equal_to([("ocr", ("iban",), ("personal_data",)),
                          ("caption", ("email",), ("personal_data",)),
                          ("clean", (), ())]), label="main")
    assert_that(out[ERRORS], equal_to([]), label="errors")
    p.run().wait_until_finish()
