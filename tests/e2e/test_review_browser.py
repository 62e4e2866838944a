"""`vidcurate review` in headless Chromium (Debian's chromium and chromium-driver), as a
person uses it: labels from the keyboard that are still there after a reload, two
windows labelling at once without losing a label, the filters, and the clip's detail.
A screenshot goes to build/test-artifacts/review.png."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.helpers import headless_chromium
from tests.support.review import review_output, running
from vidcurate.pipeline.query import connect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"
CLIPS = 12


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review-browser")
    out = root / "out"
    signals = {}
    for i in range(CLIPS):
        signals[f"clip{i:02d}"] = {
            "motion_score": i / 1000, "brightness": 0.2 + i / 40,
            "quality_flags": ["static"] if i < 5 else [],
            "ocr_text": "BREAKING NEWS ticker" if i == 7 else None,
            "best_caption": f"clip number {i}"}
    review_output(out, signals, media=root / "media")
    return out


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("1400,1000", "--autoplay-policy=no-user-gesture-required")
    yield driver
    driver.quit()


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait(driver, lambda: driver.execute_script("return document.body.dataset.ready") == "1")


def _wait(driver, condition, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting in the browser")
        time.sleep(0.05)


def _keys(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def _shown_labels(driver) -> dict[str, str]:
    return driver.execute_script(
        "const out = {}; for (const c of document.querySelectorAll('.card'))"
        " out[c.dataset.clipId] = c.dataset.label; return out;")


def _settled(driver) -> bool:
    return not driver.find_elements("css selector", ".card.pending") and \
        driver.find_element("id", "status").text == "saved"


def _table(out: Path) -> dict[str, tuple[str, str | None]]:
    return {c: (lab, r) for c, lab, r in connect(str(out)).sql(
        "SELECT clip_id, label, reason FROM labels").fetchall()}


def test_keyboard_labels_survive_a_reload(out, browser):
    with running(out, who="tester") as (_, url):
        _open(browser, url)
        assert len(browser.find_elements("css selector", ".card")) == CLIPS
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        # Ten clips from the keyboard: y keep, n drop, 1 drop for the first rule
        # (damaged), r + text + Enter a drop with a reason of one's own; each moves on.
        _keys(browser, "yyn1y")
        _keys(browser, "r")
        _keys(browser, "wobbly horizon\n")
        _keys(browser, "ynyy")
        _wait(browser, lambda: _settled(browser))
        expected = {"clip00": ("keep", None), "clip01": ("keep", None),
                    "clip02": ("drop", None), "clip03": ("drop", "damaged"),
                    "clip04": ("keep", None), "clip05": ("drop", "wobbly horizon"),
                    "clip06": ("keep", None), "clip07": ("drop", None),
                    "clip08": ("keep", None), "clip09": ("keep", None)}
        assert _table(out) == expected
        # Moving back and relabelling appends; the newest wins.
        _keys(browser, "\ue012\ue012n")  # ArrowLeft twice: clip08
        _wait(browser, lambda: _settled(browser))
        expected["clip08"] = ("drop", None)
        assert _table(out) == expected
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "review.png"))
        browser.refresh()
        _wait(browser, lambda: browser.execute_script(
            "return document.body.dataset.ready") == "1")
        shown = _shown_labels(browser)
        assert {c: v for c, v in shown.items() if v} == {c: lab for c, (lab, _) in
                                                         expected.items()}
        assert browser.find_element("id", "labelled").text == "10"
        who = connect(str(out)).sql("SELECT DISTINCT labelled_by, source FROM labels"
                                    ).fetchall()
        assert who == [("tester", "review")]


def test_two_windows_label_at_once_and_nothing_is_lost(out, browser):
    with running(out) as (_, url):
        _open(browser, url)
        first = browser.current_window_handle
        browser.switch_to.new_window("window")
        _open(browser, url)
        second = browser.current_window_handle
        # Interleaved: window 1 labels from the first clip, window 2 from the seventh,
        # a key at a time each, without waiting for the other's saves.
        browser.switch_to.window(second)
        _keys(browser, "\ue014" * 6)  # ArrowRight x6: clip06
        for _ in range(6):
            browser.switch_to.window(first)
            _keys(browser, "n")
            browser.switch_to.window(second)
            _keys(browser, "y")
        for handle in (first, second):
            browser.switch_to.window(handle)
            _wait(browser, lambda: _settled(browser))
        labels = _table(out)
        assert {c: lab for c, (lab, _) in labels.items()} == {
            **{f"clip{i:02d}": "drop" for i in range(6)},
            **{f"clip{i:02d}": "keep" for i in range(6, 12)}}
        # Each window, reloaded, shows the other's labels too.
        for handle in (first, second):
            browser.switch_to.window(handle)
            browser.refresh()
            _wait(browser, lambda: browser.execute_script(
                "return document.body.dataset.ready") == "1")
            assert sum(1 for v in _shown_labels(browser).values() if v) == CLIPS
        browser.switch_to.window(second)
        browser.close()
        browser.switch_to.window(first)


def test_filters_and_the_clip_detail(out, browser):
    from selenium.webdriver.support.ui import Select

    with running(out) as (_, url):
        _open(browser, url)

        def shown() -> int:
            return int(browser.find_element("id", "shown").text)

        assert shown() == CLIPS
        Select(browser.find_element("id", "f-flag")).select_by_value("static")
        assert shown() == 5
        Select(browser.find_element("id", "f-flag")).select_by_value("")
        Select(browser.find_element("id", "f-signal")).select_by_value("motion_score")
        browser.find_element("id", "f-min").send_keys("0.004")
        browser.find_element("id", "f-max").send_keys("0.0065")
        assert shown() == 3  # 0.004, 0.005, 0.006
        browser.find_element("id", "f-min").clear()
        browser.find_element("id", "f-max").clear()
        browser.find_element("id", "f-text").send_keys("breaking")
        assert shown() == 1
        browser.find_element("id", "f-text").clear()
        assert shown() == CLIPS
        # The detail of the current clip: its media, keyframes and lineage.
        browser.find_element("tag name", "body").click()
        _keys(browser, "o")
        _wait(browser, lambda: browser.find_elements("css selector", "#detail table"))
        detail = browser.find_element("id", "detail")
        assert detail.is_displayed()
        assert "file:///v.mp4" in detail.text and "Lineage" in detail.text
        assert detail.find_elements("css selector", "video")
        image = detail.find_element("css selector", ".frames img")
        _wait(browser, lambda: browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", image))
        _keys(browser, "\ue00c")  # Escape
        assert not detail.is_displayed()
        # The grid's clips play (the media route answers with real video).
        _wait(browser, lambda: browser.execute_script(
            "const v = document.querySelector('.card video');"
            " return v && v.readyState >= 2 && v.videoWidth === 160;"))
