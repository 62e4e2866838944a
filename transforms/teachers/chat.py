"""A small client for OpenAI-compatible chat-completions servers (vLLM, llama.cpp, Ollama).

One client per worker process and server: a semaphore bounds the requests in flight,
transient failures (429, 5xx, timeouts, dropped connections) are retried with
exponential backoff and full jitter, honouring Retry-After, and everything else
becomes a ``TeacherError`` for the clip, never an exception that stops the run.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import Any

from vidcurate.transforms.models.loading import ProcessCache
from vidcurate.transforms.retry import backoff_s, retry_after_s
from vidcurate.transforms.teachers.base import TeacherError, VlmConfig

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def image_part(jpeg: bytes) -> dict[str, Any]:
    """An image as the data-URL content part the chat-completions API accepts."""
    data = base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}


def answer_text(payload: Any) -> str:
    """The first choice's message text; TeacherError when there is none."""
    try:
        choices = payload["choices"]
    except (TypeError, KeyError) as e:
        raise TeacherError("bad_response", f"no 'choices' in the answer: "
                           f"{json.dumps(payload)[:200]}") from e
    if not choices:
        raise TeacherError("empty_answer", "the server returned no choices")
    message = choices[0].get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with content parts
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        raise TeacherError("empty_answer", "the first choice holds no text")
    return content.strip()


class ChatClient:

    def __init__(self, cfg: VlmConfig) -> None:
        import requests

        self.cfg = cfg
        self.session = requests.Session()
        self.slots = threading.BoundedSemaphore(cfg.concurrency)
        key = os.environ.get(cfg.api_key_env, "")
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    @classmethod
    def shared(cls, cfg: VlmConfig) -> ChatClient:
        """The process's client for this server (its semaphore bounds all threads)."""
        return _CLIENTS.get(cfg, lambda: cls(cfg))

    def complete(self, messages: list[dict[str, Any]], max_tokens: int | None = None,
                 response_format: dict[str, Any] | None = None) -> str:
        """The server's answer to one chat; retries transient failures. response_format
        is the API's structured-output option (a JSON schema the server holds its answer
        to, where it supports one)."""
        import requests

        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages,
                                "temperature": 0,
                                "max_tokens": max_tokens or self.cfg.max_tokens}
        if response_format is not None:
            body["response_format"] = response_format
        url = f"{self.cfg.url}/chat/completions"
        last = "no attempt"
        for attempt in range(1, self.cfg.retries + 2):
            wait: float | None = None
            try:
                with self.slots:
                    response = self.session.post(url, json=body, headers=self.headers,
                                                 timeout=self.cfg.timeout_s)
                if response.status_code in TRANSIENT_STATUS:
                    last = f"HTTP {response.status_code}"
                    wait = retry_after_s(response.headers.get("Retry-After"))
                elif response.status_code >= 400:
                    raise TeacherError(f"http_{response.status_code}",
                                       f"{url} answered {response.status_code}: "
                                       f"{response.text[:200]}")
                else:
                    try:
                        payload = response.json()
                    except ValueError as e:
                        raise TeacherError("bad_response", f"{url} answered with invalid "
                                           f"JSON: {response.text[:120]!r}") from e
                    return answer_text(payload)
            except requests.Timeout:
                last = f"timed out after {self.cfg.timeout_s:g} s"
            except requests.ConnectionError as e:
                last = f"connection failed: {e}"
            if attempt > self.cfg.retries:
                break
            time.sleep(min(wait if wait is not None else backoff_s(attempt, self.cfg),
                           self.cfg.backoff_max_s))
        error_type = "timeout" if last.startswith("timed out") else (
            "unreachable" if last.startswith("connection") else "http_retries_exhausted")
        raise TeacherError(error_type, f"{url}: {last} (after {self.cfg.retries + 1} "
                           f"attempts)")


_CLIENTS: ProcessCache[ChatClient] = ProcessCache()
