"""A Beam FileSystems scheme, `stagefs://`, backed by a local folder: a stand-in for a
shared bucket (gs://, s3://) in tests. Importing this module registers it."""

from __future__ import annotations

import os
import shutil

from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem

PREFIX = "stagefs://"


def to_local(path: str) -> str:
    return "/" + path[len(PREFIX):].lstrip("/") if path.startswith(PREFIX) else path


class StageFileSystem(LocalFileSystem):
    @classmethod
    def scheme(cls) -> str:
        return "stagefs"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *paths])

    def create(self, path, *args, **kwargs):
        os.makedirs(os.path.dirname(to_local(path)), exist_ok=True)
        return super().create(to_local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(to_local(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(to_local(path))

    def size(self, path):
        return super().size(to_local(path))

    def delete(self, paths):
        # As Beam's object stores: a path ending in "/" deletes everything under it.
        for p in paths:
            if p.endswith("/"):
                shutil.rmtree(to_local(p))
            else:
                os.remove(to_local(p))

    def match(self, patterns, limits=None):
        results = super().match([to_local(p) for p in patterns], limits)
        return [MatchResult(PREFIX + r.pattern.lstrip("/"),
                            [FileMetadata(PREFIX + m.path.lstrip("/"), m.size_in_bytes)
                             for m in r.metadata_list]) for r in results]
