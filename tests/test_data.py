"""Tests for interir.data: training patches, paired folders, synthetic pairs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interir.data import (
    CleanPatchDataset,
    PairedImageDataset,
    SyntheticPairDataset,
    collate_pairs,
    detect_layout,
    pad_to_min_size,
    read_exclusion_list,
)
from interir.utils.io import read_image

DATA = Path(__file__).parent / "data"


def _img(path: Path, h: int, w: int, seed: int = 0, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    c = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if c == 1 else arr, mode).save(path)
    return path


# ---------------------------------------------------------------------------- patches


def test_patch_dataset_crops_flips_and_converts(tmp_path):
    _img(tmp_path / "a.png", 40, 50, 0)
    _img(tmp_path / "b.png", 33, 33, 1, "L")
    _img(tmp_path / "c.png", 36, 36, 2, "RGBA")
    import png

    arr16 = np.random.default_rng(3).integers(0, 65536, size=(34, 35, 3), dtype=np.uint16)
    png.from_array(arr16.reshape(34, -1), "RGB;16").save(str(tmp_path / "d.png"))
    ds = CleanPatchDataset(tmp_path, 32)
    assert len(ds) == 4
    torch.manual_seed(0)
    for i in range(4):
        p = ds[i]
        assert p.shape == (3, 32, 32) and p.dtype == torch.float32
        assert 0 <= float(p.min()) and float(p.max()) <= 1
    gray = ds[1]
    assert torch.equal(gray[0], gray[1])  # grayscale replicated
    # every patch is a (possibly flipped) window of the source image
    src = read_image(tmp_path / "a.png").image
    torch.manual_seed(1)
    for _ in range(10):
        p = ds[0]
        found = False
        for cand in (p, p.flip(-1), p.flip(-2), p.flip(-1).flip(-2)):
            for top in range(40 - 32 + 1):
                for left in range(50 - 32 + 1):
                    if torch.equal(src[:, top : top + 32, left : left + 32], cand):
                        found = True
        assert found


def test_patch_dataset_flips_happen_and_can_be_disabled(tmp_path):
    arr = np.zeros((8, 8, 3), np.uint8)
    arr[0, 0] = 255  # a marker in the top-left corner
    Image.fromarray(arr).save(tmp_path / "m.png")
    ds = CleanPatchDataset(tmp_path, 8, augment=True)
    torch.manual_seed(0)
    corners = {tuple(int(v) for v in torch.nonzero(ds[0][0] > 0.5)[0]) for _ in range(40)}
    assert corners == {(0, 0), (0, 7), (7, 0), (7, 7)}
    ds = CleanPatchDataset(tmp_path, 8, augment=False)
    assert all(float(ds[0][0, 0, 0]) == 1.0 for _ in range(10))


def test_small_images_are_padded_with_one_warning(tmp_path):
    _img(tmp_path / "small.png", 10, 20)
    _img(tmp_path / "tiny.png", 3, 1)
    with pytest.warns(UserWarning, match="2 image\\(s\\) smaller than the 32px patch") as rec:
        ds = CleanPatchDataset(tmp_path, 32)
    assert len([w for w in rec if "smaller" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warnings per item
        assert ds[0].shape == (3, 32, 32) and ds[1].shape == (3, 32, 32)
    x = torch.arange(5.0).view(1, 1, 5)
    assert pad_to_min_size(x, 8)[0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]


def test_unreadable_files_are_reported_by_path_and_skipped(tmp_path):
    _img(tmp_path / "good.png", 20, 20)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.warns(UserWarning, match="broken.jpg"):
        ds = CleanPatchDataset(tmp_path, 16)
    assert [p.name for p in ds.files] == ["good.png"]
    assert [p.name for p, _ in ds.skipped] == ["broken.jpg"]
    # a file broken after the scan is skipped at load time instead of crashing
    _img(tmp_path / "later.png", 20, 20)
    with pytest.warns(UserWarning):
        ds = CleanPatchDataset(tmp_path, 16)
    (tmp_path / "good.png").write_bytes(b"now broken")
    with pytest.warns(UserWarning, match="good.png"):
        assert ds[0].shape == (3, 16, 16)
    # nothing readable -> one clear error
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.png").write_bytes(b"no")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable training images"):
        CleanPatchDataset(empty, 16)


def test_exclusion_list(tmp_path):
    for n in ["train_1.jpg", "train_2.jpg", "test_3.jpg"]:
        _img(tmp_path / "imgs" / n, 20, 20)
    lst = tmp_path / "overlap.txt"
    lst.write_text("# header comment\n# second\ntrain_1.jpg\tRain100H/norain/1.png\t0.9999\n\n"
                   "test_3\tRain100H/norain/9.png\t1.0000\n")
    assert read_exclusion_list(lst) == {"train_1.jpg", "test_3"}
    ds = CleanPatchDataset(tmp_path / "imgs", 16, exclude=lst)
    assert [p.name for p in ds.files] == ["train_2.jpg"]
    assert sorted(p.name for p in ds.excluded) == ["test_3.jpg", "train_1.jpg"]
    ds = CleanPatchDataset(tmp_path / "imgs", 16, exclude=["train_2.jpg"], repeat=3)
    assert len(ds) == 6
    with pytest.raises(FileNotFoundError, match="exclusion list"):
        CleanPatchDataset(tmp_path / "imgs", 16, exclude=tmp_path / "nope.txt")


def test_patch_dataset_in_dataloader_workers():
    ds = CleanPatchDataset(DATA, 64)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1,
                                         generator=torch.Generator().manual_seed(0))
    batches = [b for b in loader]
    assert [tuple(b.shape) for b in batches] == [(2, 3, 64, 64), (2, 3, 64, 64)]


# ---------------------------------------------------------------------------- paired


def test_paired_input_target_layout(tmp_path):
    for i in range(3):
        _img(tmp_path / "input" / f"{i}.png", 10, 12, i)
        _img(tmp_path / "target" / f"{i}.png", 10, 12, 10 + i)
    ds = PairedImageDataset(tmp_path)
    assert ds.layout == ("input", "target") and ds.names == ["0", "1", "2"]
    item = ds[1]
    assert item["name"] == "1" and item["input"].shape == (3, 10, 12)
    assert torch.equal(item["target"], read_image(tmp_path / "target" / "1.png").image)


def test_paired_rain_norain_layout(tmp_path):
    for n in ["1", "2", "10"]:
        _img(tmp_path / "rain" / f"{n}.png", 8, 9)
        _img(tmp_path / "norain" / f"{n}.png", 8, 9)
    ds = PairedImageDataset(tmp_path)
    assert ds.layout == ("rain", "norain") and sorted(ds.names) == ["1", "10", "2"]
    b = collate_pairs([ds[0], ds[1]])
    assert b["input"].shape == (2, 3, 8, 9) and len(b["name"]) == 2


def test_paired_many_to_one_hazy_clear(tmp_path):
    for scene in ["1400", "1401"]:
        _img(tmp_path / "clear" / f"{scene}.png", 8, 9)
        for k in (1, 2):
            _img(tmp_path / "hazy" / f"{scene}_{k}.png", 8, 9)
    _img(tmp_path / "hazy" / "1401_0.8_0.2.png", 8, 9)  # outdoor-style suffixes
    ds = PairedImageDataset(tmp_path)
    assert ds.layout == ("hazy", "clear")
    targets = {p.name: p.target.name for p in ds.pairs}
    assert targets == {"1400_1": "1400.png", "1400_2": "1400.png", "1401_0.8_0.2": "1401.png",
                       "1401_1": "1401.png", "1401_2": "1401.png"}


def test_paired_problems_reported_in_one_error(tmp_path):
    _img(tmp_path / "input" / "a.png", 8, 8)
    _img(tmp_path / "target" / "a.png", 8, 9)  # size mismatch
    _img(tmp_path / "input" / "b.png", 8, 8)  # no target
    _img(tmp_path / "target" / "c.png", 8, 8)  # no input
    (tmp_path / "input" / "d.png").write_bytes(b"junk")
    _img(tmp_path / "target" / "d.png", 8, 8)
    with pytest.raises(ValueError) as err:
        PairedImageDataset(tmp_path)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    for piece in ["size mismatch", "a.png is 8x8 but", "input without a target",
                  "b.png", "target without an input", "c.png", "d.png", "unreadable"]:
        assert piece in msg


def test_unknown_layout_error(tmp_path):
    (tmp_path / "foo").mkdir()
    with pytest.raises(ValueError, match="rain/\\+norain/"):
        detect_layout(tmp_path)
    with pytest.raises(FileNotFoundError):
        PairedImageDataset(tmp_path / "missing")


# ---------------------------------------------------------------------------- synthetic pairs


def test_synthetic_pair_dataset_deterministic_and_order_independent(tmp_path):
    ds = SyntheticPairDataset(DATA, "haze,rain+noise", seed=5)
    assert len(ds) == 8
    a = ds[5]  # rain+noise on the 2nd image
    assert a["combination"] == "rain+noise" and a["name"] == "camera"
    assert a["params"]["haze_level"] == 0.0 and 0 < a["params"]["rain_level"] <= 300
    again = SyntheticPairDataset(DATA, "haze,rain+noise", seed=5)[5]
    assert torch.equal(a["input"], again["input"])
    # only one combination and a subset of files: the same pair comes out
    sub = SyntheticPairDataset([DATA / "camera.png"], "rain+noise", seed=5)[0]
    assert torch.equal(sub["input"], a["input"]) and sub["params"] == a["params"]
    other = SyntheticPairDataset(DATA, "haze,rain+noise", seed=6)[5]
    assert not torch.equal(other["input"], a["input"])
    # quantized to the 8-bit grid
    assert torch.equal(torch.round(a["input"] * 255) / 255, a["input"])
    assert torch.equal(a["target"], read_image(DATA / "camera.png").image)


def test_synthetic_pair_dataset_scene_haze_and_airlight_range():
    centre = SyntheticPairDataset(DATA, "haze,rain", seed=5)
    scene = SyntheticPairDataset(DATA, "haze,rain", seed=5, haze_depth="scene", haze_airlight=(0.95, 1.0))
    n = len(centre.files)
    for i in range(n):  # haze: same level and seed, other depth and airlight -> another image
        a, b = centre[i], scene[i]
        assert a["params"]["haze_level"] == b["params"]["haze_level"] > 0
        assert 0.95 <= b["params"]["haze_airlight"] <= 1.0 and not 0.95 <= a["params"]["haze_airlight"]
        assert not torch.equal(a["input"], b["input"])
        assert torch.equal(b["input"], scene[i]["input"])  # still deterministic
    # no haze in the combination: the depth mode changes nothing
    assert torch.equal(centre[n]["input"], scene[n]["input"])
    with pytest.raises(ValueError, match="haze_depth must be one of"):
        SyntheticPairDataset(DATA, "haze", haze_depth="radial")


def test_synthetic_pair_dataset_fixed_levels():
    ds = SyntheticPairDataset([DATA / "chelsea.png"], "haze+noise", seed=1,
                              levels="haze=100,noise=25")
    item = ds[0]
    assert item["params"]["haze_level"] == 100.0 and item["params"]["noise_level"] == 25.0
    noise = item["input"] - item["target"]
    assert float(noise.std()) > 0.05
    with pytest.raises(ValueError, match="unique names"):
        SyntheticPairDataset([DATA / "chelsea.png", DATA / "chelsea.png"], "haze", seed=1)
