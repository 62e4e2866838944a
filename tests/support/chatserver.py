"""A real OpenAI-compatible chat-completions server on 127.0.0.1 that misbehaves on demand.

The requested model name picks the behaviour:
  ok       answers with a caption that says how many images and context lines it got
  flaky    500 on the first request of each distinct body, then answers
  busy     429 with Retry-After: 1 on the first request of each body, then answers
  slow     waits longer than any test timeout (2 s) before answering
  garbage  200 with a body that is not JSON
  empty    200 with no choices
  denied   401
  mixed    per distinct body, in order of first arrival: answers, 500 forever, not JSON

and for the structured teacher (JSON answers to its prompt, built from the measured facts
the prompt lists, so each answer is a known function of the clip):
  struct-ok          a valid answer that agrees with every measured fact
  struct-invalid     JSON that never matches the schema (a field missing, a wrong type)
  struct-fixed       invalid at first, valid when asked again with what was wrong
  struct-contradict  valid, but says "static camera" and quotes and lists on-screen text
                     ("SALE 50% OFF") the facts do not hold
  struct-fenced      a valid answer inside a Markdown code fence
  struct-slow        a valid answer after 2 s (longer than any test timeout)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.httpserver import Loopback


class ChatLog:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.times: dict[str, list[float]] = defaultdict(list)
        self.headers: list[dict[str, str]] = []
        self.kinds: dict[str, int] = {}  # "mixed": the behaviour given to each body
        self.lock = threading.Lock()


def _answer(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    images = sum(p.get("type") == "image_url" for p in parts)
    text = " ".join(p.get("text", "") for p in parts if p.get("type") == "text")
    context = [ln.split(":")[0] for ln in text.splitlines()
               if ln.split(":")[0] in ("Title", "Description", "Speech", "On-screen text",
                                       "Tags")]
    if "proposed these captions" in text:
        n = text.count("\n- (")
        return f"a fused caption from {n} candidates"
    return f"a clip seen in {images} images with {', '.join(context) or 'no context'}"


def _fact(text: str, name: str) -> str | None:
    found = re.search(rf"^- {re.escape(name)}: (.*)$", text, flags=re.M)
    return found.group(1) if found else None


def struct_answer(body: dict[str, Any], kind: str) -> str:
    """The structured teacher's JSON answer of each kind (see the module docstring)."""
    parts = body["messages"][0]["content"]
    if isinstance(parts, str) or "as JSON" not in str(parts[0].get("text")):
        return _answer(body)  # another teacher's request (speech, vlm) to the same model
    text = " ".join(p.get("text", "") for p in parts if p.get("type") == "text")
    images = sum(p.get("type") == "image_url" for p in parts)
    camera = _fact(text, "camera motion") or "static"
    ocr = _fact(text, "on-screen text (OCR)")
    seen = [] if ocr in (None, "none") else ocr.split(" | ")
    level = _fact(text, "motion level") or "unknown"
    answer: dict[str, Any] = {
        "short": f"A shot from {images} keyframes with {level} motion.",
        "dense": f"A shot seen in {images} keyframes. The motion level is {level}.",
        "setting": "a test studio", "style": "live action", "shot_type": "wide shot",
        "camera": camera, "on_screen_text": seen[:1]}
    if kind == "struct-contradict":
        answer.update(
            short="A static shot of a shop window.",
            dense='A shop window with a sign that reads "SALE 50% OFF". The camera is '
                  'static throughout. People walk past.',
            camera="static" if camera != "static" else "pan_left",
            on_screen_text=["SALE 50% OFF"])
    if kind == "struct-invalid" or (kind == "struct-fixed" and len(body["messages"]) == 1):
        answer.pop("setting")
        answer["camera"] = 3
    out = json.dumps(answer)
    return f"```json\n{out}\n```" if kind == "struct-fenced" else out


def make_handler(log: ChatLog):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The client may have given up waiting (the timeout tests): nothing to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def _ok(self, body: dict[str, Any], content: str | None = None) -> None:
            payload = {"id": "x", "object": "chat.completion", "model": body["model"],
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {
                           "role": "assistant",
                           "content": _answer(body) if content is None else content}}]}
            self._send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def do_POST(self) -> None:  # noqa: C901 - one branch per behaviour
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/chat/completions":
                self._send(404, b"unknown path")
                return
            body = json.loads(raw)
            key = hashlib.sha256(raw).hexdigest()
            with log.lock:
                log.requests.append(body)
                log.headers.append(dict(self.headers))
                log.times[key].append(time.monotonic())
                n = len(log.times[key])
                kind = log.kinds.setdefault(key, len(log.kinds) % 3)
            model = body["model"]
            if model == "ok":
                self._ok(body)
            elif model == "flaky":
                self._send(500, b"oops") if n == 1 else self._ok(body)
            elif model == "busy":
                if n == 1:
                    self._send(429, b"slow down", {"Retry-After": "1"})
                else:
                    self._ok(body)
            elif model == "slow":
                time.sleep(2.0)
                self._ok(body)
            elif model == "garbage":
                self._send(200, b"{not json", {"Content-Type": "application/json"})
            elif model == "empty":
                self._send(200, b'{"choices": []}', {"Content-Type": "application/json"})
            elif model == "denied":
                self._send(401, b'{"error": "bad key"}')
            elif model.startswith("struct-"):
                if model == "struct-slow":
                    time.sleep(2.0)
                self._ok(body, struct_answer(body, model))
            elif model == "mixed":
                if kind == 0:
                    self._ok(body)
                elif kind == 1:
                    self._send(500, b"always broken")
                else:
                    self._send(200, b"<html>", {"Content-Type": "text/html"})
            else:
                self._send(404, b"no such model")

    return Handler


class ChatServer(Loopback):
    def __init__(self) -> None:
        self.log = ChatLog()
        super().__init__(make_handler(self.log))

    @property
    def url(self) -> str:
        return f"{self.base}/v1"
