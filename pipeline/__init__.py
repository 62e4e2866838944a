"""vidcurate: raw videos to a curated, queryable video-text dataset (Apache Beam)."""

__version__ = "0.1.0"
