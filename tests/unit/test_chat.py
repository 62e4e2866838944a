"""The chat-completions client and the vlm teachers against a real loopback server."""

from __future__ import annotations

import dataclasses
import time

import pytest

from tests.support.chatserver import ChatServer
from tests.support.helpers import run_config
from vidcurate.pipeline.options import VlmConfig
from vidcurate.schemas.records import CaptionCandidate, ClipRecord, Source, Span
from vidcurate.transforms.teachers import TEACHERS, ClipContext, TeacherError
from vidcurate.transforms.teachers.chat import ChatClient


@pytest.fixture(scope="module")
def server():
    with ChatServer() as s:
        yield s


def vlm(server: ChatServer, model: str, **kw) -> VlmConfig:
    base = dict(url=server.url, model=model, api_key_env="VIDCURATE_TEST_KEY", timeout_s=1.0,
                retries=2, concurrency=2, max_images=2, max_tokens=50, backoff_s=0.01,
                backoff_max_s=5.0)
    return VlmConfig(**{**base, **kw})


def ask(cfg: VlmConfig, text: str = "hello") -> str:
    return ChatClient(cfg).complete([{"role": "user", "content": text}])


def test_answers_and_sends_the_key(server, monkeypatch):
    monkeypatch.setenv("VIDCURATE_TEST_KEY", "sekret")
    assert ask(vlm(server, "ok")) == "a clip seen in 0 images with no context"
    assert server.log.headers[-1]["Authorization"] == "Bearer sekret"
    assert server.log.requests[-1]["temperature"] == 0


def test_transient_failures_are_retried(server):
    assert ask(vlm(server, "flaky"), "flaky one").startswith("a clip seen")
    start = time.monotonic()
    assert ask(vlm(server, "busy"), "busy one").startswith("a clip seen")
    times = next(t for t in server.log.times.values() if len(t) == 2 and t[0] >= start)
    assert times[1] - times[0] >= 0.95  # Retry-After: 1 honoured, not the 10 ms backoff


@pytest.mark.parametrize("model, error_type, attempts", [
    ("slow", "timeout", 3),
    ("garbage", "bad_response", 1),
    ("empty", "empty_answer", 1),
    ("denied", "http_401", 1),
    ("mixed-unknown", "http_404", 1),
])
def test_permanent_failures_become_teacher_errors(server, model, error_type, attempts):
    before = len(server.log.requests)
    with pytest.raises(TeacherError) as caught:
        ask(vlm(server, model), f"about {model}")
    assert caught.value.error_type == error_type
    assert len(server.log.requests) - before == attempts


def test_unreachable_server_is_an_error_not_a_crash():
    cfg = VlmConfig(url="http://127.0.0.1:9/v1", model="ok", api_key_env="X", timeout_s=0.5,
                    retries=1, concurrency=1, max_images=1, max_tokens=10, backoff_s=0.01)
    with pytest.raises(TeacherError) as caught:
        ask(cfg)
    assert caught.value.error_type == "unreachable"


def _context(tmp_path, candidates=()) -> ClipContext:
    from PIL import Image

    uris = []
    for i in range(3):
        path = tmp_path / f"k{i}.jpg"
        Image.new("RGB", (32, 24), (i * 80, 0, 0)).save(path)
        uris.append(str(path))
    clip = ClipRecord(clip_id="c", video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 100, 0, 4), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=tuple(uris), keyframe_times_s=(0.5, 2, 3.5), run_id="r",
                      transcript="the bridge opens at noon", ocr_text="Tower Bridge")
    src = Source(uri="/v.mp4", video_id="v", title="Tower Bridge opening",
                 description="The bascules rise for a tall ship passing under the bridge.",
                 metadata={"tags": "london,bridge"})
    return ClipContext(clip=clip, source=src, candidates=tuple(candidates))


def _teacher(name: str, cfg: VlmConfig):
    teachers = run_config().teachers
    return TEACHERS[name](cfg=dataclasses.replace(teachers, vlm=cfg),
                          clip_model=run_config().clip_model)


def test_vlm_teacher_sends_keyframes_and_context(server, tmp_path):
    found = _teacher("vlm", vlm(server, "ok")).candidates(_context(tmp_path))
    assert [c.text for c in found] == [
        "A clip seen in 2 images with Title, Description, Tags, Speech, On-screen text."]
    assert found[0].model == "openai-chat:ok" and "keyframes in time order" in found[0].prompt
    sent = server.log.requests[-1]["messages"][0]["content"]
    assert sent[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_vlm_fuse_sees_the_other_candidates(server, tmp_path):
    others = [CaptionCandidate("c", "v", t, None, None, x) for t, x in
              [("metadata", "Tower bridge opening."), ("speech", "The bridge opens at noon.")]]
    found = _teacher("vlm_fuse", vlm(server, "ok")).candidates(_context(tmp_path, others))
    assert [c.text for c in found] == ["A fused caption from 2 candidates."]
    assert _teacher("vlm_fuse", vlm(server, "ok")).candidates(_context(tmp_path)) == []
