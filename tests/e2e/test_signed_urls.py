"""A run over signed URLs and with credentials among its options: the downloads use the
real URLs, and no secret reaches any byte of the output (tables decoded or raw, Parquet
statistics and metadata included) nor the command's output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.helpers import run_cli
from tests.support.httpserver import Behaviour, Loopback, make_handler
from vidcurate.pipeline.query import connect
from vidcurate.transforms.manifest import normalise_uri, video_id_for

QUICK = ["--no-clip", "--no-asr", "--no-ocr", "--clip-media", "none", "--keyframes", "0",
         "--read-timeout", "1", "--fetch-retries", "1", "--backoff", "0.05",
         "--rate-per-host", "0"]
# Every secret starts with SECRET, so one search finds any of them.
CREDENTIALS = ["--s3_secret_access_key", "SECRETKEY", "--s3_access_key_id", "SECRETID",
               "--s3_session_token", "SECRETSESSION"]
TARGET = "/signed-target.mp4?Signature=SECRETREDIR&Key-Pair-Id=SECRETKPI&Expires=9"


def _handler(b: Behaviour) -> type:
    class Handler(make_handler(b)):
        """Adds a redirect to a signed URL, as CDNs do, so final_url carries a signature."""

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/to-signed.mp4":
                with b.lock:
                    b.times.append((self.path, 0.0))
                self._send(302, headers={"Location": TARGET})
            elif path == "/signed-target.mp4":
                with b.lock:
                    b.times.append((self.path, 0.0))
                self._send(200, b.video + b"\0" * 32, {"Content-Type": "video/mp4"})
            else:
                super().do_GET()

    return Handler


@pytest.fixture(scope="module")
def signed_run(videos, tmp_path_factory):
    behaviour = Behaviour(videos.cuts.read_bytes(), videos.cuts30.read_bytes())
    d = tmp_path_factory.mktemp("signed")
    with Loopback(_handler(behaviour)) as server:
        port = server.server.server_address[1]
        urls = {
            "signed": f"{server.base}/ok.mp4?X-Amz-Signature=SECRETSIG&X-Amz-Credential="
                      "SECRETCRED&X-Amz-Date=20240101T000000Z",
            # the same bytes: skipped, with a reason that quotes the first one's uri
            "same": f"{server.base}/same-bytes.mp4?sig=SECRETAZURE&sv=2022",
            "password": f"http://me:SECRETPASS@127.0.0.1:{port}/other.mp4",
            "redirect": f"{server.base}/to-signed.mp4?token=SECRETTOK",
            "missing": f"{server.base}/missing.mp4?X-Amz-Security-Token=SECRETSTS",
            # connection refused: requests' message names the path and query
            "refused": "http://127.0.0.1:1/v.mp4?X-Goog-Signature=SECRETGOOG",
        }
        manifest = d / "m.csv"
        manifest.write_text("uri,title\n" + "".join(f"{u},{t}\n" for t, u in urls.items()))
        out = d / "out"
        proc = run_cli("run", "--input", str(manifest), "--output", str(out), "--work-dir",
                       str(d / "work"), *QUICK, *CREDENTIALS,
                       "--vlm-url", "http://127.0.0.1:1/v1?api_key=SECRETVLM")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, urls, behaviour, proc


def test_downloads_used_the_real_urls(signed_run):
    out, urls, behaviour, _ = signed_run
    rel = connect(str(out)).sql("SELECT title, video_id, status, source_uri, final_url, "
                                "reason FROM videos")
    videos = {r[0]: dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()}
    assert {t: v["status"] for t, v in videos.items()} == {
        "signed": "ok", "same": "skipped", "password": "ok", "redirect": "ok",
        "missing": "failed", "refused": "failed"}
    requested = {path for path, _ in behaviour.times}
    assert "/ok.mp4?" + urls["signed"].split("?", 1)[1] in requested
    assert TARGET in requested
    # Ids hash the real uri, as before; the stored uri has the parameter, not its value.
    for title, url in urls.items():
        assert videos[title]["video_id"] == video_id_for(normalise_uri(url))
    assert videos["signed"]["source_uri"] == urls["signed"].replace(
        "SECRETSIG", "REDACTED").replace("SECRETCRED", "REDACTED")
    assert videos["password"]["source_uri"].startswith("http://me:REDACTED@127.0.0.1:")
    assert videos["redirect"]["final_url"].endswith(
        "/signed-target.mp4?Signature=REDACTED&Key-Pair-Id=REDACTED&Expires=9")
    assert "X-Amz-Signature=REDACTED" in videos["same"]["reason"]


def test_no_secret_in_any_output_byte(signed_run):
    out, _, _, proc = signed_run
    files = [p for p in Path(out).rglob("*") if p.is_file()]
    parquet = [p for p in files if p.suffix == ".parquet"]
    assert {p.parent.name for p in parquet} >= {"videos", "clips", "errors", "runs"}
    for path in files:
        assert b"SECRET" not in path.read_bytes(), path
    for path in parquet:
        rows = json.dumps(pq.read_table(path).to_pylist(), default=str)
        assert "SECRET" not in rows, (path, rows)
    # What the rows say instead.
    con = connect(str(out))
    messages = [r[0] for r in con.sql("SELECT message FROM errors").fetchall()]
    assert any("X-Amz-Security-Token=REDACTED" in m for m in messages), messages
    assert any("X-Goog-Signature=REDACTED" in m for m in messages), messages
    options = json.loads(con.sql("SELECT options_json FROM runs").fetchall()[0][0])
    assert options["pipeline_options"]["s3_secret_access_key"] == "REDACTED"
    assert options["pipeline_options"]["s3_access_key_id"] == "REDACTED"
    assert options["config"]["teachers"]["vlm"]["url"] == "http://127.0.0.1:1/v1?api_key=REDACTED"
    assert options["config"]["teachers"]["vlm"]["api_key_env"] == "VLM_API_KEY"
    # The command's own output (summary, logs) quotes stored rows only.
    assert "SECRET" not in proc.stdout + proc.stderr
