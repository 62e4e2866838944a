"""The HTML report, opened from disk in headless Chromium (Debian's chromium and
chromium-driver): it renders without console errors, the gallery shows every clip and
the filters work, and markup in the data (titles, captions, ...) shows as text. A
screenshot goes to build/test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helpers import box_rows, execute_notebook, headless_chromium, run_cli, shown
from vidcurate.pipeline.query import connect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def report(captioned_output, tmp_path_factory) -> tuple[Path, Path]:
    out, _ = captioned_output
    folder = tmp_path_factory.mktemp("report")
    proc = run_cli("report", str(out), "--out", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert f"report: {folder / 'index.html'}" in proc.stdout
    return out, folder / "index.html"


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("1400,2200", "--allow-file-access-from-files")
    yield driver
    driver.quit()


def _visible(driver) -> int:
    return sum(card.is_displayed() for card in driver.find_elements("css selector",
                                                                    ".clip-card"))


def test_report_renders_offline_with_plots_and_gallery(report, browser):
    out, index = report
    con = connect(str(out))
    clips = con.sql("SELECT count(*) FROM clips").fetchall()[0][0]
    browser.get(index.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    assert browser.find_element("css selector", "h1").text == "vidcurate report"
    # Plotly drew the plots from the inlined library (nothing fetched from a network);
    # a plot without data says so instead (this run had no errors).
    # Seven plots, and the curation funnel once a curate pass exists (the demo curates).
    curated = con.sql("SELECT count(*) FROM passes WHERE kind = 'curate'").fetchall()[0][0]
    plots = 7 + (curated > 0)
    assert len(browser.find_elements("css selector", ".plot")) == plots
    errors_rows = con.sql("SELECT count(*) FROM errors").fetchall()[0][0]
    cameras = con.sql("SELECT count(camera_motion) FROM clips").fetchall()[0][0]
    assert cameras == clips  # every clip of the run has its camera motion
    assert len(browser.find_elements("css selector", ".plot .js-plotly-plot")) == \
        plots - (errors_rows == 0)
    assert len(browser.find_elements("css selector", ".clip-card")) == clips
    assert _visible(browser) == clips
    assert browser.find_element("id", "shown").text == str(clips)
    images = browser.find_elements("css selector", ".clip-card img")
    assert images and all(browser.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "report.png"))


def test_report_filters_by_teacher_and_score(report, browser):
    from selenium.webdriver.support.ui import Select

    out, index = report
    con = connect(str(out))
    browser.get(index.as_uri())
    teacher, n = con.sql("SELECT best_teacher, count(*) FROM clips GROUP BY 1 "
                         "ORDER BY 2 DESC, 1 LIMIT 1").fetchall()[0]
    Select(browser.find_element("id", "teacher")).select_by_value(teacher)
    assert _visible(browser) == n
    assert browser.find_element("id", "shown").text == str(n)
    Select(browser.find_element("id", "teacher")).select_by_value("")
    median = con.sql("SELECT quantile_disc(clip_score, 0.5) FROM clips").fetchall()[0][0]
    typed = f"{median:.4f}"  # the page holds scores rounded to 4 decimals
    above = con.sql(f"SELECT count(*) FROM clips WHERE round(clip_score, 4) >= {typed}"
                    ).fetchall()[0][0]
    browser.find_element("id", "min-score").send_keys(typed)
    assert _visible(browser) == above
    assert 0 < above < con.sql("SELECT count(*) FROM clips").fetchall()[0][0]
    browser.save_screenshot(str(ARTIFACTS / "report-filtered.png"))
    browser.find_element("id", "min-score").clear()
    # Camera motion is a facet: the most common label shows its clips only.
    camera, n = con.sql("SELECT camera_motion, count(*) FROM clips GROUP BY 1 "
                        "ORDER BY 2 DESC, 1 LIMIT 1").fetchall()[0]
    Select(browser.find_element("id", "camera")).select_by_value(camera)
    assert _visible(browser) == n
    assert all(f"camera {camera}" in card.text for card in browser.find_elements(
        "css selector", ".clip-card") if card.is_displayed())


def test_report_cards_link_to_their_nearest_neighbours(report, browser):
    """Each card links to the five (or, with fewer clips, all other) clips nearest by
    CLIP embedding, and a link brings that clip's card up."""
    out, index = report
    clips = connect(str(out)).sql("SELECT count(*) FROM clips").fetchall()[0][0]
    browser.get(index.as_uri())
    cards = browser.find_elements("css selector", ".clip-card")
    ids = {card.get_attribute("id") for card in cards}
    assert len(ids) == clips
    for card in cards:
        links = card.find_elements("css selector", ".similar a")
        assert len(links) == min(5, clips - 1)
        targets = [link.get_attribute("href").rsplit("#", 1)[1] for link in links]
        assert set(targets) <= ids and card.get_attribute("id") not in targets
    link = cards[0].find_elements("css selector", ".similar a")[0]
    target = link.get_attribute("href").rsplit("#", 1)[1]
    link.click()
    assert browser.execute_script("return location.hash") == f"#{target}"
    assert browser.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.top < window.innerHeight && r.bottom > 0", target)


def test_notebook_runs_on_an_output_with_embeddings(captioned_output):
    out = captioned_output[0]
    printed = execute_notebook(out)
    clip_ids = [r[0] for r in connect(str(out)).sql(
        "SELECT clip_id FROM clips WHERE clip_embedding IS NOT NULL").fetchall()]
    assert len(clip_ids) > 1  # the fixture's run has CLIP embeddings
    # The nearest-neighbours cell ranks pairs of this output's clips by cosine.
    [cell] = [text for text in printed if "neighbour" in text]
    rows = box_rows(cell)
    assert rows
    for clip, neighbour, cosine in rows:
        assert any(shown(c, clip) for c in clip_ids) and any(shown(c, neighbour)
                                                             for c in clip_ids)
        assert -1.0 <= float(cosine) <= 1.0


# Text that breaks pages which paste data into HTML or a <script> element, or that an
# escaper could double-escape or drop; every data field of the hostile output gets one.
HOSTILE = ["</script><script>window.pwned = 1</script>", "<!--<script>",
           "<img src=x onerror=\"window.pwned = 2\">", "&amp; &lt;b&gt; & <u>underlined</u>",
           "line\u2028separator\u2029paragraph", "'quote\" \\back`slash ${x}"]


def _hostile(i: int) -> str:
    return f"{HOSTILE[i % len(HOSTILE)]} #{i}"


def _write_hostile_output(out: Path) -> list[dict]:
    """An output written with the row builders, hostile text in every field the report
    shows: titles, descriptions, uris, OCR, transcripts, captions, teacher names, run
    notes and options, languages and errors. Returns what each clip card must show."""
    import datetime as dt
    import json

    from PIL import Image

    from vidcurate.schemas.records import (
        CaptionCandidate,
        CaptionRow,
        ClipRecord,
        ErrorRecord,
        Source,
        Span,
        VideoRow,
    )
    from vidcurate.schemas.tables import SCHEMA_VERSION
    from vidcurate.transforms.sinks import write_rows

    run_id = "r1"
    frame = out / "frames" / "f.jpg"
    frame.parent.mkdir(parents=True)
    Image.new("RGB", (64, 36), (200, 60, 60)).save(frame)
    videos, clips, captions, expected = [], [], [], []
    for i in range(len(HOSTILE)):
        # The last video has no title: the card shows its uri instead.
        title = _hostile(i) if i < len(HOSTILE) - 1 else None
        uri = f"https://h.example/{i}/{HOSTILE[i]}.mp4"
        source = Source(uri=uri, video_id=f"v{i}", title=title, description=_hostile(i + 1))
        videos.append(VideoRow(source, "ok", None, run_id, clip_count=1).to_row()
                      | {"language": _hostile(i + 2)})
        teachers = [_hostile(i + 3), _hostile(i + 4)]
        texts = [_hostile(i + 5), _hostile(i + 6)]
        score = round(0.9 - i / 10, 4)  # the gallery shows clips by score, highest first
        clips.append(ClipRecord(
            f"c{i}", f"v{i}", uri, 0, Span(0, 50, 0.0, 2.0), "h", "none", None, None, None,
            (str(frame),), (0.0,), run_id, ocr_text=_hostile(i + 7),
            transcript=_hostile(i + 8), best_caption=texts[0], best_teacher=teachers[0],
            clip_score=score, selection_method="clip").to_row())
        for rank, (teacher, text) in enumerate(zip(teachers, texts, strict=True)):
            captions.append(CaptionRow(
                CaptionCandidate(f"c{i}", f"v{i}", teacher, None, None, text),
                score - rank / 100, None, rank, rank == 0, "clip", run_id).to_row())
        expected.append({
            "caption": texts[0],
            "meta": f"{teachers[0]} · CLIP {score:.3f} · clip",
            "title": f"{title or clips[-1]['source_uri']} · 0–2 s",
            "candidates": [f"[{t} {score - r / 100:.3f}] {x}"
                           for r, (t, x) in enumerate(zip(teachers, texts, strict=True))],
            "details": [f"Speech: {_hostile(i + 8)}", f"On-screen text: {_hostile(i + 7)}"],
            "teacher": teachers[0]})
    now = dt.datetime.now(dt.UTC)
    write_rows(str(out), "videos", "v", videos)
    write_rows(str(out), "clips", "c", clips)
    write_rows(str(out), "captions", "k", captions)
    write_rows(str(out), "errors", "e", [ErrorRecord(
        _hostile(i), f"https://h.example/{i}", _hostile(i + 1), _hostile(i + 2), run_id,
        video_id=f"v{i}").to_row() for i in range(len(HOSTILE))])
    config = {"asr": {"enabled": True, "model": _hostile(0)},
              "teachers": {"names": [_hostile(1), _hostile(2)]}}
    write_rows(str(out), "runs", run_id, [{
        "run_id": run_id, "status": "complete", "started_at": now, "finished_at": now,
        "input": _hostile(3), "output": str(out), "runner": _hostile(4),
        "split_params_hash": "h", "outputs_hash": "o", "options_json": json.dumps(
            {"config": config}), "versions_json": json.dumps({"vidcurate": _hostile(5)}),
        "counts": [], "schema_version": SCHEMA_VERSION, "clip_model": _hostile(6),
        "notes": [_hostile(7), _hostile(8)]}])
    return expected


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple[Path, list[dict]]:
    from vidcurate.pipeline.report import write_report

    out = tmp_path_factory.mktemp("hostile") / "out"
    expected = _write_hostile_output(out)
    return Path(write_report(str(out), str(out.parent / "report"))), expected


def _text(driver, element) -> str:
    return driver.execute_script("return arguments[0].textContent", element)


def test_report_shows_hostile_text_as_text(hostile_report, browser):
    index, expected = hostile_report
    browser.get(index.as_uri())
    # Nothing in the data ran or became markup: no script, no image, no broken JSON.
    assert browser.execute_script("return window.pwned === undefined")
    assert browser.find_elements("css selector", "img[src='x'], u") == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    cards = browser.find_elements("css selector", ".clip-card")
    assert len(cards) == len(expected)
    assert browser.find_element("id", "shown").text == str(len(expected))
    for card, want in zip(cards, expected, strict=True):
        caption, meta, title = (_text(browser, e) for e in card.find_elements(
            "css selector", ".caption, .meta"))
        assert (caption, meta, title) == (want["caption"], want["meta"], want["title"])
        assert [_text(browser, li) for li in card.find_elements("css selector", "li")] == \
            want["candidates"]
        assert [_text(browser, p) for p in card.find_elements("css selector", "details p")] \
            == want["details"]
        assert all(browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i)
            for i in card.find_elements("css selector", "img"))
    # The teacher filter lists hostile names exactly (set from script: Selenium's Select
    # cannot quote a value holding both quote characters).
    teacher = expected[2]["teacher"]
    assert browser.execute_script(
        "const s = document.getElementById('teacher'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('change')); return s.value", teacher) == teacher
    assert _visible(browser) == sum(w["teacher"] == teacher for w in expected) > 0
    # The dataset card, made in Python, shows the runs row and the tables as text too.
    card_text = _text(browser, browser.find_element("tag name", "ul"))
    for text in (_hostile(0), _hostile(1), _hostile(2), _hostile(4), _hostile(6),
                 f"{_hostile(7)}; {_hostile(8)}"):
        assert text in card_text, text
    cells = [_text(browser, td) for td in browser.find_elements("css selector", "td")]
    assert {_hostile(i + 2) for i in range(len(HOSTILE))} <= set(cells)
