"""Safe to publish, through the CLI: personal data planted in burned-in text, in speech
synthesized by espeak-ng and in a manifest title is found (the kinds, per clip) and
`publish --redact-text` leaves none of it in any published file; every clip has an
NSFW score."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import run_cli
from tests.support.media import Text, TextShot, ffmpeg, make_text_video
from vidcurate.pipeline.query import connect

# Burned into the picture, per shot, and the kinds each shot's clip must list.
SHOT_TEXT = [
    ("jane.doe@example.com", "+44 20 7946 0958"),
    ("GB82 WEST 1234 5698 7654 32", "4111 1111 1111 1111"),
]
# Spoken by espeak-ng over the first shot (about 9 s of its 14); Whisper tiny.en writes
# both back verbatim (a spoken e-mail address comes back as "name at domain", so it is
# not planted in speech: docs/publishing.md).
SPOKEN = "Call me at 212-555-0187. Our website is www.google.com."
SPOKEN_VALUES = ("212-555-0187", "www.google.com")
TITLE_EMAIL = "press@example.net"
PLANTED = (*[v for shot in SHOT_TEXT for v in shot], *SPOKEN_VALUES, TITLE_EMAIL)
# Each value as the tables may hold it besides verbatim (OCR drops or keeps spaces).
VARIANTS = {v: {v, v.replace(" ", ""), v.replace("-", "")} for v in PLANTED}


def _speech(path: Path) -> Path:
    # Slow and with gaps between words: tiny.en then hears digits and hosts exactly.
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "120", "-g", "4", "-w", str(path),
                    SPOKEN], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory, whisper_tiny_en) -> Path:
    d = tmp_path_factory.mktemp("safety")
    picture = make_text_video(d / "picture.mp4", [
        TextShot("slate", 14, tuple(Text(t, size=52, x="80", y=str(160 + 200 * i))
                                   for i, t in enumerate(SHOT_TEXT[0]))),
        TextShot("mandelbrot", 4, tuple(Text(t, size=52, x="80", y=str(160 + 200 * i),
                                             box=True) for i, t in enumerate(SHOT_TEXT[1]))),
    ])
    video = d / "planted.mp4"
    ffmpeg("-i", str(picture), "-i", str(_speech(d / "speech.wav")), "-map", "0:v",
           "-map", "1:a", "-af", "apad", "-t", "18", "-c:v", "copy", "-c:a", "aac", str(video))
    manifest = d / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uri", "title", "license"])
        writer.writerow([str(video), f"Questions? Write to {TITLE_EMAIL}", "CC-BY-4.0"])
    out = d / "out"
    proc = run_cli("run", "--input", str(manifest), "--output", str(out), "--no-clip",
                   "--asr-model", str(whisper_tiny_en), "--teachers", "metadata,speech,ocr",
                   # one clip per shot: no forced cut inside the 14 s one
                   "--force-cut-after", "60", "--max-cut-len", "60")
    assert proc.returncode == 0, proc.stderr
    return out


def _texts(folder: Path) -> str:
    """Every string in the folder's Parquet files and its README, as one text."""
    import pyarrow.parquet as pq

    found = []
    for path in sorted(folder.rglob("*.parquet")):
        found.append(str(pq.read_table(path).to_pylist()))
    readme = folder / "README.md"
    return "\n".join(found) + (readme.read_text() if readme.exists() else "")


def test_the_planted_values_are_found_per_clip_and_scored(planted):
    con = connect(str(planted))
    rows = con.sql("SELECT clip_index, nsfw_score, personal_data, quality_flags, transcript, "
                   "ocr_text FROM clips ORDER BY clip_index").fetchall()
    assert len(rows) == 2
    for _, nsfw, _, flags, _, _ in rows:
        assert nsfw is not None and 0 <= nsfw < 0.8  # text on plain pictures: safe
        assert "personal_data" in flags and "nsfw" not in flags
    # Known answers: OCR read the burned-in values, Whisper the spoken ones.
    assert rows[0][5] is not None and "jane.doe@example.com" in rows[0][5]
    assert all(v in rows[0][4] for v in SPOKEN_VALUES), rows[0][4]
    # The title's address reaches every clip through the metadata caption.
    assert rows[0][2] == ["email", "phone", "url"]
    assert rows[1][2] == ["email", "payment_card", "iban"]
    # Kinds only: the values are nowhere in the run's log or the errors table.
    assert not con.sql("SELECT * FROM errors").fetchall()
    text = _texts(planted)
    assert all(any(v in text for v in VARIANTS[value]) for value in PLANTED)


def test_publish_redact_text_removes_every_planted_value(planted, tmp_path):
    plain = tmp_path / "plain"
    assert run_cli("publish", str(planted), str(plain), "--media", "none").returncode == 0
    # Published as found, the values are there (so the check below can fail).
    assert all(any(v in _texts(plain) for v in VARIANTS[value]) for value in PLANTED)

    dest = tmp_path / "redacted"
    proc = run_cli("publish", str(planted), str(dest), "--media", "none", "--redact-text")
    assert proc.returncode == 0, proc.stderr
    published = _texts(dest)
    left = [v for value in PLANTED for v in VARIANTS[value] if v in published]
    assert left == []
    assert all(value not in proc.stdout + proc.stderr for value in PLANTED)
    con = connect(str(dest))
    transcript, words = con.sql("SELECT transcript, transcript_words FROM clips "
                                "WHERE clip_index = 0").fetchall()[0]
    assert "[PHONE]" in transcript and "[URL]" in transcript
    assert any(w["word"].strip() == "[PHONE]" for w in words)
    assert con.sql("SELECT count(*) FROM captions WHERE text LIKE '%[EMAIL]%'"
                   ).fetchall()[0][0] >= 1
    assert "[EMAIL]" in con.sql("SELECT title FROM videos").fetchall()[0][0]
    card = (dest / "README.md").read_text()
    assert "`--redact-text`:" in card and "values masked" in card
    assert "payment_card in 1 clips" in card and "No `--redact-text`" not in card


def test_the_report_shows_kinds_and_scores_never_the_values(planted, tmp_path):
    from vidcurate.pipeline.report import write_report

    page = Path(write_report(str(planted), str(tmp_path / "report"))).read_text()
    assert 'id="max-nsfw"' in page and 'id="personal"' in page
    assert '"personal": ["email", "payment_card", "iban"]' in page
    assert '"nsfw": ' in page and '"nsfw": null' not in page
    left = [v for value in PLANTED for v in VARIANTS[value] if v in page]
    assert left == []
