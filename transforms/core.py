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


def private_dir(path: str, *, what: str = "work folder", strict: bool = True) -> str:
    """Create `path` (and missing parents) as a folder only this user can enter (0700),
    or check an existing one: a real folder (not a symlink), owned by this user, that
    nobody else can write to. Files in a shared place such as /tmp are read back
    later (listings, downloads, frame samples): a folder another local user made first,
    or can write to, would let them swap those files. Not `strict` (a --work-dir the
    user named, which may be a team's group-writable folder): only other users at large
    must not write to it; the run's own folder inside it is strict. Raises ConfigError
    otherwise."""
    import contextlib
    import os
    import stat

    parent = os.path.dirname(path.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    found = os.lstat(path)
    problem = None
    if stat.S_ISLNK(found.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(found.st_mode):
        problem = "is not a folder"
    elif hasattr(os, "geteuid") and found.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {found.st_uid})"
    elif found.st_mode & (stat.S_IWGRP | stat.S_IWOTH if strict else stat.S_IWOTH):
        problem = f"can be written by other users (mode {stat.S_IMODE(found.st_mode):04o})"
    if problem:
        raise ConfigError(f"the {what} {path} {problem}: another local user could change "
                          "the files vidcurate reads back there; remove it or choose "
                          "another --work-dir")
    return path


def private_tmp_dir(name: str) -> str:
    """<tmp>/<name>-<uid>: this user's own folder in the shared temp dir, private."""
    import os
    import tempfile

    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return private_dir(os.path.join(tempfile.gettempdir(), f"{name}-{uid}"),
                       what=f"folder {name}")
