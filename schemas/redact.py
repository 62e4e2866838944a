"""Redaction of secrets in what the pipeline writes: signed-URL tokens, URL passwords and
secret-looking options.

Only written text is redacted (table rows, error messages, the runs row's options): the
pipeline keeps each source's full uri in memory to fetch it, and video ids still hash
the unredacted uri. Parameter names are kept, values become REDACTED, so a reader
still sees which URL it was and that it was signed.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "REDACTED"

# Words that make a parameter or option name secret, matched against whole words of the
# name (split at _ - . and camelCase), so that max_tokens or keyframes stay readable.
_SECRET_WORDS = frozenset({
    "secret", "password", "passwd", "pwd", "token", "credential", "credentials",
    "signature", "sig", "key", "apikey", "auth", "authorization", "policy",
    "accesskey", "awsaccesskeyid", "connection", "session", "hmac", "hdnts", "hdnea",
})
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_TRAILING = ".,;:!)]}"  # punctuation after a URL in prose, not part of it
# A query or fragment parameter anywhere in a text, e.g. requests' "with url: /v.mp4?sig=..";
# its value stops before punctuation that ends a sentence.
_PARAM = re.compile(r"([?&;#])([^=&;#?\s'\"<>]+)=([^&;#\s'\"<>]*?)"
                    r"(?=[.,;:!)\]}]*(?:[&;#\s'\"<>]|$))")


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or option of this name holds a secret. Names ending in
    _env hold the name of an environment variable (--vlm-api-key-env), not its value."""
    words = _words(unquote_plus(name))
    if not words or words[-1] == "env":
        return False
    return any(w in _SECRET_WORDS for w in words)


def _redact_params(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        sep, name, value = m.groups()
        return f"{sep}{name}={REDACTED}" if value and is_secret_name(name) else m.group(0)

    return _PARAM.sub(one, text)


def redact_url(url: str) -> str:
    """A scheme://... uri with secret query/fragment values and the userinfo password
    replaced; anything else (a local path) unchanged. Other characters are kept as they
    were: the result differs from the input only where a secret was."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return url
    end = len(rest)
    for c in "/?#":
        i = rest.find(c)
        if i != -1:
            end = min(end, i)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            netloc = f"{user}:{REDACTED}@{host}"
    return f"{scheme}://{netloc}{_redact_params(tail)}"


def redact_text(text: str) -> str:
    """Every URL in a free text (an error message, a skip reason) redacted, and secret
    parameters of URLs that appear without their scheme and host."""
    def one(m: re.Match[str]) -> str:
        url = m.group(0)
        kept = url.rstrip(_TRAILING)
        return redact_url(kept) + url[len(kept):]

    return _redact_params(_URL.sub(one, text))


def redact_options(value: Any, name: str = "") -> Any:
    """A JSON-like options tree with the values of secret-named options replaced and the
    URLs in every string redacted. Flags and numbers under a secret-looking name
    (--no_auth, allow_non_deterministic_key_coders) are no secrets and are kept."""
    if isinstance(value, dict):
        return {k: redact_options(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_options(v, name) for v in value]
    if isinstance(value, str):
        if value and is_secret_name(name):
            return REDACTED
        option, eq, setting = value.partition("=")  # "name=value" items of list options
        if eq and setting and "://" not in option and is_secret_name(option):
            return f"{option}={REDACTED}"
        return redact_text(value)
    return value
