"""`vidcurate publish` and licences: the card lists each licence with its videos and
clips; clips whose video states no licence are refused (exit 2, naming the count and
the flag) unless --allow-unknown-license, and then listed as unknown."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.support.helpers import run_cli
from vidcurate.transforms.sinks import write_rows

NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
# video -> (licence, clips)
VIDEOS = {"a": ("CC BY 4.0", 3), "b": (None, 2), "c": ("  ", 1), "d": ("CC0", 1)}


@pytest.fixture
def out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    write_rows(str(out), "runs", "r1", [dict(run_id="r1", status="complete", started_at=NOW,
                                             finished_at=NOW, options_json="{}",
                                             versions_json="{}")])
    write_rows(str(out), "videos", "r1", [dict(
        video_id=v, source_uri=f"file:///{v}.mp4", status="ok", duration_s=60.0, run_id="r1",
        license=licence) for v, (licence, _) in VIDEOS.items()])
    write_rows(str(out), "clips", "r1", [dict(
        clip_id=f"{v}{i}", video_id=v, source_uri=f"file:///{v}.mp4", clip_index=i,
        start_s=float(i), end_s=i + 1.0, duration_s=1.0, run_id="r1", best_caption="x")
        for v, (_, n) in VIDEOS.items() for i in range(n)])
    return out


def test_clips_without_a_licence_are_refused_unless_allowed(out, tmp_path):
    dest = tmp_path / "dest"
    proc = run_cli("publish", str(out), str(dest), "--media", "none")
    assert proc.returncode == 2
    assert "3 of 7 clips" in proc.stderr and "--allow-unknown-license" in proc.stderr
    assert not dest.exists()  # refused before DEST was made

    proc = run_cli("publish", str(out), str(dest), "--media", "none",
                   "--allow-unknown-license")
    assert proc.returncode == 0, proc.stderr
    assert "3 published clips come from videos without a licence" in proc.stderr
    card = (dest / "README.md").read_text()
    assert "| licence | identifier | videos | clips |" in card
    assert "| CC BY 4.0 | cc-by-4.0 | 1 | 3 |" in card
    assert "| CC0 | cc0-1.0 | 1 | 1 |" in card
    assert "| (none given: published with --allow-unknown-license) | unknown | 2 | 3 |" in card


def test_a_curated_view_without_the_unlicensed_clips_publishes(out, tmp_path):
    """Only the published view's clips count: a view that leaves them out needs no flag."""
    profile = tmp_path / "licensed.toml"
    profile.write_text('name = "licensed"\ndescription = "licensed only"\nsource = "test"\n'
                       '[[rules]]\nname = "licensed"\nkeep = "video_id IN (\'a\', \'d\')"\n'
                       'if_null = "drop"\n')
    assert run_cli("curate", str(out), "--profile", str(profile)).returncode == 0
    proc = run_cli("publish", str(out), str(tmp_path / "dest"), "--media", "none",
                   "--view", "clips_curated")
    assert proc.returncode == 0, proc.stderr
    assert "licence" not in proc.stderr
