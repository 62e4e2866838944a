"""models.loading: one loaded model per worker process, and weight failures that say
how to pass local files."""

from __future__ import annotations

import threading
import time

import pytest

from vidcurate.transforms.core import ConfigError
from vidcurate.transforms.models.loading import ProcessCache, fetching_weights


def test_each_key_is_built_once_even_when_threads_ask_together():
    cache: ProcessCache[object] = ProcessCache()
    builds: list[str] = []

    def build(key: str):
        def make() -> object:
            builds.append(key)
            time.sleep(0.05)  # long enough for the other threads to arrive meanwhile
            return object()
        return make

    got: dict[int, object] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(
        i, cache.get("a" if i % 2 else "b", build("a" if i % 2 else "b")))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(builds) == ["a", "b"]
    assert len({id(got[i]) for i in range(1, 8, 2)}) == 1  # every "a" caller: one object
    assert got[0] is not got[1]
    assert "a" in cache and "c" not in cache


def test_a_failed_build_is_not_kept():
    cache: ProcessCache[int] = ProcessCache()

    def broken() -> int:
        raise OSError("disk full")

    with pytest.raises(OSError):
        cache.get("k", broken)
    assert cache.get("k", lambda: 7) == 7


def test_weight_failures_become_config_errors_with_the_hint():
    with pytest.raises(ConfigError) as e, fetching_weights("CLIP weights X/y", "Pass --p."):
        raise ConnectionError("Max retries exceeded\nwith url ...")
    assert str(e.value) == ("cannot get CLIP weights X/y (ConnectionError: Max retries "
                            "exceeded). Pass --p.")
    with pytest.raises(ConfigError, match="^unknown model$"), fetching_weights("X", "h"):
        raise ConfigError("unknown model")  # our own messages pass unchanged
