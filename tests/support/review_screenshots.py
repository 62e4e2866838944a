"""The documentation's pictures of review and calibration, made from a demo output:

    .venv/bin/python -m tests.support.review_screenshots demo-output docs/images

labels the demo's clips in `vidcurate review` from the keyboard in headless Chromium
(drop as static every clip moving less than 0.025 frame diagonals per second, keep the
rest), saves the page (review-page.png), runs `curate --calibrate --min-labels 3` and
the report, and saves the report's calibration section (calibration.png). It writes
labels, a calibrate pass and a fitted profile into the output, as a person would."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.review import running

SLOW = 0.025  # the demo labeller's own idea of "static"


def _browser(width: int, height: int):  # noqa: ANN202 - selenium's type
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def _wait(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not get there")
        time.sleep(0.1)


def main(output: str, images: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    Path(images).mkdir(parents=True, exist_ok=True)
    driver = _browser(1400, 900)
    try:
        with running(Path(output), who="demo-labeller") as (_, url):
            clips = json.load(urllib.request.urlopen(url.replace("/?", "/api/clips?")))
            driver.get(url)
            _wait(lambda: driver.execute_script("return document.body.dataset.ready") == "1")
            for clip in clips["clips"]:
                keys = "rstatic\n" if (clip["motion_score"] or 0) < SLOW else "y"
                ActionChains(driver).send_keys(keys).perform()
            _wait(lambda: driver.find_element("id", "status").text == "saved"
                  and not driver.find_elements("css selector", ".card.pending"))
            driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(1.5)  # the visible clips start playing
            driver.save_screenshot(str(Path(images) / "review-page.png"))
        exe = Path(sys.executable).parent / "vidcurate"
        proc = subprocess.run([str(exe), "curate", output, "--calibrate", "--min-labels", "3"],
                              capture_output=True, text=True, check=True)
        print(proc.stdout)
        subprocess.run([str(exe), "report", output], capture_output=True, check=True)
        driver.set_window_size(1400, 1000)
        driver.get((Path(output) / "report" / "index.html").resolve().as_uri())
        table = driver.find_element("id", "calibration-table")
        section = table.find_element("xpath", "./ancestor::section")
        driver.execute_script("arguments[0].scrollIntoView()", section)
        plots = driver.find_elements("xpath", "//section[h3[contains(., 'keep rate of "
                                              "static')]]")
        time.sleep(1)
        section.screenshot(str(Path(images) / "calibration-table.png"))
        if plots:
            plots[0].screenshot(str(Path(images) / "calibration-static.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
