"""What every layer may need: the configuration error, and the small interface through
which each stage declares its command-line flags and checks their values.

A stage's config dataclass has `add_arguments(add)` (its flags) and `from_options(o)`
(its values, validated, raising ConfigError); pipeline/options.py composes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# add("clip-media", default=..., help=...) declares --clip-media and --clip_media;
# aliases=(...) adds other spellings. Booleans use action="store_true".
AddArgument = Callable[..., None]


class ConfigError(ValueError):
    """A bad option or input location, found before any work starts."""


def check(*rules: tuple[Any, str]) -> None:
    """Raise ConfigError with the message of the first rule that does not hold."""
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)
