"""Video sites (hosts in --ytdlp-hosts) through yt-dlp, an optional extra.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from vidcurate.transforms.downloads import Download
from vidcurate.transforms.fetch_config import FetchConfig, FetchError, work_path
from vidcurate.transforms.media.storage import file_digest


def is_video_site(url: str, cfg: FetchConfig) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in cfg.ytdlp_hosts)


def fetch_ytdlp(url: str, video_id: str, cfg: FetchConfig) -> tuple[Download, dict[str, Any]]:
    """A video site through yt-dlp (its Python API: no shell); returns the file and the
    site's metadata."""
    try:
        import yt_dlp
    except ModuleNotFoundError as e:
        raise FetchError("ytdlp_missing", "video sites need yt-dlp: pip install "
                         "'vidcurate[sites]' (or yt-dlp)") from e
    h = cfg.max_height
    opts = {
        "format": f"bv*[height<={h}]+ba/b[height<={h}]/bv*+ba/b",
        "outtmpl": work_path(cfg, video_id, ".ytdlp.%(ext)s"),
        "merge_output_format": "mp4",
        "quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True,
        "writesubtitles": True, "subtitleslangs": ["en", "en.*"],
        "socket_timeout": cfg.read_timeout_s, "retries": cfg.retries,
        "max_filesize": cfg.max_bytes or None,
        "http_headers": {"User-Agent": cfg.user_agent},
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=True)
            path = info.get("filepath") or (info.get("requested_downloads") or [{}])[0].get(
                "filepath") or ydl.prepare_filename(info)
    except Exception as e:  # yt-dlp raises DownloadError for refusals, geo-blocks, 404s
        message = str(e).replace("\x1b[0;31m", "").replace("\x1b[0m", "")
        raise FetchError("site_refused", f"yt-dlp: {message}") from e
    if not path or not os.path.isfile(path):
        raise FetchError("site_refused", "yt-dlp reported no downloaded file")
    size, sha = file_digest(path)
    meta = {k: info.get(k) for k in ("title", "description", "tags", "uploader", "license",
                                     "chapters", "webpage_url", "duration", "extractor")
            if info.get(k) not in (None, [], "")}
    subtitles = collect_subtitles(info.get("requested_subtitles"))
    if subtitles:
        meta["subtitles"] = subtitles
    return Download(path, size, sha, 1, info.get("webpage_url") or url, None), meta


def collect_subtitles(requested: dict[str, Any] | None) -> dict[str, str]:
    """Subtitle text by language from yt-dlp's requested_subtitles; the files it wrote
    next to the download are read and removed."""
    found: dict[str, str] = {}
    for lang, sub in (requested or {}).items():
        path = (sub or {}).get("filepath")
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                found[lang] = f.read()
            os.remove(path)
        elif (sub or {}).get("data"):
            found[lang] = str(sub["data"])
    return found
