"""Live progress: per-process tallies in files, summed and rendered by the launcher."""

from __future__ import annotations

import io
import json
import multiprocessing

from vidcurate.transforms import progress


def _worker(folder: str, n: int) -> None:
    import os

    os.environ[progress.ENV] = folder
    progress.reset()
    for _ in range(n):
        progress.add("cut_clips", "processed")
    progress.add("fetch", "failed")
    progress.flush()


def test_tallies_of_several_processes_are_summed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), n)) for n in (3, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert progress.read(str(tmp_path)) == {"cut_clips": {"processed": 7},
                                            "fetch": {"failed": 2}}
    (tmp_path / "broken.json").write_text("{half")  # being replaced: skipped
    assert progress.read(str(tmp_path))["cut_clips"] == {"processed": 7}


def test_nothing_is_written_without_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.add("fetch", "processed")
    progress.flush()
    assert list(tmp_path.iterdir()) == []


def test_render_and_a_quiet_display_off_a_terminal(tmp_path):
    line = progress.render({"fetch": {"processed": 2, "failed": 1},
                            "cut_clips": {"processed": 9}, "ocr": {"failed": 2}}, 12.3)
    assert line == ("[   12 s] fetched 2 · probed 0 · split 0 · clips 9 · transcribed 0 · "
                    "captioned 0 · errors 3")
    (tmp_path / "1.json").write_text(json.dumps({"fetch": {"processed": 1}}))
    quiet = io.StringIO()  # not a terminal: logs stay clean
    with progress.Display(str(tmp_path), quiet, interval_s=0.01):
        pass
    assert quiet.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with progress.Display(str(tmp_path), tty, interval_s=0.01):
        pass
    assert "fetched 1" in tty.getvalue() and tty.getvalue().endswith("\n")


def test_log_records_clear_the_status_line_and_it_is_redrawn_after(tmp_path):
    """A log line (ours, Beam's, faster-whisper's) written while the status line shows
    starts on a line of its own, and the status line comes back under it."""
    import logging

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    (tmp_path / "1.json").write_text(json.dumps({"fetch": {"processed": 4}}))
    tty = Tty()
    root = logging.getLogger()
    handler = logging.StreamHandler(tty)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    try:
        with progress.Display(str(tmp_path), tty, interval_s=60) as display:
            display._draw()  # the status line is up
            logging.getLogger("faster_whisper").warning("Processing audio")
        assert root.handlers.count(handler) == 1  # given back as it was
    finally:
        root.removeHandler(handler)
    text = tty.getvalue()
    status = text.split("\r\x1b[2K")[1]
    assert status.startswith("[") and "fetched 4" in status
    # Cleared before the record, which fills a line of its own; then the status again.
    assert f"{status}\r\x1b[2KWARNING faster_whisper: Processing audio\n{status}" in text
