"""How a finished ffmpeg / ffprobe's exit is read (issue 29): a signal or a limit is the
run's environment (ToolStopped, an error row the next run retries), only the tool's
own messages after its own exit say anything about the file. No process is started:
the exits and messages are as ffmpeg 5.1 gives them (tests/e2e/test_tool_failures.py
runs the real thing)."""

from __future__ import annotations

import pickle
import signal
from pathlib import Path

import pytest

from vidcurate.schemas.records import ClipTask, Span
from vidcurate.transforms import cut_clips as cut_clips_module
from vidcurate.transforms.cut_clips import MediaConfig, cut_video
from vidcurate.transforms.media.limits import MediaError, MediaLimits, ToolStopped
from vidcurate.transforms.media.tools import check_exit, classify_failure

LIMITED = MediaLimits(memory_bytes=320 << 20)
UNLIMITED = MediaLimits(memory_bytes=0)
DAMAGE = ("[h264] Invalid NAL unit size (1213 > 1118).\n[h264] Error splitting the input "
          "into NAL units.\nError while decoding stream #0:0: Invalid data found when "
          "processing input")


@pytest.mark.parametrize("returncode", [-signal.SIGINT, -signal.SIGKILL, -signal.SIGTERM,
                                        -signal.SIGHUP])
@pytest.mark.parametrize("limits", [LIMITED, UNLIMITED])
def test_death_by_a_signal_is_the_environment(returncode, limits):
    stopped = classify_failure("", returncode, limits, "ffmpeg")
    assert isinstance(stopped, ToolStopped) and stopped.error_type == "tool_killed"
    assert signal.Signals(-returncode).name in str(stopped)
    assert not stopped.crashed
    with pytest.raises(ToolStopped):
        check_exit(DAMAGE, returncode, limits, "ffprobe")


def test_ffmpegs_own_exit_after_a_signal_is_the_environment():
    # ffmpeg catches SIGINT / SIGTERM, closes its outputs and exits 255, silently at
    # -v error; ffprobe never exits 255 of its own.
    for stderr in ("", DAMAGE):
        stopped = classify_failure(stderr, 255, LIMITED, "ffmpeg")
        assert isinstance(stopped, ToolStopped) and stopped.error_type == "tool_killed"
    assert classify_failure("Received > 3 system signals, hard exiting", 123, LIMITED,
                            "ffmpeg").error_type == "tool_killed"
    assert classify_failure("", 123, LIMITED, "ffmpeg") is None
    assert classify_failure("", 255, LIMITED, "python3") is None


def test_the_decoders_own_messages_after_its_own_exit_are_the_file():
    check_exit(DAMAGE, 0, LIMITED, "ffmpeg")  # damage: the caller reads the lines
    assert classify_failure(DAMAGE, 1, LIMITED, "ffmpeg") is None


@pytest.mark.parametrize("stderr", [
    "[h264] get_buffer() failed\n[h264] thread_get_buffer() failed\n"
    "[h264] decode_slice_header error\n[h264] no frame!\n"
    "Error while decoding stream #0:0: Invalid data found when processing input",
    "Failed to inject frame into filter network: Resource temporarily unavailable",
    "[rawvideo] ff_frame_thread_encoder_init failed",
    "ffmpeg: error while loading shared libraries: libicudata.so.72: failed to map "
    "segment from shared object",
    "Error while decoding stream #0:0: Cannot allocate memory",
])
@pytest.mark.parametrize("returncode", [0, 1])
def test_an_allocation_that_failed_under_the_limit_is_the_memory_limit(stderr, returncode):
    # Seen decoding 4K H.264 under 280-480 MB: most of it reads like damage.
    with pytest.raises(ToolStopped) as e:
        check_exit(stderr, returncode, LIMITED, "ffmpeg")
    assert e.value.error_type == "memory_limit" and "--tool-memory-mb 320" in str(e.value)


def test_a_refused_frame_size_is_the_file_not_memory():
    stderr = ("[h264] Picture size 9000x9000 exceeds specified max pixel count\n"
              "[h264] get_buffer() failed")
    error = classify_failure(stderr, 1, LIMITED, "ffmpeg")
    assert error is not None and error.error_type == "frame_too_large"
    assert not isinstance(error, ToolStopped)
    check_exit("[h264] Picture size 0x9000 is invalid\n[h264] get_buffer() failed", 0,
               LIMITED, "ffmpeg")


def test_a_stopped_tool_survives_pickling():
    # Runners pickle errors across steps (dead letters): the kind must survive.
    stopped = ToolStopped("tool_killed", "ffmpeg was killed by SIGSEGV", signal.SIGSEGV)
    back = pickle.loads(pickle.dumps(stopped))
    assert isinstance(back, ToolStopped) and back.error_type == "tool_killed"
    assert back.crashed and back.signal_number == signal.SIGSEGV
    assert isinstance(back, MediaError)


def _tasks(n: int) -> list[ClipTask]:
    return [ClipTask(clip_id=f"c{i}", clip_index=i, video_id="v", source_uri="v.mp4",
                     local_path="v.mp4", span=Span(i * 75, i * 75 + 75, i * 3.0, i * 3.0 + 3),
                     fps=25.0, video_codec="h264", audio_codec=None,
                     keyframe_before_start_s=None) for i in range(n)]


def test_a_tool_stopped_on_one_clips_keyframes_publishes_no_clip(tmp_path: Path,
                                                                 monkeypatch):
    """The keyframes of clip 2 of 4 meet a killed ffmpeg: no clip of the video is
    published, not the two before it either (their files were written first)."""
    media = MediaConfig(output=str(tmp_path / "out"), clip_media="none", keyframes=1,
                        keyframe_width=64, ffmpeg_threads=0)

    def write_keyframes(task, media, scratch, prefix):  # noqa: ANN001, ANN202
        if task.clip_index == 2:
            raise ToolStopped("tool_killed", "ffmpeg was killed by SIGINT", signal.SIGINT)
        local = Path(scratch) / f"{prefix}kf0.jpg"
        local.write_bytes(b"jpeg")
        return [task.span.start_s], [(str(local), f"{media.output}/keyframes/{task.clip_id}")]

    published: list[str] = []
    monkeypatch.setattr(cut_clips_module, "write_keyframes", write_keyframes)
    monkeypatch.setattr(cut_clips_module, "publish", lambda local, uri: published.append(uri))
    with pytest.raises(ToolStopped):
        cut_video(_tasks(4), media, "hash", "run")
    assert published == []
    # A clip's own failure still costs only that clip.
    monkeypatch.setattr(cut_clips_module, "write_keyframes", lambda task, *a: (
        (_ for _ in ()).throw(MediaError("keyframe_failed", "bad frame"))
        if task.clip_index == 2 else write_keyframes(task, *a)))
    results = cut_video(_tasks(4), media, "hash", "run")
    assert [isinstance(r, Exception) for r in results] == [False, False, True, False]
    assert len(published) == 3
