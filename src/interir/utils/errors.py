"""Error types shared across layers.

:class:`ConfigError` lives here rather than in ``interir.config`` because the data layer raises
it too (a patch size larger than every training image is a config problem found while reading
data), and ``data`` sits below ``config`` (docs/DEVELOPING.md). ``interir.config.ConfigError`` is
the same class.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the fix."""
