"""Small outputs for the review and calibration tests: synthetic clips with chosen
signals (tests/e2e/test_curate.py's write_output), each with a real tiny clip file and
a keyframe inside the output, and a review server running in a thread."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.test_curate import GOOD, write_output
from tests.support.media import ffmpeg


def make_media(folder: Path) -> tuple[Path, Path]:
    """A 1 s 160x90 H.264 clip and a JPEG keyframe, made once per folder."""
    folder.mkdir(parents=True, exist_ok=True)
    clip, frame = folder / "tiny.mp4", folder / "tiny.jpg"
    if not clip.exists():
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=10:duration=1",
               "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(clip))
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=1:duration=1",
               "-frames:v", "1", str(frame))
    return clip, frame


def review_output(out: Path, signals: dict[str, dict], media: Path | None = None) -> None:
    """An output whose clips (name -> changed columns) each have their own clip file and
    keyframe under out/clips/files/ when media (a folder for the shared originals) is
    given."""
    rows = {}
    files = out / "clips" / "files"
    if media is not None:
        clip, frame = make_media(media)
        files.mkdir(parents=True, exist_ok=True)
    for name, values in signals.items():
        row = GOOD | {"motion_score": 0.05, "sharpness": 300.0} | values
        if media is not None:
            shutil.copy(clip, files / f"{name}.mp4")
            shutil.copy(frame, files / f"{name}.jpg")
            row |= {"media_uri": str(files / f"{name}.mp4"),
                    "keyframe_uris": [str(files / f"{name}.jpg")],
                    "keyframe_times_s": [0.5]}
        rows[name] = row
    write_output(out, rows)


@contextmanager
def running(out: Path, **kwargs) -> Iterator[tuple[object, str]]:
    """A review server on a free port, serving in a thread; stopped (and its requests
    in flight finished) on exit."""
    from vidcurate.pipeline.review import make_server

    server, url = make_server(str(out), **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
