"""Helpers the tests share: the offline model hub, the CLI as a user runs it, configs
as the CLI builds them, the OCR video's known text, and the notebook runner."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.media import Text, TextShot

# No model hub for the suite: tests that expect named weights (CLIP, Whisper, BLIP) to be
# unavailable must give the same answer on a connected machine or one with a warm cache.
# Set at import, before anything imports huggingface_hub (it reads these once); the CLI
# and worker subprocesses inherit them.
NO_HUB_CACHE = tempfile.mkdtemp(prefix="vidcurate-tests-hf-")
atexit.register(shutil.rmtree, NO_HUB_CACHE, True)
os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "HF_HOME": NO_HUB_CACHE,
                   "HF_HUB_CACHE": os.path.join(NO_HUB_CACHE, "hub")})


ROOT = Path(__file__).resolve().parents[2]

# Shots of the OCR video: known strings in several fonts, sizes and positions, a slow
# ticker moving across the frame, and shots with no text at all.
SLIDE = ("Chapter 3: Scene Detection", "Shots are split by content changes",
         "Short clips are dropped", "Captions come from teachers")
# The text-free shots are SMPTE bars: RapidOCR reads a "C" into some frames of the moving
# colour field ("gradients") at confidence 0.52-0.56, which made "text-free" depend on
# which frames the keyframes land on.
TEXT_SHOTS = [
    TextShot("mandelbrot", 3, (Text("Breaking News at Nine", size=56, x="80", y="h-140",
                                    box=True),)),
    TextShot("smpte", 3),
    TextShot("slate", 3, tuple(
        Text(line, font="DejaVuSerif-Bold.ttf", size=44, x="100", y=str(120 + 110 * i))
        for i, line in enumerate(SLIDE))),
    TextShot("mandelbrot", 3, (Text("LIVE Markets rally as tech stocks climb",
                                    font="DejaVuSansMono.ttf", size=36, x="40+60*t",
                                    y="40", box=True),)),
    TextShot("smpte", 3),
]
TEXT_EXPECTED = [["Breaking News at Nine"], [], list(SLIDE),
                 ["LIVE Markets rally as tech stocks climb"], []]


def fetch_config(work_dir: Path, **overrides):
    """FetchConfig as the CLI builds it by default, with test overrides."""
    import dataclasses

    from apache_beam.options.pipeline_options import PipelineOptions

    from vidcurate.pipeline.options import RunConfig

    cfg = RunConfig.from_options(PipelineOptions(
        ["--input", "x", "--output", f"{work_dir}-out", "--work-dir", str(work_dir)]))
    return dataclasses.replace(cfg.fetch, **overrides)


def run_cli(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console command, as a user runs it (env: extra variables)."""
    import os

    exe = Path(sys.executable).parent / "vidcurate"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, check=False, env={**os.environ, **(env or {})})


def run_config(*args: str):
    """RunConfig as the CLI builds it (without CLIP unless asked), with extra options."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from vidcurate.pipeline.options import RunConfig

    return RunConfig.from_options(PipelineOptions(["--input", "i", "--output", "o",
                                                   "--no-clip", *args]))


def box_rows(text: str) -> list[list[str]]:
    """The data rows of tables DuckDB's .show() printed in text, as lists of cells
    (values too long for the box end in '…'; a row wrapped over lines is not joined)."""
    rows, in_data = [], False
    for line in text.splitlines():
        if line.startswith("├"):
            in_data = True
        elif line.startswith(("└", "┌")):
            in_data = False
        elif in_data and line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return rows


def shown(value: str, cell: str) -> bool:
    """Whether a table cell shows value, whole or cut short with '…'."""
    return cell == value or (cell.endswith("…") and value.startswith(cell[:-1]))


CAPTION_TEACHERS = "metadata,speech,ocr,zero_shot,captioner,vlm,vlm_fuse"


def execute_notebook(output: Path) -> list[str]:
    """Run notebooks/explore.ipynb top to bottom against an output, as CI does; the text
    each code cell printed, in order, for the tests to check against the tables."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    os.environ["VIDCURATE_OUTPUT"] = str(output)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        del os.environ["VIDCURATE_OUTPUT"]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    return ["".join(o.get("text", "") for o in c.get("outputs", [])
                    if o.get("output_type") == "stream")
            for c in nb.cells if c.cell_type == "code"]


CAPTION_TEACHERS = "metadata,speech,ocr,zero_shot,captioner,vlm,vlm_fuse"


# Columns that differ between two runs by design.
VOLATILE_COLUMNS = {"run_id", "time"}


def relative_paths(value, out: str):
    """Paths under an output folder made relative (outputs live in different folders)."""
    if isinstance(value, str):
        return value.replace(out, "<out>")
    if isinstance(value, list):
        return [relative_paths(v, out) for v in value]
    return value


def comparable_tables(out: Path, without_videos: list[str] | None = None
                      ) -> dict[str, list[tuple]]:
    """The videos, clips and errors views as a user reads them, without run ids and
    times and with relative paths, in a fixed order: two outputs that hold the same
    rows compare equal. without_videos leaves those video ids' rows out."""
    from vidcurate.pipeline.query import connect

    con = connect(str(out))
    tables = {}
    for name, key in (("videos", "video_id"), ("clips", "clip_id"),
                      ("errors", "source_uri, video_id, stage, error_type")):
        rel = con.sql(f"SELECT * FROM {name} WHERE NOT list_contains($out, video_id) "
                      f"OR video_id IS NULL ORDER BY {key}",
                      params={"out": list(without_videos or [])})
        keep = [i for i, c in enumerate(rel.columns) if c not in VOLATILE_COLUMNS]
        tables[name] = [tuple(relative_paths(row[i], str(out)) for i in keep)
                        for row in rel.fetchall()]
    return tables


def headless_chromium(window: str, *extra: str):
    """Debian's chromium under chromedriver, headless, with its console log kept (the
    report and review pages are checked in a real browser)."""
    import shutil

    import pytest
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromium-driver are missing: `make test` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={window}",
                *extra):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
