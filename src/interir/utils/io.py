"""Image file input/output with one conversion rule for every format.

Reading (:func:`read_image`) always returns an RGB float32 tensor ``(3, H, W)`` in [0, 1]:

- 8-bit samples are divided by 255, 16-bit samples by 65535 (``bit_depth`` records which);
- grayscale images (``L``, ``LA``, ``1``, 16-bit gray) are replicated to three identical channels
  and flagged ``was_grayscale=True``;
- an alpha channel (RGBA, LA, palette transparency) is split off into ``alpha`` ``(1, H, W)`` and
  never composited into the colour channels;
- palette and other colour modes (CMYK, YCbCr, ...) are converted to RGB by Pillow;
- the EXIF orientation tag is applied, so the tensor is the image as a viewer shows it.

16-bit RGB PNG files are read with ``pypng`` and 16-bit RGB TIFF files with ``tifffile``, because
Pillow silently truncates them to 8 bits; both are in the ``io16`` extra
(``pip install "interir[io16]"``). Floating-point TIFF samples (32-bit RGB through ``tifffile``,
single-channel through Pillow) are taken as values in [0, 1]: a sample beyond it by more than
:data:`FLOAT_TOLERANCE`, or NaN, is an error, smaller excursions are clipped; they report
``bit_depth=16``, so outputs keep 16 bits.

Broken data is an error, never a silently black image: a PNG whose compressed data holds fewer
rows than its header declares is refused (checked before decoding, see :func:`_png_data_problem`),
and Pillow's ``LOAD_TRUNCATED_IMAGES`` is never used.

Images larger than a pixel limit are refused from their header, before any pixel is decoded: a
small file can declare a huge size (a 140 KB PNG of 12000 x 12000 pixels decodes to gigabytes). The
limit defaults to what the available memory can hold at :data:`BYTES_PER_PIXEL`; the CLI's
``--max-pixels`` sets it (:func:`pixel_limit`). :func:`read_header` gives the size, bit depth and
alpha of a file from its header alone.

Writing (:func:`write_image`) picks the format from the extension (PNG 8/16-bit, JPEG, TIFF or
BMP 8-bit), rounds to the nearest integer level and replaces the target atomically.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from interir.utils.device import address_space_headroom, available_memory_bytes
from interir.utils.files import atomic_open

__all__ = [
    "IMAGE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "BYTES_PER_PIXEL",
    "ImageReadError",
    "ImageHeader",
    "LoadedImage",
    "read_header",
    "read_image",
    "max_pixels",
    "pixel_limit",
    "write_image",
    "list_images",
    "image_to_uint",
]

#: File extensions (lower case) recognised as images by :func:`list_images`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: File extensions (lower case) :func:`write_image` can write.
WRITABLE_EXTENSIONS: tuple[str, ...] = IMAGE_EXTENSIONS

#: Memory one pixel costs while an image is read, restored and written: the float32 colour planes
#: of the input (12 bytes), of the restored result and its tile blending (16), and the float32
#: copies made while quantising for writing (36), plus the decoder's and encoder's buffers. About
#: 80 bytes were counted; 100 leaves room for the model's working memory.
BYTES_PER_PIXEL = 100
#: Limit used when the system does not report its available memory.
FALLBACK_MAX_PIXELS = 256_000_000
_max_pixels_override: int | None = None
#: How far beyond [0, 1] a floating-point sample may lie and still be read (then clipped).
FLOAT_TOLERANCE = 1e-3
#: Deflate cannot compress by more than about 1032:1, so a PNG whose compressed data is smaller
#: than its declared pixel data over this ratio cannot be complete ([ours]: with margin).
MAX_DEFLATE_RATIO = 1100

_FIX = (
    "check that the file is a complete PNG, JPEG, TIFF, BMP or WebP image (re-export it), "
    "or remove it from the folder"
)


class ImageReadError(ValueError):
    """An image file could not be read.

    Attributes:
        path: the file that failed.
        reason: what went wrong.
    """

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None) -> None:
        # args kept simple so the error pickles across DataLoader workers
        super().__init__(str(path), reason, fix)
        self.path = str(path)
        self.reason = reason
        self.fix = fix or _FIX

    def __str__(self) -> str:
        return f"cannot read image '{self.path}': {self.reason}. Fix: {self.fix}."


# ----------------------------------------------------------------------------------------------
# pixel limit


@contextlib.contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """Within the block, :func:`read_image` refuses images of more than ``limit`` pixels by default
    (the CLI's ``--max-pixels``); ``None`` keeps the limit in force.

    A limit above Pillow's own decompression-bomb threshold raises that threshold too for the
    block, so an image the user allowed is not refused by Pillow instead.
    """
    global _max_pixels_override
    if limit is None:
        yield
        return
    if limit < 1:
        raise ValueError(f"the pixel limit must be at least 1, got {limit}")
    saved = (_max_pixels_override, Image.MAX_IMAGE_PIXELS)
    _max_pixels_override = int(limit)
    # Pillow warns above MAX_IMAGE_PIXELS and errors above twice that.
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = int(limit)
    try:
        yield
    finally:
        _max_pixels_override, Image.MAX_IMAGE_PIXELS = saved


def max_pixels() -> tuple[int, str]:
    """The pixel limit in force and where it comes from (for error messages)."""
    if _max_pixels_override is not None:
        return _max_pixels_override, "set with --max-pixels"
    available = available_memory_bytes()
    if available is None:
        return FALLBACK_MAX_PIXELS, "the default when available memory is unknown"
    limit = max(1, available // BYTES_PER_PIXEL)
    gib = available / 2**30
    what = ("of address space left under `ulimit -v`" if available == address_space_headroom()
            else "of available memory")
    return limit, f"from {gib:.1f} GiB {what} at {BYTES_PER_PIXEL} bytes/pixel"


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} Mpx" if pixels >= 100_000 else f"{pixels:,} pixels"


def _check_pixels(path: Path, width: int, height: int, limit: int | None) -> None:
    """Refuse an image whose header declares more pixels than the limit (nothing decoded yet)."""
    origin = "max_pixels"
    if limit is None:
        limit, origin = max_pixels()
    pixels = int(width) * int(height)
    if pixels <= limit:
        return
    need = pixels * BYTES_PER_PIXEL / 2**30
    raise ImageReadError(
        path,
        f"its header declares {width} x {height} = {_mpx(pixels)}, more than the limit of "
        f"{_mpx(limit)} ({origin})",
        f"if the image is genuine and the machine has about {need:.1f} GiB free, pass "
        f"--max-pixels {pixels} (max_pixels={pixels}); otherwise downscale or split the image",
    )


@dataclass
class ImageHeader:
    """What a file's header says, read without decoding its pixels (see :func:`read_header`).

    Attributes:
        width, height: stored size (before any EXIF rotation).
        bit_depth: 8 or 16, as :func:`read_image` would report it.
        has_alpha: True when :func:`read_image` would return an alpha channel.
        format: Pillow's format name (``"PNG"``, ``"TIFF"``, ...).
    """

    width: int
    height: int
    bit_depth: int
    has_alpha: bool
    format: str | None


@dataclass
class LoadedImage:
    """An image read from disk.

    Attributes:
        image: float32 tensor ``(3, H, W)`` in [0, 1] (grayscale replicated to three channels).
        alpha: float32 tensor ``(1, H, W)`` in [0, 1], or ``None`` when the file has no alpha.
        bit_depth: 8 or 16, the sample depth of the file.
        was_grayscale: True when the file stored a single colour channel.
        path: the file read.
    """

    image: torch.Tensor
    alpha: torch.Tensor | None
    bit_depth: int
    was_grayscale: bool
    path: Path

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])


# ----------------------------------------------------------------------------------------------
# reading


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an ``(H, W, C)`` array, as Pillow's exif_transpose."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return np.rot90(arr, 2).transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG IHDR chunk, or None when the file is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24]


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of each PNG colour type.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _png_raw_size(width: int, height: int, bits_per_pixel: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines a complete PNG decompresses to (one filter byte per row)."""
    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits_per_pixel + 7) // 8) if w > 0 and h > 0 else 0

    if not interlaced:
        return rows(width, height)
    return sum(rows((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
               for x0, y0, dx, dy in _ADAM7)


def _png_chunks(fh) -> tuple[bytes, list[tuple[int, int]]]:
    """The IHDR data and the ``(offset, length)`` of each IDAT chunk of an open PNG file, up to
    IEND (chunk headers only: the data is skipped over)."""
    fh.seek(len(_PNG_SIGNATURE))
    ihdr, idat = b"", []
    while True:
        head = fh.read(8)
        if len(head) < 8:
            return ihdr, idat
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR":
            ihdr = fh.read(min(length, 13))
            fh.seek(length - len(ihdr) + 4, os.SEEK_CUR)
            continue
        if kind == b"IDAT":
            idat.append((fh.tell(), length))
        elif kind == b"IEND":
            return ihdr, idat
        fh.seek(length + 4, os.SEEK_CUR)  # data and CRC


def _inflated_size(fh, idat: list[tuple[int, int]], enough: int) -> int:
    """Bytes the IDAT chunks decompress to, counted in 1 MiB pieces and stopped at ``enough``;
    -1 when the compressed stream is corrupt (left to the decoder to report)."""
    inflater, total = zlib.decompressobj(), 0
    try:
        for offset, length in idat:
            fh.seek(offset)
            data = fh.read(length)
            while data and total < enough:
                total += len(inflater.decompress(data, 1 << 20))
                data = inflater.unconsumed_tail
            if total >= enough or inflater.eof:
                break
    except zlib.error:
        return -1
    return total


def _png_data_problem(path: Path) -> str | None:
    """Why the compressed data of a PNG cannot fill the image its header declares, or None.

    Pillow decodes a PNG whose data stream ends early without an error and leaves the missing
    rows black, so a file of 85 bytes can declare 5000 x 4000 pixels and be "restored" for
    minutes. Two checks, before any pixel is decoded: the compressed size against the deflate
    ratio bound (reading chunk headers only), then the exact decompressed size, counted by
    streaming (1 MiB at a time, no image-sized buffer).
    """
    with open(path, "rb") as fh:
        if fh.read(8) != _PNG_SIGNATURE:
            return None
        ihdr, idat = _png_chunks(fh)
        if len(ihdr) < 13:
            return None  # malformed: Pillow reports it
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
        bits = depth * _PNG_CHANNELS.get(colour, 1)
        raw = _png_raw_size(width, height, bits, interlace == 1)
        stored = sum(length for _, length in idat)
        if stored * MAX_DEFLATE_RATIO < raw:
            return (f"its compressed image data ({stored:,} bytes) cannot hold the {width} x "
                    f"{height} pixels its header declares (a complete image needs at least "
                    f"{raw // MAX_DEFLATE_RATIO:,} bytes): the file is truncated or forged")
        inflated = _inflated_size(fh, idat, raw)
    if 0 <= inflated < raw:
        done = (f"{inflated * height // raw} of {height} rows" if not interlace else
                f"{inflated:,} of {raw:,} bytes")
        return (f"its image data ends after {done}: the file is truncated (the rest would be "
                "black)")
    return None


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG as a uint16 ``(H, W, C)`` array (C = 1, 2, 3 or 4)."""
    try:
        import png  # pypng
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImageReadError(
            path, 'reading 16-bit PNG needs pypng: pip install "interir[io16]"'
        ) from exc
    reader = png.Reader(filename=str(path))
    width, height, rows, info = reader.asDirect()
    planes = info["planes"]
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    return arr.reshape(height, width, planes)


def _read_tiff16(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImageReadError(
            path, 'reading 16-bit RGB TIFF needs tifffile: pip install "interir[io16]"'
        ) from exc
    arr = np.asarray(tifffile.imread(str(path)))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.dtype != np.uint16:
        raise ImageReadError(path, f"unsupported TIFF layout {arr.shape} {arr.dtype}")
    return arr


def _float_samples(path: Path, arr: np.ndarray) -> np.ndarray:
    """Floating-point samples as float32 in [0, 1]: excursions up to :data:`FLOAT_TOLERANCE`
    are clipped, larger ones and NaN are refused (scaling them silently would change the
    image)."""
    arr = np.asarray(arr, dtype=np.float32)
    low, high = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
    if not np.isfinite(arr).all():
        raise ImageReadError(path, "its floating-point samples include NaN or infinity",
                             "re-export the image with finite values in [0, 1]")
    if low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
        raise ImageReadError(
            path, f"its floating-point samples range from {low:g} to {high:g}; interir reads "
            "floating-point images as values in [0, 1]",
            "scale the image to [0, 1] (or save it as an 8/16-bit PNG or TIFF)")
    return np.clip(arr, 0.0, 1.0)


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _tifffile_page(path: Path):
    """The first page of a TIFF that Pillow cannot open (e.g. 32-bit float RGB), via tifffile."""
    try:
        import tifffile
    except ImportError:
        raise ImageReadError(
            path, "it is a TIFF layout Pillow cannot read (e.g. floating-point RGB)",
            'install tifffile (pip install "interir[io16]"), or save the image as an 8/16-bit '
            "PNG or TIFF") from None
    try:
        return tifffile.TiffFile(str(path))
    except Exception as exc:  # malformed header
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc


def _tifffile_header(path: Path, page) -> ImageHeader:
    """The :class:`ImageHeader` of a float TIFF page (refused if its samples are not floats)."""
    if page.dtype is None or page.dtype.kind != "f" or page.samplesperpixel not in (1, 2, 3, 4):
        raise ImageReadError(
            path, f"unsupported TIFF layout ({page.samplesperpixel} samples of {page.dtype})",
            "save the image as an 8/16-bit PNG or TIFF")
    alpha = page.samplesperpixel in (2, 4)
    return ImageHeader(int(page.imagewidth), int(page.imagelength), 16, alpha, "TIFF")


def _read_tifffile(path: Path, max_pixels: int | None) -> tuple[np.ndarray, int, int]:
    """A float TIFF as ``(H, W, C)`` float32 in [0, 1], its bit depth (16) and orientation."""
    with _tifffile_page(path) as tif:
        page = tif.pages[0]
        head = _tifffile_header(path, page)
        _check_pixels(path, head.width, head.height, max_pixels)
        orientation = page.tags.get(274)
        try:
            arr = page.asarray()
        except Exception as exc:  # truncated strips, missing codec
            raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc
        axes = page.axes
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif axes.startswith("S"):  # planar configuration: (C, H, W)
        arr = arr.transpose(1, 2, 0)
    return _float_samples(path, arr), 16, int(orientation.value) if orientation else 1


def _pil_to_array(img) -> tuple[np.ndarray, int]:
    """A Pillow image as ``(H, W, C)`` array with C in 1-4, and its bit depth."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.uint16)[:, :, None], 16
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError("32-bit integer samples outside 0..65535; convert to 8/16-bit PNG")
        return arr.astype(np.uint16)[:, :, None], 16
    if mode == "F":  # single-channel floats: range-checked by read_image
        return np.asarray(img, dtype=np.float32)[:, :, None], 16
    if mode == "1":
        img = img.convert("L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode == "La":
        img = img.convert("LA")
        mode = "LA"
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, 8


_MODES_16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: Modes whose samples Pillow itself decodes at full depth (others of 16 bits go to tifffile).
_PILLOW_16 = (*_MODES_16, "F")


def _tiff_bits(img) -> int | None:
    bps = img.tag_v2.get(258)
    return max(bps) if isinstance(bps, tuple) else bps


def _header_of(img, path: Path) -> ImageHeader:
    """The :class:`ImageHeader` of an opened (not yet loaded) Pillow image."""
    fmt, mode = img.format, img.mode
    if fmt == "PNG":
        deep = _png_bit_depth(path) == 16
    elif fmt == "TIFF":
        deep = _tiff_bits(img) == 16 or mode in _MODES_16 or mode == "F"
    else:
        deep = mode in _MODES_16
    # As read_image: palette transparency becomes alpha; 16-bit PNG/TIFF keep their alpha plane.
    alpha = "A" in mode or (mode == "P" and "transparency" in img.info)
    if fmt == "PNG" and deep and "transparency" in img.info:
        alpha = True  # pypng turns a tRNS chunk into an alpha plane
    width, height = img.size
    return ImageHeader(int(width), int(height), 16 if deep else 8, bool(alpha), fmt)


def _open_image(path: Path):
    """``Image.open`` (lazy: the header only), with a missing file and unknown formats reported;
    ``None`` for a TIFF that Pillow cannot open (floating-point RGB: :func:`_read_tifffile`)."""
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        with warnings.catch_warnings():
            # Our own limit, checked next, replaces Pillow's warning (its error stays, see below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except UnidentifiedImageError:
        if _is_tiff(path):
            return None  # a TIFF layout Pillow lacks: read with tifffile
        raise ImageReadError(path, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            path, f"Pillow refuses it as too large ({exc})",
            "if the image is genuine, pass --max-pixels with its pixel count (this raises "
            "Pillow's limit too); otherwise downscale or split the image",
        ) from None
    except Exception as exc:  # a plugin failing on a malformed header
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc


def read_header(path: str | os.PathLike) -> ImageHeader:
    """Size, bit depth and alpha of an image file from its header (no pixel is decoded).

    Raises:
        ImageReadError: the file is missing or not a recognised image.
    """
    path = Path(path)
    img = _open_image(path)
    if img is None:
        with _tifffile_page(path) as tif:
            return _tifffile_header(path, tif.pages[0])
    try:
        return _header_of(img, path)
    except Exception as exc:  # malformed tags
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc
    finally:
        img.close()


def read_image(
    path: str | os.PathLike, max_pixels: int | None = None, check_data: bool = True
) -> LoadedImage:
    """Read an image file into an RGB float tensor (see the module docstring for the rule).

    Args:
        path: PNG (8/16-bit), JPEG, TIFF (8/16-bit or floating point), BMP or WebP file.
        max_pixels: refuse images with more pixels than this, from the header, before decoding
            (``None``: the limit of :func:`max_pixels`, by default from the available memory).
        check_data: check that a PNG's compressed data fills every row its header declares
            (:func:`_png_data_problem`; about a third of the decoding time). Only a caller that
            has already read the same file with the check may skip it (a training set read once
            per sample).

    Returns:
        A :class:`LoadedImage` with ``image`` ``(3, H, W)`` float32 in [0, 1].

    Raises:
        ImageReadError: the file is missing, truncated, corrupt, too large or in an unsupported
            layout; the message names the path and the fix.
    """
    path = Path(path)
    img = _open_image(path)
    if img is None:
        arr, depth, orientation = _read_tifffile(path, max_pixels)
        return _loaded(path, arr, depth, orientation)
    try:
        with img:
            head = _header_of(img, path)
            _check_pixels(path, head.width, head.height, max_pixels)
            problem = _png_data_problem(path) if check_data and head.format == "PNG" else None
            if problem:
                raise ImageReadError(path, problem, "copy or export the file again (an "
                                     "interrupted download or copy leaves such files)")
            orientation = int(img.getexif().get(0x0112, 1) or 1)
            if head.format == "PNG" and head.bit_depth == 16:
                arr, depth = _read_png16(path), 16
            elif head.format == "TIFF" and head.bit_depth == 16 and img.mode not in _PILLOW_16:
                arr, depth = _read_tiff16(path), 16
            else:
                img.load()
                arr, depth = _pil_to_array(img)
    except ImageReadError:
        raise
    except Exception as exc:  # truncated data, decoder errors, unsupported modes, ...
        raise ImageReadError(path, f"{type(exc).__name__}: {exc}") from exc
    if arr.dtype.kind == "f":
        arr = _float_samples(path, arr)
    return _loaded(path, arr, depth, orientation)


def _loaded(path: Path, arr: np.ndarray, depth: int, orientation: int) -> LoadedImage:
    """The :class:`LoadedImage` of decoded ``(H, W, C)`` samples: integers of ``depth`` bits,
    or floats already in [0, 1]."""
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(path, f"empty or malformed image of shape {arr.shape}")
    arr = _orient(arr, orientation)
    channels = arr.shape[2]
    scale = np.float32(1.0 if arr.dtype.kind == "f" else 65535.0 if depth == 16 else 255.0)
    # (C, H, W) float32 in numpy (single-threaded copies; torch's strided copy is slow here)
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32) / scale
    alpha_np = None
    if channels in (1, 2):
        colour = np.ascontiguousarray(np.broadcast_to(chw[:1], (3,) + chw.shape[1:]))
        alpha_np = chw[1:2] if channels == 2 else None
        gray = True
    elif channels in (3, 4):
        colour = chw[:3] if channels == 3 else np.ascontiguousarray(chw[:3])
        alpha_np = chw[3:4] if channels == 4 else None
        gray = False
    else:
        raise ImageReadError(path, f"unsupported number of channels: {channels}")
    image = torch.from_numpy(colour)
    alpha = None if alpha_np is None else torch.from_numpy(np.ascontiguousarray(alpha_np))
    return LoadedImage(
        image=image,
        alpha=alpha,
        bit_depth=depth,
        was_grayscale=gray,
        path=path,
    )


# ----------------------------------------------------------------------------------------------
# writing


def image_to_uint(image: torch.Tensor | np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Quantise a float image in [0, 1] to integers, rounding to nearest (half away from zero).

    Args:
        image: ``(C, H, W)`` or ``(H, W)`` float tensor/array; values outside [0, 1] are clipped.
        bit_depth: 8 (uint8) or 16 (uint16).

    Returns:
        ``(H, W, C)`` (or ``(H, W)``) uint8/uint16 array.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if isinstance(image, torch.Tensor):
        arr = image.detach().to("cpu", torch.float32).numpy()
    else:
        arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.transpose(1, 2, 0)
    maxval = 255 if bit_depth == 8 else 65535
    # float32 keeps the temporary copies of a 12-megapixel photo at ~150 MB each.
    q = np.floor(np.clip(arr, 0.0, 1.0) * np.float32(maxval) + np.float32(0.5))
    return q.astype(np.uint8 if bit_depth == 8 else np.uint16)


def write_image(
    path: str | os.PathLike,
    image: torch.Tensor | np.ndarray,
    bit_depth: int = 8,
    alpha: torch.Tensor | np.ndarray | None = None,
    grayscale: bool = False,
    quality: int = 95,
) -> Path:
    """Write an image atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: target; the extension picks the format: ``.png`` (8 or 16-bit), ``.jpg``/``.jpeg``,
            ``.tif``/``.tiff``, ``.bmp`` (8-bit only).
        image: ``(3, H, W)`` (or ``(1, H, W)``) float in [0, 1]; clipped, rounded to nearest.
        bit_depth: 8 or 16 (16 only for PNG).
        alpha: optional ``(1, H, W)`` or ``(H, W)`` float in [0, 1] written as an alpha channel
            (PNG and TIFF only).
        grayscale: write one channel, the mean of the three colour channels (which is exact for
            an image read from a grayscale file).
        quality: JPEG quality.

    Returns:
        The path written.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.asarray(image))
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    image = image.detach().to("cpu", torch.float32)
    if grayscale or image.shape[0] == 1:
        image = image.mean(dim=0, keepdim=True)
    planes = [image]
    if alpha is not None:
        if isinstance(alpha, np.ndarray):
            alpha = torch.from_numpy(np.asarray(alpha))
        alpha = alpha.detach().to("cpu", torch.float32)
        if alpha.ndim == 2:
            alpha = alpha[None]
        if alpha.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"alpha size {tuple(alpha.shape)} does not match the image")
        planes.append(alpha[:1])
    if ext in (".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp") and bit_depth != 8:
        raise ValueError(f"{ext} is written as 8-bit only; use a .png path for 16-bit output")
    if ext in (".jpg", ".jpeg", ".bmp") and alpha is not None:
        raise ValueError(f"{ext} cannot store alpha; use a .png path or pass alpha=None")
    arr = image_to_uint(torch.cat(planes, 0), bit_depth)  # (H, W, C)
    channels = arr.shape[2]

    with atomic_open(path) as fh:
        if ext == ".png" and bit_depth == 16:
            try:
                import png  # pypng
            except ImportError as exc:  # pragma: no cover
                raise ImportError(
                    'writing 16-bit PNG needs pypng: pip install "interir[io16]"'
                ) from exc
            writer = png.Writer(
                width=arr.shape[1],
                height=arr.shape[0],
                greyscale=channels in (1, 2),
                alpha=channels in (2, 4),
                bitdepth=16,
            )
            writer.write(fh, arr.reshape(arr.shape[0], -1).tolist())
        else:
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
            pil = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode=mode)
            if ext == ".png":
                pil.save(fh, format="PNG")
            elif ext in (".jpg", ".jpeg"):
                pil.save(fh, format="JPEG", quality=quality)
            elif ext in (".tif", ".tiff"):
                pil.save(fh, format="TIFF")
            elif ext == ".bmp":
                pil.save(fh, format="BMP")
            elif ext == ".webp":
                pil.save(fh, format="WEBP", lossless=True)
            else:
                raise ValueError(
                    f"unknown image extension '{path.suffix}' for {path}; "
                    f"use one of {', '.join(IMAGE_EXTENSIONS)}"
                )
    return path


# ----------------------------------------------------------------------------------------------
# listing


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in a folder, sorted by path.

    Args:
        folder: directory to scan.
        recursive: also scan sub-folders.

    Returns:
        Sorted paths whose extension (any case) is in :data:`IMAGE_EXTENSIONS`; hidden files
        (names starting with ``.``) are skipped.

    Raises:
        FileNotFoundError / NotADirectoryError: the folder does not exist / is a file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder '{folder}' does not exist; check the path")
    if not folder.is_dir():
        raise NotADirectoryError(f"'{folder}' is a file, expected a folder of images")
    it = folder.rglob("*") if recursive else folder.iterdir()
    out = [
        p
        for p in it
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(out)
