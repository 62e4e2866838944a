"""Judging through the CLI: subtitle band, aesthetic score (an untrained tiny CLIP and a
random head, both in their real formats) and flags reach the clips table; a head for
another CLIP stops the run before any work."""

from __future__ import annotations

from tests.support.helpers import run_cli
from tests.support.judging import make_subtitled_video, random_tiny_clip, write_aesthetic_head
from vidcurate.pipeline.query import connect


def test_judging_columns_reach_the_clips_table(tmp_path):
    # Untrained: training the shared tiny CLIP fixture costs minutes, and a score needs
    # embeddings of the head's size, not good ones.
    tiny_clip = random_tiny_clip(tmp_path / "clip")
    clip_args = ["--clip-model", tiny_clip.model_name, "--clip-pretrained",
                 str(tiny_clip.checkpoint_path), "--clip-model-config",
                 str(tiny_clip.config_path)]
    video = make_subtitled_video(tmp_path / "subs.mp4", size=(640, 360))
    head = write_aesthetic_head(tmp_path / "head.pth", tiny_clip.embed_dim)
    out = tmp_path / "out"
    # --no-stitch: an untrained CLIP's frame distances would drop the one shot.
    common = ["--input", str(video), "--no-asr", "--teachers", "metadata", "--no-stitch",
              "--clip-media", "none", *clip_args]
    proc = run_cli("run", *common, "--output", str(out), "--aesthetic-model", str(head),
                   "--flag-low-resolution-px", "480")
    assert proc.returncode == 0, proc.stderr
    con = connect(str(out))
    rows = con.sql("SELECT subtitle_box, aesthetic_score, quality_flags FROM clips").fetchall()
    assert len(rows) == 1
    box, score, flags = rows[0]
    assert box is not None and box[0] == 0 and box[2] == 640 and box[1] > 360 * 0.6
    assert score is not None
    # The option moved low_resolution's threshold above this 360-px-tall picture.
    assert "subtitles" in flags and "low_resolution" in flags
    assert con.sql("SELECT count(*) FROM errors WHERE stage = 'judge'").fetchall() == [(0,)]

    # A head trained for 768-d embeddings cannot read the tiny CLIP's: refused up front.
    wrong = write_aesthetic_head(tmp_path / "l14.pth", 768)
    refused = run_cli("run", *common, "--output", str(tmp_path / "never"),
                      "--aesthetic-model", str(wrong))
    assert refused.returncode == 2
    assert "768-d" in refused.stderr and f"{tiny_clip.embed_dim}-d" in refused.stderr
    assert not (tmp_path / "never" / "clips").exists()
