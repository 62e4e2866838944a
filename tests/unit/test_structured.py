"""The structured caption: measured fields, deterministic composition (with a golden file
on the demo footage), the VLM's answer checked against the measurements, and the
teacher against a real loopback chat server."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.support.chatserver import ChatServer
from tests.support.helpers import run_config
from vidcurate.schemas.records import (
    CAPTION_STRUCT_FIELDS,
    CaptionCandidate,
    ClipRecord,
    OcrLine,
    Source,
    Span,
)
from vidcurate.transforms.teachers import TEACHERS, ClipContext, TeacherError
from vidcurate.transforms.teachers.structured import (
    ANSWER_SCHEMA,
    InvalidAnswer,
    best_captions,
    compose,
    measured_fields,
    parse_answer,
    reconcile,
)


def clip(camera: str | None = None, **fields) -> ClipRecord:
    c = ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                   span=Span(0, 100, 0, 4), split_params_hash="h", media_mode="none",
                   media_uri=None, media_start_s=None, media_end_s=None, keyframe_uris=(),
                   keyframe_times_s=(), run_id="r", **fields)
    if camera is None:
        return c
    if "camera_motion" in {f.name for f in dataclasses.fields(ClipRecord)}:
        return dataclasses.replace(c, camera_motion=camera)
    object.__setattr__(c, "camera_motion", camera)  # until camera motion is a column
    return c


def line(text: str, frame: int = 0) -> OcrLine:
    return OcrLine(text, 0.9, (0.1, 0.1, 0.5, 0.1, 0.5, 0.2, 0.1, 0.2), frame)


def cand(teacher: str, text: str, model: str | None = None, prompt: str | None = None
         ) -> CaptionCandidate:
    return CaptionCandidate("c", "v", teacher, model, prompt, text)


def ctx(c: ClipRecord, *candidates: CaptionCandidate) -> ClipContext:
    return ClipContext(clip=c, source=Source(uri="/v.mp4", video_id="v"),
                       candidates=tuple(candidates))


def teachers_cfg(*args: str):
    return run_config(*args).teachers


STREET = clip(camera="pan_left", motion_score=0.05, brightness=0.1, contrast=0.3,
              ocr_lines=(line("Main Street"), line("main  street", 1), line("Bus 12", 2)),
              transcript="Um, the bus to the station leaves every ten minutes.")
STREET_CANDIDATES = (cand("zero_shot", "a video of a street.", "open_clip:x"),
                     cand("zero_shot", "a video of a bus.", "open_clip:x"),
                     cand("speech", "The bus leaves every ten minutes."),
                     cand("metadata", "Filmed from the pavement.", prompt="description"),
                     cand("metadata", "The number 12 bus on the main street at dusk.",
                          prompt="title"))


# --- measured fields and deterministic composition -------------------------------------

def test_fields_come_from_measurements_and_teachers_each_with_its_source():
    fields = measured_fields(ctx(STREET, *STREET_CANDIDATES), teachers_cfg())
    assert (fields.camera, fields.motion_level, fields.lighting) == (
        "pan_left", "moderate", "dark, high contrast")
    # OCR lines once each across keyframes (case and spacing ignored), in reading order.
    assert fields.on_screen_text == ("Main Street", "Bus 12")
    assert fields.speech == "The bus to the station leaves every ten minutes."
    assert fields.subjects == ("a bus", "a street")  # alphabetical: candidates have no rank
    assert dict(fields.sources) == {
        "camera": "camera_motion", "motion_level": "motion_score",
        "lighting": "brightness, contrast", "on_screen_text": "ocr_lines",
        "speech": "transcript (extractive:v1)", "subjects": "zero_shot (open_clip:x)",
        "setting": "vlm (not configured)", "style": "vlm (not configured)",
        "shot_type": "vlm (not configured)"}


def test_composition_uses_fields_and_best_teacher_captions_only():
    cfg = teachers_cfg()
    best = best_captions(STREET_CANDIDATES, cfg.priority)
    # Field teachers (speech, ocr, zero_shot) are fields already; metadata by priority,
    # its title first (candidates arrive sorted by text).
    assert [c.text for c in best] == ["The number 12 bus on the main street at dusk.",
                                      "Filmed from the pavement."]
    struct = compose("c", measured_fields(ctx(STREET, *STREET_CANDIDATES), cfg), best)
    assert struct.short == ("The number 12 bus on the main street at dusk (camera pans "
                            "left, moderate motion, dark).")
    assert struct.dense == (
        'The number 12 bus on the main street at dusk. Filmed from the pavement. Subjects: a '
        'bus, a street. The camera pans left. There is moderate motion. The picture is dark, '
        'with high contrast. On-screen text: "Main Street", "Bus 12". Speech: "The bus to '
        'the station leaves every ten minutes".')
    assert struct.setting is struct.style is struct.shot_type is None
    assert dict(struct.sources)["short"] == "structured-rules:1 (fields, metadata)"
    assert [name for name, _ in struct.sources] == list(CAPTION_STRUCT_FIELDS)
    assert struct.conflicts == ()
    # Same inputs, same text, whatever order the candidates arrive in.
    again = compose("c", measured_fields(ctx(STREET, *reversed(STREET_CANDIDATES)), cfg),
                    best_captions(reversed(STREET_CANDIDATES), cfg.priority))
    assert again == struct


def test_nothing_known_invents_nothing():
    bare = clip()
    struct = compose("c", measured_fields(ctx(bare), teachers_cfg()), [])
    assert (struct.short, struct.dense) == ("A clip.", "A clip.")
    assert all(getattr(struct, f) is None for f in CAPTION_STRUCT_FIELDS[2:])
    sources = dict(struct.sources)
    assert sources["camera"] == "camera_motion (not measured)"
    assert sources["on_screen_text"] == "ocr_lines (OCR did not run)"
    assert sources["speech"] == "transcript (null: ASR off, or no audio)"
    assert sources["subjects"].startswith("zero_shot (no candidates")
    # With only subjects, the short text names the first one; OCR text next.
    only = compose("c", measured_fields(ctx(bare, cand("zero_shot", "a video of a dog.")),
                                        teachers_cfg()), [])
    assert only.short == "A video of a dog."
    text = compose("c", measured_fields(ctx(clip(ocr_lines=(line("EXIT"),))), teachers_cfg()),
                   [])
    assert text.short == 'A clip with the on-screen text "EXIT".'


# --- the VLM's answer --------------------------------------------------------------------

VALID = {"short": "A bus passes.", "dense": "A bus passes a stop. It is dusk.",
         "setting": "a city street", "style": "live action", "shot_type": "wide shot",
         "camera": "pan_left", "on_screen_text": ["Main Street"]}


@pytest.mark.parametrize("text, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "not an object"),
    (json.dumps({k: v for k, v in VALID.items() if k != "style"}), "missing style"),
    (json.dumps({**VALID, "mood": "calm"}), "unknown mood"),
    (json.dumps({**VALID, "camera": "dolly"}), "camera must be one of"),
    (json.dumps({**VALID, "short": " "}), "short must be a non-empty string"),
    (json.dumps({**VALID, "on_screen_text": "Main Street"}), "list of strings"),
    (json.dumps({**VALID, "setting": 3}), "setting must be a string"),
])
def test_invalid_answers_are_refused_with_the_reason(text, reason):
    with pytest.raises(InvalidAnswer, match=reason):
        parse_answer(text)


def test_valid_answers_parse_also_in_a_code_fence():
    assert parse_answer(json.dumps(VALID)) == VALID
    assert parse_answer(f"```json\n{json.dumps(VALID)}\n```") == VALID
    assert set(ANSWER_SCHEMA["required"]) == set(VALID)


def _reconciled(answer: dict, c: ClipRecord = STREET):
    cfg = teachers_cfg()
    fields = measured_fields(ctx(c, *STREET_CANDIDATES), cfg)
    return reconcile("c", fields, answer, best_captions(STREET_CANDIDATES, cfg.priority), c,
                     "openai-chat:m")


def test_an_answer_that_agrees_keeps_its_texts_and_fills_the_vlm_fields():
    struct = _reconciled(VALID)
    assert (struct.short, struct.dense) == ("A bus passes.", "A bus passes a stop. It is dusk.")
    assert (struct.setting, struct.style, struct.shot_type) == (
        "a city street", "live action", "wide shot")
    sources = dict(struct.sources)
    assert sources["setting"] == sources["shot_type"] == "vlm (openai-chat:m)"
    assert sources["short"] == "vlm (openai-chat:m), checked against the measurements"
    assert sources["camera"] == "camera_motion" and struct.camera == "pan_left"
    assert struct.conflicts == ()


def test_measurements_win_every_contradiction_and_each_is_counted():
    struct = _reconciled({
        **VALID, "camera": "static", "on_screen_text": ["Main Street", "SALE 50% OFF"],
        "short": "A static shot of a bus.",
        "dense": 'A bus passes. A sign reads "SALE 50% OFF". The stop sign reads "Main '
                 'Stret". The camera pans to the right.'})
    assert struct.camera == "pan_left" and struct.on_screen_text == ("Main Street", "Bus 12")
    assert struct.conflicts == (
        "camera: says static, measured pan_left",
        'on_screen_text: reads "SALE 50% OFF", not read by OCR',
        "short: says camera static, measured pan_left",
        'dense: quotes "SALE 50% OFF", not read by OCR',
        "dense: says camera pan_right, measured pan_left")
    # The contradicting sentences are gone; OCR's near-miss quote ("Main Stret") stays,
    # the measured camera replaces the claim, and an emptied short is composed.
    assert struct.dense == ('A bus passes. The stop sign reads "Main Stret". The camera '
                            'pans left.')
    assert struct.short.startswith("The number 12 bus on the main street at dusk (camera "
                                   "pans left")
    assert dict(struct.sources)["short"] == ("structured-rules:1 (the VLM's text was "
                                             "overruled)")


def test_without_a_measurement_there_is_nothing_to_contradict():
    bare = clip(motion_score=0.05)  # no camera motion, OCR did not run
    struct = _reconciled({**VALID, "camera": "static", "on_screen_text": ["SALE"],
                          "dense": 'A static shot. A sign reads "SALE".'}, bare)
    assert struct.conflicts == () and struct.camera is None
    assert struct.dense == 'A static shot. A sign reads "SALE".'


# --- the teacher against a real chat server -----------------------------------------------

@pytest.fixture(scope="module")
def server():
    with ChatServer() as s:
        yield s


@pytest.fixture
def keyframed(tmp_path) -> ClipRecord:
    frames = []
    for i in range(2):
        path = tmp_path / f"k{i}.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        frames.append(str(path))
    return dataclasses.replace(STREET, keyframe_uris=tuple(frames))


def structured(server: ChatServer, model: str, *args: str):
    cfg = run_config("--teachers", "metadata,structured", "--vlm-url", server.url,
                     "--vlm-model", model, "--vlm-timeout", "1", "--vlm-retries", "0",
                     "--vlm-max-images", "2", *args)
    return TEACHERS["structured"](cfg=cfg.teachers, clip_model=cfg.clip_model)


def test_the_vlm_gets_keyframes_facts_and_the_schema_and_its_answer_is_checked(
        server, keyframed):
    before = len(server.log.requests)
    out = structured(server, "struct-ok").outputs(ctx(keyframed, *STREET_CANDIDATES))
    struct, candidate = out
    assert len(server.log.requests) == before + 1
    sent = server.log.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == ANSWER_SCHEMA
    content = sent["messages"][0]["content"]
    assert sum(p["type"] == "image_url" for p in content) == 2
    assert "- camera motion: pan_left" in content[0]["text"]
    assert "- on-screen text (OCR): Main Street | Bus 12" in content[0]["text"]
    assert struct.short == "A shot from 2 keyframes with moderate motion."
    assert struct.setting == "a test studio" and struct.conflicts == ()
    assert (candidate.teacher, candidate.text, candidate.model) == (
        "structured", struct.short, "openai-chat:struct-ok")


def test_structured_output_option_can_be_left_out(server, keyframed):
    structured(server, "struct-fenced", "--vlm-structured-output", "none").outputs(
        ctx(keyframed))
    assert "response_format" not in server.log.requests[-1]
    structured(server, "struct-ok", "--vlm-structured-output", "json_object").outputs(
        ctx(keyframed))
    assert server.log.requests[-1]["response_format"] == {"type": "json_object"}


def test_an_invalid_answer_is_asked_again_once_then_is_an_error(server, keyframed):
    before = len(server.log.requests)
    struct, _ = structured(server, "struct-fixed").outputs(ctx(keyframed))
    assert struct.setting == "a test studio"
    retry = server.log.requests[-1]["messages"]
    assert len(server.log.requests) == before + 2 and len(retry) == 3
    assert "missing setting" in retry[2]["content"]
    before = len(server.log.requests)
    with pytest.raises(TeacherError, match="did not match the schema twice") as e:
        structured(server, "struct-invalid").outputs(ctx(keyframed))
    assert e.value.error_type == "invalid_answer"
    assert len(server.log.requests) == before + 2


def test_a_contradicting_answer_loses_to_the_measurements(server, keyframed):
    struct, candidate = structured(server, "struct-contradict").outputs(ctx(keyframed))
    assert struct.camera == "pan_left"
    assert len(struct.conflicts) == 5 and "SALE" not in struct.dense
    assert candidate.text == struct.short and candidate.model == "structured-rules:1"


def test_a_slow_server_is_a_timeout_error(server, keyframed):
    with pytest.raises(TeacherError) as e:
        structured(server, "struct-slow").outputs(ctx(keyframed))
    assert e.value.error_type == "timeout"


def test_publish_redact_text_masks_the_structured_caption():
    import pyarrow as pa

    from vidcurate.pipeline.redaction import TextRedactor
    from vidcurate.schemas.tables import table_schema

    spoken = dataclasses.replace(STREET, transcript="Write to jane.doe@example.com today.",
                                 ocr_lines=(line("Call +44 20 7946 0958"),))
    struct = compose("c", measured_fields(ctx(spoken), teachers_cfg()), [])
    row = dataclasses.replace(spoken, caption_struct=struct).to_row()
    assert "jane.doe@example.com" in row["caption_struct"]["speech"]
    batch = pa.RecordBatch.from_pylist([row], schema=table_schema("clips"))
    redactor = TextRedactor()
    masked = redactor.rewrite("clips")(batch).to_pylist()[0]["caption_struct"]
    assert "example.com" not in str(masked) and "7946" not in str(masked)
    assert "[EMAIL]" in masked["speech"] and "[EMAIL]" in masked["dense"]
    assert masked["on_screen_text"] == ["Call [PHONE]"]
    assert masked["sources"] == row["caption_struct"]["sources"]
