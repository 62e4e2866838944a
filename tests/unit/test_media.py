import hashlib

import pytest

from transforms.media import (
    MediaError,
    NoVideoStream,
    clip_extension,
    detect_size,
    file_digest,
    keyframe_times,
    parse_probe,
    probe,
)


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
    from schemas.records import Source
    from transforms import media
    from transforms.probe import probe_source

    with pytest.raises(MediaError) as e:
        media.run_tool(["sleep", "5"], 0.2, "sleeping")
    assert e.value.error_type == "timeout" and "sleeping took longer than 0 s" in str(e.value)
    video = probe_source(Source(uri=str(videos.long_shot), video_id="x"))
    monkeypatch.setattr(media, "decode_timeout_s", lambda duration: 0.05)
    with pytest.raises(MediaError) as e, media.decode_frames_downscaled(
            video.local_path, video.info, 64) as frames:
        for _ in frames:
            pass
    assert e.value.error_type == "timeout"


def test_ffmpeg_messages_hold_no_memory_addresses(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(MediaError) as e:
        probe(str(bad))
    assert "@ 0x" not in str(e.value) and "[mov,mp4" in str(e.value)
