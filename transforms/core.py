"""What every layer may need and nothing else: the configuration error type."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad option or input location, found before any work starts."""
