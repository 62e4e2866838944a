"""The run's work folder is private to the user who runs vidcurate: a folder another
local user made first, or can write to, is refused before anything is written or read
back there (issue 28: a pickled listing swapped in a shared /tmp folder ran code as the
user running vidcurate)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.helpers import run_cli
from tests.support.media import Clip, make_cuts_video

ARGS = ["--no-clip", "--no-asr", "--no-ocr", "--keyframes", "1"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("work-dir-videos")
    make_cuts_video(d / "a.mp4", [Clip("testsrc2", 2.6), Clip("mandelbrot", 2.6)],
                    size=(128, 72), fps=15, audio=False, gop=15)
    make_cuts_video(d / "b.mp4", [Clip("smpte", 2.6), Clip("cellauto", 2.6)],
                    size=(128, 72), fps=15, audio=False, gop=15)
    return d


@pytest.fixture
def shared_tmp():
    """A temp dir like /tmp: everybody may create folders in it (sticky)."""
    d = tempfile.mkdtemp(prefix="vidcurate-shared-tmp-")
    os.chmod(d, 0o1777)
    yield Path(d)
    subprocess.run(["rm", "-rf", d], check=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="acting as another local user needs root")
def test_a_default_work_dir_made_by_another_user_is_refused(folder, tmp_path, shared_tmp):
    # The attacker, as uid 65534, makes the folders a run would use, open to all.
    uid = os.geteuid()
    planted = [shared_tmp / "vidcurate-work", shared_tmp / f"vidcurate-work-{uid}"]
    subprocess.run(["mkdir", "-m", "777", *map(str, planted)], check=True, cwd=shared_tmp,
                   user=65534, group=65534)
    assert all(p.stat().st_uid == 65534 for p in planted)

    done = run_cli("run", "--input", str(folder), "--output", str(tmp_path / "out"),
                   "--batch-videos", "1", *ARGS, env={"TMPDIR": str(shared_tmp)})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "belongs to another user" in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing of the run went into the attacker's folders.
    assert all(list(p.iterdir()) == [] for p in planted)


def test_a_world_writable_work_dir_is_refused(folder, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    done = run_cli("run", "--input", str(folder), "--output", str(tmp_path / "out"),
                   "--work-dir", str(work), "--batch-videos", "1", *ARGS)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "can be written by other users" in done.stderr
    assert list(work.iterdir()) == []


def test_the_run_folder_is_private_and_the_listing_is_data(folder, tmp_path):
    work = tmp_path / "work"
    done = run_cli("run", "--input", str(folder), "--output", str(tmp_path / "out"),
                   "--work-dir", str(work), "--batch-videos", "1", "--keep-downloads",
                   "--run-id", "private", *ARGS)
    assert done.returncode == 0, done.stderr[-3000:]
    run_folder = work / "run-private"
    assert stat.S_IMODE(run_folder.stat().st_mode) == 0o700
    # Two batches ran from the listing written there; nothing was ever a pickle.
    assert "batch 2 of 2" in done.stderr or "2 videos" in done.stdout + done.stderr
    assert not [p for p in work.rglob("*") if p.suffix in (".pickle", ".pkl")]
