"""Retry timing shared by everything that talks HTTP (Fetch, the chat teachers)."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Protocol


class BackoffSettings(Protocol):
    backoff_s: float
    backoff_max_s: float


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def backoff_s(attempt: int, cfg: BackoffSettings) -> float:
    """Exponential backoff with full jitter: uniform in [0, base * 2**(attempt-1)]."""
    return random.uniform(0, min(cfg.backoff_max_s, cfg.backoff_s * 2 ** (attempt - 1)))
