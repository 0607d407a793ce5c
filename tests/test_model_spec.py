"""One model-spec grammar (``interir.loading.resolve_model``): ``[LABEL=]SPEC`` with shipped names,
checkpoint paths, architectures and classical methods, the same in ``restore``, ``explain`` and
``eval`` (issue 28)."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import run_cli
from interir.classical import ClassicalMethod, create_classical
from interir.inference import restore_tensor
from interir.loading import resolve_model
from interir.utils.io import read_image


def _hazy(height: int = 40, width: int = 56) -> torch.Tensor:
    """A smooth scene under uniform haze, ``(1, 3, H, W)`` in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    scene = torch.nn.functional.interpolate(torch.rand(1, 3, 5, 7, generator=gen), (height, width),
                                            mode="bilinear", align_corners=False)
    return 0.6 * scene + 0.4 * 0.9


def test_label_spec_names_the_model_and_the_plain_spec_is_its_own_label():
    label, model = resolve_model("DCP=classical-dcp")
    assert label == "DCP" and isinstance(model, ClassicalMethod)
    label, model = resolve_model("classical-nlm")
    assert label == "classical-nlm" and isinstance(model, ClassicalMethod)
    with pytest.warns(UserWarning, match="random"):
        label, net = resolve_model("tiny=interir-tiny")
    assert label == "tiny" and not isinstance(net, ClassicalMethod) and not net.training


def test_an_existing_path_with_an_equals_sign_is_read_as_a_path(tmp_path):
    weird = tmp_path / "a=b"
    weird.mkdir()
    with pytest.raises(Exception) as err:  # a folder without a checkpoint, not a label "a"
        resolve_model(str(weird))
    assert "'b'" not in str(err.value)


def test_a_bad_spec_names_the_fix_and_the_closest_name():
    with pytest.raises(FileNotFoundError) as err:
        resolve_model("classical-dpc")
    message = str(err.value)
    assert "Fix:" in message and 'Did you mean "classical-dcp"' in message
    assert "classical-nlm" in message and "default" in message
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        resolve_model("X=runs/missing/checkpoints/best")


def test_a_classical_method_is_never_tiled():
    dcp = create_classical("classical-dcp")
    x = _hazy(96, 128)
    whole = dcp(x).clamp(0, 1)
    assert torch.equal(restore_tensor(dcp, x, tile=32, overlap=8), whole)  # tile ignored
    assert torch.equal(restore_tensor(dcp, x), whole)
    assert not torch.equal(whole, x)  # it did dehaze


def test_restore_runs_a_classical_method_on_files(tmp_path):
    x = _hazy()
    src = tmp_path / "hazy.png"
    Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(src)
    result = run_cli("restore", src, "-o", tmp_path / "out", "-m", "classical-dcp", "--quiet")
    assert result.exit_code == 0, result.output
    written = read_image(tmp_path / "out" / "hazy.png").image
    expected = create_classical("classical-dcp")(read_image(src).image[None])[0].clamp(0, 1)
    assert written.shape == (3, 40, 56)
    assert (written - expected).abs().max().item() <= 0.5 / 255 + 1e-6  # 8-bit rounding only


def test_explain_refuses_a_classical_method_with_the_fix(tmp_path):
    src = tmp_path / "hazy.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(src)
    result = run_cli("explain", src, "-o", tmp_path / "report", "-m", "classical-dcp")
    assert result.exit_code == 2
    assert "classical method" in result.output and "Fix:" in result.output
    assert "interir eval -m classical-dcp" in result.output
    assert not (tmp_path / "report" / "index.html").exists()


def test_restore_refuses_an_unknown_model_with_the_fix(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(src)
    result = run_cli("restore", src, "-o", tmp_path / "out", "-m", "classical-dpc")
    assert result.exit_code == 2
    assert 'Did you mean "classical-dcp"' in result.output and "Fix:" in result.output
