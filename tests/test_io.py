"""Tests for interir.utils.io: reading/writing every supported layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interir.utils.io import (
    ImageReadError,
    image_to_uint,
    list_images,
    read_image,
    write_image,
)

DATA = Path(__file__).parent / "data"


def _rand_u8(h=12, w=17, c=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, c) if c > 1 else (h, w)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _rand_u16(h=12, w=17, c=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w, c) if c > 1 else (h, w)
    return rng.integers(0, 65536, size=shape, dtype=np.uint16)


def test_png8_rgb_round_trip(tmp_path):
    arr = _rand_u8()
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.image.shape == (3, 12, 17) and img.image.dtype == torch.float32
    assert img.bit_depth == 8 and not img.was_grayscale and img.alpha is None
    np.testing.assert_allclose(img.image.permute(1, 2, 0).numpy() * 255, arr, atol=1e-3)
    write_image(tmp_path / "b.png", img.image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


def test_png16_rgb_keeps_16_bits(tmp_path):
    import png

    arr = _rand_u16()
    png.from_array(arr.reshape(12, -1), "RGB;16").save(str(tmp_path / "a.png"))
    img = read_image(tmp_path / "a.png")
    assert img.bit_depth == 16 and not img.was_grayscale
    # Pillow would have truncated to 8 bits; check sub-8-bit detail survives
    np.testing.assert_allclose(img.image.permute(1, 2, 0).double().numpy() * 65535, arr, atol=0.02)
    write_image(tmp_path / "b.png", img.image, bit_depth=16)
    back = read_image(tmp_path / "b.png")
    assert back.bit_depth == 16
    assert np.array_equal(image_to_uint(back.image, 16), arr)


def test_png16_gray_and_rgba16(tmp_path):
    import png

    g = _rand_u16(c=1, seed=1)
    png.from_array(g, "L;16").save(str(tmp_path / "g.png"))
    img = read_image(tmp_path / "g.png")
    assert img.was_grayscale and img.bit_depth == 16
    assert torch.equal(img.image[0], img.image[1]) and torch.equal(img.image[1], img.image[2])
    assert np.array_equal(image_to_uint(img.image[:1], 16)[:, :, 0], g)

    rgba = _rand_u16(c=4, seed=2)
    write_image(tmp_path / "r.png", torch.from_numpy(rgba[..., :3] / 65535.0).permute(2, 0, 1),
                bit_depth=16, alpha=torch.from_numpy(rgba[..., 3] / 65535.0))
    back = read_image(tmp_path / "r.png")
    assert back.bit_depth == 16 and back.alpha is not None and back.alpha.shape == (1, 12, 17)
    assert np.array_equal(image_to_uint(back.alpha, 16)[:, :, 0], rgba[..., 3])
    assert np.array_equal(image_to_uint(back.image, 16), rgba[..., :3])


def test_grayscale_8bit_replicated_and_written_back(tmp_path):
    img = read_image(DATA / "camera.png")
    assert img.was_grayscale and img.bit_depth == 8 and img.image.shape == (3, 256, 256)
    assert torch.equal(img.image[0], img.image[2])
    write_image(tmp_path / "g.png", img.image, grayscale=True)
    pil = Image.open(tmp_path / "g.png")
    assert pil.mode == "L"
    assert np.array_equal(np.asarray(pil), np.asarray(Image.open(DATA / "camera.png")))


def test_rgba_alpha_separated(tmp_path):
    arr = _rand_u8(c=4)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.alpha is not None and img.alpha.shape == (1, 12, 17)
    # colour is NOT composited with alpha
    np.testing.assert_allclose(img.image.permute(1, 2, 0).numpy() * 255, arr[..., :3], atol=1e-3)
    write_image(tmp_path / "b.png", img.image, alpha=img.alpha)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


def test_gray_alpha_and_palette(tmp_path):
    la = _rand_u8(c=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.was_grayscale and img.alpha is not None
    np.testing.assert_allclose(img.alpha[0].numpy() * 255, la[..., 1], atol=1e-3)

    rgb = _rand_u8(seed=3)
    pal = Image.fromarray(rgb).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB"))
    assert img.image.shape == (3, 12, 17) and not img.was_grayscale
    np.testing.assert_allclose(img.image.permute(1, 2, 0).numpy() * 255, expected, atol=1e-3)


def test_tiff_8_and_16(tmp_path):
    arr = _rand_u8(seed=4)
    write_image(tmp_path / "a.tif", torch.from_numpy(arr / 255.0).permute(2, 0, 1))
    img = read_image(tmp_path / "a.tif")
    assert img.bit_depth == 8
    assert np.array_equal(image_to_uint(img.image), arr)

    tifffile = pytest.importorskip("tifffile")
    a16 = _rand_u16(seed=5)
    tifffile.imwrite(tmp_path / "b.tif", a16, photometric="rgb")
    img = read_image(tmp_path / "b.tif")
    assert img.bit_depth == 16
    assert np.array_equal(image_to_uint(img.image, 16), a16)


def test_jpeg_write_and_read(tmp_path):
    img = read_image(DATA / "chelsea.png")
    write_image(tmp_path / "c.jpg", img.image, quality=95)
    back = read_image(tmp_path / "c.jpg")
    assert back.image.shape == img.image.shape
    assert (back.image - img.image).abs().mean() < 0.02
    with pytest.raises(ValueError, match="8-bit only"):
        write_image(tmp_path / "c16.jpg", img.image, bit_depth=16)
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / "ca.jpg", img.image, alpha=torch.ones(1, 200, 300))


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # white on the left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 deg clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    img = read_image(tmp_path / "r.jpg")
    assert img.image.shape == (3, 20, 10)  # portrait after rotation
    # left half became the top half
    assert img.image[:, :10].mean() > 0.9 and img.image[:, 10:].mean() < 0.1


def test_rounding_to_nearest(tmp_path):
    x = torch.tensor([0.0, 0.5 / 255 + 1e-6, 1.49 / 255, 1.51 / 255, 1.2, -0.3]).view(1, 1, 6)
    write_image(tmp_path / "r.png", x.expand(3, 1, 6))
    got = np.asarray(Image.open(tmp_path / "r.png"))[0, :, 0]
    assert got.tolist() == [0, 1, 1, 2, 255, 0]


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    write_image(tmp_path / "sub" / "x.png", torch.rand(3, 4, 5))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]
    with pytest.raises(ValueError, match="unknown image extension"):
        write_image(tmp_path / "sub" / "y.xyz", torch.rand(3, 4, 5))
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]


def test_corrupt_and_missing_files_raise_clear_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError) as err:
        read_image(bad)
    msg = str(err.value)
    assert str(bad) in msg and "Fix:" in msg
    assert isinstance(err.value, ValueError)

    # truncated JPEG
    write_image(tmp_path / "t.jpg", torch.rand(3, 64, 64))
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="t.jpg"):
        read_image(tmp_path / "t.jpg")

    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")

    # survives pickling (DataLoader workers send exceptions between processes)
    e2 = pickle.loads(pickle.dumps(err.value))
    assert str(e2) == msg


def test_list_images(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.png", "d.tiff"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "d.tiff"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == [
        "a.jpg", "b.PNG", "d.tiff", "e.png"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_fixture_photos_readable():
    files = list_images(DATA)
    assert [p.name for p in files] == ["astronaut.png", "camera.png", "chelsea.png", "coffee.png"]
    for f in files:
        img = read_image(f)
        assert 0.0 <= float(img.image.min()) and float(img.image.max()) <= 1.0
        assert float(img.image.std()) > 0.05


def test_written_files_get_normal_permissions(tmp_path):
    """Atomic writes go through mkstemp (owner-only); the final file must have open()'s mode."""
    import os

    from interir.utils.io import write_image

    umask = os.umask(0o022)
    try:
        out = write_image(tmp_path / "x.png", torch.zeros(3, 4, 4))
    finally:
        os.umask(umask)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
