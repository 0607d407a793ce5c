"""Shared helpers used by every layer (image I/O, files, threads, progress).

The image I/O names below are imported on first use (PEP 562 ``__getattr__``): they need torch,
and the light helpers of this package (``interir.utils.files``) are imported by every command at
start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_IO_NAMES = (
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "LoadedImage",
    "image_to_uint",
    "list_images",
    "read_image",
    "write_image",
)

__all__ = list(_IO_NAMES)


def __getattr__(name: str) -> Any:
    if name in _IO_NAMES:
        value = getattr(importlib.import_module("interir.utils.io"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'interir.utils' has no attribute {name!r}")
