"""Physics checks (issue 25 item 5): factor spectra, data-term signs, the modulation knock-out."""

import pytest
import torch
from torch import nn

import interir
from interir.explain.physics import factor_spectrum, physics_report
from interir.loading import load_model
from interir.models.explainable_conv import ExplainableConv2d, modulation_disabled


def test_factor_spectrum_of_known_matrices():
    eye = factor_spectrum(torch.eye(6))
    assert eye.numerical_rank == 6 and abs(eye.effective_rank - 6) < 1e-9
    assert abs(eye.top_energy - 1 / 6) < 1e-9 and eye.condition == 1.0
    ones = factor_spectrum(torch.ones(2, 5, 5))  # rank 1 along the constant vector: a global pooling
    assert ones.numerical_rank == 1 and abs(ones.effective_rank - 1) < 1e-9
    assert abs(ones.top_energy - 1) < 1e-12 and abs(ones.constant_cosine - 1) < 1e-9
    diag = factor_spectrum(torch.diag(torch.tensor([4.0, 2.0, 1.0])))
    assert diag.numerical_rank == 3 and abs(diag.condition - 4.0) < 1e-9
    assert abs(diag.top_energy - 16 / 21) < 1e-9
    with pytest.raises(ValueError, match="square"):
        factor_spectrum(torch.ones(3, 4, 5))


def test_free_data_term_starts_without_physics_residual_keeps_it():
    image = torch.rand(3, 40, 36)
    free = physics_report(interir.create_model("interir-tiny"), image)
    assert free.data_terms[0].form == "free" and not free.sign_holds  # v2 starts at w = (+1, +1)
    residual = physics_report(interir.create_model("interir-tiny", data_term="residual"), image)
    assert residual.sign_holds and all(t.w1 > 0 for t in residual.data_terms)
    assert len(residual.p_h) == len(residual.data_terms) == 3
    lowrank = physics_report(interir.create_model("interir-tiny", operator="lowrank", operator_rank=1), image)
    assert all(s.numerical_rank == 1 for s in lowrank.p_h + lowrank.p_w)
    assert lowrank.lines()[-1].endswith("does NOT hold in every stage")  # free form at init


def test_physics_refuses_other_networks():
    with pytest.raises(TypeError, match="not an InterIR network"):
        physics_report(interir.create_model("nafnet-small"), torch.rand(3, 16, 16))


def test_shipped_v2_weights_lost_the_data_term_sign():
    """The review's finding on core v2 (issue 25): training drove w2 to w1's sign."""
    report = physics_report(load_model("eb-interir-small"), torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert not report.sign_holds
    assert sum(t.fraction_opposite < 0.5 for t in report.data_terms) >= len(report.data_terms) // 2


def test_modulation_knockout_is_the_plain_convolution():
    torch.manual_seed(0)
    plain = nn.Conv2d(4, 6, 3, padding=1)
    xconv = ExplainableConv2d.from_conv(plain)
    x = torch.rand(2, 4, 12, 12) * torch.linspace(0, 1, 12)  # a ramp: the mask is not uniform
    with torch.no_grad():
        assert not torch.allclose(xconv(x), plain(x), atol=1e-4)
        model = nn.Sequential(xconv)
        with modulation_disabled(model):
            torch.testing.assert_close(model(x), plain(x))
        assert xconv.modulate and not torch.allclose(xconv(x), plain(x), atol=1e-4)


def test_shipped_v3_weights_keep_the_data_term():
    """Core v3's residual data term after training (issue 25 item 5): the sign holds by
    construction, and training did not switch the term off (w_d ~ 1 after the rematch)."""
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    report = physics_report(load_model("eb-interir-small-v3"), image)
    assert report.sign_holds
    assert all(t.form == "residual" and t.w1 > 0.5 for t in report.data_terms)
    assert all(s.numerical_rank == 1 for s in report.p_h + report.p_w)  # the rank-1 operator
