"""The HTML report, opened from disk in headless Chromium (Debian's chromium and
chromium-driver): it renders without console errors, the gallery shows every clip and
the filters work. A screenshot goes to build/test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import execute_notebook, run_cli

from pipeline.query import connect

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
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromium-driver are missing: `make test` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2200",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
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
    assert len(browser.find_elements("css selector", ".plot")) == 6
    errors_rows = con.sql("SELECT count(*) FROM errors").fetchall()[0][0]
    assert len(browser.find_elements("css selector", ".plot .js-plotly-plot")) == \
        6 - (errors_rows == 0)
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


def test_notebook_runs_on_an_output_with_embeddings(captioned_output):
    execute_notebook(captioned_output[0])
