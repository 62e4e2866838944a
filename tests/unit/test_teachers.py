"""Text teachers on fixtures: metadata cleaning, speech condensation, on-screen text."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.helpers import run_config
from vidcurate.pipeline.options import RunConfig
from vidcurate.schemas.records import ClipRecord, OcrLine, Source, Span
from vidcurate.transforms.teachers import TEACHERS, ClipContext, TeacherError
from vidcurate.transforms.teachers.ocr import is_descriptive
from vidcurate.transforms.teachers.speech import condense
from vidcurate.transforms.teachers.text import clean_description, clean_title, strip_emoji


def config(*args: str) -> RunConfig:
    return run_config(*args)


def teacher(name: str, *args: str):
    cfg = config(*args)
    return TEACHERS[name](cfg=cfg.teachers, clip_model=cfg.clip_model)


def clip(**fields) -> ClipRecord:
    return ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 100, 0, 4), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None, keyframe_uris=(),
                      keyframe_times_s=(), run_id="r", **fields)


def ctx(title=None, description=None, **clip_fields) -> ClipContext:
    return ClipContext(clip=clip(**clip_fields),
                       source=Source(uri="/v.mp4", video_id="v", title=title,
                                     description=description))


@pytest.mark.parametrize("raw, cleaned", [
    ("How to bake sourdough bread at home 🍞🔥 #baking #bread",
     "How to bake sourdough bread at home"),
    ("Big Buck Bunny [HD] (Official Video)", "Big Buck Bunny"),
    ("Sunset timelapse over the harbour | Joe's Travel Channel",
     "Sunset timelapse over the harbour"),
    ("Watch this https://example.com/x now @someone", "Watch this now"),
    ("AMAZING DOG TRICKS COMPILATION", "Amazing dog tricks compilation"),
    ("Trailer (2008) for the short film", "Trailer (2008) for the short film"),
])
def test_titles_are_cleaned(raw, cleaned):
    assert clean_title(raw) == cleaned


@pytest.mark.parametrize("raw", ["IMG_4032.MOV", "VID_20230101_120000", "untitled", "video",
                                 "Test", "My video", "Cats!", "🔥🔥🔥", "#shorts #viral", "",
                                 None, "GOPR0042.MP4", "12345"])
def test_generic_or_too_short_titles_are_rejected(raw):
    assert clean_title(raw) is None


def test_description_keeps_descriptive_sentences_only():
    text = ("A rabbit wakes up in a sunny meadow and meets three bullies. 🐰\n"
            "Subscribe for more videos! https://example.com\n"
            "0:00 Intro\n1:30 The chase\n"
            "Follow us on Instagram @studio\n"
            "The film was made with Blender by the Blender Institute in 2008.")
    assert clean_description(text) == ("A rabbit wakes up in a sunny meadow and meets three "
                                       "bullies. The film was made with Blender by the Blender "
                                       "Institute in 2008.")
    assert clean_description("Like and subscribe!!! #fun") is None
    assert strip_emoji("Café 🎉 naïve 東京 ✨") == "Café  naïve 東京 "


def test_metadata_teacher_proposes_title_and_description():
    found = teacher("metadata").candidates(ctx(
        title="big buck bunny [4K]",
        description="A giant rabbit takes revenge on three rodents in a forest."))
    assert [(c.teacher, c.prompt, c.text) for c in found] == [
        ("metadata", "title", "Big buck bunny."),
        ("metadata", "description",
         "A giant rabbit takes revenge on three rodents in a forest.")]
    assert all(c.model == "metadata-rules:1" for c in found)
    assert teacher("metadata").candidates(ctx(title="IMG_0001.mp4")) == []


def test_speech_condenses_to_the_central_statement():
    transcript = ("Um, hi everyone, welcome back. Uh so today we are going to bake sourdough "
                  "bread. The sourdough starter needs flour and water. You feed the starter "
                  "every day with flour and water until the starter bubbles. Thanks for "
                  "watching, see you next time.")
    # Not the greeting at the start: the sentences about what keeps coming back.
    assert condense(transcript, max_words=20) == "The sourdough starter needs flour and water."
    assert condense(transcript, max_words=30) == (
        "So today we are going to bake sourdough bread. The sourdough starter needs flour and "
        "water. You feed the starter every day with flour and water until the starter bubbles.")
    short = condense("um so the the bridge is closed today", max_words=20)
    assert short == "So the bridge is closed today."
    assert condense("uh, hmm", max_words=20) is None
    assert condense("", max_words=20) is None


def test_speech_teacher_records_its_method():
    found = teacher("speech", "--speech-max-words", "12").candidates(
        ctx(transcript="The river floods the valley every spring when the snow melts."))
    assert [(c.teacher, c.model, c.text) for c in found] == [
        ("speech", "extractive:v1",
         "The river floods the valley every spring when the snow melts.")]
    assert teacher("speech").candidates(ctx(transcript=None)) == []


def line(text: str, height: float, frame: int = 0, conf: float = 0.95) -> OcrLine:
    return OcrLine(text, conf, (0.1, 0.1, 0.9, 0.1, 0.9, 0.1 + height, 0.1, 0.1 + height), frame)


@pytest.mark.parametrize("text, ok", [("Introduction to Neural Networks", True),
                                      ("12:45", False), ("3 - 1", False),
                                      ("@channel_name", False), ("www.example.com", False),
                                      ("GOAL", False), ("Breaking news tonight", True)])
def test_descriptive_text(text, ok):
    assert is_descriptive(text) is ok


def test_ocr_teacher_slide_and_overlay():
    slide = ctx(ocr_lines=(line("Introduction to Neural Networks", 0.12),
                           line("Lecture 3: backpropagation", 0.05),
                           line("Introduction to Neural Networks", 0.12, frame=1),
                           line("12:45", 0.03)),
                ocr_coverage_max=0.3)
    found = teacher("ocr").candidates(slide)
    assert [c.text for c in found] == ['A slide titled "Introduction to Neural Networks" with '
                                       'the text "Lecture 3: backpropagation".']
    overlay = ctx(ocr_lines=(line("Breaking news tonight", 0.04), line("12:45", 0.03)),
                  ocr_coverage_max=0.02)
    assert [c.text for c in teacher("ocr").candidates(overlay)] == [
        'On-screen text: "Breaking news tonight".']
    assert teacher("ocr").candidates(ctx(ocr_lines=(line("12:45", 0.2),),
                                         ocr_coverage_max=0.5)) == []
    assert teacher("ocr").candidates(ctx(ocr_lines=None)) == []


def test_default_teachers_without_clip_leave_zero_shot_out():
    assert config().teachers.names == ("metadata", "speech", "ocr", "structured")
    from vidcurate.pipeline.options import ConfigError

    with pytest.raises(ConfigError, match="zero_shot teacher needs CLIP"):
        config("--teachers", "zero_shot")
    with pytest.raises(ConfigError, match="unknown teacher"):
        config("--teachers", "metadata,poet")
    with pytest.raises(ConfigError, match="--vlm-url"):
        config("--teachers", "vlm")


def test_captioner_runs_a_transformers_model_from_a_local_folder(tiny_captioner, tmp_path):
    from PIL import Image

    from vidcurate.transforms.teachers.captioner import resolve_captioner

    frames = []
    for i in range(3):
        Image.new("RGB", (64, 48), (200, 30 * i, 0)).save(tmp_path / f"k{i}.jpg")
        frames.append(str(tmp_path / f"k{i}.jpg"))
    cfg = config("--teachers", "captioner", "--captioner-model", str(tiny_captioner),
                 "--captioner-max-tokens", "3")
    teachers = dataclasses.replace(cfg.teachers,
                                   captioner_path=resolve_captioner(str(tiny_captioner)))
    captioner = TEACHERS["captioner"](cfg=teachers, clip_model=cfg.clip_model)
    context = ClipContext(clip=dataclasses.replace(clip(), keyframe_uris=tuple(frames)),
                          source=Source(uri="/v.mp4", video_id="v"))
    found = captioner.candidates(context)
    # The random model always says "circle": three keyframes, one distinct caption.
    assert [(c.teacher, c.model, c.text, c.prompt) for c in found] == [
        ("captioner", "transformers:tiny-blip", "Circle circle circle.", "keyframe 1 of 3")]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(TeacherError, match="cannot decode"):
        captioner.candidates(ClipContext(
            clip=dataclasses.replace(clip(), keyframe_uris=(str(broken),)),
            source=Source(uri="/v.mp4", video_id="v")))


def test_captioner_model_that_cannot_be_had_fails_before_the_graph(tmp_path):
    from vidcurate.pipeline.options import ConfigError
    from vidcurate.transforms.teachers.captioner import resolve_captioner

    with pytest.raises(ConfigError, match="--captioner-model PATH"):
        resolve_captioner(str(tmp_path))  # a folder without config.json
    with pytest.raises(ConfigError, match="--captioner-model PATH"):
        resolve_captioner("Salesforce/blip-image-captioning-base")  # no network here
