"""What every layer may need: the configuration error, the small interface through
which each stage declares its command-line flags and checks their values, and the base
of every stage's expected failures.

A stage's config dataclass has `add_arguments(add)` (its flags) and `from_options(o)`
(its values, validated, raising ConfigError); pipeline/options.py composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# add("clip-media", default=..., help=...) declares --clip-media and --clip_media;
# aliases=(...) adds other spellings. Booleans use action="store_true".
AddArgument = Callable[..., None]


def is_local(uri: str) -> bool:
    """A path on this machine: no scheme, or file://."""
    return "://" not in uri or uri.startswith("file://")


def is_remote(uri: str) -> bool:
    """Anything Beam's FileSystems or HTTP reach: gs://, s3://, http(s)://, ..."""
    return not is_local(uri)


class ConfigError(ValueError):
    """A bad option or input location, found before any work starts."""


def check(*rules: tuple[Any, str]) -> None:
    """Raise ConfigError with the message of the first rule that does not hold."""
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def auto_or_count(value: Any, flag: str, low: int, high: int | None = None) -> int | None:
    """An `auto|N` option: None for auto, else N in [low, high] (no upper bound when high
    is None); ConfigError otherwise."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text.isdigit() and low <= int(text) and (high is None or int(text) <= high):
        return int(text)
    bounds = f"{low}-{high}" if high is not None else f"a number >= {low}"
    raise ConfigError(f"{flag} must be auto or {bounds}, got {value!r}")


class StageError(Exception):
    """An expected failure of one element in a stage (bad media, a failed download, a
    teacher that could not answer): it becomes an error row with its `error_type` and
    message, never a crash."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions unpickle as cls(*args), and ours take more than the message. Runners
        # pickle them where a failure crosses a step boundary (Beam's dead-letter outputs).
        return _restore_error, (type(self), str(self), dict(self.__dict__))


def _restore_error(cls: type[StageError], message: str, state: dict[str, Any]) -> StageError:
    error = Exception.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error
