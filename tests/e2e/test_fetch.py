"""Fetching from a real HTTP server on 127.0.0.1 that misbehaves in every common way."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import fetch_config, run_cli
from tests.support.httpserver import LoopbackServer, Trickler
from vidcurate.pipeline.query import connect
from vidcurate.pipeline.run import run
from vidcurate.transforms import downloads as downloads_module
from vidcurate.transforms.downloads import HostLimiter, check_address, download_http
from vidcurate.transforms.fetch_config import FetchError, check_scheme
from vidcurate.transforms.retry import backoff_s, retry_after_s
from vidcurate.transforms.video_sites import is_video_site

QUICK = ["--read-timeout", "1", "--fetch-retries", "2", "--backoff", "0.05",
         "--backoff-max", "2", "--rate-per-host", "0", "--no-asr", "--no-ocr",
         "--clip-media", "none", "--keyframes", "0"]


@pytest.fixture(scope="module")
def server(videos):
    with LoopbackServer(videos.cuts, videos.cuts30) as s:
        yield s


def _rows(out, sql):
    rel = connect(str(out)).sql(sql)
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


@pytest.fixture(scope="module")
def url_run(server, videos, tmp_path_factory):
    d = tmp_path_factory.mktemp("urls")
    paths = ["ok.mp4", "ok.mp4", "same-bytes.mp4", "missing.mp4", "forbidden.mp4",
             "flaky.mp4", "busy.mp4", "slow.mp4", "short.mp4", "loop-a", "moved.mp4",
             "big.mp4", "big-undeclared.mp4", "page.html"]
    lines = ["url,title"] + [f"{server.base}/{p},{p}" for p in paths]
    lines.append("ftp://example.invalid/x.mp4,ftp")
    (d / "urls.csv").write_text("\n".join(lines) + "\n")
    out, work = d / "out", d / "work"
    max_bytes = int(videos.cuts.stat().st_size * 1.5)
    proc = run_cli("run", "--no-clip", "--input", str(d / "urls.csv"), "--output", str(out),
                   "--work-dir", str(work), "--max-bytes", str(max_bytes), *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, work, server


def _by_title(out):
    return {r["title"]: r for r in _rows(out, "SELECT * FROM videos")}


def _errors(out):
    return {r["source_uri"].rsplit("/", 1)[-1]: r for r in _rows(out, "SELECT * FROM errors")}


def test_every_url_has_one_outcome(url_run):
    out, _, _ = url_run
    videos = _by_title(out)
    assert {t: v["status"] for t, v in videos.items()} == {
        "ok.mp4": "ok", "same-bytes.mp4": "skipped", "missing.mp4": "failed",
        "forbidden.mp4": "failed", "flaky.mp4": "ok", "busy.mp4": "ok", "slow.mp4": "failed",
        "short.mp4": "failed", "loop-a": "failed", "moved.mp4": "ok", "big.mp4": "failed",
        "big-undeclared.mp4": "failed", "page.html": "failed", "ftp": "failed"}
    assert "same content" in videos["same-bytes.mp4"]["reason"]
    assert videos["same-bytes.mp4"]["reason"].endswith(
        f"(video {videos['ok.mp4']['video_id']})")
    assert videos["moved.mp4"]["final_url"].endswith("/other.mp4")


def test_errors_name_the_failure(url_run):
    out, _, _ = url_run
    errors = _errors(out)
    kinds = {name: (e["stage"], e["error_type"]) for name, e in errors.items()}
    assert kinds == {
        "missing.mp4": ("fetch", "http_404"), "forbidden.mp4": ("fetch", "http_403"),
        "slow.mp4": ("fetch", "read_timeout"), "short.mp4": ("fetch", "truncated"),
        "loop-a": ("fetch", "redirect_loop"), "big.mp4": ("fetch", "too_large"),
        "big-undeclared.mp4": ("fetch", "too_large"), "page.html": ("probe", "probe_failed"),
        "x.mp4": ("fetch", "scheme_not_allowed")}
    assert "gave up after 3 attempts" in errors["slow.mp4"]["message"]
    assert "gave up after 3 attempts" in errors["short.mp4"]["message"]
    assert "loop-b -> " in errors["loop-a"]["message"]


def test_retries_backoff_andretry_after_s(url_run):
    out, _, server = url_run
    videos = _by_title(out)
    assert videos["flaky.mp4"]["fetch_attempts"] == 3
    assert videos["busy.mp4"]["fetch_attempts"] == 2
    hits = server.behaviour.hits
    # Permanent failures are not retried; transient ones are, up to --fetch-retries.
    assert hits["/missing.mp4"] == hits["/forbidden.mp4"] == hits["/big.mp4"] == 1
    assert hits["/slow.mp4"] == hits["/short.mp4"] == 3
    busy = [t for p, t in server.behaviour.times if p == "/busy.mp4"]
    assert busy[1] - busy[0] >= 0.95  # Retry-After: 1 was honoured
    run_row = _rows(out, "SELECT counts FROM runs")[0]
    counts = {(c["stage"], c["name"]): c["value"] for c in run_row["counts"]}
    assert counts[("fetch", "retries")] == 2 + 1 + 2 + 2  # flaky, busy, slow, short
    assert counts[("content_dedup", "duplicates")] == 1
    assert counts[("manifest", "duplicates")] == 1


def test_same_url_twice_is_one_video_and_downloads_are_cleaned(url_run):
    out, work, _ = url_run
    assert len(_rows(out, "SELECT * FROM videos WHERE title = 'ok.mp4'")) == 1
    assert not work.exists() or not any(work.iterdir())


def test_rate_limit_per_host(server, tmp_path):
    (tmp_path / "rated.csv").write_text(
        "uri\n" + "".join(f"{server.base}/rated.mp4?n={i}\n" for i in range(6)))
    run(["--no-clip", "--input", str(tmp_path / "rated.csv"), "--output", str(tmp_path / "out"),
         "--work-dir", str(tmp_path / "work"), *QUICK[:-8], "--rate-per-host", "4",
         "--no-asr", "--no-ocr", "--clip-media", "none", "--keyframes", "0",
         "--direct_num_workers", "3", "--direct_running_mode", "multi_threading"])
    times = sorted(t for p, t in server.behaviour.times if p.startswith("/rated.mp4"))
    assert len(times) == 6
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 1 / 4 - 0.02, gaps  # never more than 4 requests per second


def test_video_sites_go_through_ytdlp(server, tmp_path, monkeypatch):
    (tmp_path / "site.csv").write_text(f"uri\n{server.base}/ok.mp4\n{server.base}/missing.mp4\n")
    out = tmp_path / "out"
    run(["--no-clip", "--input", str(tmp_path / "site.csv"), "--output", str(out), "--work-dir",
         str(tmp_path / "work"), "--ytdlp-hosts", "127.0.0.1", *QUICK])
    videos = {r["source_uri"].rsplit("/", 1)[-1]: r for r in _rows(out, "SELECT * FROM videos")}
    assert videos["ok.mp4"]["status"] == "ok"
    meta = json.loads(videos["ok.mp4"]["metadata_json"])
    assert meta["site_extractor"] == "generic" and videos["ok.mp4"]["title"] == "ok"
    assert _errors(out)["missing.mp4"]["error_type"] == "site_refused"
    # Without yt-dlp installed: a clear error row, not a crash.
    monkeypatch.setitem(sys.modules, "yt_dlp", None)
    out2 = tmp_path / "out2"
    run(["--no-clip", "--input", str(tmp_path / "site.csv"), "--output", str(out2), "--work-dir",
         str(tmp_path / "work2"), "--ytdlp-hosts", "127.0.0.1", *QUICK])
    assert {e["error_type"] for e in _errors(out2).values()} == {"ytdlp_missing"}


def test_private_addresses_refused_when_asked(server, tmp_path):
    (tmp_path / "m.csv").write_text(f"uri\n{server.base}/ok.mp4?private\n")
    out = tmp_path / "out"
    run(["--no-clip", "--input", str(tmp_path / "m.csv"), "--output", str(out), "--work-dir",
         str(tmp_path / "w"), "--refuse-private-addresses", *QUICK])
    (error,) = _errors(out).values()
    assert error["error_type"] == "refused_address" and "127.0.0.1" in error["message"]
    # The refused request never reached the server.
    assert not any(p == "/ok.mp4?private" for p, _ in server.behaviour.times)


def test_pure_helpers(tmp_path):
    cfg = fetch_config(tmp_path)
    assert check_scheme("https://x/y.mp4", cfg) == "https"
    assert check_scheme("/local/file.mp4", cfg) == "file"
    with pytest.raises(FetchError, match="scheme 'ftp' is not allowed"):
        check_scheme("ftp://x/y", cfg)
    assert is_video_site("https://www.youtube.com/watch?v=x", cfg)
    assert is_video_site("https://youtu.be/x", cfg)
    assert not is_video_site("https://notyoutube.com/x", cfg)
    assert retry_after_s("3") == 3.0 and retry_after_s("soon") is None
    assert 0 <= retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") <= 1  # in the past: now
    for attempt in range(1, 8):
        assert 0 <= backoff_s(attempt, cfg) <= min(cfg.backoff_max_s, 2 ** (attempt - 1))
    with pytest.raises(FetchError) as e:
        check_address("http://127.0.0.1:9/x")
    assert e.value.error_type == "refused_address"
    limiter = HostLimiter(rate=0, concurrency=2)
    limiter.wait_turn("h")  # no limit: returns at once



def test_shared_work_dir_stages_downloads_and_reads_bucket_objects(server, videos, tmp_path):
    """--work-dir on a shared store: downloads are staged there and read back through the
    per-worker cache, bucket objects are read in place, and staged files are removed."""
    import shutil

    import tests.support.stagefs  # noqa: F401 - registers the stagefs:// scheme

    bucket = tmp_path / "bucket"
    (bucket / "in").mkdir(parents=True)
    shutil.copy(videos.cuts30, bucket / "in" / "clip.mp4")
    # stagefs:/ + an absolute path: the first folder plays the bucket name.
    (tmp_path / "m.csv").write_text(
        f"uri\n{server.base}/flaky.mp4?staged\nstagefs:/{bucket}/in/clip.mp4\n")
    out = tmp_path / "out"
    run(["--no-clip", "--input", str(tmp_path / "m.csv"), "--output", str(out),
         "--work-dir", f"stagefs:/{bucket}/work", "--allow-schemes", "http,stagefs",
         *QUICK[:-4], "--clip-media", "exact", "--keyframes", "1", "--no-ocr"])
    videos_ = {r["source_uri"].rsplit("/", 1)[-1]: r for r in _rows(out, "SELECT * FROM videos")}
    assert {k: v["status"] for k, v in videos_.items()} == {"flaky.mp4?staged": "ok",
                                                             "clip.mp4": "ok"}
    assert videos_["clip.mp4"]["clip_count"] == 3 and videos_["clip.mp4"]["bytes"] == \
        videos.cuts30.stat().st_size
    clips = _rows(out, "SELECT media_uri, keyframe_uris FROM clips")
    assert len(clips) == 5 + 3 and all(Path(c["media_uri"]).is_file() for c in clips)
    # The staged download is gone; the bucket's own object is untouched.
    assert (bucket / "in" / "clip.mp4").is_file()
    assert not (bucket / "work").exists() or not list((bucket / "work").iterdir())


def test_site_subtitles_are_kept_and_their_files_removed(tmp_path):
    from vidcurate.transforms.video_sites import collect_subtitles

    vtt = tmp_path / "v.en.vtt"
    vtt.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nHello there\n")
    found = collect_subtitles({"en": {"filepath": str(vtt), "ext": "vtt"},
                               "de": {"data": "WEBVTT\n\nHallo"}, "fr": None})
    assert found == {"en": "WEBVTT\n\n00:00.000 --> 00:01.000\nHello there\n",
                     "de": "WEBVTT\n\nHallo"}
    assert not vtt.exists()


# ------------------------------------------------------------------ trickled framing
# Bytes that never reach the body loop (status line, headers, chunk sizes, a TLS
# handshake), one every 0.3 s: each read is well inside --read-timeout, so only a limit
# on the whole exchange stops them.
DEADLINE = 1.5
SLACK = 3.0  # a loaded machine's scheduling; the server trickles for 6 s per connection


@pytest.fixture
def trickler():
    with Trickler(every=0.3, limit=20) as s:
        yield s


def _fetch_trickle(url: str, tmp_path: Path, **cfg_overrides) -> tuple[FetchError, float]:
    cfg = fetch_config(tmp_path, **{"read_timeout_s": 1.0, "retries": 1, "backoff_s": 0.05,
                                    "min_rate": 0, "download_deadline_s": DEADLINE,
                                    **cfg_overrides})
    started = time.monotonic()
    with pytest.raises(FetchError) as e:
        download_http(url, str(tmp_path / "x.download"), cfg, HostLimiter(0, 4))
    return e.value, time.monotonic() - started


@pytest.mark.parametrize("untrusted", [False, True], ids=["trusted", "untrusted"])
@pytest.mark.parametrize(("path", "phase"), [("/status-line", "response headers"),
                                             ("/headers", "response headers"),
                                             ("/chunk-sizes", "body")])
def test_the_deadline_bounds_headers_and_chunk_framing(trickler, tmp_path, monkeypatch,
                                                       path, phase, untrusted):
    if untrusted:  # the checked connections, let through to the loopback server
        monkeypatch.setattr(downloads_module, "is_public", lambda ip: ip.is_loopback)
    error, took = _fetch_trickle(trickler.base + path, tmp_path, untrusted=untrusted)
    assert error.error_type == "too_slow" and not error.retryable, error
    assert f"--download-deadline {DEADLINE:g} s" in str(error)
    assert phase in str(error)
    assert trickler.hits[path] == 1  # not retried: a retry would hold the worker again
    assert took < DEADLINE + SLACK


@pytest.mark.parametrize("path", ["/headers", "/chunk-sizes"])
def test_the_minimum_rate_bounds_headers_and_chunk_framing(trickler, tmp_path, path):
    error, took = _fetch_trickle(trickler.base + path, tmp_path, min_rate=1000,
                                 download_deadline_s=3600.0)
    assert error.error_type == "too_slow" and not error.retryable, error
    assert "--min-download-rate 1000 B/s" in str(error)
    assert took < 1.0 + SLACK  # the rate applies after the first --read-timeout (1 s)


@pytest.mark.parametrize("untrusted", [False, True], ids=["trusted", "untrusted"])
def test_the_deadline_bounds_a_trickled_tls_handshake(trickler, tmp_path, monkeypatch,
                                                      untrusted):
    """--connect-timeout (10 s) alone would let the handshake run past the deadline."""
    if untrusted:
        monkeypatch.setattr(downloads_module, "is_public", lambda ip: ip.is_loopback)
    port = trickler.server.server_address[1]
    error, took = _fetch_trickle(f"https://127.0.0.1:{port}/v.mp4", tmp_path,
                                 untrusted=untrusted, connect_timeout_s=10.0)
    assert error.error_type == "too_slow" and not error.retryable, error
    assert f"--download-deadline {DEADLINE:g} s" in str(error) and "connect" in str(error)
    assert trickler.hits["tls"] == 1
    assert took < DEADLINE + SLACK
