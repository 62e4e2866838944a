"""Files named in an output's tables, followed only when they are the output's own.

An output folder received from someone else is input: its `media_uri` and
`keyframe_uris` may name `/home/me/.ssh/id_rsa`, `/dev/zero`, a FIFO, or a symbolic link
inside the folder that leads out of it. Every command that opens or links a path from
the tables (export, report, search, publish) goes through OutputFiles: a path is
followed only when it resolves (symbolic links included) to a regular file inside the
output folder, and is read only up to a size bound. A refused path is recorded with
its reason, for the command to count and show; it never stops the command.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from vidcurate.transforms.core import ConfigError, is_local

# A clip file is seconds to minutes of video; a bigger "clip" is not one of ours.
MAX_MEDIA_BYTES = 2 << 30
# Keyframes are JPEGs of one frame.
MAX_IMAGE_BYTES = 64 << 20
# How many refusals a command shows by name (it counts them all).
SHOWN = 5
OUTSIDE = "outside the output folder"


class Refused(ValueError):
    """A path from the tables that is not a regular file inside the output."""


@dataclass
class OutputFiles:
    """Resolves the paths in one output's tables to the files inside it.

    A run writes absolute paths under its --output (recorded in runs.output); the folder
    may have been moved or copied since, so the part after the recorded --output is
    looked up in this folder first, then the path as written. A published folder writes
    paths relative to itself. Either way the result must lie inside this folder."""

    output: str  # the output as given: a local path, file://..., or a URL
    recorded: dict[str, str] = field(default_factory=dict)  # run_id -> runs.output
    refused: list[str] = field(default_factory=list)  # one message per refused path

    def __post_init__(self) -> None:
        self.local = is_local(self.output)
        if self.local:
            self.base = os.path.abspath(self.output.removeprefix("file://"))
            self.real = os.path.realpath(self.base)
        else:
            self.base = self.real = self.output.rstrip("/")

    @classmethod
    def of(cls, output: str, con: Any) -> OutputFiles:
        """The output's files, with the --output each complete run recorded."""
        recorded = {run_id: path for run_id, path in con.sql(
            "SELECT run_id, output FROM runs WHERE output IS NOT NULL").fetchall()}
        return cls(output, recorded)

    # ------------------------------------------------------------ resolving
    def _candidates(self, uri: str, run_id: str | None) -> list[str]:
        if self.local:
            if not is_local(uri):
                return []  # a URL in a local output's tables: never fetched
            path = uri.removeprefix("file://")
            if not os.path.isabs(path):
                return [os.path.join(self.base, path)]
            found = []
            recorded = self.recorded.get(run_id or "", "").removeprefix("file://").rstrip("/")
            if recorded and path.startswith(recorded + "/"):
                found.append(os.path.join(self.base, path[len(recorded) + 1:]))
            return [*found, path]
        if "://" not in uri:
            return [f"{self.base}/{uri}"]
        found = []
        recorded = self.recorded.get(run_id or "", "").rstrip("/")
        if recorded and uri.startswith(recorded + "/"):
            found.append(f"{self.base}/{uri[len(recorded) + 1:]}")
        return [*found, uri]

    def _check_local(self, candidate: str) -> str:
        real = os.path.realpath(candidate)
        if not real.startswith(self.real + os.sep):
            raise Refused(OUTSIDE)
        try:
            mode = os.stat(real).st_mode
        except OSError:
            raise Refused("not found in the output") from None
        if not stat.S_ISREG(mode):
            raise Refused("not a regular file")
        return real

    def _check_remote(self, candidate: str) -> str:
        rest = candidate[len(self.base) + 1:] if candidate.startswith(self.base + "/") else None
        if rest is None or any(part in ("..", ".") for part in rest.split("/")):
            raise Refused(OUTSIDE)
        return candidate

    def locate(self, uri: str, run_id: str | None = None) -> str:
        """The real path (or, for a remote output, the URL) of the file a uri names;
        Refused when it is not a regular file inside the output."""
        candidates = self._candidates(uri, run_id)
        if not candidates:
            raise Refused("a URL in the tables of a local output")
        reasons = []
        for candidate in candidates:
            try:
                return (self._check_local if self.local else self._check_remote)(candidate)
            except Refused as e:
                reasons.append(str(e))
        # A file that should be inside says why it is not; else the path leads out.
        inside = [r for r in reasons if r != OUTSIDE]
        raise Refused(inside[0] if inside else OUTSIDE)

    def read(self, uri: str, run_id: str | None = None, limit: int = MAX_MEDIA_BYTES
             ) -> bytes:
        """The bytes of the file a uri names, at most limit of them; Refused otherwise."""
        found = self.locate(uri, run_id)
        if not self.local:
            from apache_beam.io.filesystems import FileSystems

            with FileSystems.open(found) as f:
                data = f.read(limit + 1)
        else:
            # realpath resolved every link: O_NOFOLLOW refuses one swapped in since, and
            # O_NONBLOCK keeps a FIFO swapped in from blocking the open; fstat decides.
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            try:
                fd = os.open(found, flags)
            except OSError as e:
                raise Refused(f"cannot be opened ({e.strerror})") from None
            with os.fdopen(fd, "rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise Refused("not a regular file")
                if info.st_size > limit:
                    raise Refused(f"larger than {limit} bytes")
                data = f.read(limit + 1)
        if len(data) > limit:  # grew since, or a remote file
            raise Refused(f"larger than {limit} bytes")
        return data

    # ------------------------------------------------------------ recording refusals
    def _note(self, uri: str, what: str, error: Refused) -> None:
        self.refused.append(f"{what}: {uri!r} refused: {error}")

    def find(self, uri: str | None, run_id: str | None = None, what: str = "file"
             ) -> str | None:
        """locate(), with a refusal recorded instead of raised; None for no uri."""
        if uri is None:
            return None
        try:
            return self.locate(uri, run_id)
        except Refused as e:
            self._note(uri, what, e)
            return None

    def fetch(self, uri: str | None, run_id: str | None = None, what: str = "file",
              limit: int = MAX_MEDIA_BYTES) -> bytes | None:
        """read(), with a refusal recorded instead of raised; None for no uri."""
        if uri is None:
            return None
        try:
            return self.read(uri, run_id, limit)
        except Refused as e:
            self._note(uri, what, e)
            return None


def describe(refused: list[str], shown: int = SHOWN) -> str:
    """One paragraph for a command's summary: how many paths were refused, and the
    first few with their reasons."""
    lines = [f"{len(refused)} paths in the tables were refused (only regular files "
             "inside the output are read):"]
    lines += [f"  {r}" for r in refused[:shown]]
    if len(refused) > shown:
        lines.append(f"  ... and {len(refused) - shown} more")
    return "\n".join(lines)


def new_or_empty_folder(dest: str, command: str, why: str) -> bool:
    """Make DEST ready for `command` (export, publish); True when it created the folder.
    Anything but a new or an empty local folder is refused (ConfigError, naming `why`):
    neither command deletes or overwrites what it did not write."""
    if not is_local(dest):
        raise ConfigError(f"{command} writes to a local folder; {dest!r} is not one")
    dest = dest.removeprefix("file://")
    if os.path.lexists(dest):
        if not os.path.isdir(dest) or os.path.islink(dest):
            raise ConfigError(f"{dest!r} exists and is not a folder: {command} writes into a "
                              "new or empty folder")
        if os.listdir(dest):
            raise ConfigError(f"{dest!r} is not empty: {command} writes into a new or empty "
                              f"folder ({why})")
        return False
    os.makedirs(dest)
    return True
