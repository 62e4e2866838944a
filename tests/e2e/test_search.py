"""`vidcurate search` on an output made with the tiny test CLIP, and the report's nearest
neighbours.

The known answer: four scenes that differ in shape, colour and background, and the
zero_shot teacher given the four scenes' captions, all four as candidates of every clip.
The pipeline then scores every caption against every clip (captions.clip_score, its own
batched code path): a search for a caption must give each clip exactly that score, so
the ranking is fixed by the output itself, and each caption's own scene comes first."""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from pathlib import Path

import pytest

from tests.support.helpers import run_cli
from tests.support.shapes_video import scene_video
from tests.support.tiny_clip import caption, render
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import run

SCENES = [("circle", "red", "white", [1.0, 0.5, 0.5, 0.5]),
          ("square", "blue", "black", [0.9, 0.5, 0.5, 0.3]),
          ("triangle", "green", "white", [1.0, 0.5, 0.5, 0.0]),
          ("star", "yellow", "black", [1.0, 0.5, 0.5, 0.6])]
TEXTS = [caption(s, c, b) for s, c, b, _ in SCENES]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, tiny_clip) -> tuple[Path, Path]:
    """(output, the tiny CLIP's checkpoint as the run was given it)."""
    d = tmp_path_factory.mktemp("search")
    (d / "videos").mkdir()
    scene_video(d / "videos" / "scenes.mp4", SCENES)
    vocabulary = d / "captions.txt"
    vocabulary.write_text("\n".join(t.removeprefix("a ") for t in TEXTS))
    # The run gets its own copy of the weights: a test below takes it away.
    weights = d / "weights" / tiny_clip.checkpoint_path.name
    weights.parent.mkdir()
    shutil.copy(tiny_clip.checkpoint_path, weights)
    out = d / "out"
    run(["--input", str(d / "videos"), "--output", str(out), "--clip-model",
         tiny_clip.model_name, "--clip-pretrained", str(weights), "--clip-model-config",
         str(tiny_clip.config_path), "--no-asr", "--no-ocr", "--no-stitch", "--teachers",
         "zero_shot", "--vocabulary", str(vocabulary), "--zero-shot-templates", "a {}",
         "--zero-shot-top-k", str(len(SCENES)), "--clip-media", "none", "--keyframes", "2",
         "--scene-threshold", "15", "--min-clip-s", "1"])
    return out, weights


@pytest.fixture(scope="module")
def scored(scenes) -> dict[str, dict[str, float]]:
    """text -> clip id -> the pipeline's own CLIP score; and each clip's scene text."""
    out, _ = scenes
    con = connect(str(out))
    rows = con.sql("SELECT clip_id, text, clip_score FROM captions").fetchall()
    matrix: dict[str, dict[str, float]] = {}
    for clip_id, text, score in rows:
        matrix.setdefault(text, {})[clip_id] = score
    clips = [c for (c,) in con.sql("SELECT clip_id FROM clips ORDER BY clip_index").fetchall()]
    assert len(clips) == len(SCENES) and set(matrix) == set(TEXTS)
    assert all(set(matrix[t]) == set(clips) for t in TEXTS)  # every text x every clip
    # The case is built so that each caption's own scene is its clear best match.
    for text, clip_id in zip(TEXTS, clips, strict=True):
        others = [s for c, s in matrix[text].items() if c != clip_id]
        assert matrix[text][clip_id] > max(others) + 0.05, (text, matrix[text])
    matrix["_scene"] = dict(zip(TEXTS, clips, strict=True))
    return matrix


def _json(out: Path, *args: str) -> list[dict]:
    proc = run_cli("search", str(out), *args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("index", range(len(SCENES)))
def test_a_caption_ranks_its_own_clip_first_with_the_runs_own_scores(scenes, scored, index):
    out, _ = scenes
    text = TEXTS[index]
    hits = _json(out, text)
    expected = sorted(scored[text].items(), key=lambda cs: (-cs[1], cs[0]))
    assert [h["clip_id"] for h in hits] == [c for c, _ in expected]
    assert hits[0]["clip_id"] == scored["_scene"][text]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit["score"] == pytest.approx(score, abs=1e-4)
        assert Path(hit["keyframe"]).is_file()
        assert hit["end_s"] > hit["start_s"]


def test_k_and_csv(scenes, scored):
    out, _ = scenes
    proc = run_cli("search", str(out), TEXTS[1], "-k", "2", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 2 and rows[0]["clip_id"] == scored["_scene"][TEXTS[1]]
    assert float(rows[0]["score"]) == pytest.approx(scored[TEXTS[1]][rows[0]["clip_id"]],
                                                    abs=1e-4)
    assert {"clip_id", "start_s", "end_s", "score", "caption", "keyframe"} <= set(rows[0])
    table = run_cli("search", str(out), TEXTS[1], "-k", "1")
    assert table.returncode == 0 and scored["_scene"][TEXTS[1]] in table.stdout


def test_search_by_image(scenes, scored, tmp_path):
    """A new picture of a scene (fresh noise, other placement) finds that scene's clip."""
    out, _ = scenes
    for (shape, colour, background, _), text in zip(SCENES, TEXTS, strict=True):
        picture = tmp_path / f"{shape}.png"
        render(shape, colour, background, random.Random(7), 320, 240).save(
            picture)
        hits = _json(out, "--image", str(picture), "-k", "1")
        assert [h["clip_id"] for h in hits] == [scored["_scene"][text]]
    proc = run_cli("search", str(out), "--image", str(out / "runs"))
    assert proc.returncode == 2 and "not an image" in proc.stderr


def test_refuses_without_embeddings_or_model(scenes, tmp_path, videos):
    out, weights = scenes
    plain = tmp_path / "plain"
    run(["--input", str(videos.cuts30), "--output", str(plain), "--no-clip", "--no-asr",
         "--no-ocr", "--teachers", "metadata", "--clip-media", "none", "--keyframes", "1"])
    proc = run_cli("search", str(plain), "a red circle")
    assert proc.returncode == 2 and "no clip embeddings" in proc.stderr
    assert proc.stdout == ""
    # The run's weights gone from where it recorded them: say how to pass them.
    moved = tmp_path / "moved.pt"
    shutil.move(weights, moved)
    try:
        proc = run_cli("search", str(out), TEXTS[0])
        assert proc.returncode == 2 and "--clip-pretrained" in proc.stderr
        hits = _json(out, TEXTS[0], "--clip-pretrained", str(moved), "-k", "1")
        assert len(hits) == 1
        # Other weights (one byte changed): their vectors would rank at random.
        other = tmp_path / "other.pt"
        data = bytearray(moved.read_bytes())
        data[-1] ^= 1
        other.write_bytes(bytes(data))
        proc = run_cli("search", str(out), TEXTS[0], "--clip-pretrained", str(other))
        assert proc.returncode == 2 and "different weights" in proc.stderr
    finally:
        shutil.move(moved, weights)
    assert run_cli("search", str(out)).returncode == 2  # no text and no image


def test_report_links_each_clip_to_its_nearest_neighbours(scenes, tmp_path):
    """The neighbours the report embeds are the top cosines by DuckDB's own arrays."""
    out, _ = scenes
    proc = run_cli("report", str(out), "--out", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    start = page.index('<script type="application/json" id="clip-data">')
    data = json.loads(page[page.index(">", start) + 1:page.index("</script>", start)])
    con = connect(str(out))
    expected = {}
    for (clip_id,) in con.sql("SELECT clip_id FROM clips").fetchall():
        expected[clip_id] = con.sql(
            "SELECT o.clip_id, array_cosine_similarity(c.clip_embedding, o.clip_embedding) "
            "AS s FROM clips c, clips o WHERE c.clip_id = $id AND o.clip_id <> $id "
            "ORDER BY s DESC, o.clip_id LIMIT 5", params={"id": clip_id}).fetchall()
    assert len(data) == len(SCENES)
    for card in data:
        want = expected[card["id"]]
        assert [n["id"] for n in card["neighbours"]] == [c for c, _ in want]
        assert [n["score"] for n in card["neighbours"]] == pytest.approx(
            [s for _, s in want], abs=1e-3)
        assert len(card["neighbours"]) == len(SCENES) - 1  # fewer clips than five
