"""Secrets in URLs, messages and options are redacted in what is written, and only there."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from vidcurate.schemas.records import ClipRecord, ErrorRecord, Fetched, Source, Span, VideoRow
from vidcurate.schemas.redact import (
    REDACTED,
    is_secret_name,
    redact_options,
    redact_text,
    redact_url,
)


@pytest.mark.parametrize("url, expected", [
    # AWS SigV4: the signature, credential and session token go, the rest stays.
    ("https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
     "AKIA%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
     "&X-Amz-Security-Token=IQoJb3&X-Amz-Signature=abc123",
     "https://b.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
     "REDACTED&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
     "&X-Amz-Security-Token=REDACTED&X-Amz-Signature=REDACTED"),
    # S3 query auth v2
    ("https://b.s3.amazonaws.com/v.mp4?AWSAccessKeyId=AKIA&Expires=1&Signature=s%2B%3D",
     "https://b.s3.amazonaws.com/v.mp4?AWSAccessKeyId=REDACTED&Expires=1&Signature=REDACTED"),
    ("https://storage.googleapis.com/b/v.mp4?X-Goog-Algorithm=GOOG4-RSA-SHA256"
     "&X-Goog-Credential=sa%40p.iam&X-Goog-Signature=0a1b",
     "https://storage.googleapis.com/b/v.mp4?X-Goog-Algorithm=GOOG4-RSA-SHA256"
     "&X-Goog-Credential=REDACTED&X-Goog-Signature=REDACTED"),
    # Azure SAS: only sig is secret; base64 padding may come unencoded.
    ("https://a.blob.core.windows.net/c/v.mp4?sv=2022-11-02&se=2024&sp=r&sig=ab+c==",
     "https://a.blob.core.windows.net/c/v.mp4?sv=2022-11-02&se=2024&sp=r&sig=REDACTED"),
    # CloudFront
    ("https://d.cloudfront.net/v.mp4?Expires=1&Policy=eyJ&Signature=x~y&Key-Pair-Id=K2",
     "https://d.cloudfront.net/v.mp4?Expires=1&Policy=REDACTED&Signature=REDACTED"
     "&Key-Pair-Id=REDACTED"),
    ("https://api.example.com/v?api_key=k1&apiKey=k2&access_token=t&token=t2&key=k3&auth=a"
     "&password=p&page=2",
     "https://api.example.com/v?api_key=REDACTED&apiKey=REDACTED&access_token=REDACTED"
     "&token=REDACTED&key=REDACTED&auth=REDACTED&password=REDACTED&page=2"),
    # userinfo: the password goes, the user stays; a token in the fragment goes too.
    ("ftp://me:hunter2@h.example:21/v.mp4", f"ftp://me:{REDACTED}@h.example:21/v.mp4"),
    ("https://u:p@ss@h.example/v.mp4#access_token=t&state=s",
     "https://u:REDACTED@h.example/v.mp4#access_token=REDACTED&state=s"),
    ("http://h.example?sig=s", "http://h.example?sig=REDACTED"),
    # Nothing secret: unchanged to the byte (odd encodings, empty values, names that
    # merely contain a secret word).
    ("https://h.example/a%20b/v.mp4?t=1&max_tokens=3&keyframe=2&monkey=1&sig=&x",
     "https://h.example/a%20b/v.mp4?t=1&max_tokens=3&keyframe=2&monkey=1&sig=&x"),
    ("https://user@h.example/v.mp4", "https://user@h.example/v.mp4"),
    ("s3://bucket/dir/v.mp4", "s3://bucket/dir/v.mp4"),
    ("/data/videos/a?token=b.mp4", "/data/videos/a?token=b.mp4"),  # a local file's name
    ("/data/m.csv#row=3", "/data/m.csv#row=3"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected  # idempotent


def test_redact_text_finds_urls_and_bare_queries_in_messages() -> None:
    assert redact_text("HTTP 404 from https://h/v.mp4?X-Amz-Signature=S1&n=1.") == \
        "HTTP 404 from https://h/v.mp4?X-Amz-Signature=REDACTED&n=1."
    # requests names the path and query without the host
    assert redact_text("ConnectionError: HTTPConnectionPool(host='h', port=1): Max retries "
                       "exceeded with url: /v.mp4?X-Goog-Signature=S2 (Caused by E)") == \
        ("ConnectionError: HTTPConnectionPool(host='h', port=1): Max retries exceeded with "
         "url: /v.mp4?X-Goog-Signature=REDACTED (Caused by E)")
    assert redact_text("redirect loop: http://a:pw@h/x?sig=S3 -> http://h/y?token=S4 "
                       "(see 'https://h/z?key=S5'), done") == \
        ("redirect loop: http://a:REDACTED@h/x?sig=REDACTED -> http://h/y?token=REDACTED "
         "(see 'https://h/z?key=REDACTED'), done")
    plain = "ffprobe: moov atom not found (at probe.py:12); 3 < 4 & key frames = 2"
    assert redact_text(plain) == plain


@pytest.mark.parametrize("name, secret", [
    ("s3_secret_access_key", True), ("s3_access_key_id", True), ("s3_session_token", True),
    ("azure_connection_string", True), ("X-Amz-Security-Token", True), ("sig", True),
    ("Key-Pair-Id", True), ("accessToken", True), ("vlm_api_key_env", False),
    ("api_key_env", False), ("vlm_max_tokens", False), ("keyframes", False),
    ("keyframe_width", False), ("page", False), ("X-Amz-Date", False), ("", False),
])
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_redact_options() -> None:
    options = {
        "config": {"input": "https://h/m.csv?X-Amz-Signature=S1", "retries": 4,
                   "teachers": {"vlm": {"api_key_env": "VLM_API_KEY", "max_tokens": 120,
                                        "url": "http://h/v1?api_key=S2"}},
                   "allow_schemes": ("file", "http")},
        "pipeline_options": {"s3_secret_access_key": "S3", "s3_access_key_id": "S4",
                             "s3_session_token": None, "no_auth": False,
                             "azure_connection_string": "AccountName=a;AccountKey=S5",
                             "dataflow_service_options": ["min_cpu=x", "api_token=S6"],
                             "experiments": ["use_runner_v2"]},
    }
    redacted = redact_options(options)
    text = json.dumps(redacted)
    assert not any(f"S{i}" in text for i in range(1, 7)), text
    assert redacted["config"]["input"] == "https://h/m.csv?X-Amz-Signature=REDACTED"
    assert redacted["config"]["teachers"]["vlm"] == {
        "api_key_env": "VLM_API_KEY", "max_tokens": 120, "url": "http://h/v1?api_key=REDACTED"}
    assert redacted["config"]["retries"] == 4
    assert redacted["pipeline_options"]["s3_secret_access_key"] == REDACTED
    assert redacted["pipeline_options"]["s3_session_token"] is None  # unset stays unset
    assert redacted["pipeline_options"]["no_auth"] is False
    assert redacted["pipeline_options"]["dataflow_service_options"] == [
        "min_cpu=x", "api_token=REDACTED"]
    assert redacted["pipeline_options"]["experiments"] == ["use_runner_v2"]
    assert options["pipeline_options"]["s3_secret_access_key"] == "S3"  # input untouched


SIGNED = "https://h.example/v.mp4?X-Amz-Signature=SECRETSIG&X-Amz-Credential=SECRETCRED"


def test_rows_redact_and_records_keep_the_real_uri() -> None:
    source = Source(uri=SIGNED, video_id="v1", metadata={"thumb": "https://h/t.jpg?sig=SECRETM"})
    fetched = Fetched(source, "/tmp/v1.mp4", 10, "ab", downloaded=True,
                      final_url="https://u:SECRETPW@cdn.example/v.mp4?token=SECRETTOK")
    video = VideoRow(source, "skipped", f"same content (sha256 ab…) as {SIGNED} (video v0)",
                     "r1", fetched=fetched).to_row()
    clip = ClipRecord("c1", "v1", SIGNED, 0, Span(0, 25, 0.0, 1.0), "h", "none", None, None,
                      None, (), (), "r1").to_row()
    error = ErrorRecord("fetch", SIGNED, "http_404", f"HTTP 404 from {SIGNED}", "r1",
                        time=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)).to_row()
    rows = json.dumps([video, clip, error], default=str)
    assert "SECRET" not in rows, rows
    redacted = SIGNED.replace("SECRETSIG", REDACTED).replace("SECRETCRED", REDACTED)
    assert video["source_uri"] == clip["source_uri"] == error["source_uri"] == redacted
    assert video["final_url"] == "https://u:REDACTED@cdn.example/v.mp4?token=REDACTED"
    assert error["message"] == f"HTTP 404 from {redacted}"
    assert video["video_id"] == "v1"
    # The records still hold the real uri: the fetch uses it.
    assert source.uri == SIGNED and dataclasses.replace(source).uri == SIGNED
    assert ErrorRecord("s", SIGNED, "t", "m", "r").source_uri == SIGNED
