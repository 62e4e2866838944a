"""Paths named in an output's tables: export, report and search follow them only to
regular files inside the output, and say how many they refused (issue 28.3); export
writes into a new or empty DEST and prints the exact line that reads its shards (29.2,
29.14); a copied output's report links to the copy's own clip files (29.15).

The outputs here are written by hand with the tables' schemas, the way a run lays them
out (absolute paths under the run's --output, recorded in runs.output), so that a
hostile one costs no pipeline run."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vidcurate.pipeline.cli import main
from vidcurate.schemas.tables import TABLES, table_schema

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
SECRET = b"canary-secret-9d41"


def _jpeg(colour: tuple[int, int, int], extra: bytes = b"") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), colour).save(buf, "JPEG")
    return buf.getvalue() + extra  # bytes after the JPEG's end do not stop a decoder


def _write(out: Path, table: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    (out / table).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema or TABLES[table]),
                   out / table / "part-0.parquet")


def make_output(out: Path, clips: int = 3, hostile: dict[int, tuple[str, list[str]]]
                | None = None) -> dict[str, bytes]:
    """An output of one video with `clips` clips, each with its clip file and one keyframe
    under media/ and keyframes/ (absolute paths, as a run writes them); `hostile` replaces
    clip i's (media_uri, keyframe_uris). Returns clip id -> its clip file's bytes."""
    out.mkdir(parents=True)
    _write(out, "runs", [dict(run_id="r1", status="complete", started_at=NOW,
                              finished_at=NOW, output=str(out), options_json="{}",
                              versions_json="{}")])
    _write(out, "videos", [dict(video_id="v0", source_uri="file:///v0.mp4", status="ok",
                                duration_s=10.0, run_id="r1")])
    rows, media = [], {}
    for i in range(clips):
        clip_id = f"v0-{i:04d}"
        clip = out / "media" / "v0" / f"{i:04d}.mp4"
        frame = out / "keyframes" / "v0" / f"{i:04d}_0.jpg"
        clip.parent.mkdir(parents=True, exist_ok=True)
        frame.parent.mkdir(parents=True, exist_ok=True)
        clip.write_bytes(f"clip file {i}".encode())
        frame.write_bytes(_jpeg((40 * i, 90, 200)))
        uri, frames = str(clip), [str(frame)]
        if hostile and i in hostile:
            uri, frames = hostile[i]
        else:
            media[clip_id] = clip.read_bytes()
        rows.append(dict(clip_id=clip_id, video_id="v0", source_uri="file:///v0.mp4",
                         clip_index=i, start_s=float(i), end_s=i + 1.0, duration_s=1.0,
                         media_uri=uri, keyframe_uris=frames, best_caption=f"caption {i}",
                         clip_embedding=[1.0, float(i), 0.0, 0.0], clip_model="m",
                         clip_score=1.0 - i / 10, run_id="r1"))
    _write(out, "clips", rows, table_schema("clips", 4))
    return media


def _members(dest: Path) -> dict[str, bytes]:
    found = {}
    for shard in sorted(dest.glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                found[member.name] = tar.extractfile(member).read()
    return found


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, dict[str, bytes], Path]:
    """An output whose clips 1.. name files outside it in every way the issue lists: an
    absolute path, a ../ path, a link inside the output to a file outside, a device, a
    FIFO inside the output; the secret is a JPEG, so a thumbnail of it would succeed."""
    secret = tmp_path / "home" / "id_rsa.jpg"
    secret.parent.mkdir()
    secret.write_bytes(_jpeg((255, 0, 0), SECRET))
    out = tmp_path / "out"
    link = out / "media" / "evil" / "link.mp4"
    fifo = out / "media" / "fifo.mp4"
    climb = f"{out}/media/../../home/id_rsa.jpg"
    media = make_output(out, clips=7, hostile={
        1: (str(secret), [str(secret)]),  # the media_uri='/home/me/.ssh/id_rsa'
        2: (climb, [climb]),
        3: (str(link), [str(link)]),
        4: ("/dev/zero", ["/dev/zero"]),  # reads until memory runs out
        5: (str(fifo), [str(fifo)]),  # opening it would block
        6: ("https://example.invalid/x.mp4", ["https://example.invalid/x.jpg"]),
    })
    link.parent.mkdir()
    os.symlink(secret, link)
    os.mkfifo(fifo)
    return out, media, secret


@pytest.mark.timeout(120)  # before the fix, /dev/zero reads until memory runs out
def test_export_reads_only_regular_files_inside_the_output(hostile, tmp_path, capsys):
    out, media, _ = hostile
    dest = tmp_path / "wds"
    assert main(["export", str(out), str(dest)]) == 0
    printed = capsys.readouterr()
    members = _members(dest)
    assert not any(SECRET in data for data in members.values())
    assert {name.rsplit(".", 1)[0] for name in members} == set(media) == {"v0-0000"}
    assert members["v0-0000.mp4"] == media["v0-0000"]
    # Never silently: the summary counts the skipped clips and says why.
    assert "skipped 6 clips whose files were refused" in printed.err
    assert "outside the output folder" in printed.err
    assert "not a regular file" in printed.err
    assert "... and 1 more" in printed.err  # the first few by name, all counted


def test_export_refuses_a_clip_file_over_the_bound(tmp_path, monkeypatch, capsys):
    from vidcurate.pipeline import commands

    out = tmp_path / "out"
    make_output(out, clips=2)
    (out / "media" / "v0" / "0001.mp4").write_bytes(b"x" * 4096)
    monkeypatch.setattr(commands, "MAX_MEDIA_BYTES", 1024)
    assert main(["export", str(out), str(tmp_path / "wds")]) == 0
    assert "larger than 1024 bytes" in capsys.readouterr().err
    assert {n.rsplit(".", 1)[0] for n in _members(tmp_path / "wds")} == {"v0-0000"}


def test_export_of_a_copied_output_reads_the_copys_files(tmp_path):
    """The copy's tables name the original's files (absolute paths); they are read from
    the copy, and the original is not needed."""
    media = make_output(tmp_path / "orig", clips=2)
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    for path in (tmp_path / "orig" / "media").rglob("*.mp4"):
        path.write_bytes(b"the original, changed since")
    assert main(["export", str(tmp_path / "copy"), str(tmp_path / "wds")]) == 0
    members = _members(tmp_path / "wds")
    assert {k: members[f"{k}.mp4"] for k in media} == media


def test_export_refuses_a_dest_with_files_and_an_export_of_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    make_output(out, clips=4)
    dest = tmp_path / "wds"
    assert main(["export", str(out), str(dest), "--shard-clips", "1"]) == 0
    four = sorted(p.name for p in dest.iterdir())
    assert len(four) == 4
    capsys.readouterr()
    # A second export into the same DEST would leave shards 1..3 beside the new one.
    assert main(["export", str(out), str(dest)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in dest.iterdir()) == four
    # Nothing to export (no curate pass: clips_curated is empty) is an error, DEST untouched.
    empty = tmp_path / "empty"
    assert main(["export", str(out), str(empty), "--view", "clips_curated"]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert not empty.exists()
    # Every clip refused: an error too, and DEST is left as it was (here: not made).
    bad = tmp_path / "bad"
    make_output(bad, clips=1, hostile={0: ("/etc/hostname", [])})
    assert main(["export", str(bad), str(tmp_path / "wds-bad")]) == 2
    assert "nothing exported" in capsys.readouterr().err
    assert not (tmp_path / "wds-bad").exists()


@pytest.mark.parametrize("clips, shards", [(1, 1), (3, 3)])
def test_export_prints_the_line_that_reads_exactly_its_shards(tmp_path, capsys, clips,
                                                              shards):
    import webdataset as wds

    out = tmp_path / "out"
    media = make_output(out, clips=clips)
    dest = tmp_path / "wds"
    assert main(["export", str(out), str(dest), "--shard-clips", "1"]) == 0
    printed = capsys.readouterr().out
    noun = "shard" if shards == 1 else "shards"
    assert f"into {shards} {noun} in" in printed
    line = re.search(r"read it: (wds\.WebDataset\(.*\))", printed).group(1)
    pattern = eval(line.removeprefix("wds.WebDataset"))  # the printed literal
    keys = [s["__key__"] for s in wds.WebDataset(pattern, shardshuffle=False)]
    assert keys == sorted(media)


def _gallery(index: Path) -> list[dict]:
    page = index.read_text()
    data = re.search(r'<script type="application/json" id="clip-data">(.*?)</script>', page,
                     re.S).group(1)
    return json.loads(data)


def test_report_of_a_copied_output_links_within_the_copy(tmp_path):
    from vidcurate.pipeline.report import write_report

    make_output(tmp_path / "orig", clips=2)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "orig", copy)
    index = Path(write_report(str(copy)))
    shutil.rmtree(tmp_path / "orig")  # the copy stands alone
    cards = _gallery(index)
    assert len(cards) == 2
    for card in cards:
        target = (index.parent / card["media"]).resolve()
        assert target.is_file() and target.is_relative_to(copy.resolve())
        assert not os.path.isabs(card["media"])
        assert card["frames"] and all((index.parent / f).is_file() for f in card["frames"])


def test_report_shows_only_files_inside_the_output(hostile, tmp_path, capsys):
    out, media, secret = hostile
    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    err = capsys.readouterr().err
    cards = {c["id"]: c for c in _gallery(report / "index.html")}
    assert len(cards) == 7
    for clip_id, card in cards.items():
        if clip_id in media:
            assert card["media"] and card["frames"]
        else:
            assert card["media"] is None and card["frames"] == []
    # No thumbnail of the secret image, no link to it.
    red = [p for p in (report / "thumbs").iterdir()
           if np.asarray(Image.open(p))[..., 0].mean() > 200]
    assert red == []
    assert "12 paths in the tables were refused" in err
    assert "12 keyframe or clip paths in the tables were refused" in \
        (report / "index.html").read_text()


def test_search_results_name_only_files_inside_the_output(hostile, monkeypatch, capsys):
    """The model is stubbed: the results' paths are what is checked here."""
    from types import SimpleNamespace

    from vidcurate.pipeline import search as search_module

    out, media, secret = hostile
    monkeypatch.setattr(search_module, "query_model",
                        lambda *a, **k: SimpleNamespace(model_id="m"))
    monkeypatch.setattr(search_module, "shared_clip", lambda cfg: None)
    monkeypatch.setattr(search_module, "embed_texts",
                        lambda clip, texts: [np.array([1.0, 0.0, 0.0, 0.0])])
    assert main(["search", str(out), "anything", "--format", "json"]) == 0
    printed = capsys.readouterr()
    hits = [json.loads(line) for line in printed.out.splitlines()]
    assert len(hits) == 7
    for hit in hits:
        if hit["clip_id"] in media:
            assert Path(hit["media_uri"]).read_bytes() == media[hit["clip_id"]]
            assert hit["keyframe"]
        else:
            assert hit["media_uri"] is None and hit["keyframe"] is None
    assert str(secret) not in printed.out and "/dev/zero" not in printed.out
    assert "12 paths in the tables were refused" in printed.err
