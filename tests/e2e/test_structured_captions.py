"""The structured caption end to end: every clip of a default run has caption_struct and
a `structured` candidate; with a VLM that contradicts the measurements the conflicts are
counted per clip and in the run's counts; export and publish carry the columns."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from tests.support.chatserver import ChatServer
from tests.support.helpers import run_cli
from vidcurate.pipeline.cli import main
from vidcurate.pipeline.query import connect

FAST = ["--no-clip", "--no-asr", "--no-ocr", "--clip-media", "none", "--keyframes", "1"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, videos) -> tuple[Path, Path]:
    """(a default-teachers run, a run whose VLM contradicts the measurements)."""
    from vidcurate.pipeline.run import run

    d = tmp_path_factory.mktemp("structured")
    (d / "in").mkdir()
    (d / "in" / "cuts.mp4").symlink_to(videos.cuts)
    plain, vlm = d / "plain", d / "vlm"
    run(["--input", str(d / "in"), "--output", str(plain), *FAST])
    manifest = d / "m.csv"  # publish wants a licence
    manifest.write_text(f"uri,title,license\n{videos.cuts},Five test pattern shots,CC0\n")
    with ChatServer() as server:
        run(["--input", str(manifest), "--output", str(vlm), *FAST, "--vlm-url", server.url,
             "--vlm-model", "struct-contradict", "--vlm-timeout", "20"])
    return plain, vlm


def test_every_clip_gets_a_composed_struct_and_a_structured_candidate(outputs):
    con = connect(str(outputs[0]))
    rows = con.sql("""
        SELECT c.clip_id, c.caption_struct, c.caption_conflicts, k.text, k.rank
        FROM clips c JOIN captions k ON k.clip_id = c.clip_id AND k.teacher = 'structured'
        ORDER BY c.clip_index""").fetchall()
    assert len(rows) == con.sql("SELECT count(*) FROM clips").fetchall()[0][0] >= 4
    for _, struct, conflicts, text, _ in rows:
        assert struct["short"] == text and conflicts == 0 and struct["conflicts"] == []
        assert struct["motion_level"] and struct["lighting"]
        assert struct["sources"]["short"].startswith("structured-rules:1")
        assert struct["sources"]["on_screen_text"] == "ocr_lines (OCR did not run)"
        assert struct["setting"] is None and struct["sources"]["setting"] == \
            "vlm (not configured)"
    # No title and no other describing teacher here: the text is the measurements alone.
    assert all(r[3].startswith("A clip (") for r in rows)
    # It is one candidate among the others; without CLIP, the priority puts it last.
    assert con.sql("SELECT count(*) FROM clips WHERE best_teacher = 'structured'"
                   ).fetchall()[0][0] == len(rows)  # the only teacher with text here


def test_vlm_contradictions_are_counted_per_clip_and_in_the_runs_counts(outputs):
    con = connect(str(outputs[1]))
    rows = con.sql("SELECT caption_struct, caption_conflicts FROM clips").fetchall()
    assert rows and all(s["setting"] == "a test studio" for s, _ in rows)
    assert all(n == len(s["conflicts"]) for s, n in rows)
    # Where camera motion was measured, the server's camera claim lost to it.
    measured = [(s, n) for s, n in rows if s["camera"] is not None]
    assert all(n >= 1 and s["sources"]["camera"] == "camera_motion" for s, n in measured)
    (counts,), = con.sql("SELECT counts FROM runs").fetchall()
    counted = {c["name"]: c["value"] for c in counts if c["stage"] == "captioning"}
    assert counted.get("caption_conflicts", 0) == sum(n for _, n in rows)


def test_export_and_publish_carry_the_struct(outputs, tmp_path):
    out = outputs[1]
    assert main(["export", str(out), str(tmp_path / "wds"), "--no-keyframes"]) == 0
    con = connect(str(out))
    expected = {c: (s, n) for c, s, n in con.sql(
        "SELECT clip_id, caption_struct, caption_conflicts FROM clips").fetchall()}
    seen = {}
    for shard in sorted((tmp_path / "wds").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(member).read())
                    seen[meta["clip_id"]] = (meta["caption_struct"], meta["caption_conflicts"])
    assert seen == expected
    proc = run_cli("publish", str(out), str(tmp_path / "pub"), "--media", "none")
    assert proc.returncode == 0, proc.stderr
    published = connect(str(tmp_path / "pub")).sql(
        "SELECT clip_id, caption_struct, caption_conflicts FROM clips").fetchall()
    assert {c: (s, n) for c, s, n in published} == expected
