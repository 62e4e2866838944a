from vidcurate.schemas.records import (
    Boundary,
    ErrorRecord,
    ProbedVideo,
    ScenedVideo,
    Skip,
    Source,
    Span,
    SplitVideo,
    VideoInfo,
)
from vidcurate.transforms.video_rows import video_outcome

SRC = Source(uri="/v/a.mp4", video_id="vid")
INFO = VideoInfo(10.0, 0.0, 0.0, 25.0, False, 320, 180, 0, "h264", "yuv420p", None, False,
                 None, "mp4",
                 None, 250, 100, "sha")
PROBED = ProbedVideo(SRC, "/v/a.mp4", INFO)


def _split(n_spans, note=None):
    spans = tuple(Span(i * 75, i * 75 + 75, i * 3.0, i * 3.0 + 3.0) for i in range(n_spans))
    scened = ScenedVideo(PROBED, (Boundary(75, 3.0, "detected"),), spans or (Span(0, 25, 0, 1),),
                         250, note)
    return SplitVideo(scened, spans, None if spans else "all shots too short")


def _err(stage, clip=None, message="boom"):
    return ErrorRecord(stage=stage, source_uri=SRC.uri, error_type="x", message=message,
                       run_id="r", video_id="vid", clip_id=clip)


def test_ok_video_counts_clips():
    row = video_outcome(SRC, "r", probed=PROBED, split=_split(2), clip_count=2)
    assert (row.status, row.reason, row.clip_count, row.shot_count) == ("ok", None, 2, 2)
    assert row.to_row()["shot_boundaries"] == [
        {"frame": 75, "time_s": 3.0, "kind": "detected", "distance": None, "merged": None}]


def test_failed_stage_wins_and_names_the_stage():
    row = video_outcome(SRC, "r", probed=PROBED, errors=[_err("detect_scenes", message="bad")])
    assert row.status == "failed" and row.reason == "detect_scenes: bad"
    assert row.info == INFO  # what probe found is kept


def test_skips_carry_their_reason():
    row = video_outcome(SRC, "r", skip=Skip("vid", "probe", "no video stream"))
    assert (row.status, row.reason) == ("skipped", "probe: no video stream")
    row = video_outcome(SRC, "r", probed=PROBED, split=_split(0))
    assert (row.status, row.reason) == ("skipped", "clip_rules: all shots too short")


def test_partial_and_total_clip_failures():
    partial = video_outcome(SRC, "r", probed=PROBED, split=_split(3), clip_count=2,
                            errors=[_err("cut_clips", "c1", "disk full")])
    assert partial.status == "ok" and partial.failed_clip_count == 1
    assert "1 of 3 clips failed to cut, first: disk full" in partial.reason
    total = video_outcome(SRC, "r", probed=PROBED, split=_split(2),
                          errors=[_err("cut_clips", "c1"), _err("cut_clips", "c2")])
    assert total.status == "failed" and "all 2 clips failed" in total.reason


def test_damaged_file_note_is_kept():
    row = video_outcome(SRC, "r", probed=PROBED, split=_split(1, note="decoder stopped"),
                        clip_count=1)
    assert row.status == "ok" and row.reason == "decoder stopped"


def test_lost_video_is_still_reported():
    row = video_outcome(SRC, "r")
    assert row.status == "failed" and "no stage reported" in row.reason


def test_an_audio_extraction_the_environment_stopped_fails_the_video():
    """A killed or limited ffmpeg while extracting audio is retried by the next run (the
    video fails), while bad audio stays a note on an ok video (issue 29)."""
    import dataclasses

    stopped = dataclasses.replace(_err("asr", message="ffmpeg was killed by SIGKILL"),
                                  error_type="tool_killed")
    row = video_outcome(SRC, "r", probed=PROBED, split=_split(2), clip_count=2,
                        errors=[stopped])
    assert row.status == "failed" and "asr: ffmpeg was killed" in row.reason
    bad_audio = dataclasses.replace(_err("asr", message="no audio decoded"),
                                    error_type="decode_failed")
    row = video_outcome(SRC, "r", probed=PROBED, split=_split(2), clip_count=2,
                        errors=[bad_audio])
    assert row.status == "ok" and "asr: 1 error(s)" in row.reason
