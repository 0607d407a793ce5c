"""RestorationLoss: L1 + 0.1 * L1 on the 2-D FFT (paper Eq. 2), and the PSNR-loss option."""

import math

import pytest
import torch
import torch.nn.functional as F

from interir.losses import RestorationLoss, fft_l1


def test_identical_images_give_zero():
    x = torch.rand(2, 3, 16, 16)
    assert RestorationLoss()(x, x.clone()).item() == 0.0


def test_constant_offset_has_closed_form():
    # pred = target + c: the FFT difference is only the DC coefficient, c*H*W (real). Averaged over
    # the real and imaginary parts of all H*W coefficients that is c/2, so loss = c + 0.1 * c/2.
    target = torch.rand(2, 3, 8, 12)
    c = 0.2
    loss, parts = RestorationLoss(fft_weight=0.1)(target + c, target, return_parts=True)
    assert parts["l1"].item() == pytest.approx(c, rel=1e-5)
    assert parts["fft"].item() == pytest.approx(c / 2, rel=1e-4)
    assert loss.item() == pytest.approx(1.05 * c, rel=1e-4)
    # orthonormal FFT: the DC coefficient is c*sqrt(HW)
    assert fft_l1(target + c, target, norm="ortho").item() == pytest.approx(c * math.sqrt(96) / (2 * 96), rel=1e-4)


def test_fft_term_matches_explicit_formula():
    torch.manual_seed(1)
    p, t = torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10)
    fp, ft = torch.fft.fft2(p), torch.fft.fft2(t)
    expected = torch.cat([(fp.real - ft.real).abs().flatten(), (fp.imag - ft.imag).abs().flatten()]).mean()
    got = RestorationLoss(fft_weight=0.1)(p, t)
    assert got.item() == pytest.approx(F.l1_loss(p, t).item() + 0.1 * expected.item(), rel=1e-5)


def test_zero_weight_is_plain_l1_and_gradients_flow():
    p = torch.rand(2, 3, 8, 8, requires_grad=True)
    t = torch.rand(2, 3, 8, 8)
    loss = RestorationLoss(fft_weight=0.0)(p, t)
    assert loss.item() == pytest.approx(F.l1_loss(p, t).item(), rel=1e-6)
    RestorationLoss()(p, t).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_half_precision_inputs_are_scored_in_float32():
    p, t = torch.rand(1, 3, 9, 9), torch.rand(1, 3, 9, 9)  # odd sizes: half FFT would refuse them
    ref = RestorationLoss()(p, t)
    got = RestorationLoss()(p.bfloat16(), t.bfloat16())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=2e-2)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="shapes differ"):
        RestorationLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="fft_weight"):
        RestorationLoss(fft_weight=-1)
    with pytest.raises(ValueError, match="norm"):
        RestorationLoss(norm="bogus")


def test_psnr_loss_is_minus_the_mean_per_image_psnr():
    target = torch.zeros(2, 3, 8, 8)
    pred = target.clone()
    pred[0] += 0.1  # MSE 1e-2: 20 dB
    pred[1] += 0.01  # MSE 1e-4: 40 dB
    loss, parts = RestorationLoss(fft_weight=0.0, pixel="psnr")(pred, target, return_parts=True)
    assert loss.item() == pytest.approx(-30.0, abs=1e-3)
    assert parts["psnr"].item() == pytest.approx(-30.0, abs=1e-3)
    assert parts["l1"].item() == pytest.approx(0.055, rel=1e-5)
    # The FFT term adds on top, as with L1.
    with_fft = RestorationLoss(fft_weight=0.1, pixel="psnr")(pred, target)
    assert with_fft.item() == pytest.approx(-30.0 + 0.1 * fft_l1(pred, target).item(), abs=1e-3)


def test_psnr_loss_weighs_a_nearly_clean_image_as_much_as_a_degraded_one():
    # Halving the error of either image gains the same 6 dB / 2 in the loss, however small it is;
    # under L1 the nearly clean image's share is 100x smaller.
    target = torch.zeros(2, 1, 4, 4)
    pred = torch.tensor([0.2, 0.002]).view(2, 1, 1, 1).expand(2, 1, 4, 4).clone().requires_grad_(True)
    loss = RestorationLoss(fft_weight=0.0, pixel="psnr")(pred, target)
    loss.backward()
    g = pred.grad.view(2, -1).sum(dim=1)
    ratio = float(g[0] * 0.2 / (g[1] * 0.002))  # gradient times error: equal for a log loss
    assert ratio == pytest.approx(1.0, rel=5e-3)  # eps = 1e-8 against an MSE of 4e-6
    with pytest.raises(ValueError, match="pixel loss"):
        RestorationLoss(pixel="l2")
