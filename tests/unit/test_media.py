import hashlib

import numpy as np
import pytest

from vidcurate.schemas.records import Source
from vidcurate.transforms.media.cutting import clip_extension
from vidcurate.transforms.media.decoding import detect_size, frames_by_number, select_expression
from vidcurate.transforms.media.limits import MediaError, NoVideoStream
from vidcurate.transforms.media.probing import (
    keyframe_times,
    mean_keyframe_interval_s,
    parse_probe,
    probe,
)
from vidcurate.transforms.media.storage import file_digest


def _probe_json(**video):
    v = {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
         "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001", "duration": "10.01",
         "nb_frames": "300", "pix_fmt": "yuv420p", "start_time": "0.033"}
    v.update(video)
    return {"streams": [v, {"codec_type": "audio", "codec_name": "aac"}],
            "format": {"format_name": "mov,mp4", "duration": "10.05", "bit_rate": "1000"}}


def test_parse_probe_reads_the_fields_users_filter_on():
    info = parse_probe(_probe_json(), 123, "ab")
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert not info.is_vfr
    assert (info.width, info.height, info.rotation) == (1920, 1080, 0)
    assert info.duration_s == pytest.approx(10.01)
    assert info.start_time_s == pytest.approx(0.033)
    assert info.has_audio and info.audio_codec == "aac"
    assert (info.bytes, info.content_sha256, info.nb_frames) == (123, "ab", 300)


def test_parse_probe_variable_rate_and_rotation():
    info = parse_probe(_probe_json(avg_frame_rate="2400/100", r_frame_rate="30/1",
                                   side_data_list=[{"rotation": -90}]), 1, "x")
    assert info.is_vfr and info.fps == pytest.approx(24.0)
    assert info.rotation == 90
    assert info.display_size == (1080, 1920)
    tagged = parse_probe(_probe_json(tags={"rotate": "270"}), 1, "x")
    assert tagged.rotation == 270


def test_parse_probe_without_video_or_frame_rate():
    audio_only = {"streams": [{"codec_type": "audio"}], "format": {"duration": "3"}}
    with pytest.raises(NoVideoStream, match="streams: audio"):
        parse_probe(audio_only, 1, "x")
    cover_art = _probe_json(disposition={"attached_pic": 1})
    with pytest.raises(NoVideoStream):
        parse_probe(cover_art, 1, "x")
    with pytest.raises(MediaError, match="frame rate"):
        parse_probe(_probe_json(avg_frame_rate="0/0", r_frame_rate="0/0", nb_frames=None), 1, "x")
    # No stream duration: the container's is used.
    assert parse_probe(_probe_json(duration=None), 1, "x").duration_s == pytest.approx(10.05)


def test_detect_size_keeps_aspect_and_never_upscales():
    info = parse_probe(_probe_json(), 1, "x")
    assert detect_size(info, 256) == (256, 144)
    assert detect_size(info, 4000) == (1920, 1080)
    rotated = parse_probe(_probe_json(tags={"rotate": "90"}), 1, "x")
    assert detect_size(rotated, 256) == (256, 456)


def test_clip_extension_falls_back_to_matroska_for_stream_copy():
    assert clip_extension("copy", "h264", "aac") == "mp4"
    assert clip_extension("copy", "vp8", "vorbis") == "mkv"
    assert clip_extension("copy", "h264", "pcm_s16le") == "mkv"
    assert clip_extension("exact", "vp8", "vorbis") == "mp4"


def test_probe_and_digest_real_file(videos):
    data = probe(str(videos.cuts))
    assert any(s["codec_type"] == "video" for s in data["streams"])
    size, sha = file_digest(str(videos.cuts))
    raw = videos.cuts.read_bytes()
    assert (size, sha) == (len(raw), hashlib.sha256(raw).hexdigest())


def test_probe_failure_has_ffprobe_reason(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(MediaError) as e:
        probe(str(bad))
    assert e.value.error_type == "probe_failed"
    assert "Invalid data" in str(e.value)


def test_keyframe_times_follow_the_gop(videos):
    # The fixture is encoded with a keyframe every 50 frames (2 s at 25 fps).
    assert keyframe_times(str(videos.cuts)) == pytest.approx([0, 2, 4, 6, 8, 10, 12, 14])


def test_tools_are_time_limited(videos, monkeypatch):
    from vidcurate.transforms.media.decoding import decode_frames_downscaled
    from vidcurate.transforms.media.limits import MediaLimits
    from vidcurate.transforms.media.tools import run_tool
    from vidcurate.transforms.probe import probe_source

    with pytest.raises(MediaError) as e:
        run_tool(["sleep", "5"], 0.2, "sleeping")
    assert e.value.error_type == "timeout" and "sleeping took longer than 0 s" in str(e.value)
    video = probe_source(Source(uri=str(videos.long_shot), video_id="x"))
    # The hard cap wins over the limit the duration would give.
    capped = MediaLimits(max_seconds=0.05)
    with pytest.raises(MediaError) as e, decode_frames_downscaled(
            video.local_path, video.info, 64, limits=capped) as frames:
        for _ in frames:
            pass
    assert e.value.error_type == "timeout"


def test_ffmpeg_messages_hold_no_memory_addresses(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(MediaError) as e:
        probe(str(bad))
    assert "@ 0x" not in str(e.value) and "[mov,mp4" in str(e.value)


def _diff(a, b) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_frames_by_number_are_exact_at_cuts_and_match_seeking(videos):
    """Frame numbers are detection's numbers: the last frame of a shot and the first of
    the next are told apart, by the one-pass reader and by seeking alike."""
    from vidcurate.transforms.probe import probe_source
    from vidcurate.transforms.stitch import read_frames, seek_time_s

    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    cuts = [round(t * 25) for t in videos.cuts_truth]  # first frame of each new shot
    wanted = sorted({n for c in cuts for n in (c - 1, c)} | {0})
    got = list(frames_by_number(video.local_path, video.info, wanted, 320))
    assert [n for n, _ in got] == wanted
    frames = dict(got)
    sought = read_frames(video.local_path, [seek_time_s(n, 25.0, video.info.seek_offset_s)
                                            for n in wanted], 320)
    for n, image in zip(wanted, sought, strict=True):
        assert image is not None
        assert _diff(image, frames[n]) < 6, n  # JPEG noise only: the same frame
    for c in cuts:
        assert _diff(frames[c - 1], frames[c]) > 20, c  # two different shots


def test_frames_by_number_stream_in_chunks_and_stop_at_the_end(videos, monkeypatch):
    from vidcurate.transforms.media import decoding
    from vidcurate.transforms.probe import probe_source

    monkeypatch.setattr(decoding, "SELECT_MAX_FRAMES", 3)
    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    wanted = [5, 1, 9, 5, 30, 31, 200, 399, 5000]  # 400 frames: 5000 is past the end
    got = [n for n, _ in frames_by_number(video.local_path, video.info, wanted, 160)]
    assert got == [1, 5, 9, 30, 31, 200, 399]


def test_select_expression_is_a_balanced_tree():
    assert select_expression([7]) == r"eq(n\,7)"
    assert select_expression([3, 7]) == r"if(lt(n\,7)\,eq(n\,3)\,eq(n\,7))"
    wanted = list(range(3, 3000, 3))  # 999 frames
    expr = select_expression(wanted)
    # True on exactly the wanted frames (ffmpeg's grammar read as Python)...
    as_python = expr.replace("\\,", ",").replace("if(", "if_(")
    funcs = {"if_": lambda c, a, b: a if c else b, "lt": lambda a, b: a < b,
             "eq": lambda a, b: a == b}
    hits = [n for n in range(3100) if eval(as_python, funcs, {"n": n})]  # noqa: S307
    assert hits == wanted
    # ...and each frame walks one branch, log2(999) tests deep, not 999.
    depth = deepest = 0
    for ch in expr:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        deepest = max(deepest, depth)
    assert deepest <= 2 * 10 + 1


def test_mean_keyframe_interval_follows_the_gop(videos):
    assert mean_keyframe_interval_s(str(videos.cuts)) == pytest.approx(2.0, abs=0.1)
    # x264 adds a keyframe at each cut of this one: 9 s over its keyframe count.
    keys = keyframe_times(str(videos.cuts30))
    assert len(keys) > 9 / 2
    assert mean_keyframe_interval_s(str(videos.cuts30)) == pytest.approx(9 / len(keys), abs=0.1)


def test_audio_windows_cover_the_audio_and_end_at_quiet_moments(tmp_path):
    """Windows end at the quietest 20 ms of their last search_s, hold every sample once,
    and carry their start on the video's clock."""
    import subprocess

    from vidcurate.transforms.media.audio import audio_windows, quietest_point
    from vidcurate.transforms.probe import probe_source

    assert quietest_point(np.array([5, 5, 5, 5, 0, 0, 5, 5], np.float32), 2) == 5
    # A tone with 0.2 s of silence every 3.7 s: [3.4, 3.6), [7.1, 7.3), ...
    path = tmp_path / "gaps.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=size=64x64:rate=25",
                    "-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*440*t)*not(between(mod(t\\,3.7)"
                    "\\,3.4\\,3.6)):s=16000", "-t", "16", "-c:v", "libx264", "-c:a", "pcm_s16le",
                    str(path.with_suffix(".mkv"))], check=True)
    path = path.with_suffix(".mkv")
    video = probe_source(Source(uri=str(path), video_id="v"))
    whole = np.frombuffer(subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar",
         "16000", "-f", "f32le", "pipe:1"], capture_output=True, check=True).stdout, np.float32)
    windows = list(audio_windows(video.local_path, video.info, 16000, window_s=4.0,
                                 search_s=1.0))
    assert len(windows) == 5
    assert np.array_equal(np.concatenate([w for _, w in windows]), whole)
    at = 0
    for start, window in windows:
        assert start == pytest.approx(at / 16000)
        assert window.size <= 4 * 16000
        at += window.size
        if at < whole.size:  # every cut falls in a silent gap
            assert 3.4 < (at / 16000) % 3.7 < 3.6, at / 16000


def test_audio_that_cannot_be_decoded_is_a_media_error(tmp_path, videos):
    from vidcurate.transforms.media.audio import audio_windows
    from vidcurate.transforms.probe import probe_source

    video = probe_source(Source(uri=str(videos.cuts), video_id="v"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no audio here")
    with pytest.raises(MediaError) as e:
        list(audio_windows(str(broken), video.info, 16000))
    assert e.value.error_type == "audio_failed"
    assert "no audio could be decoded" in str(e.value)
