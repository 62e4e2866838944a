"""Keyframes for the teachers that look at pictures (captioner, vlm)."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from vidcurate.schemas.records import ClipRecord
from vidcurate.transforms.teachers.base import TeacherError


def pick(uris: tuple[str, ...], n: int) -> list[str]:
    """n keyframes spread over the clip (all when there are not more)."""
    if n <= 0 or not uris:
        return []
    if len(uris) <= n:
        return list(uris)
    step = (len(uris) - 1) / max(1, n - 1)
    return [uris[round(i * step)] for i in range(n)] if n > 1 else [uris[len(uris) // 2]]


def keyframe_bytes(clip: ClipRecord, n: int) -> list[bytes]:
    out = []
    for uri in pick(clip.keyframe_uris, n):
        try:
            with FileSystems.open(uri) as f:
                out.append(f.read())
        except OSError as e:
            raise TeacherError("keyframe_unreadable", f"cannot read keyframe {uri}: {e}") from e
    return out
