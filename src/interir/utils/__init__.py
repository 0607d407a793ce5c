"""Shared helpers used by every layer (image I/O)."""

from interir.utils.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    LoadedImage,
    image_to_uint,
    list_images,
    read_image,
    write_image,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "LoadedImage",
    "image_to_uint",
    "list_images",
    "read_image",
    "write_image",
]
