"""Each stage in a TestPipeline: its main output, its error output, and its counters."""

from __future__ import annotations

import shutil

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow

from tests.support.helpers import fetch_config
from vidcurate.pipeline.options import MediaConfig
from vidcurate.schemas.records import Fetched, Source, VideoRow
from vidcurate.transforms.clip_rules import ApplyClipRules
from vidcurate.transforms.content_dedup import ContentDedup
from vidcurate.transforms.cut_clips import CutClips
from vidcurate.transforms.detect_scenes import DetectScenes
from vidcurate.transforms.errors import ERRORS, SKIPPED
from vidcurate.transforms.fetch import Fetch, RemoveDownloads
from vidcurate.transforms.manifest import ReadManifest, normalise_uri, video_id_for
from vidcurate.transforms.probe import Probe, probe_source
from vidcurate.transforms.video_rows import BuildVideoRows

EXTS = ("mp4",)


def _src(path) -> Source:
    uri = normalise_uri(str(path))
    return Source(uri=uri, video_id=video_id_for(uri))


def _counter(result, stage: str, name: str) -> int:
    found = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(stage).with_name(
        name))["counters"]
    return sum(c.committed for c in found)


def _distribution_count(result, stage: str) -> int:
    found = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(stage))
    return sum(d.committed.count for d in found["distributions"])


def _audio_only(path):
    from tests.support.media import ffmpeg

    ffmpeg("-f", "lavfi", "-t", "2", "-i", "sine=frequency=300", "-c:a", "aac", str(path))
    return path


def test_read_manifest_dedupes_and_reports_bad_rows(tmp_path, videos):
    m = tmp_path / "m.csv"
    m.write_text(f"uri,title\n{videos.cuts},first\n{videos.cuts},again\n,none\n"
                 f"{videos.fade},fade\n")
    p = TestPipeline()
    out = p | ReadManifest(str(m), EXTS, "run1")
    assert_that(out["sources"] | beam.Map(lambda s: (s.uri, s.title)),
                equal_to([(str(videos.cuts), "first"), (str(videos.fade), "fade")]),
                label="sources")
    assert_that(out[ERRORS] | beam.Map(lambda e: (e.stage, e.error_type, e.source_uri[-6:])),
                equal_to([("manifest", "bad_manifest_row", "#row=3")]), label="errors")
    result = p.run()
    result.wait_until_finish()
    assert _counter(result, "manifest", "duplicates") == 1
    assert _counter(result, "manifest", "processed") == 3


def test_unreadable_manifest_is_an_error_row(tmp_path):
    m = tmp_path / "m.parquet"
    m.write_bytes(b"not parquet")
    with TestPipeline() as p:
        out = p | ReadManifest(str(m), EXTS, "run1")
        assert_that(out["sources"], equal_to([]), label="sources")
        assert_that(out[ERRORS] | beam.Map(lambda e: (e.stage, e.error_type.startswith(
            "internal:"), "Parquet" in e.message)), equal_to([("manifest", True, True)]),
            label="errors")


def test_probe_outputs(tmp_path, videos):
    text = tmp_path / "text.mp4"
    text.write_text("hello")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    audio = _audio_only(tmp_path / "audio.mp4")
    p = TestPipeline()
    fetched = p | beam.Create([_src(videos.cuts), _src(text), _src(empty), _src(audio),
                               _src(tmp_path / "missing.mp4")]) | Fetch(
        fetch_config(tmp_path), "run1")
    out = fetched["fetched"] | Probe("run1")
    assert_that(out["videos"] | beam.Map(lambda v: (v.info.width, v.info.fps, v.info.has_audio)),
                equal_to([(320, 25.0, True)]), label="main")
    assert_that(out[SKIPPED] | beam.Map(lambda s: s.reason),
                equal_to(["no video stream (streams: audio)"]), label="skipped")
    assert_that(out[ERRORS] | beam.Map(lambda e: (e.stage, e.error_type)),
                equal_to([("probe", "probe_failed")]), label="errors")
    assert_that(fetched[ERRORS] | beam.Map(lambda e: (e.stage, e.error_type)),
                equal_to([("fetch", "empty_file"), ("fetch", "not_found")]),
                label="fetch_errors")
    result = p.run()
    result.wait_until_finish()
    assert [_counter(result, "probe", n) for n in ("processed", "skipped", "failed")] == [1, 1, 1]
    assert _distribution_count(result, "probe") == 3
    assert _counter(result, "fetch", "failed") == 2


def test_dedup_content_keeps_the_first_copy_and_removes_the_others(tmp_path):
    """Same bytes under three uris: the first in manifest order goes on, the others
    are skipped naming it, and their downloads are gone (none of the kept one)."""
    files = [tmp_path / f"copy{i}.mp4" for i in range(3)]
    for f in files:
        f.write_bytes(b"same bytes")
    (tmp_path / "other.mp4").write_bytes(b"other bytes")

    def fetched(path, sha, row):
        source = Source(uri=str(path), video_id=path.stem, origin=f"m.csv#row={row}")
        return Fetched(source, str(path), 10, sha, downloaded=True)

    items = [fetched(files[2], "a" * 64, 30), fetched(files[0], "a" * 64, 1),
             fetched(files[1], "a" * 64, 9), fetched(tmp_path / "other.mp4", "b" * 64, 4)]
    p = TestPipeline()
    out = p | beam.Create(items) | ContentDedup(keep_downloads=False)
    assert_that(out["unique"] | beam.Map(lambda f: f.video_id),
                equal_to(["copy0", "other"]), label="main")
    assert_that(out[SKIPPED] | beam.Map(lambda s: (s.video_id, s.stage,
                                                   "as " + str(files[0]) in s.reason)),
                equal_to([("copy1", "content_dedup", True), ("copy2", "content_dedup", True)]),
                label="skipped")
    result = p.run()
    result.wait_until_finish()
    assert [f.exists() for f in files] == [True, False, False]
    assert _counter(result, "content_dedup", "duplicates") == 2


def test_remove_downloads_deletes_only_what_fetch_downloaded(tmp_path):
    made, users = tmp_path / "download.mp4", tmp_path / "users.mp4"
    made.write_bytes(b"x")
    users.write_bytes(b"y")
    rows = [VideoRow(_src(made), "ok", None, "run1",
                     fetched=Fetched(_src(made), str(made), 1, "a", downloaded=True)),
            VideoRow(_src(users), "ok", None, "run1",
                     fetched=Fetched(_src(users), str(users), 1, "b", downloaded=False)),
            VideoRow(_src(tmp_path / "gone.mp4"), "failed", "fetch: not found", "run1")]
    p = TestPipeline()
    out = p | beam.Create(rows) | RemoveDownloads()
    assert_that(out | beam.Map(lambda r: r.source.video_id),
                equal_to([r.source.video_id for r in rows]))
    result = p.run()
    result.wait_until_finish()
    assert not made.exists() and users.exists()
    assert _counter(result, "fetch", "downloads_removed") == 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_detect_scenes_outputs(tmp_path, videos, split_cfg, concurrency):
    """With --video-concurrency > 1 the videos are decoded in threads: the same rows and
    error rows, and the same metrics (Beam counts them in the bundle's thread only)."""
    good = probe_source(_src(videos.cuts))
    long_shot = probe_source(_src(videos.long_shot))
    text = tmp_path / "t.mp4"
    text.write_text("x")
    not_video = type(good)(_src(text), str(text), good.info)
    p = TestPipeline()
    out = (p | beam.Create([good, not_video, long_shot, good])
           | DetectScenes(split_cfg, 1, "run1", concurrency=concurrency))
    assert_that(out["scened"] | beam.Map(lambda s: [b.time_s for b in s.boundaries]),
                equal_to([[3.0, 7.0, 10.0, 13.0]] * 2 + [[5.0, 10.0, 15.0]]), label="main")
    assert_that(out[ERRORS] | beam.Map(lambda e: (e.error_type, "decoded no frame" in e.message,
                                                  e.source_uri == not_video.source.uri)),
                equal_to([("decode_failed", True, True)]), label="errors")
    result = p.run()
    result.wait_until_finish()
    assert _counter(result, "detect_scenes", "failed") == 1
    assert _counter(result, "detect_scenes", "processed") == 3
    latency = result.metrics().query(MetricsFilter().with_namespace("detect_scenes")
                                     .with_name("latency_ms"))["distributions"]
    assert sum(d.committed.count for d in latency) == 4


def test_concurrent_steps_keep_order_and_bound_what_is_in_flight():
    """At most `limit` elements are running or waiting to leave; outputs leave in input
    order whatever order the threads finish in; a failing step gives its error row."""
    import threading
    import time

    from apache_beam.utils.windowed_value import WindowedValue

    from vidcurate.transforms.errors import ConcurrentSteps, StageMetrics

    running, most = set(), [0]
    lock = threading.Lock()

    def step(n: int) -> list[int]:
        with lock:
            running.add(n)
            most[0] = max(most[0], len(running))
        time.sleep(0.05 * (5 - n % 5))  # later elements finish first
        with lock:
            running.discard(n)
        if n == 3:
            raise ValueError("bad element")
        return [n * 10]

    steps = ConcurrentSteps(StageMetrics("test_stage"), limit=3)
    steps.start()
    out = []
    for n in range(8):
        place = WindowedValue(None, 0, [GlobalWindow()])
        out += list(steps.submit(step, n, place, source_uri=f"u{n}", run_id="r"))
        assert len(steps.running) < 3
    out += list(steps.finish())
    steps.close()
    assert most[0] == 3
    values = [o.value if isinstance(o, beam.pvalue.TaggedOutput) else o for o in out]
    assert all(isinstance(v, WindowedValue) for v in values)
    errors = [v.value for v in values if not isinstance(v.value, int)]
    assert [v.value for v in values if isinstance(v.value, int)] == [0, 10, 20, 40, 50, 60, 70]
    assert [(e.source_uri, e.stage, "bad element" in e.message) for e in errors] == [
        ("u3", "test_stage", True)]


def test_clip_rules_and_cut_clips(tmp_path, videos, split_cfg):
    from vidcurate.transforms.detect_scenes import detect_scenes

    scened = [detect_scenes(probe_source(_src(v)), split_cfg)
              for v in (videos.cuts, videos.long_shot)]
    # Cut clips of the second video fail: its file is gone by the time clips are cut.
    gone = tmp_path / "gone.mp4"
    shutil.copy(videos.long_shot, gone)
    moved = probe_source(_src(gone))
    scened[1] = type(scened[1])(moved, scened[1].boundaries, scened[1].shots,
                                scened[1].decoded_frames)
    media = MediaConfig(output=str(tmp_path / "out"), clip_media="exact", keyframes=1,
                        keyframe_width=64, ffmpeg_threads=1)
    p = TestPipeline()
    splits = p | beam.Create(scened) | ApplyClipRules(split_cfg)
    assert_that(splits | beam.Map(lambda s: len(s.spans)), equal_to([5, 4]), label="spans")
    gone.unlink()
    cut = splits | CutClips(media, "hash", "run1")
    assert_that(cut["clips"] | beam.Map(lambda c: (c.clip_index, c.media_mode,
                                                   len(c.keyframe_uris))),
                equal_to([(i, "exact", 1) for i in range(5)]), label="clips")
    assert_that(cut[ERRORS] | beam.Map(lambda e: (e.stage, e.error_type, e.clip_id is not None)),
                equal_to([("cut_clips", "cut_failed", True)] * 4), label="errors")
    result = p.run()
    result.wait_until_finish()
    assert _counter(result, "cut_clips", "processed") == 5
    assert _counter(result, "cut_clips", "failed") == 4
    assert _counter(result, "clip_rules", "processed") == 2


def test_build_video_rows_one_per_source():
    from vidcurate.schemas.records import ErrorRecord, Skip

    a, b, c = (Source(uri=f"/v/{n}.mp4", video_id=n) for n in "abc")
    err = ErrorRecord("probe", "/v/b.mp4", "probe_failed", "bad", "run1", video_id="b")
    manifest_err = ErrorRecord("manifest", "m.csv#row=9", "bad_manifest_row", "x", "run1")
    with TestPipeline() as p:
        def create(label, items):
            return p | label >> beam.Create(items)
        rows = {
            "sources": create("S", [a, b, c]),
            "probed": create("P", []),
            "skipped": create("K", [Skip("c", "probe", "no video stream")]),
            "splits": create("L", []),
            "clips": create("C", []),
            "errors": create("E", [err, manifest_err]),
            "asr": create("A", []),
            "fetched": create("F", []),
        } | BuildVideoRows("run1")
        assert_that(rows | beam.Map(lambda r: (r.source.video_id, r.status, r.reason)),
                    equal_to([("a", "failed", "no stage reported a result for this video"),
                              ("b", "failed", "probe: bad"),
                              ("c", "skipped", "probe: no video stream")]))




def test_dask_runner_by_name():
    from vidcurate.pipeline.run import _runner_aliases

    full = "vidcurate.pipeline.dask_runner.DaskRunner"
    assert _runner_aliases(["--runner", "DaskRunner", "--x"]) == ["--runner", full, "--x"]
    assert _runner_aliases(["--runner=DaskRunner"]) == [f"--runner={full}"]
    assert _runner_aliases(["--runner", "DirectRunner"]) == ["--runner", "DirectRunner"]
