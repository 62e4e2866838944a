"""Offline, `run` names every model weight it cannot get in one go (issue 29: a user
learnt of Whisper's, fixed it, then learnt of CLIP's)."""

from __future__ import annotations

from tests.support.helpers import run_cli
from tests.support.media import Clip, make_cuts_video


def test_every_missing_weight_is_named_at_once(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_cuts_video(videos / "a.mp4", [Clip("testsrc2", 1.5)], size=(128, 72), fps=15,
                    audio=False)
    # The hub is unreachable here on purpose (and on machines with network too): the
    # default Whisper and CLIP weights are not in this test's empty cache.
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = run_cli("run", "--input", str(videos), "--output", str(tmp_path / "out"),
                   "--work-dir", str(tmp_path / "work"), "--no-ocr", env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr
    assert "2 model stages cannot load their weights" in err
    assert "ASR (Whisper)" in err and "--asr-model PATH" in err
    assert "CLIP" in err and "--clip-pretrained PATH" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
