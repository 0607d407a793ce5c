"""Tests for interir.inference (tensor and files) and `interir restore`: sizes, OOM retry, file formats, batch runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import interir
from helpers import act_like_trained
from interir.inference import (
    auto_overlap,
    auto_tile_size,
    plan_outputs,
    restore_file,
    restore_paths,
    restore_tensor,
)
from interir.utils.io import read_image, write_image

HAS_TIFFFILE = importlib.util.find_spec("tifffile") is not None  # the io16 extra


class Affine(nn.Module):
    """Cheap stand-in network: ``a * x + b`` (exact, so file round trips can be checked bit for bit)."""

    def __init__(self, a: float = 1.0, b: float = 0.0, min_size: int = 4) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = b
        self.min_size = min_size
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        if x.shape[-2] < self.min_size or x.shape[-1] < self.min_size:
            raise ValueError("too small")
        self.shapes.append(tuple(x.shape))
        return self.a * x + self.b


class OOMAbove(Affine):
    """Raises torch's out-of-memory error for inputs with more than ``limit`` pixels."""

    def __init__(self, limit: int) -> None:
        super().__init__(0.5)
        self.limit = limit

    def forward(self, x):
        if x.shape[-2] * x.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return super().forward(x)


# ---------------------------------------------------------------------------------------- tensors


def test_auto_tile_follows_the_downsampling_factor():
    assert auto_tile_size(interir.create_model("interir-tiny")) == 512  # s = 4
    assert auto_tile_size(interir.create_model("interir-tiny", downsample=8)) == 1024
    assert auto_tile_size(Affine()) == 512
    assert auto_overlap(512, 4) == 64 and auto_overlap(128, 4) == 16 and auto_overlap(1024, 8) == 64


@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 3, 21, 18), (3, 3, 5), (1, 3, 1, 9)])
def test_restore_tensor_any_size_is_clamped_and_same_shape(shape):
    model = act_like_trained(interir.create_model("interir-tiny"), scale=1.0)
    x = torch.rand(shape)
    with torch.no_grad():
        raw = model.eval()(torch.rand(1, 3, 32, 32))
    model.train()
    assert raw.min() < 0 or raw.max() > 1, "the raw output must leave [0, 1], or the clamp is not tested"
    out = restore_tensor(model, x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert model.training, "restore_tensor puts the model back in its previous mode"
    assert not out.is_inference()
    out.mul_(0.5)  # an ordinary tensor: in-place use outside inference mode works


def test_restore_tensor_clamps_and_batches_independently():
    model = Affine(2.0, -0.3)
    x = torch.rand(3, 3, 20, 24)
    out = restore_tensor(model, x, tile=0)
    assert torch.allclose(out, (2 * x - 0.3).clamp(0, 1))
    model = act_like_trained(interir.create_model("interir-tiny")).eval()
    together = restore_tensor(model, x)
    alone = torch.stack([restore_tensor(model, x[i]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-6)


def test_large_image_is_tiled_by_default_and_not_when_off():
    model = Affine()
    x = torch.rand(3, 600, 40)
    restore_tensor(model, x)
    assert len(model.shapes) == 2 and all(s[-2] <= 512 for s in model.shapes)
    model.shapes.clear()
    restore_tensor(model, x, tile=0)
    assert model.shapes == [(1, 3, 600, 40)]


def test_out_of_memory_halves_the_tile_and_retries(caplog):
    model = OOMAbove(limit=130 * 130)
    x = torch.rand(3, 300, 260)
    out = restore_tensor(model, x, tile=0, overlap=16)
    assert torch.allclose(out, 0.5 * x, atol=1e-6)
    assert "retrying with" in caplog.text
    # Every tile that ran fitted the limit; the first attempts (whole image, then 150) did not.
    assert all(s[-2] * s[-1] <= 130 * 130 for s in model.shapes)


def test_out_of_memory_gives_up_with_a_fix():
    model = OOMAbove(limit=10)
    with pytest.raises(RuntimeError, match="out of memory on cpu .* Fix: close other programs"):
        restore_tensor(model, torch.rand(3, 128, 128), tile=0)  # no "--device cpu" on the CPU


def test_non_oom_errors_are_not_retried():
    class Broken(Affine):
        def forward(self, x):
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        restore_tensor(Broken(), torch.rand(3, 64, 64))


def test_bad_inputs():
    with pytest.raises(ValueError, match="RGB"):
        restore_tensor(Affine(), torch.rand(1, 20, 20))
    with pytest.raises(ValueError, match="float"):
        restore_tensor(Affine(), torch.zeros(3, 20, 20, dtype=torch.uint8))
    with pytest.raises(ValueError, match="overlap"):
        restore_tensor(Affine(), torch.rand(3, 20, 20), tile=64, overlap=64)


def test_explainable_convs_keep_no_explanation_during_inference():
    model = interir.create_model("interir-tiny")
    restore_tensor(model, torch.rand(3, 32, 32))
    convs = [m for m in model.modules() if hasattr(m, "store_explanation")]
    assert convs and all(m.store_explanation for m in convs)
    assert all(m.last_mask is None for m in convs)


# ------------------------------------------------------------------------------------------ files


def _u8(h, w, c, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, c) if c > 1 else (h, w), dtype=np.uint8)


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_u8(20, 30, 3)).save(folder / "rgb.png")
    Image.fromarray(_u8(21, 17, 1)).save(folder / "gray.png")
    Image.fromarray(_u8(19, 23, 4)).save(folder / "rgba.png")
    rng = np.random.default_rng(1)
    write_image(folder / "deep.png", torch.rand(3, 18, 22, generator=torch.Generator().manual_seed(1)), bit_depth=16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(_u8(16, 40, 3)).save(folder / "photo.jpg", quality=95, exif=exif)
    if HAS_TIFFFILE:
        import tifffile

        tifffile.imwrite(folder / "scan.tif", rng.integers(0, 65536, size=(14, 15, 3), dtype=np.uint16))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_restore_paths_keeps_size_depth_gray_alpha_and_orientation(image_folder, tmp_path):
    out = tmp_path / "out"
    seen = []
    report = restore_paths([image_folder], out, Affine(), on_result=lambda *a: seen.append(a[0]))
    expected = ["deep.png", "gray.png", "photo.jpg", "rgb.png", "rgba.png"] + (["scan.png"] if HAS_TIFFFILE else [])
    assert sorted(p.name for _, p in report.written) == expected
    assert [p.name for p, _ in report.failed] == ["broken.png"]
    assert "broken.png" in str(report.failed[0][0]) and report.failed[0][1]
    assert seen.count("written") == len(expected) and seen.count("failed") == 1
    assert any("16-bit PNG" in note for _, note in report.notes) == HAS_TIFFFILE

    for name in ["rgb.png", "gray.png", "rgba.png", "deep.png"]:
        src, dst = read_image(image_folder / name), read_image(out / name)
        assert dst.size == src.size and dst.bit_depth == src.bit_depth
        assert dst.was_grayscale == src.was_grayscale
        assert (dst.alpha is None) == (src.alpha is None)
        # The identity network gives back the same integer levels.
        assert torch.allclose(dst.image, src.image, atol=0.5 / (255 if src.bit_depth == 8 else 65535))
        if src.alpha is not None:
            assert torch.equal(dst.alpha, src.alpha)
    assert Image.open(out / "gray.png").mode == "L"
    assert read_image(out / "deep.png").bit_depth == 16
    if HAS_TIFFFILE:
        scan = read_image(out / "scan.png")
        assert scan.bit_depth == 16 and scan.size == (14, 15)
    # EXIF orientation 6: stored 16x40, displayed (and written) 40x16, without the tag.
    photo = Image.open(out / "photo.jpg")
    assert photo.size == (16, 40) and photo.getexif().get(0x0112, 1) == 1


def test_existing_outputs_are_skipped_unless_overwrite(image_folder, tmp_path):
    out = tmp_path / "out"
    restore_paths([image_folder / "rgb.png"], out, Affine())
    before = (out / "rgb.png").read_bytes()
    report = restore_paths([image_folder / "rgb.png"], out, Affine(a=0.5))
    assert report.skipped and not report.written and (out / "rgb.png").read_bytes() == before
    report = restore_paths([image_folder / "rgb.png"], out, Affine(a=0.5), overwrite=True)
    assert report.written and (out / "rgb.png").read_bytes() != before
    if HAS_TIFFFILE:
        # A 16-bit TIFF goes to .png: its skip check uses the final name.
        restore_paths([image_folder / "scan.tif"], out, Affine())
        report = restore_paths([image_folder / "scan.tif"], out, Affine())
        assert [p.name for _, p in report.skipped] == ["scan.png"]


def test_collisions_missing_inputs_and_in_place_writes(image_folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(_u8(8, 8, 3)).save(other / "rgb.png")
    pairs, failed = plan_outputs([image_folder / "rgb.png", other / "rgb.png", tmp_path / "missing.png"], tmp_path / "o")
    assert len(pairs) == 1
    reasons = {p.name: r for p, r in failed}
    assert "would also be written" in reasons["rgb.png"] and "no such file" in reasons["missing.png"]
    report = restore_paths([image_folder / "rgb.png"], image_folder, Affine())
    assert report.skipped or report.failed
    assert not report.written


def test_explicit_format_and_restore_file(image_folder, tmp_path):
    report = restore_paths([image_folder / "rgba.png", image_folder / "deep.png"], tmp_path / "o", Affine(), output_format="jpg")
    assert sorted(p.name for _, p in report.written) == ["deep.jpg", "rgba.jpg"]
    assert len(report.notes) == 2  # alpha dropped; 16 bits written as 8
    path, note = restore_file(image_folder / "rgb.png", tmp_path / "x" / "rgb.webp", interir.create_model("interir-tiny"))
    assert note is None and read_image(path).size == (20, 30)


def test_cli_restore(image_folder, tmp_path):
    from interir.cli import _load_commands
    from interir.cli.app import app

    _load_commands()
    out = tmp_path / "cli"
    args = ["restore", str(image_folder / "rgb.png"), str(image_folder / "broken.png"), "-o", str(out), "-m", "interir-tiny"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert (out / "rgb.png").exists()
    assert "broken.png" in result.output and "1 written, 1 failed" in result.output
    result = CliRunner().invoke(app, args[:2] + ["-o", str(out), "-m", "interir-tiny", "--tile", "64"])
    assert result.exit_code == 0 and "skipped" in result.output
    result = CliRunner().invoke(app, args[:2] + ["-o", str(out), "-m", "interir-tiny", "--tile", "big"])
    assert result.exit_code != 0
