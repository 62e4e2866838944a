"""How every model is found and kept: weights resolved before the graph is built (a
failure says how to pass local files), and one loaded copy per worker process.

Beam's ``shared.Shared`` keeps only the last object acquired in a process alive, and
RunInference loads a model per step, so a worker running stitching, OCR, embeddings,
scoring and teachers loaded the same weights several times (3 s and a 0.8 GB spike
each for CLIP after a long ASR stage). ProcessCache keeps each model for the life of
the process instead, loaded once even when several threads ask at the same time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from vidcurate.transforms.core import ConfigError

T = TypeVar("T")


class ProcessCache(Generic[T]):
    """One object per key for the life of the worker process, built on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Hashable, T] = {}
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The object for key; the first caller builds it while others with the same
        key wait (other keys are built meanwhile); a failed build is retried."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            item = build()
            with self._lock:
                self._items[key] = item
                self._building.pop(key, None)
            return item

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items


@contextlib.contextmanager
def fetching_weights(what: str, hint: str) -> Iterator[None]:
    """Around getting named weights (cache or download): any failure (no network, hub
    errors, disk) becomes a ConfigError naming the model and how to pass local files."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"cannot get {what} ({type(e).__name__}: {first[:200]}). "
                          + hint) from e
