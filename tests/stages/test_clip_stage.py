"""The CLIP stage with a small CLIP trained in a fixture: handler, embeddings, caption
selection among distractors, zero-shot concepts, and stitching on generated videos."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tests.support.helpers import run_config
from tests.support.shapes_video import scene_video
from tests.support.tiny_clip import BACKGROUNDS, COLOURS, SHAPES, caption, jpeg, render
from vidcurate.pipeline.options import ClipModelConfig, ConfigError
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import run
from vidcurate.schemas.records import CaptionCandidate, ClipRecord, Source, Span
from vidcurate.transforms.embed_clips import EmbedClips
from vidcurate.transforms.models.clip import EmbedRequest, resolve_clip
from vidcurate.transforms.models.handlers import ClipModelHandler
from vidcurate.transforms.models.loading import ProcessCache
from vidcurate.transforms.score_captions import ScoreCaptions
from vidcurate.transforms.teachers import TEACHERS, ClipContext
from vidcurate.transforms.teachers.zero_shot import top_concepts

TEACHER_NAMES = ("metadata", "speech", "ocr", "captioner", "vlm")


@pytest.fixture(scope="module")
def clip_cfg(tiny_clip) -> ClipModelConfig:
    return resolve_clip(ClipModelConfig(enabled=True, model=tiny_clip.model_name,
                                   pretrained=str(tiny_clip.checkpoint_path),
                                   model_config=str(tiny_clip.config_path), batch_size=8))


def test_resolve_checks_local_weights_and_names_them_by_content(tiny_clip, clip_cfg, tmp_path):
    assert clip_cfg.embed_dim == tiny_clip.embed_dim
    assert clip_cfg.model_id.startswith(f"open_clip:{tiny_clip.model_name}/sha256:")
    with pytest.raises(ConfigError, match="--clip-pretrained PATH"):
        resolve_clip(dataclasses.replace(clip_cfg, pretrained=str(tmp_path / "none.pt")))
    with pytest.raises(ConfigError, match="--clip-pretrained PATH"):
        resolve_clip(ClipModelConfig(enabled=True, model="ViT-B-32", pretrained="laion2b_s34b_b79k",
                                model_config=None, batch_size=8))  # no network here
    with pytest.raises(ConfigError, match="no pretrained"):
        resolve_clip(ClipModelConfig(enabled=True, model="ViT-B-32", pretrained="nonsense",
                                model_config=None, batch_size=8))


def test_handler_batches_mixed_requests_and_loads_the_model_once(clip_cfg):
    rng = random.Random(3)
    images = [np.asarray(render("circle", "red", "white", rng)) for _ in range(12)]
    requests = [EmbedRequest(key=("img", i), image=im) for i, im in enumerate(images)]
    requests += [EmbedRequest(key=("txt", i), text=f"a red circle {i}") for i in range(9)]
    p = TestPipeline()
    out = (p | beam.Create(requests)
           | RunInference(ClipModelHandler(clip_cfg, namespace="test_clip"))
           | beam.Map(lambda kv: (kv[0], kv[1].shape, round(float(np.linalg.norm(kv[1])), 4))))
    assert_that(out, equal_to([(r.key, (clip_cfg.embed_dim,), 1.0) for r in requests]))
    result = p.run()
    result.wait_until_finish()
    loads = result.metrics().query(beam.metrics.MetricsFilter().with_name(
        "load_model_latency_milli_secs"))["distributions"]
    assert sum(m.committed.count for m in loads) == 1
    batches = result.metrics().query(beam.metrics.MetricsFilter().with_name(
        "num_inferences"))["counters"]
    assert sum(m.committed for m in batches) == len(requests)


def test_steps_of_one_process_share_one_model(clip_cfg, monkeypatch):
    """Stitching, embeddings and scoring are three RunInference steps: one model, also
    when the steps run in different stages (the runner tears a stage down before the
    next one starts)."""
    import vidcurate.transforms.models.clip as clip_module
    from vidcurate.transforms.models.loading import ProcessCache

    loads = []
    real = clip_module.load_clip
    monkeypatch.setattr(clip_module, "load_clip", lambda cfg: loads.append(1) or real(cfg))
    monkeypatch.setattr(clip_module, "_PROCESS_MODELS", ProcessCache())
    with TestPipeline() as p:
        texts = p | beam.Create([EmbedRequest(key=i, text=f"t {i}") for i in range(6)])
        for step in ("A", "B"):
            _ = texts | step >> RunInference(ClipModelHandler(clip_cfg))
        _ = (texts | "A2" >> RunInference(ClipModelHandler(clip_cfg))
             | "NextStage" >> beam.Reshuffle()
             | "Again" >> beam.Map(lambda kv: EmbedRequest(key=kv[0], text="again"))
             | "C" >> RunInference(ClipModelHandler(clip_cfg)))
    assert loads == [1]


def test_the_model_outlives_the_steps_that_used_it(clip_cfg, monkeypatch):
    """Beam tears a stage's steps down after 60 s idle (a long ASR stage between
    stitching and the clip embeddings); the next step must not load the model again."""
    import gc
    import weakref

    from apache_beam.utils import shared

    import vidcurate.transforms.models.clip as clip_module
    from vidcurate.transforms.models.loading import ProcessCache

    loads = []
    real = clip_module.load_clip
    monkeypatch.setattr(clip_module, "load_clip", lambda cfg: loads.append(1) or real(cfg))
    monkeypatch.setattr(clip_module, "_PROCESS_MODELS", ProcessCache())
    held = clip_module.shared_clip(clip_cfg)
    first = weakref.ref(held)
    del held  # what a torn-down step does

    class Other:  # what the OCR stage does meanwhile: Beam keeps one object alive
        pass

    other = shared.Shared().acquire(Other)
    gc.collect()
    # The model outlived the step that held it, and the next step gets that very one.
    assert first() is not None
    assert clip_module.shared_clip(clip_cfg) is first()
    assert loads == [1]
    del other


def test_a_failing_batch_goes_to_the_dead_letter_output(clip_cfg):
    bad = EmbedRequest(key="bad", image=np.zeros((8, 8, 3), np.float64))  # PIL refuses it
    with TestPipeline() as p:
        main, dead = (p | beam.Create([bad])
                      | RunInference(ClipModelHandler(clip_cfg)).with_exception_handling())
        assert_that(main, equal_to([]), label="NoResults")
        assert_that(dead.failed_inferences | beam.Map(lambda f: [r.key for r in f[0]]),
                    equal_to([["bad"]]), label="DeadLetters")


def _clip_record(clip_id: str, keyframes: list[str]) -> ClipRecord:
    return ClipRecord(clip_id=clip_id, video_id=f"v-{clip_id}", source_uri=f"/{clip_id}.mp4",
                      clip_index=0, span=Span(0, 75, 0, 3), split_params_hash="h",
                      media_mode="none", media_uri=None, media_start_s=None, media_end_s=None,
                      keyframe_uris=tuple(keyframes), keyframe_times_s=(0.5, 1.5, 2.5),
                      run_id="r")


def _synthetic_clips(folder: Path, n: int, seed: int):
    """n clips of one held-out content each (three keyframes, as JPEG), with the right
    caption and four distractors that differ in colour, shape or background, each from
    a different teacher."""
    rng = random.Random(seed)
    clips, candidates, truth = [], [], {}
    for i in range(n):
        shape, colour, bg = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(
            list(BACKGROUNDS))
        frames = []
        for k in range(3):
            path = folder / f"c{i}-{k}.jpg"
            jpeg(render(shape, colour, bg, rng, 320, 240)).save(path, quality=85)
            frames.append(str(path))
        clip_id = f"c{i}"
        clips.append(_clip_record(clip_id, frames))
        wrong = {caption(rng.choice([s for s in SHAPES if s != shape]), colour, bg),
                 caption(shape, rng.choice([c for c in COLOURS if c != colour]), bg),
                 caption(shape, colour, next(b for b in BACKGROUNDS if b != bg))}
        while len(wrong) < 4:
            wrong.add(caption(rng.choice(SHAPES), rng.choice(list(COLOURS)), bg))
        wrong.discard(caption(shape, colour, bg))
        texts = [caption(shape, colour, bg), *sorted(wrong)]
        teachers = rng.sample(TEACHER_NAMES, len(texts))
        candidates += [CaptionCandidate(clip_id, f"v-{clip_id}", t, None, None, x)
                       for t, x in zip(teachers, texts, strict=True)]
        truth[clip_id] = caption(shape, colour, bg)
    return clips, candidates, truth


def test_pipeline_selects_the_right_caption_among_distractors(clip_cfg, tmp_path):
    clips, candidates, truth = _synthetic_clips(tmp_path, n=60, seed=2024)

    def check(rows):
        by_clip: dict[str, list] = {}
        for r in rows:
            by_clip.setdefault(r.candidate.clip_id, []).append(r)
        assert len(by_clip) == len(truth)
        for clip_id, rs in by_clip.items():
            assert sum(r.selected for r in rs) == 1, clip_id
            best = max(rs, key=lambda r: r.clip_score)
            assert best.selected and best.rank == 1
            assert sorted(r.rank for r in rs) == list(range(1, len(rs) + 1))
            assert all(r.selection_method == "clip" for r in rs)
        right = sum(next(r for r in rs if r.selected).candidate.text == truth[c]
                    for c, rs in by_clip.items())
        assert right / len(by_clip) >= 0.95, f"{right} of {len(by_clip)} right"

    with TestPipeline() as p:
        embedded = p | "Clips" >> beam.Create(clips) | EmbedClips(clip_cfg, "r")
        scored = {"clips": embedded["clips"],
                  "candidates": p | "Candidates" >> beam.Create(candidates)} | ScoreCaptions(
            clip_cfg, ("vlm", "captioner", "metadata"), "r")
        assert_that(scored["captions"], check, label="Captions")
        assert_that(scored["clips"] | beam.Map(
            lambda c: (c.clip_id, c.best_caption is not None, c.clip_embedding.shape,
                       c.keyframe_embeddings is None, c.clip_model)),
            equal_to([(c.clip_id, True, (clip_cfg.embed_dim,), True, clip_cfg.model_id)
                      for c in clips]), label="Clips")
        assert_that(embedded["errors"], equal_to([]), label="NoErrors")


def test_unreadable_keyframes_are_an_error_row_and_the_clip_stays(clip_cfg, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    clip = _clip_record("broken", [str(bad)])
    with TestPipeline() as p:
        out = p | beam.Create([clip]) | EmbedClips(clip_cfg, "r")
        assert_that(out["clips"] | beam.Map(lambda c: (c.clip_id, c.clip_embedding is None)),
                    equal_to([("broken", True)]), label="Clip")
        assert_that(out["errors"] | beam.Map(lambda e: (e.stage, e.error_type, e.clip_id)),
                    equal_to([("embed_clips", "unreadable_frame", "broken")]),
                    label="Errors")


def test_zero_shot_teacher_picks_the_right_concept(clip_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCURATE_CACHE", str(tmp_path / "cache"))
    vocabulary = tmp_path / "concepts.txt"
    concepts = [f"{c} {s}" for s in SHAPES for c in COLOURS]
    vocabulary.write_text("# shapes\n" + "\n".join(concepts) + "\n\n")
    teachers = dataclasses.replace(
        run_config().teachers, names=("zero_shot",), vocabulary=str(vocabulary),
        zero_shot_templates=("a {} on a white background", "a {} on a black background"),
        zero_shot_top_k=1)
    teacher = TEACHERS["zero_shot"](cfg=teachers, clip_model=clip_cfg)
    teacher.setup()
    assert teacher.concepts == concepts
    # The concept matrix is cached on disk: a new process reuses it without the model.
    assert len(list((tmp_path / "cache" / "zero_shot").glob("*.npy"))) == 1
    import vidcurate.transforms.models.clip as clip_module

    monkeypatch.setattr(TEACHERS["zero_shot"], "_matrices", ProcessCache())
    monkeypatch.setattr(clip_module, "shared_clip", lambda cfg: pytest.fail("model loaded"))
    again = TEACHERS["zero_shot"](cfg=teachers, clip_model=clip_cfg)
    again.setup()
    assert np.array_equal(again.matrix, teacher.matrix)
    monkeypatch.undo()
    rng = random.Random(99)
    from vidcurate.transforms.models.clip import embed_images, load_clip

    model = load_clip(clip_cfg)
    right = 0
    for _ in range(40):
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        frame = np.asarray(jpeg(render(shape, colour, rng.choice(list(BACKGROUNDS)), rng)))
        emb = embed_images(model, [frame])[0]
        ctx = ClipContext(clip=dataclasses.replace(_clip_record("z", []), clip_embedding=emb),
                          source=Source(uri="/z.mp4", video_id="v-z"))
        found = teacher.candidates(ctx)
        assert len(found) == 1 and found[0].teacher == "zero_shot"
        assert found[0].model == clip_cfg.model_id
        right += found[0].text == f"a {colour} {shape} on a white background"
        assert top_concepts(emb, teacher.matrix, teacher.concepts, 3)[0][0] in found[0].text
    assert right / 40 >= 0.9


# ------------------------------------------------------------------ stitching end to end
def test_stitching_merges_two_views_of_one_scene_and_keeps_others_apart(clip_args, tmp_path):
    video = scene_video(tmp_path / "views.mp4", [
        ("circle", "red", "white", [1.0, 0.0, 0.5, 0.5]),  # big, on the left
        ("circle", "red", "white", [0.0, 1.0, 0.5, 0.5]),  # small, on the right: same scene
        ("square", "blue", "black", [1.0, 0.5, 0.5, 0.5]),  # something else
    ])
    out = tmp_path / "out"
    run(["--input", str(video), "--output", str(out), *clip_args, "--no-asr", "--no-ocr",
         "--teachers", "metadata", "--clip-media", "none", "--keyframes", "2",
         "--scene-threshold", "15", "--still-distance", "0", "--min-clip-s", "1"])
    con = connect(str(out))
    (shots, events, boundaries, dropped), = con.sql(
        "SELECT shot_count, event_count, shot_boundaries, stitch_dropped FROM videos"
    ).fetchall()
    assert shots == 3, "the generated cuts were not detected: the test is not testing"
    assert events == 2 and dropped == []
    merged = [(round(b["time_s"], 1), b["merged"]) for b in boundaries]
    assert merged == [(3.0, True), (6.0, False)]
    same, other = (b["distance"] for b in boundaries)
    assert same < 0.6 < other
    spans = con.sql("SELECT start_s, end_s FROM clips ORDER BY start_s").fetchall()
    assert [(round(a, 1), round(b, 1)) for a, b in spans] == [(0.0, 6.0), (6.0, 9.0)]
    (model, notes), = con.sql("SELECT clip_model, notes FROM runs").fetchall()
    assert model.startswith("open_clip:vidcurate-tiny-clip/sha256:")
    assert not any("CLIP was off" in n for n in notes)
    # Without stitching the same video gives three clips, with other ids.
    plain = tmp_path / "plain"
    run(["--input", str(video), "--output", str(plain), *clip_args, "--no-asr", "--no-ocr",
         "--teachers", "metadata", "--clip-media", "none", "--keyframes", "2",
         "--scene-threshold", "15", "--no-stitch", "--min-clip-s", "1"])
    assert connect(str(plain)).sql("SELECT count(*) FROM clips").fetchall() == [(3,)]


def _embed_requests() -> list[EmbedRequest]:
    rng = random.Random(5)
    requests = [EmbedRequest(key=(owner, i), image=np.asarray(render("star", "blue", "black",
                                                                       rng)))
                for owner, count in (("clipA", 10), ("clipB", 3)) for i in range(count)]
    requests += [EmbedRequest(key=("clipC", i), text=f"a blue star {i}") for i in range(4)]
    return requests


def test_inference_gives_every_request_its_embedding(clip_cfg):
    """Infer (RunInference on every runner): the same embeddings as the handler alone,
    a failing batch on the dead-letter output, every request accounted for once."""
    from vidcurate.transforms.inference import FAILED, RESULTS, Infer
    from vidcurate.transforms.models.clip import shared_clip

    requests = _embed_requests()
    handler = ClipModelHandler(clip_cfg, namespace="infer_test")
    expected = dict(handler.run_inference(requests, shared_clip(clip_cfg)))
    bad = EmbedRequest(key=("clipD", 0), image=np.zeros((8, 8, 3), np.float64))

    def matches(results):
        got = dict(results)
        for key, embedding in got.items():
            np.testing.assert_allclose(embedding, expected[key], atol=1e-5)

    p = TestPipeline()
    out = (p | beam.Create([*requests, bad])
           | Infer(handler, f"clip:{clip_cfg.model_id}"))
    assert_that(out[RESULTS], matches, label="results")
    # Every request ends as a result or inside a failed batch, once.
    accounted = ((out[RESULTS] | "ResultKeys" >> beam.Map(lambda kv: kv[0]),
                  out[FAILED] | "FailedKeys" >> beam.FlatMap(lambda f: [r.key for r in f[0]]))
                 | beam.Flatten())
    assert_that(accounted, equal_to([r.key for r in [*requests, bad]]), label="accounted")
    p.run().wait_until_finish()
