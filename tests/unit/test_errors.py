"""Stage errors and the error rows made from them."""

from __future__ import annotations

import pickle

import pytest

from vidcurate.transforms.core import StageError
from vidcurate.transforms.errors import error_record
from vidcurate.transforms.fetch_config import FetchError
from vidcurate.transforms.media.limits import MediaError, NoVideoStream
from vidcurate.transforms.teachers import TeacherError

ERRORS = [
    MediaError("audio_failed", "ffmpeg: no audio"),
    NoVideoStream("an mp3"),
    FetchError("http_503", "HTTP 503 from host", retryable=True, retry_after=2.0),
    TeacherError("vlm:http_500", "vlm: the server answered 500"),
    StageError("any", "a stage's own failure"),
]


def test_a_failed_download_or_teacher_is_a_stage_error_not_a_media_error():
    for cls in (FetchError, TeacherError):
        assert issubclass(cls, StageError) and not issubclass(cls, MediaError)
    assert issubclass(NoVideoStream, MediaError) and issubclass(MediaError, StageError)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_stage_errors_survive_pickling_with_their_fields(error):
    """Runners pickle failures that cross a step boundary (dead-letter outputs)."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error)
    assert back.__dict__ == error.__dict__ and back.error_type == error.error_type


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_a_stage_error_row_has_its_own_type_and_message(error):
    row = error_record(error, stage="s", source_uri="/v.mp4", run_id="r", video_id="v",
                       clip_id="c")
    assert (row.stage, row.error_type, row.message) == ("s", error.error_type, str(error))
    assert (row.source_uri, row.run_id, row.video_id, row.clip_id) == ("/v.mp4", "r", "v", "c")


def test_an_unexpected_exception_row_names_its_type_and_where_it_was_raised():
    try:
        {}["missing"]
    except KeyError as e:
        row = error_record(e, stage="s", source_uri="/v.mp4", run_id="r")
    assert row.error_type == "internal:KeyError"
    assert row.message.startswith("KeyError: 'missing' (at test_errors.py:")
