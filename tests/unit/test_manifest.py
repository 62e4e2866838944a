import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidcurate.schemas.records import Source
from vidcurate.transforms.manifest import (
    ManifestRowError,
    RowProblem,
    expand_input,
    input_kind,
    list_folder,
    listed_batches,
    normalise_uri,
    video_id_for,
)

EXTS = ("mp4", "mkv", "mov")


def test_normalise_uri_gives_one_spelling_per_video(tmp_path):
    f = tmp_path / "a b.mp4"
    assert normalise_uri(str(f)) == str(f)
    assert normalise_uri(f"file://{f}") == str(f)
    assert normalise_uri("a b.mp4", base_dir=str(tmp_path)) == str(f)
    assert normalise_uri(f"{tmp_path}/x/../a b.mp4") == str(f)
    assert normalise_uri("HTTPS://Example.COM/v/1.mp4#t=3") == "https://example.com/v/1.mp4"
    assert normalise_uri("gs://Bucket/dir//v.mp4") == "gs://bucket/dir/v.mp4"
    assert normalise_uri("https://example.com/watch?v=abc") == "https://example.com/watch?v=abc"
    with pytest.raises(ManifestRowError):
        normalise_uri("   ")
    with pytest.raises(ManifestRowError, match="no host"):
        normalise_uri("s3:///key.mp4")


def test_video_id_is_stable_and_distinct():
    a = video_id_for("/data/a.mp4")
    assert a == video_id_for("/data/a.mp4")
    assert a != video_id_for("/data/b.mp4")
    assert len(a) == 16 and int(a, 16) >= 0


def test_list_folder_is_recursive_and_filters_extensions(tmp_path):
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    for name in ["a.mp4", "sub/b.MKV", "sub/deep/c.mov", "notes.txt", "sub/.hidden.mp4",
                 "noext"]:
        (tmp_path / name).write_bytes(b"x")
    found = sorted(os.path.relpath(p, tmp_path) for p in list_folder(str(tmp_path), EXTS))
    assert found == ["a.mp4", "sub/b.MKV", "sub/deep/c.mov"]


def test_input_kind(tmp_path):
    assert input_kind(str(tmp_path), EXTS) == "folder"
    assert input_kind(str(tmp_path / "m.csv"), EXTS) == "manifest"
    assert input_kind(str(tmp_path / "m.parquet"), EXTS) == "manifest"
    assert input_kind(str(tmp_path / "v.mp4"), EXTS) == "video"
    assert input_kind("gs://bucket/videos/", EXTS) == "folder"


def _expand(path):
    items = list(expand_input(str(path), EXTS))
    return ([i for i in items if isinstance(i, Source)],
            [i for i in items if isinstance(i, RowProblem)])


def test_csv_manifest_keeps_known_and_extra_columns(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("url,Title,description,license,tags,empty\n"
                 "videos/a.mp4,A title,,CC-BY,\"x,y\",\n"
                 "https://example.com/b.mp4,B,desc,,,\n"
                 ",no uri,,,,\n"
                 "c.mp4,extra cell,,,,,surplus\n", encoding="utf-8")
    sources, problems = _expand(m)
    assert [s.uri for s in sources] == [str(tmp_path / "videos" / "a.mp4"),
                                        "https://example.com/b.mp4"]
    a = sources[0]
    assert (a.title, a.description, a.license) == ("A title", None, "CC-BY")
    assert a.metadata == {"tags": "x,y"}
    assert a.origin.endswith("m.csv#row=1")
    assert [p.origin.rsplit("=", 1)[-1] for p in problems] == ["3", "4"]
    assert "no video uri" in problems[0].reason
    assert "cells" in problems[1].reason


def test_jsonl_manifest_reports_bad_lines(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"uri": "/v/a.mp4", "title": "A", "views": 10}) + "\n"
                 "{not json\n\n[1, 2]\n"
                 + json.dumps({"path": "rel.mp4"}) + "\n", encoding="utf-8")
    sources, problems = _expand(m)
    assert [s.uri for s in sources] == ["/v/a.mp4", str(tmp_path / "rel.mp4")]
    assert sources[0].metadata == {"views": 10}
    assert ["invalid JSON" in p.reason for p in problems] == [True, False]
    assert "expected a JSON object" in problems[1].reason


def test_parquet_manifest(tmp_path):
    m = tmp_path / "m.parquet"
    pq.write_table(pa.table({"uri": ["/v/a.mp4", None], "title": ["A", "B"],
                             "score": [0.5, 0.7]}), m)
    sources, problems = _expand(m)
    assert [(s.uri, s.title, s.metadata) for s in sources] == [("/v/a.mp4", "A", {"score": 0.5})]
    assert len(problems) == 1 and problems[0].origin.endswith("#row=2")


def test_hidden_folders_and_the_runs_own_output_are_not_inputs(tmp_path):
    for name in ["a.mp4", ".cache/b.mp4", "out/media/v/c.mp4", "out/.tmp/x/clip.mp4",
                 "keep/d.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = sorted(os.path.relpath(p, tmp_path)
                   for p in list_folder(str(tmp_path), EXTS, exclude=str(tmp_path / "out")))
    assert found == ["a.mp4", "keep/d.mp4"]


def test_duplicates_keep_the_first_manifest_row():
    from vidcurate.transforms.manifest import _first_of_duplicates

    rows = [Source(uri="/a.mp4", video_id="v", title=f"row {n}", origin=f"m.csv#row={n}")
            for n in (10, 2, 33)]
    assert _first_of_duplicates(("v", rows)).title == "row 2"


def test_listed_batches_cut_the_listing_in_order_and_count_each_problem_once(tmp_path):
    """Batches of at most N distinct videos in manifest order; a duplicate listing and an
    unusable row land in the one batch being filled when they are read."""
    for name in "abcde":
        (tmp_path / f"{name}.mp4").write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri\na.mp4\nb.mp4\n  \na.mp4\nc.mp4\nd.mp4\ne.mp4\n")
    batches = list(listed_batches(str(manifest), EXTS, None, 2))
    assert [[os.path.basename(s.uri) for s in b.sources] for b in batches] == [
        ["a.mp4", "b.mp4"], ["c.mp4", "d.mp4"], ["e.mp4"]]
    assert [b.duplicates for b in batches] == [1, 0, 0]
    assert [[e.source_uri for e in b.errors] for b in batches] == [[f"{manifest}#row=3"], [],
                                                                   []]
    # The same listing in one batch: the same sources, problems and duplicates.
    (whole,) = listed_batches(str(manifest), EXTS, None, 100)
    assert whole.sources == [s for b in batches for s in b.sources]
    assert (whole.duplicates, len(whole.errors)) == (1, 1)


def test_listed_batches_always_make_one_batch_and_keep_a_listing_failure(tmp_path):
    """Nothing to list still makes a batch (the run gets its rows and runs row); an
    unreadable manifest is one error row, after what was read before it."""
    (empty,) = listed_batches(str(tmp_path), EXTS, None, 10)
    assert (empty.sources, empty.errors, empty.duplicates) == ([], [], 0)
    bad = tmp_path / "m.parquet"
    bad.write_bytes(b"not parquet")
    (failed,) = listed_batches(str(bad), EXTS, None, 10)
    assert failed.sources == [] and len(failed.errors) == 1
    assert failed.errors[0].stage == "manifest" and failed.errors[0].source_uri == str(bad)


def test_a_folder_scan_says_what_it_passes_over_and_why(tmp_path):
    from vidcurate.transforms.manifest import PassedOver, scan_folder

    for name in ["a.mp4", "song.m4a", "README", "sub/.DS_Store", "old-out/media/v/c.mp4",
                 "old-out/runs/r1.parquet", "running/.active/r2.json", "running/d.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    items = list(scan_folder(str(tmp_path), EXTS))
    taken = [os.path.relpath(i, tmp_path) for i in items if isinstance(i, str)]
    passed = {os.path.relpath(i.path, tmp_path): i.reason for i in items
              if isinstance(i, PassedOver)}
    # Clip files of any vidcurate output (finished, or a run in progress) never come back
    # as new videos, wherever that output sits in the folder.
    assert taken == ["a.mp4"]
    assert passed == {"song.m4a": ".m4a", "README": "no extension", "sub/.DS_Store": "hidden",
                      "old-out/media/v/c.mp4": "output", "old-out/runs/r1.parquet": "output",
                      "running/.active/r2.json": "output", "running/d.mp4": "output"}


def test_symlinks_are_followed_unless_asked_not_to(tmp_path):
    from vidcurate.transforms.manifest import PassedOver, scan_folder

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    (elsewhere / "secret.mp4").write_bytes(b"x")
    (elsewhere / "deep" / "e.mp4").write_bytes(b"x")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "own.mp4").write_bytes(b"x")
    (folder / "link.mp4").symlink_to(elsewhere / "secret.mp4")
    (folder / "linked-dir").symlink_to(elsewhere / "deep")

    def taken(follow):
        return sorted(os.path.relpath(i, folder) for i in scan_folder(
            str(folder), EXTS, follow_symlinks=follow) if isinstance(i, str))

    assert taken(True) == ["link.mp4", "linked-dir/e.mp4", "own.mp4"]
    assert taken(False) == ["own.mp4"]
    passed = sorted((os.path.relpath(i.path, folder), i.reason) for i in scan_folder(
        str(folder), EXTS, follow_symlinks=False) if isinstance(i, PassedOver))
    assert passed == [("link.mp4", "symlink"), ("linked-dir", "symlink")]
