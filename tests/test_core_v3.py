"""InterIR core v3 options (issue 25): each keeps a fresh network the identity, the low-rank
operator is the Kronecker operator of its dense factors, the residual data term keeps its sign,
the learned attention gain reaches the attention, and every new part learns."""

import pytest
import torch
import torch.nn.functional as F

import interir
from helpers import act_like_trained
from interir.models.explainable_conv import ExplainableConv2d
from interir.models.kronecker import KroneckerOperator, LowRankKronecker
from interir.models.unfolding import InterIRConfig, RESM

OPTIONS = {
    "detail_skip": dict(down_up="learned", detail_skip=True),
    "residual": dict(data_term="residual"),
    "lowrank_r1": dict(operator="lowrank", operator_rank=1),
    "lowrank_r2": dict(operator="lowrank", operator_rank=2),
    "coarse": dict(coarse_prior=True),
    "gain": dict(attention_gain="learned"),
    "all": dict(
        down_up="learned", detail_skip=True, data_term="residual", operator="lowrank", operator_rank=2,
        coarse_prior=True, attention_gain="learned",
    ),
}


def _tiny(**overrides):
    torch.manual_seed(0)
    return interir.create_model("interir-tiny", **overrides)


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_fresh_v3_network_returns_its_input(option):
    model = _tiny(**OPTIONS[option]).eval()
    x = torch.rand(2, 3, 37, 29)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("option", ["lowrank_r1", "coarse", "gain", "residual", "all"])
def test_new_parts_receive_gradients_once_gates_move(option):
    model = act_like_trained(_tiny(**OPTIONS[option]))
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = model(x)
    assert not torch.allclose(out, x, atol=1e-4), "opened gates must change the output"
    (out - y).abs().mean().backward()
    keys = {"lowrank_r1": "factors.", "coarse": "coarse.", "gain": "attention_log_gain", "residual": "term_weights"}
    wanted = [keys[option]] if option in keys else list(keys.values())
    for key in wanted:
        grads = [p.grad for n, p in model.named_parameters() if key in n]
        assert grads, f"no parameter named like {key!r}"
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key


def test_detail_skip_needs_the_learned_down_up():
    with pytest.raises(ValueError, match="detail_skip needs down_up='learned'"):
        InterIRConfig(width=16, stages=1, downsample=4, detail_skip=True, down_up="pixel")


def test_detail_skip_adds_no_parameters_and_changes_the_output():
    plain = act_like_trained(_tiny(down_up="learned")).eval()
    skip = act_like_trained(_tiny(down_up="learned", detail_skip=True)).eval()
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in skip.parameters())
    skip.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert (plain(x) - skip(x)).abs().max() > 1e-4


def test_low_rank_operator_is_the_kronecker_operator_of_its_dense_factors():
    torch.manual_seed(1)
    packed_h, packed_w = torch.randn(2, 3, 9, 4), torch.randn(2, 3, 7, 4)
    low = LowRankKronecker(packed_h, packed_w)
    dense = KroneckerOperator(*low.dense())
    x, y = torch.randn(2, 3, 9, 7), torch.randn(2, 3, 9, 7)
    torch.testing.assert_close(low.apply(x), dense.apply(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(low.adjoint(y), dense.adjoint(y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(low.normal(x), dense.normal(x), atol=1e-5, rtol=1e-5)
    # the adjoint is the adjoint, and each factor has unit Frobenius norm (the normalisation N)
    torch.testing.assert_close((low.apply(x) * y).sum(), (x * low.adjoint(y)).sum(), atol=1e-4, rtol=1e-5)
    for factor in low.dense():
        torch.testing.assert_close(factor.flatten(-2).norm(dim=-1), torch.ones(2, 3), atol=1e-5, rtol=0)
    # rank r = 2 by construction
    assert torch.linalg.matrix_rank(low.dense()[0][0, 0]).item() == 2


def test_residual_data_term_weight_stays_non_negative_whatever_the_network_learns():
    config = InterIRConfig(width=8, stages=1, downsample=4, data_term="residual", stage_update="add")
    resm = RESM(config)
    with torch.no_grad():
        resm.term_weights.out.bias.fill_(-30.0)  # a raw weight pushed far negative
        resm.term_weights.out.weight.normal_(0, 5.0)
    x = torch.rand(2, 24, 5, 5)
    raw, _ = resm.term_weights(x)
    assert (F.softplus(raw) >= 0).all()
    # one weight multiplies P^T P I and -P^T D alike: the data term is a residual, tied in sign
    assert len(resm.term_weights(x)) == 2


def _data_residual(data_term: str) -> tuple[torch.Tensor, torch.Tensor]:
    """RESM's residual F with the prior term off and ``D = P I``, and the size of ``P^T P I``."""
    config = InterIRConfig(width=4, stages=1, downsample=4, data_term=data_term, stage_update="add")
    resm = RESM(config)
    captured = {}
    resm.jacobian_block1.register_forward_hook(lambda m, args, out: captured.setdefault("residual", args[0]))
    resm.prior_block2.register_forward_hook(lambda m, args, out: torch.zeros_like(out))
    with torch.no_grad():
        image = torch.rand(1, 4, 6, 6)
        operator = KroneckerOperator(torch.rand(1, 4, 6, 6), torch.rand(1, 4, 6, 6))
        observation = operator.apply(image)  # D = P I: the estimate explains it exactly
        resm(image, torch.zeros_like(image), observation, operator)
    return captured["residual"], operator.normal(image).abs().max()


def test_residual_data_term_vanishes_when_the_estimate_explains_the_observation():
    residual, scale = _data_residual("residual")
    assert residual.abs().max() < 1e-5 * scale
    # core v2's free weights start at (+1, +1): P^T P I + P^T D, twice the data term, not zero
    free, scale = _data_residual("free")
    torch.testing.assert_close(free.abs().max(), 2 * scale, rtol=1e-4, atol=0)


def test_learned_attention_gain_starts_as_the_fixed_form_and_then_modulates_more():
    torch.manual_seed(0)
    fixed = ExplainableConv2d(4, 4, 3, padding=1, groups=4)
    learned = ExplainableConv2d(4, 4, 3, padding=1, groups=4, learn_attention_gain=True)
    learned.load_state_dict(fixed.state_dict(), strict=False)
    x = torch.randn(2, 4, 16, 16)  # about half above the threshold 0: the mask varies
    with torch.no_grad():
        torch.testing.assert_close(learned(x), fixed(x))
        learned.attention_log_gain.add_(2.0)
        assert (learned(x) - fixed(x)).abs().max() > 1e-3
