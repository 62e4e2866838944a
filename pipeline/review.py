"""`vidcurate review OUTPUT`: label clips in the browser.

A small local web app on the standard library's ThreadingHTTPServer. Why not a
framework (Flask, Starlette): the app has six routes and one JSON write, and its safety
rests on a few checks that are easiest to audit when they sit in one handler (Host,
token, the files it may open). A thread per request is what one reviewer with a
browser or two needs, and the standard library adds no dependency to a package that is
installed on every Dataflow worker. What it lacks, Range requests (video seeking), is
twenty lines here.

Safety (docs/security.md):
- it listens on 127.0.0.1 only; the URL carries a random token, and every request must
  present it (GETs in the query string, writes in the X-Vidcurate-Token header, which a
  page of another site cannot set on a cross-origin request without our consent);
- a request whose Host header is not 127.0.0.1:PORT or localhost:PORT is refused, so a
  page on a rebinding DNS name cannot talk to it;
- it serves no path from the URL: media and keyframes are addressed by clip id and
  index, looked up in the tables, and opened only when they resolve to regular files
  inside the output (pipeline/output_files.py; links out of it and `..` are refused);
- a label is acknowledged only once its shard is on disk (pipeline/labels.py), and
  Ctrl-C stops accepting, then waits for requests in flight before it exits, so a
  label the page showed as saved is saved.
"""

from __future__ import annotations

import hmac
import http.server
import json
import os
import re
import secrets
import stat
import sys
import threading
import webbrowser
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vidcurate.pipeline.curate import load_profile
from vidcurate.pipeline.labels import Label, default_who, write_labels
from vidcurate.pipeline.output_files import MAX_IMAGE_BYTES, MAX_MEDIA_BYTES, OutputFiles, Refused
from vidcurate.pipeline.query import connect, require_output

# Signals shown on every card and offered as range filters, when the output has them.
SIGNALS = ("duration_s", "motion_score", "brightness", "contrast", "sharpness",
           "aesthetic_score", "clip_score", "ocr_coverage_mean", "nsfw_score",
           "decode_error_count")
MAX_BODY_BYTES = 1 << 20
CHUNK = 1 << 16
_CLIP_ROUTE = re.compile(r"^/api/clip/([^/]{1,200})$")
_MEDIA_ROUTE = re.compile(r"^/media/([^/]{1,200})$")
_KEYFRAME_ROUTE = re.compile(r"^/keyframe/([^/]{1,200})/(\d{1,4})$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ReviewApp:
    """What the handler asks of the output: clip data, file paths, label writes."""

    def __init__(self, output: str, token: str, who: str, rules: list[str],
                 max_clips: int) -> None:
        require_output(output)
        self.output, self.token, self.who = output, token, who
        self.rules, self.max_clips = rules, max_clips
        self.port = 0
        self.writes = threading.Lock()  # one label shard at a time, in arrival order

    def _con(self) -> Any:
        # A connection per request: the views read the shards as they are now, so a
        # label written by the other window (or an import) shows on the next load.
        return connect(self.output)

    def clips(self) -> dict[str, Any]:
        con = self._con()
        columns = set(con.sql("SELECT * FROM clips LIMIT 0").columns)
        signals = [s for s in SIGNALS if s in columns]
        select = ", ".join(f"c.{s}" for s in signals)
        rows = con.sql(f"""
            SELECT c.clip_id, c.video_id, v.title, c.clip_index, c.start_s, c.end_s,
                   c.quality_flags, c.best_caption, c.best_teacher, c.ocr_text, c.transcript,
                   len(c.keyframe_uris) AS keyframes, c.media_uri IS NOT NULL AS has_media,
                   k.kept, k.dropped_by, l.label, l.reason, l.labelled_by,
                   (SELECT string_agg(text, ' ') FROM captions x
                    WHERE x.clip_id = c.clip_id) AS caption_texts,
                   {select}
            FROM clips c JOIN videos v USING (video_id)
            LEFT JOIN curation k USING (clip_id) LEFT JOIN labels l USING (clip_id)
            ORDER BY v.title, c.video_id, c.clip_index, c.clip_id
            LIMIT {int(self.max_clips)}""")
        names = rows.columns
        total = con.sql("SELECT count(*) FROM clips").fetchall()[0][0]
        curated = con.sql("SELECT count(*) FROM passes WHERE kind = 'curate'").fetchall()[0][0]
        return {"clips": [dict(zip(names, r, strict=True)) for r in rows.fetchall()],
                "total": total, "signals": signals, "rules": self.rules,
                "curated": curated > 0, "who": self.who}

    def clip(self, clip_id: str) -> dict[str, Any] | None:
        con = self._con()
        row = con.execute("""
            SELECT c.clip_id, c.video_id, c.run_id, c.clip_index, c.start_s, c.end_s,
                   c.duration_s, c.media_start_s, c.media_end_s, c.media_mode,
                   c.split_params_hash, c.keyframe_times_s, c.quality_flags, c.best_caption,
                   c.best_teacher, c.selection_method, c.ocr_text, c.transcript,
                   v.source_uri, v.title, v.status, v.duration_s AS video_duration_s,
                   v.width, v.height, v.fps, v.license,
                   r.started_at AS run_started_at, r.finished_at AS run_finished_at,
                   r.runner, r.clip_model, r.device, r.notes,
                   k.pass_id AS curate_pass, k.profile, k.kept, k.dropped_by, k.unmeasured
            FROM clips c JOIN videos v USING (video_id) JOIN runs r ON r.run_id = c.run_id
            LEFT JOIN curation k USING (clip_id) WHERE c.clip_id = ?""", [clip_id])
        names = [d[0] for d in row.description]
        found = row.fetchall()
        if not found:
            return None
        detail = dict(zip(names, found[0], strict=True))
        cap = con.execute("SELECT teacher, model, text, clip_score, rank, selected FROM "
                          "captions WHERE clip_id = ? ORDER BY rank NULLS LAST, teacher",
                          [clip_id])
        detail["captions"] = [dict(zip([d[0] for d in cap.description], r, strict=True))
                              for r in cap.fetchall()]
        hist = con.execute("SELECT label, reason, labelled_by, labelled_at, source FROM "
                           "labels_all WHERE clip_id = ? ORDER BY labelled_at", [clip_id])
        detail["labels"] = [dict(zip([d[0] for d in hist.description], r, strict=True))
                            for r in hist.fetchall()]
        return detail

    def file(self, clip_id: str, keyframe: int | None) -> tuple[str, int]:
        """The real path of a clip's media file or keyframe, and its size bound;
        Refused when the clip is unknown or the file is not the output's own."""
        con = self._con()
        row = con.execute("SELECT media_uri, keyframe_uris, run_id FROM clips "
                          "WHERE clip_id = ?", [clip_id]).fetchall()
        if not row:
            raise Refused("no such clip")
        media, keyframes, run_id = row[0]
        if keyframe is None:
            uri, limit = media, MAX_MEDIA_BYTES
        else:
            uri = keyframes[keyframe] if keyframes and keyframe < len(keyframes) else None
            limit = MAX_IMAGE_BYTES
        if uri is None:
            raise Refused("no such file")
        return OutputFiles.of(self.output, con).locate(uri, run_id), limit

    def add_labels(self, items: Any, who: Any) -> int:
        if not isinstance(items, list) or not items or len(items) > 1000:
            raise ValueError("labels: a list of 1 to 1000 {clip_id, label, reason}")
        labels = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("clip_id"), str) \
                    or not isinstance(item.get("label"), str) \
                    or not isinstance(item.get("reason") or "", str):
                raise ValueError("each label is {clip_id, label, reason}")
            labels.append(Label(item["clip_id"], item["label"], item.get("reason")))
        name = who if isinstance(who, str) and who.strip() else self.who
        with self.writes:
            return write_labels(self.output, labels, name, "review")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "vidcurate-review"
    sys_version = ""
    timeout = 30  # a stalled connection cannot hold up Ctrl-C for longer
    app: ReviewApp  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base's name
        pass  # the terminal shows the URL and the stop line, not every thumbnail

    # ------------------------------------------------------------ checks
    def _refuse(self, code: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _common_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")  # the token is in URLs
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "no-store")

    def _allowed(self, write: bool) -> bool:
        host = self.headers.get("Host", "")
        port = self.app.port
        if host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            self._refuse(403, "refused: unexpected Host header")
            return False
        if write:
            given = self.headers.get("X-Vidcurate-Token", "")
        else:
            given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), self.app.token.encode()):
            self._refuse(403, "refused: missing or wrong token")
            return False
        return True

    # ------------------------------------------------------------ responses
    def _json(self, value: Any, code: int = 200) -> None:
        body = json.dumps(value, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        self.end_headers()
        self.wfile.write(body)

    def _text(self, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self._common_headers()
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                         "img-src 'self' data:; media-src 'self'; base-uri 'none'; "
                         "form-action 'none'; frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(data)

    def _file(self, path: str, limit: int) -> None:
        # locate() resolved every link; O_NOFOLLOW refuses one swapped in since, and
        # O_NONBLOCK keeps a FIFO swapped in from blocking; fstat decides.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError:
            self._refuse(404, "not found")
            return
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                self._refuse(404, "not found")
                return
            size, start, end = info.st_size, 0, info.st_size - 1
            wanted = _RANGE.match(self.headers.get("Range", "").strip())
            partial = bool(wanted and (wanted.group(1) or wanted.group(2)))
            if partial:
                first, last = wanted.group(1), wanted.group(2)
                if first:
                    start, end = int(first), min(int(last), size - 1) if last else size - 1
                else:  # bytes=-N: the last N bytes
                    start = max(0, size - int(last))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            self.send_response(206 if partial else 200)
            kind = "video/mp4" if path.lower().endswith(".mp4") else \
                "image/jpeg" if path.lower().endswith((".jpg", ".jpeg")) else \
                "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self._common_headers()
            self.end_headers()
            if self.command == "HEAD":
                return
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    # ------------------------------------------------------------ routes
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        if not self._allowed(write=False):
            return
        path = urlsplit(self.path).path
        if path == "/":
            self._text(PAGE.replace("__TOKEN__", self.app.token), "text/html; charset=utf-8")
        elif path == "/review.js":
            self._text(_script(), "text/javascript; charset=utf-8")
        elif path == "/api/clips":
            self._json(self.app.clips())
        elif m := _CLIP_ROUTE.match(path):
            detail = self.app.clip(m.group(1))
            self._json(detail) if detail else self._refuse(404, "no such clip")
        elif (m := _MEDIA_ROUTE.match(path)) or (m := _KEYFRAME_ROUTE.match(path)):
            index = int(m.group(2)) if m.re is _KEYFRAME_ROUTE else None
            try:
                found, limit = self.app.file(m.group(1), index)
            except Refused:
                self._refuse(404, "not found")
                return
            self._file(found, limit)
        else:
            self._refuse(404, "not found")

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed(write=True):
            return
        if urlsplit(self.path).path != "/api/labels":
            self._refuse(404, "not found")
            return
        if self.headers.get_content_type() != "application/json":
            self._refuse(415, "labels are sent as application/json")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._refuse(411, "Content-Length needed")
            return
        if not 0 < length <= MAX_BODY_BYTES:
            self._refuse(413, "body too large")
            return
        try:
            body = json.loads(self.rfile.read(length))
            written = self.app.add_labels(body.get("labels"), body.get("who"))
        except (ValueError, AttributeError) as e:  # ConfigError is a ValueError
            self._refuse(400, str(e))
            return
        self._json({"written": written})


class ReviewServer(http.server.ThreadingHTTPServer):
    # Requests in flight finish before the server closes (a label being written is
    # written): non-daemon threads, joined by server_close().
    daemon_threads = False
    block_on_close = True


def make_server(output: str, port: int = 0, who: str | None = None,
                profile: str = "default", max_clips: int = 5000,
                token: str | None = None) -> tuple[ReviewServer, str]:
    """The server bound to 127.0.0.1 (not yet serving) and its URL with the token."""
    loaded, _ = load_profile(profile)
    app = ReviewApp(output, token or secrets.token_urlsafe(24), who or default_who(),
                    [r.name for r in loaded.rules], max_clips)
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ReviewServer(("127.0.0.1", port), handler)
    app.port = server.server_address[1]
    return server, f"http://127.0.0.1:{app.port}/?token={app.token}"


def serve(output: str, port: int = 0, who: str | None = None, profile: str = "default",
          max_clips: int = 5000, open_browser: bool = False) -> int:
    server, url = make_server(output, port, who, profile, max_clips)
    print(f"review {output}: open {url}\n(Ctrl-C stops; labels are saved as you make them)",
          flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # waits for the requests in flight: their labels are written
    print("review stopped; every acknowledged label is in the labels table", file=sys.stderr)
    return 0


def _script() -> str:
    return resources.files("vidcurate.pipeline").joinpath("review.js").read_text("utf-8")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vidcurate review</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 0 1rem 1rem; color: #222; }
#bar { position: sticky; top: 0; background: #fff; padding: .5rem 0; z-index: 2;
       border-bottom: 1px solid #ddd; font-size: .85rem; }
#bar label { margin-right: .6rem; white-space: nowrap; }
#bar input[type=number] { width: 5.5rem; }
#keys { color: #666; font-size: .8rem; margin-top: .3rem; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
        gap: .6rem; margin-top: .6rem; }
.card { border: 2px solid #ddd; border-radius: 6px; padding: .4rem; font-size: .8rem;
        position: relative; }
.card.cursor { border-color: #1a73e8; box-shadow: 0 0 0 2px #1a73e855; }
.card.label-keep { background: #e8f5e9; }
.card.label-drop { background: #fdecea; }
.card video, .card img { width: 100%; aspect-ratio: 16 / 9; background: #111;
                         object-fit: contain; }
.card .caption { font-weight: 600; margin: .2rem 0; }
.card .flags span { background: #fde7c7; border-radius: 3px; padding: 0 .25rem;
                    margin-right: .2rem; }
.card .signals { color: #555; }
.card .verdict { position: absolute; top: .5rem; right: .5rem; background: #fff;
                 border-radius: 3px; padding: 0 .3rem; font-weight: 700; }
.pending { opacity: .6; }
#detail { position: fixed; inset: 3% 8%; background: #fff; border: 1px solid #888;
          border-radius: 8px; padding: 1rem; overflow: auto; z-index: 5;
          box-shadow: 0 4px 30px #0006; }
#detail[hidden] { display: none; }
#detail video { max-width: 60%; }
#detail .frames img { width: 18%; margin-right: 1%; }
#detail table { border-collapse: collapse; font-size: .8rem; }
#detail td, #detail th { border: 1px solid #ccc; padding: .15rem .4rem; text-align: left; }
#reason-box[hidden] { display: none; }
#status { font-weight: 600; }
</style>
</head><body>
<div id="bar">
 <strong>vidcurate review</strong>
 <span id="status"></span> ·
 <span id="shown">0</span> of <span id="total">0</span> clips shown ·
 <span id="labelled">0</span> labelled
 <div>
  <label>flag <select id="f-flag"><option value="">any</option></select></label>
  <label>outcome <select id="f-outcome"><option value="">any</option>
   <option value="kept">kept by curate</option><option value="dropped">dropped</option>
   <option value="none">not curated</option></select></label>
  <label>rule <select id="f-rule"><option value="">any</option></select></label>
  <label>label <select id="f-label"><option value="">any</option>
   <option value="none">unlabelled</option><option value="keep">keep</option>
   <option value="drop">drop</option></select></label>
  <label>signal <select id="f-signal"><option value="">-</option></select></label>
  <label>min <input id="f-min" type="number" step="any"></label>
  <label>max <input id="f-max" type="number" step="any"></label>
  <label>text <input id="f-text" type="search" placeholder="OCR, speech, captions"></label>
 </div>
 <div id="reason-box" hidden>
  <label>reason for drop <input id="reason" list="rules" size="30"></label>
  <datalist id="rules"></datalist> (Enter saves, Esc cancels)
 </div>
 <div id="keys">keys: arrows / h j k l move · <b>y</b> keep · <b>n</b> drop · <b>1</b>-<b>9</b>
  drop for that rule · <b>r</b> drop with a reason · <b>o</b> or Enter opens · Esc closes ·
  <span id="rule-keys"></span></div>
</div>
<div id="grid"></div>
<div id="detail" hidden></div>
<script src="review.js?token=__TOKEN__"></script>
</body></html>
"""
