"""The review server's safety, over plain HTTP (urllib, http.client): the token, the
Host header, files only from inside the output (no `..`, no links out, no path from the
tables that leads elsewhere), writes that are never lost (two clients at once, a stop
while a label is being written, Ctrl-C of the command)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.review import review_output, running
from vidcurate.pipeline.query import connect
from vidcurate.transforms.sinks import write_rows


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review")
    out = root / "out"
    review_output(out, {f"c{i}": {"motion_score": i / 100} for i in range(6)},
                  media=root / "media")
    secret = root / "secret.txt"  # beside the output: must never be served
    secret.write_text("private key material")
    files = out / "clips" / "files"
    os.symlink(secret, files / "link_out.mp4")
    clips = connect(str(out)).sql("SELECT * FROM clips").to_arrow_table().to_pylist()
    hostile = [
        ("abs_out", {"media_uri": str(secret)}),
        ("link_out", {"media_uri": str(files / "link_out.mp4")}),
        ("dotdot", {"media_uri": "clips/files/../../../secret.txt",
                    "keyframe_uris": ["../secret.txt"]}),
        ("device", {"media_uri": "/dev/zero"}),
    ]
    for name, change in hostile:
        clips.append(clips[0] | {"clip_id": name, "clip_index": len(clips)} | change)
    write_rows(str(out), "clips", "r1", clips)
    return out


def request(url: str, path: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One request with exactly the headers given (http.client sets Host itself unless
    one is given)."""
    parts = urlsplit(url)
    con = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = dict(headers or {})
    con.request(method, path, body=body, headers=headers)
    r = con.getresponse()
    data = r.read()
    con.close()
    return r.status, data, dict(r.getheaders())


def token_of(url: str) -> str:
    return urlsplit(url).query.removeprefix("token=")


def post_labels(url: str, labels: list[dict], token: str | None = None,
                content_type: str = "application/json") -> int:
    body = json.dumps({"labels": labels}).encode()
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["X-Vidcurate-Token"] = token
    return request(url, "/api/labels", "POST", body, headers)[0]


def test_listens_on_loopback_only_and_needs_the_token(out):
    with running(out) as (server, url):
        assert server.server_address[0] == "127.0.0.1"
        token = token_of(url)
        assert len(token) >= 32
        assert request(url, f"/?token={token}")[0] == 200
        assert request(url, f"/api/clips?token={token}")[0] == 200
        for path in ("/", "/api/clips", "/media/c1", "/review.js", f"/?token={token[:-1]}x"):
            assert request(url, path)[0] == 403, path
        # Writes: the token in the header, not the URL (a form elsewhere cannot set it).
        label = [{"clip_id": "c1", "label": "keep"}]
        assert post_labels(url, label) == 403
        status, _, _ = request(url, f"/api/labels?token={token}", "POST",
                               json.dumps({"labels": label}).encode(),
                               {"Content-Type": "application/json"})
        assert status == 403
        assert post_labels(url, label, "wrong") == 403
        assert post_labels(url, label, token, "text/plain") == 415
        assert not (out / "labels").exists()
        assert post_labels(url, label, token) == 200
        assert connect(str(out)).sql("SELECT count(*) FROM labels").fetchall() == [(1,)]
        # A label for a clip the output does not have is refused, and says why.
        status, body, _ = request(url, "/api/labels", "POST", json.dumps(
            {"labels": [{"clip_id": "nope", "label": "keep"}]}).encode(),
            {"Content-Type": "application/json", "X-Vidcurate-Token": token})
        assert status == 400 and b"1 unknown clip id" in body


def test_other_host_headers_are_refused(out):
    with running(out) as (server, url):
        token, port = token_of(url), server.server_address[1]
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}",
                     f"127.0.0.1:{port + 1}"):
            status, _, _ = request(url, f"/api/clips?token={token}", headers={"Host": host})
            assert status == 403, host
            assert post_labels_with_host(url, token, host) == 403, host
        assert request(url, f"/api/clips?token={token}",
                       headers={"Host": f"localhost:{port}"})[0] == 200


def post_labels_with_host(url: str, token: str, host: str) -> int:
    return request(url, "/api/labels", "POST",
                   json.dumps({"labels": [{"clip_id": "c1", "label": "drop"}]}).encode(),
                   {"Content-Type": "application/json", "X-Vidcurate-Token": token,
                    "Host": host})[0]


def test_serves_only_the_outputs_own_files(out):
    with running(out) as (_, url):
        token = token_of(url)
        status, body, headers = request(url, f"/media/c1?token={token}")
        assert status == 200 and body == (out / "clips" / "files" / "c1.mp4").read_bytes()
        assert headers["Content-Type"] == "video/mp4"
        # Range requests (video seeking): exactly the bytes asked for.
        status, part, headers = request(url, f"/media/c1?token={token}",
                                        headers={"Range": "bytes=10-19"})
        assert status == 206 and part == body[10:20]
        assert headers["Content-Range"] == f"bytes 10-19/{len(body)}"
        assert request(url, f"/keyframe/c1/0?token={token}")[0] == 200
        assert request(url, f"/keyframe/c1/5?token={token}")[0] == 404  # no such keyframe
        # Paths from the tables that lead out: an absolute path, a link inside the
        # output to a file beside it, `..`, a device.
        for clip in ("abs_out", "link_out", "dotdot", "device"):
            status, body, _ = request(url, f"/media/{clip}?token={token}")
            assert status == 404 and b"private" not in body, clip
        assert request(url, f"/keyframe/dotdot/0?token={token}")[0] == 404
        # No path from the URL reaches the disk: media are addressed by clip id.
        for path in ("/media/..%2f..%2fsecret.txt", "/media/../../secret.txt",
                     "/clips/files/c1.mp4", "/../secret.txt", "/media/c1/../../secret.txt",
                     "/keyframe/c1/..%2f..%2f..%2fsecret.txt"):
            status, body, _ = request(url, f"{path}?token={token}")
            assert status == 404 and b"private" not in body, path


def test_two_clients_at_once_lose_nothing(out, tmp_path):
    with running(out) as (_, url):
        token = token_of(url)
        before = connect(str(out)).sql("SELECT count(*) FROM labels_all").fetchall()[0][0]
        barrier = threading.Barrier(2)
        codes: list[int] = []

        def client(k: int) -> None:
            barrier.wait()
            for i in range(20):
                codes.append(post_labels(url, [{"clip_id": f"c{i % 6}",
                                                "label": "keep" if k else "drop",
                                                "reason": f"window {k}"}], token))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200] * 40
        after = connect(str(out)).sql("SELECT count(*) FROM labels_all").fetchall()[0][0]
        assert after - before == 40


def test_stopping_waits_for_a_label_being_written(tmp_path):
    out = tmp_path / "out"
    review_output(out, {"c1": {}})
    with running(out) as (server, url):
        app = server.RequestHandlerClass.app
        slow = app.add_labels

        def slowly(*args):
            time.sleep(1.0)  # the stop comes while this label is being written
            return slow(*args)

        app.add_labels = slowly
        codes: list[int] = []
        sender = threading.Thread(target=lambda: codes.append(post_labels(
            url, [{"clip_id": "c1", "label": "drop"}], token_of(url))))
        sender.start()
        time.sleep(0.3)
    # running() shut the server down and closed it while the request was in flight;
    # closing waited for it, so the label is on disk now, not later.
    assert connect(str(out)).sql("SELECT label FROM labels").fetchall() == [("drop",)]
    sender.join(10)
    assert codes == [200]


def test_ctrl_c_stops_the_command_cleanly(tmp_path):
    out = tmp_path / "out"
    review_output(out, {"c1": {}, "c2": {}})
    exe = Path(sys.executable).parent / "vidcurate"
    proc = subprocess.Popen([str(exe), "review", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split("open ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        assert post_labels(url, [{"clip_id": "c2", "label": "keep"}], token_of(url)) == 200
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "review stopped" in err and "Traceback" not in err
    assert connect(str(out)).sql("SELECT clip_id, label FROM labels").fetchall() == [
        ("c2", "keep")]
