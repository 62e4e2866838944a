"""Files between stages: streamed digests, publishing finished files to local or
bucket storage, and the per-worker cache of staged remote copies.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading

from apache_beam.io.filesystems import FileSystems

from vidcurate.transforms.core import is_local, is_remote, private_tmp_dir
from vidcurate.transforms.media.limits import MediaError, TooLarge

CHUNK = 1 << 20


def file_digest(uri: str, max_bytes: int = 0) -> tuple[int, str]:
    """Size and sha256 of a file or object (any Beam FileSystems uri), streamed: never
    the whole file in memory, the bytes as stored (no decompression by extension), and
    TooLarge past max_bytes (0: no limit)."""
    digest = hashlib.sha256()
    size = 0
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            if max_bytes and size > max_bytes:
                raise TooLarge(max_bytes)
            digest.update(chunk)
    return size, digest.hexdigest()


def publish(local_path: str, dest_uri: str) -> None:
    """Move a finished local file to its final place; the local file is consumed.

    Local targets get a rename (atomic within one file system; a copy to a temporary
    name and a rename across file systems). Other file systems (gs://, s3://, ...) go
    through Beam's FileSystems, whose object stores show a file only once complete.
    """
    if is_local(dest_uri):
        dest = dest_uri.removeprefix("file://")
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        try:
            os.replace(local_path, dest)
        except OSError:
            tmp = f"{dest}.tmp-{os.getpid()}"
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest)
            os.remove(local_path)
        return
    with open(local_path, "rb") as src, FileSystems.create(dest_uri) as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    os.remove(local_path)


# ------------------------------------------------------------------ local copies
# Stages after Fetch may run on another worker than the download: files staged in a
# shared store (gs://, s3://, ...) are copied to a per-worker cache when first read.
# The cache is this user's own folder (<tmp>/vidcurate-cache-<uid>, 0700): its files are
# read as the videos themselves, so no other local user may put one there.
CACHE_NAME = "vidcurate-cache"


CACHE_BYTES = 20 * 1024**3


_cache_lock = threading.Lock()


def localise(uri: str) -> str:
    """A local path for uri: itself when local, else a cached copy (LRU, bounded)."""
    if not is_remote(uri):
        return uri.removeprefix("file://")
    name = hashlib.sha256(uri.encode()).hexdigest()[:24] + os.path.splitext(
        uri.rsplit("/", 1)[-1])[1][:8]
    cache_dir = private_tmp_dir(CACHE_NAME)
    path = os.path.join(cache_dir, name)
    with _cache_lock:
        if os.path.exists(path):
            os.utime(path)  # most recently used
            return path
        tmp = f"{path}.part-{os.getpid()}-{threading.get_ident()}"
        try:
            with FileSystems.open(uri) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        except Exception as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise MediaError("stage_read_failed", f"cannot copy {uri} to this worker: "
                             f"{type(e).__name__}: {e}") from e
        os.replace(tmp, path)
        _evict(cache_dir, keep=path)
    return path


def _evict(cache_dir: str, keep: str) -> None:
    entries = []
    for name in os.listdir(cache_dir):
        full = os.path.join(cache_dir, name)
        if full != keep and ".part-" not in name:
            st = os.stat(full)
            entries.append((st.st_mtime, st.st_size, full))
    total = sum(size for _, size, _ in entries) + os.path.getsize(keep)
    for _, size, full in sorted(entries):
        if total <= CACHE_BYTES:
            break
        os.remove(full)
        total -= size


def forget(uri: str) -> None:
    """Drop this worker's cached copy of uri (its video is done)."""
    if is_remote(uri):
        name = hashlib.sha256(uri.encode()).hexdigest()[:24]
        with _cache_lock:
            cache_dir = private_tmp_dir(CACHE_NAME)
            for entry in os.listdir(cache_dir):
                if entry.startswith(name):
                    os.remove(os.path.join(cache_dir, entry))
