"""The web page's logic (interir.webapp.service), without gradio: uploads, restoration, example,
explanation."""

import numpy as np
import pytest
import torch
from PIL import Image

from interir.engine.checkpoint import save_checkpoint
from interir.loading import load_model
from interir.inference import restore_tensor
from interir.metrics import psnr
from interir.registry import create_model
from interir.utils.io import image_to_uint, read_image
from interir.webapp.service import (
    AppError,
    AppSettings,
    ModelCache,
    explain_photo,
    new_work_folder,
    read_upload,
    restore_uploads,
    run_example,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A saved interir-tiny checkpoint and the model loaded from it."""
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    torch.manual_seed(1)
    save_checkpoint(path, create_model("interir-tiny"))
    return path, load_model(path)


def _photo(path, height=37, width=45, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path)
    return path


def test_read_upload_refuses_non_images_and_big_photos_with_the_reason(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AppError, match=r"notes\.png is not an image that can be read") as info:
        read_upload(text)
    assert str(tmp_path) not in str(info.value)  # the server's temp path is not shown
    big = _photo(tmp_path / "big.png", 40, 50)
    with pytest.raises(AppError, match=r"big\.png is 50x40 .*at most 0\.0 MP"):
        read_upload(big, max_pixels=1999)
    assert read_upload(big, max_pixels=2000).image.shape == (3, 40, 50)


def test_restore_uploads_writes_the_exact_restoration_as_png(tmp_path, tiny):
    path, model = tiny
    photos = [_photo(tmp_path / "a.jpg", seed=1), _photo(tmp_path / "b.png", 20, 70, seed=2)]
    settings = AppSettings(models=[str(path)], work_dir=tmp_path / "work")
    calls = []
    done, problems = restore_uploads(photos, model, tmp_path / "out", settings,
                                     progress=lambda f, text: calls.append(f))
    assert problems == [] and [d.name for d in done] == ["a.jpg", "b.png"]
    for photo, result in zip(photos, done):
        expected = image_to_uint(restore_tensor(model, read_image(photo).image), 8)
        written = np.asarray(Image.open(result.restored))
        assert result.restored.suffix == ".png"
        np.testing.assert_array_equal(written, expected)
        np.testing.assert_array_equal(np.asarray(Image.open(result.degraded)),
                                      image_to_uint(read_image(photo).image, 8))
    assert calls and calls[-1] == pytest.approx(1.0) and calls == sorted(calls)


def test_restore_uploads_keeps_alpha_and_names_apart(tmp_path, tiny):
    path, model = tiny
    (tmp_path / "x").mkdir()
    photos = [_photo(tmp_path / "p.png", mode="RGBA"), _photo(tmp_path / "x" / "p.png", seed=3)]
    done, _ = restore_uploads(photos, model, tmp_path, AppSettings(models=[str(path)]))
    assert Image.open(done[0].restored).mode == "RGBA"
    assert done[0].restored != done[1].restored
    assert {d.restored.name for d in done} == {"p_restored.png", "p-2_restored.png"}


def test_restore_uploads_skips_bad_files_and_refuses_empty_or_too_many(tmp_path, tiny):
    path, model = tiny
    good = _photo(tmp_path / "good.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    settings = AppSettings(models=[str(path)], max_files=2)
    done, problems = restore_uploads([bad, good], model, tmp_path, settings)
    assert [d.name for d in done] == ["good.png"]
    assert len(problems) == 1 and problems[0].startswith("bad.jpg")
    with pytest.raises(AppError, match="nothing was restored: bad.jpg"):
        restore_uploads([bad], model, tmp_path, settings)
    with pytest.raises(AppError, match="at most 2"):
        restore_uploads([good] * 3, model, tmp_path, settings)
    with pytest.raises(AppError, match="upload one or more photos"):
        restore_uploads([], model, tmp_path, settings)


def test_run_example_is_seeded_and_scores_the_written_images(tmp_path, tiny):
    _, model = tiny
    first = run_example(model, "rain+haze", 3, tmp_path / "1")
    again = run_example(model, "haze+rain", 3, tmp_path / "2")
    other = run_example(model, "haze+rain", 4, tmp_path / "3")
    assert first.combination == "haze+rain" and set(first.levels) == {"haze", "rain"}
    same = np.asarray(Image.open(first.degraded)), np.asarray(Image.open(again.degraded))
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(same[0], np.asarray(Image.open(other.degraded)))
    clean, degraded = read_image(first.clean).image, read_image(first.degraded).image
    assert first.scores["degraded"][0] == pytest.approx(float(psnr(degraded, clean)), abs=1e-4)
    assert first.scores["degraded"][0] < 30  # haze and rain at the demo levels are visible
    with pytest.raises(AppError, match="invalid combination"):
        run_example(model, "snow", 0, tmp_path)
    with pytest.raises(AppError, match="seed must be >= 0"):
        run_example(model, "haze", -1, tmp_path)


def test_explain_photo_writes_the_report_and_a_stage_table(tmp_path, tiny):
    pytest.importorskip("matplotlib")
    _, model = tiny
    example = run_example(model, "haze", 0, tmp_path)
    result = explain_photo(model, example.degraded, tmp_path, clean=example.clean, crop=64)
    names = [p.name for p, _ in result.figures]
    assert names[:4] == ["trajectory.png", "psnr.png", "factors.png", "updates.png"]
    stages = model.config.stages
    assert result.table.count("\n") == stages + 1  # header, rule, one row per stage
    assert result.psnr_line.startswith("PSNR input") and result.archive.suffix == ".zip"
    no_target = explain_photo(model, example.degraded, tmp_path / "b", crop=64)
    assert no_target.psnr_line is None and "psnr.png" not in [p.name for p, _ in no_target.figures]


def test_explain_photo_says_when_a_model_cannot_be_explained(tmp_path):
    nafnet = create_model("nafnet-small")
    with pytest.raises(AppError, match="no explanation"):
        explain_photo(nafnet, _photo(tmp_path / "a.png"), tmp_path, crop=32)


def test_model_cache_loads_once_and_refuses_models_not_offered(tiny):
    path, _ = tiny
    cache = ModelCache([str(path)], device="cpu")
    assert cache.get(str(path)) is cache.get(str(path))
    with pytest.raises(AppError, match="unknown model 'default'"):
        cache.get("default")
    with pytest.raises(AppError, match="cannot load model"):
        ModelCache(["no/such/checkpoint"]).get("no/such/checkpoint")


def test_new_work_folder_removes_only_old_request_folders(tmp_path):
    old = new_work_folder(tmp_path)
    keep = tmp_path / "keep"
    keep.mkdir()
    fresh = new_work_folder(tmp_path, lifetime_s=3600)
    assert old.exists() and fresh != old
    newest = new_work_folder(tmp_path, lifetime_s=-1)  # everything counts as old
    assert not old.exists() and not fresh.exists() and keep.exists() and newest.exists()
