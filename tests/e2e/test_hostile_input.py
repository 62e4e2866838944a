"""Hostile media, manifests and servers: files a "video" names are never opened, child
processes stay within their limits, slow servers are cut off, untrusted manifests reach
only public addresses, and a run removes only what it created."""

from __future__ import annotations

import dataclasses
import gzip
import ipaddress
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import urllib3.util.connection

from tests.support.helpers import fetch_config, run_cli
from tests.support.httpserver import Loopback
from tests.support.media import Clip, Text, TextShot, ffmpeg, make_cuts_video, make_text_video
from vidcurate.pipeline.query import connect
from vidcurate.schemas.records import Source
from vidcurate.transforms import downloads as downloads_module
from vidcurate.transforms.downloads import HostLimiter, download_http, public_address
from vidcurate.transforms.fetch import fetch_source
from vidcurate.transforms.fetch_config import FetchError
from vidcurate.transforms.media.decoding import decode_frames_downscaled
from vidcurate.transforms.media.limits import MediaError, MediaLimits
from vidcurate.transforms.media.probing import video_packet_span
from vidcurate.transforms.media.tools import check_format, run_tool
from vidcurate.transforms.probe import probe_source

# On-screen text of the "private" video that hostile playlists point at; it must never
# reach the dataset.
SECRET_TEXT = "ZEBRA 4417 PRIVATE"
QUICK = ["--no-clip", "--no-asr", "--read-timeout", "2", "--fetch-retries", "0",
         "--rate-per-host", "0"]


def _rows(out: Path, sql: str) -> list[dict]:
    rel = connect(str(out)).sql(sql)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def _everything_written(out: Path) -> str:
    """Every table cell and every file name under the output, as one string."""
    parts = []
    for path in out.rglob("*"):
        parts.append(str(path))
        if path.suffix == ".parquet":
            parts.append(str(pq.read_table(path).to_pylist()))
    return "\n".join(parts)


# ------------------------------------------------------------------ playlists (LFI)
@pytest.fixture(scope="module")
def private_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("private")
    mp4 = make_text_video(d / "private.mp4", [TextShot("gradients", 4, (
        Text(SECRET_TEXT, size=64, x="80", y="300", box=True),))])
    ffmpeg("-i", str(mp4), "-c", "copy", "-f", "mpegts", str(d / "private.ts"))
    return d


def _hls(target: Path) -> bytes:
    return (f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXTINF:4.0,\n"
            f"file://{target}\n#EXT-X-ENDLIST\n").encode()


def _dash(target: Path) -> bytes:
    return f"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S"
     minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <BaseURL>file://{target.parent}/</BaseURL>
 <Period><AdaptationSet mimeType="video/mp4"><Representation id="v" bandwidth="100000"
   codecs="avc1.64001e" width="1280" height="720"><BaseURL>{target.name}</BaseURL>
 </Representation></AdaptationSet></Period></MPD>
""".encode()


class _Files(Loopback):
    """Serves fixed bodies by path."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = bodies.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        super().__init__(Handler)


def test_playlists_and_manifests_never_open_other_files(private_video, videos, tmp_path):
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "hls.mp4").write_bytes(_hls(private_video / "private.ts"))
    (hostile / "dash.mp4").write_bytes(_dash(private_video / "private.mp4"))
    # Served with a byte more, so that they are not duplicates of the local files.
    with _Files({"/hls.mp4": _hls(private_video / "private.ts") + b"#\n",
                 "/dash.mp4": _dash(private_video / "private.mp4") + b"\n"}) as server:
        manifest = tmp_path / "m.csv"
        manifest.write_text("uri,title\n" + "\n".join([
            f"{hostile / 'hls.mp4'},local-hls", f"{hostile / 'dash.mp4'},local-dash",
            f"{server.base}/hls.mp4,http-hls", f"{server.base}/dash.mp4,http-dash",
            f"{videos.cuts},real"]) + "\n")
        out = tmp_path / "out"
        # OCR on: before the allow-list, the private video's text landed in ocr_text.
        proc = run_cli("run", "--input", str(manifest), "--output", str(out),
                       "--work-dir", str(tmp_path / "work"), *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {r["title"]: r["status"] for r in _rows(out, "SELECT title, status FROM videos")}
    assert status == {"local-hls": "failed", "local-dash": "failed", "http-hls": "failed",
                      "http-dash": "failed", "real": "ok"}
    errors = _rows(out, "SELECT v.title, e.stage, e.error_type, e.message FROM errors e "
                        "JOIN videos v USING (video_id)")
    assert {(e["title"], e["stage"], e["error_type"]) for e in errors} == {
        (t, "probe", "format_not_allowed")
        for t in ("local-hls", "local-dash", "http-hls", "http-dash")}
    assert {e["message"].split("'")[1] for e in errors} == {"hls", "dash"}
    # Only the real video's clips, and the private text nowhere.
    assert _rows(out, "SELECT DISTINCT v.title FROM clips JOIN videos v USING (video_id)") \
        == [{"title": "real"}]
    assert "ZEBRA" not in _everything_written(out).upper()


def test_probe_refuses_formats_off_the_list(private_video, tmp_path):
    playlist = tmp_path / "x.mp4"
    playlist.write_bytes(_hls(private_video / "private.ts"))
    with pytest.raises(MediaError) as e:
        probe_source(Source(uri=str(playlist), video_id="x"))
    assert e.value.error_type == "format_not_allowed" and "'hls'" in str(e.value)
    # The probed name is checked too, as ffmpeg matches it: any listed alias passes.
    check_format("mov,mp4,m4a,3gp,3g2,mj2")
    for name in ("hls", "dash", "concat", "image2", "libgme", "webm_dash_manifest", "", None):
        with pytest.raises(MediaError) as e:
            check_format(name)
        assert e.value.error_type == "format_not_allowed"
    # A real transport stream is read.
    assert probe_source(Source(uri=str(private_video / "private.ts"),
                               video_id="y")).info.container == "mpegts"


# ------------------------------------------------------------------ bounded media
def _lying_duration(src: Path, dst: Path, seconds: float) -> Path:
    """A Matroska file whose header claims `seconds` (its Duration element rewritten)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration, an 8-byte float in milliseconds
    assert at > 0
    data[at + 3:at + 11] = struct.pack(">d", seconds * 1000)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def hostile_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile-media")
    mkv = make_cuts_video(d / "honest.mkv", [Clip("testsrc2", 4)], audio=False)
    _lying_duration(mkv, d / "liar.mkv", 1e9)
    mkv.unlink()
    # A few hundred KB of gzip that ffmpeg's game-music demuxer would inflate.
    (d / "zeros.mp4").write_bytes(gzip.compress(b"\0" * (64 << 20)))
    # One 8000x8000 frame: tiny file, 192 MB per decoded RGB frame.
    ffmpeg("-f", "lavfi", "-i", "color=c=red:size=8000x8000:rate=1:duration=1",
           "-c:v", "libx264", "-preset", "ultrafast", str(d / "huge.mp4"))
    make_cuts_video(d / "fine.mp4", [Clip("testsrc2", 3)], audio=False)
    return d


def test_hostile_media_end_as_error_rows(hostile_media, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--input", str(hostile_media), "--output", str(out),
                   "--work-dir", str(tmp_path / "work"), "--no-ocr", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {Path(r["source_uri"]).name: r for r in _rows(
        out, "SELECT v.source_uri, v.status, v.duration_s, e.stage, e.error_type "
             "FROM videos v LEFT JOIN errors e USING (video_id)")}
    assert {name: (r["status"], r["stage"], r["error_type"]) for name, r in rows.items()} == {
        "liar.mkv": ("failed", "probe", "duration_mismatch"),
        "zeros.mp4": ("failed", "probe", "format_not_allowed"),
        "huge.mp4": ("failed", "probe", "frame_too_large"),
        "fine.mp4": ("ok", None, None)}
    # The header's billion seconds never reach the dataset's hours.
    assert sum(r["duration_s"] or 0 for r in rows.values()) < 10


def test_duration_is_checked_against_the_packets(hostile_media, videos):
    liar = Source(uri=str(hostile_media / "liar.mkv"), video_id="x")
    with pytest.raises(MediaError) as e:
        probe_source(liar)
    assert e.value.error_type == "duration_mismatch" and "1e+09 s" in str(e.value)
    span = video_packet_span(str(videos.cuts), videos.cuts.stat().st_size)
    info = probe_source(Source(uri=str(videos.cuts), video_id="y")).info
    assert span.count == info.nb_frames and span.span_s + 1 / info.fps == pytest.approx(
        info.duration_s, abs=0.05)


def test_frame_size_and_memory_are_limited(hostile_media):
    huge = Source(uri=str(hostile_media / "huge.mp4"), video_id="x")
    with pytest.raises(MediaError) as e:
        probe_source(huge)
    assert e.value.error_type == "frame_too_large" and "8000x8000" in str(e.value)
    # Past --max-pixels the decoder itself refuses the frames, whatever the probe said.
    allowed = MediaLimits(max_pixels=10**8)
    video = probe_source(huge, allowed)
    with pytest.raises(MediaError) as e, decode_frames_downscaled(
            video.local_path, video.info, 64, limits=dataclasses.replace(
                allowed, max_pixels=10**6)) as frames:
        list(frames)
    assert e.value.error_type == "frame_too_large"
    # The address-space limit reaches the child: a decoder that needs more fails.
    with pytest.raises(MediaError), decode_frames_downscaled(
            video.local_path, video.info, 64, limits=dataclasses.replace(
                allowed, memory_bytes=300 << 20)) as frames:
        list(frames)
    with decode_frames_downscaled(video.local_path, video.info, 64,
                                        limits=allowed) as frames:
        assert len(list(frames)) == 1


def test_every_child_process_gets_the_memory_limit():
    limits = MediaLimits(memory_bytes=700 << 20)
    script = "import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0])"
    out = run_tool(["python3", "-c", script], 10, "python", limits)
    assert int(out.stdout) == 700 << 20
    with pytest.raises(MediaError) as e:
        run_tool(["python3", "-c", "b = bytearray(1 << 30)"], 10, "python", limits)
    assert e.value.error_type == "memory_limit"


# ------------------------------------------------------------------ slow servers
class _Trickle(Loopback):
    """Declares a large body and sends one byte every `every` seconds."""

    def __init__(self, every: float) -> None:
        self.stop = threading.Event()
        stop = self.stop

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                while not stop.wait(every):
                    try:
                        self.wfile.write(b"\0")
                        self.wfile.flush()
                    except OSError:
                        return

        super().__init__(Handler)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        super().__exit__(*exc)


@pytest.mark.parametrize("limit", ["rate", "deadline"])
def test_a_trickling_server_is_cut_off(tmp_path, limit):
    cfg = fetch_config(tmp_path, read_timeout_s=1.0, retries=0,
                       min_rate=1000 if limit == "rate" else 0,
                       download_deadline_s=1.5 if limit == "deadline" else 3600.0)
    with _Trickle(every=0.1) as server:
        started = time.monotonic()
        with pytest.raises(FetchError) as e:
            download_http(f"{server.base}/slow.mp4", str(tmp_path / "x.download"), cfg,
                          HostLimiter(0, 4))
        took = time.monotonic() - started
    assert e.value.error_type == "too_slow" and not e.value.retryable
    assert ("--min-download-rate" if limit == "rate" else "--download-deadline") in str(e.value)
    assert took < 30  # a whole body at this pace would take over a day


# ------------------------------------------------------------------ untrusted manifests
def _resolver(answers: dict[str, list[str]], calls: list[str]):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # noqa: ANN001, ANN202 - socket's signature
        if host in answers:
            calls.append(host)
            ip = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (ip, 80))]
        return real(host, *args, **kwargs)

    return getaddrinfo


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "100.64.0.1", "169.254.169.254",
                                     "192.0.2.1", "::1", "::ffff:127.0.0.1", "fd00::1",
                                     "0.0.0.0", "224.0.0.1"])
def test_only_public_addresses_are_reached(monkeypatch, address):
    monkeypatch.setattr(socket, "getaddrinfo", _resolver({"v.test": [address]}, []))
    with pytest.raises(FetchError) as e:
        public_address("v.test")
    assert e.value.error_type == "refused_address"
    assert str(ipaddress.ip_address(address)) in str(e.value)


def test_dns_rebinding_cannot_reach_a_local_server(videos, tmp_path, monkeypatch):
    """The name answers a public address at the check and 127.0.0.1 afterwards: the
    connection goes to the checked address, so the local server never sees a request."""
    hits: list[str] = []
    with _Files({"/v.mp4": videos.cuts.read_bytes()}) as server:
        port = server.server.server_address[1]
        calls: list[str] = []
        monkeypatch.setattr(socket, "getaddrinfo", _resolver(
            {"rebind.test": ["93.184.216.34", "127.0.0.1"]}, calls))
        original = server.server.RequestHandlerClass.do_GET

        def counted(handler: BaseHTTPRequestHandler) -> None:
            hits.append(handler.path)
            original(handler)

        monkeypatch.setattr(server.server.RequestHandlerClass, "do_GET", counted)
        # Where urllib3 connects, recorded; refused, so the answer is the same with or
        # without a network.
        connected: list[tuple] = []

        def create_connection(address: tuple, *args: object, **kwargs: object) -> None:
            connected.append(address)
            raise ConnectionRefusedError("test: no connection")

        monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
        cfg = fetch_config(tmp_path, untrusted=True, retries=0)
        with pytest.raises(FetchError) as e:
            download_http(f"http://rebind.test:{port}/v.mp4", str(tmp_path / "x"), cfg,
                          HostLimiter(0, 4))
    assert e.value.error_type == "connection_failed" and hits == []
    assert connected == [("93.184.216.34", port)]
    assert calls == ["rebind.test"]  # resolved once, by the check


def test_untrusted_connections_go_to_the_checked_address(videos, tmp_path, monkeypatch):
    """With loopback let through for the test, the download works by name: TCP to the
    checked address, the Host header still the name."""
    hosts: list[str] = []
    body = videos.cuts.read_bytes()
    with _Files({"/v.mp4": body}) as server:
        port = server.server.server_address[1]
        original = server.server.RequestHandlerClass.do_GET

        def seen(handler: BaseHTTPRequestHandler) -> None:
            hosts.append(handler.headers["Host"])
            original(handler)

        monkeypatch.setattr(server.server.RequestHandlerClass, "do_GET", seen)
        monkeypatch.setattr(socket, "getaddrinfo", _resolver({"video.test": ["127.0.0.1"]}, []))
        monkeypatch.setattr(downloads_module, "is_public", lambda ip: ip.is_loopback)
        cfg = fetch_config(tmp_path, untrusted=True, retries=0)
        got = download_http(f"http://video.test:{port}/v.mp4", str(tmp_path / "x"), cfg,
                            HostLimiter(0, 4))
    assert got.bytes == len(body) and hosts == [f"video.test:{port}"]


def test_untrusted_manifest_rows_name_urls_only(videos, tmp_path):
    with _Files({"/v.mp4": videos.cuts.read_bytes()}) as server:
        manifest = tmp_path / "m.csv"
        manifest.write_text("uri,title\n" + "\n".join([
            f"{videos.cuts},path", f"file://{videos.fade},file-uri",
            f"{server.base}/v.mp4,loopback-url"]) + "\n")
        out = tmp_path / "out"
        proc = run_cli("run", "--input", str(manifest), "--output", str(out),
                       "--work-dir", str(tmp_path / "work"), "--untrusted-input", *QUICK)
    # Every row is refused: the run commits its rows and says no input was usable.
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "no input was usable: all 3 videos failed" in proc.stderr
    found = {r["title"]: r for r in _rows(
        out, "SELECT v.title, v.status, e.error_type, e.message FROM videos v "
             "JOIN errors e USING (video_id)")}
    assert {t: (r["status"], r["error_type"]) for t, r in found.items()} == {
        "path": ("failed", "scheme_not_allowed"), "file-uri": ("failed", "scheme_not_allowed"),
        "loopback-url": ("failed", "refused_address")}
    assert "--untrusted-input" in found["path"]["message"]
    # A folder the user names is still read in this mode: only manifest rows are others'.
    folder_out = tmp_path / "folder-out"
    proc = run_cli("run", "--input", str(videos.folder / "cuts.mp4"), "--output",
                   str(folder_out), "--work-dir", str(tmp_path / "work"), "--untrusted-input",
                   *QUICK, "--no-ocr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(folder_out, "SELECT status FROM videos") == [{"status": "ok"}]


# ------------------------------------------------------------------ the work dir
def test_work_dir_keeps_what_was_there(videos, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "canary.txt").write_text("mine")
    (work / "old.download").write_text("also mine")
    with _Files({"/v.mp4": videos.cuts.read_bytes()}) as server:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"uri\n{server.base}/v.mp4\n")
        out = tmp_path / "out"
        proc = run_cli("run", "--input", str(manifest), "--output", str(out), "--work-dir",
                       str(work), "--no-ocr", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _rows(out, "SELECT status FROM videos") == [{"status": "ok"}]
    # The run's own download folder is gone; the user's files are not.
    assert sorted(p.name for p in work.iterdir()) == ["canary.txt", "old.download"]


@pytest.mark.parametrize("where", ["output", "inside-output", "contains-output",
                                   "input", "inside-input"])
def test_work_dir_apart_from_output_and_input(videos, tmp_path, where):
    out = tmp_path / "out"
    out.mkdir()
    (out / "canary.txt").write_text("dataset")
    work = {"output": out, "inside-output": out / "w", "contains-output": tmp_path,
            "input": videos.folder, "inside-input": videos.folder / "w"}[where]
    proc = run_cli("run", "--input", str(videos.folder), "--output", str(out),
                   "--work-dir", str(work), "--no-ocr", *QUICK)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--work-dir" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "canary.txt").read_text() == "dataset"


def test_long_run_id_is_refused_cleanly(videos, tmp_path):
    proc = run_cli("run", "--input", str(videos.cuts), "--output", str(tmp_path / "out"),
                   "--run-id", "r" * 300, *QUICK)
    assert proc.returncode == 2
    assert "--run-id" in proc.stderr and "Traceback" not in proc.stderr


def test_fetch_source_refuses_local_rows_in_untrusted_mode(videos, tmp_path):
    cfg = fetch_config(tmp_path, untrusted=True, allow_schemes=("http", "https"))
    with pytest.raises(FetchError) as e:
        fetch_source(Source(uri=str(videos.cuts), video_id="x"), cfg, HostLimiter(0, 4))
    assert e.value.error_type == "scheme_not_allowed" and "local path" in str(e.value)
