"""ScoreNsfw in a TestPipeline: keyframes scored through RunInference in batches, each
clip's score the maximum over its keyframes (the package's own Classifier gives the
expected numbers); unreadable keyframes and failed batches are error rows and their
clips go on with a null score."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from vidcurate.schemas.records import ClipRecord, Span
from vidcurate.transforms.errors import ERRORS
from vidcurate.transforms.models import import_open_nsfw
from vidcurate.transforms.models.nsfw import LoadedNsfw, NsfwConfig, resolve_nsfw
from vidcurate.transforms.nsfw import ScoreNsfw


def _clip(clip_id: str, frames: tuple[str, ...]) -> ClipRecord:
    return ClipRecord(clip_id=clip_id, video_id="v", source_uri="/v.mp4", clip_index=0,
                      span=Span(0, 75, 0, 3), split_params_hash="h", media_mode="none",
                      media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=frames, keyframe_times_s=tuple(range(len(frames))),
                      run_id="r")


def _keyframes(tmp_path) -> list[str]:
    """JPEG keyframes, as CutClips writes them: a skin-toned field (the model's
    undecided band), a gradient and noise."""
    y, x = np.mgrid[0:180, 0:320]
    arrays = [np.full((180, 320, 3), (220, 170, 140), np.uint8),
              np.stack([x * 255 // 319, y * 255 // 179, np.full_like(x, 90)], -1).astype(
                  np.uint8),
              np.random.default_rng(3).integers(0, 256, (180, 320, 3), dtype=np.uint8)]
    paths = []
    for i, a in enumerate(arrays):
        path = tmp_path / f"k{i}.jpg"
        Image.fromarray(a).save(path, quality=90)
        paths.append(str(path))
    return paths


def test_clips_get_their_most_explicit_keyframes_score(tmp_path):
    frames = _keyframes(tmp_path)
    reference = import_open_nsfw().Classifier().score_paths(frames)
    cfg = resolve_nsfw(NsfwConfig(batch_size=2))
    clips = [_clip("all", tuple(frames)), _clip("calm", tuple(frames[1:])),
             _clip("none", ()), _clip("broken", (frames[0], str(tmp_path / "gone.jpg")))]
    p = TestPipeline()
    out = p | beam.Create(clips) | ScoreNsfw(cfg, "r")
    scores = out["clips"] | beam.Map(lambda c: (c.clip_id, c.nsfw_score))
    assert_that(scores | beam.Map(lambda s: (s[0], None if s[1] is None else
                                             round(s[1], 4))),
                equal_to([("all", round(float(reference.max()), 4)),
                          ("calm", round(float(reference[1:].max()), 4)),
                          ("none", None), ("broken", None)]), label="main")
    assert_that(out[ERRORS] | beam.Map(lambda e: (e.stage, e.clip_id)),
                equal_to([("nsfw", "broken")]), label="errors")
    p.run().wait_until_finish()
    assert reference[0] > 0.1 > reference[1:].max()  # the maximum is the skin-toned frame


def test_a_failed_batch_is_an_error_row_and_the_clip_goes_on(tmp_path, monkeypatch):
    frames = _keyframes(tmp_path)

    def fails(self, batch):
        raise RuntimeError("the session broke")

    monkeypatch.setattr(LoadedNsfw, "score", fails)
    p = TestPipeline()
    out = (p | beam.Create([_clip("c", tuple(frames))])
           | ScoreNsfw(resolve_nsfw(NsfwConfig(batch_size=8)), "r"))
    assert_that(out["clips"] | beam.Map(lambda c: (c.clip_id, c.nsfw_score)),
                equal_to([("c", None)]), label="main")
    assert_that(out[ERRORS] | beam.Map(lambda e: (e.clip_id, "session broke" in e.message)),
                equal_to([("c", True)]), label="errors")
    p.run().wait_until_finish()


@pytest.fixture(autouse=True)
def _fresh_sessions(monkeypatch):
    """Each test loads its own session (the process cache would keep a patched one)."""
    from vidcurate.transforms.models import nsfw

    monkeypatch.setattr(nsfw, "_PROCESS_MODELS", nsfw.ProcessCache())
