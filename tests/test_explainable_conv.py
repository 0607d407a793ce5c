"""ExplainableConv2d: drop-in behaviour, Eqs. 16-20, batch independence, conversion."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interir.models import ExplainableConv2d, convert_to_explainable, explainable_convs


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=2, dilation=2, groups=2),
        dict(in_channels=6, out_channels=6, kernel_size=3, padding=1, groups=6, bias=False),
        dict(in_channels=3, out_channels=5, kernel_size=(3, 5), padding=(1, 2), padding_mode="reflect"),
    ],
)
def test_uniform_mask_equals_plain_conv(kwargs):
    plain = nn.Conv2d(**kwargs)
    explainable = ExplainableConv2d.from_conv(plain)
    # Thresholds far below every input make the mask all ones -> uniform attention -> W unchanged.
    with torch.no_grad():
        explainable.threshold.fill_(-1e3)
    x = torch.rand(3, kwargs["in_channels"], 13, 17)
    torch.testing.assert_close(explainable(x), plain(x), rtol=1e-5, atol=1e-5)
    assert explainable.last_attention.shape == (3, kwargs["in_channels"], *explainable.kernel_size)
    torch.testing.assert_close(explainable.last_attention, torch.ones_like(explainable.last_attention))


def test_state_dict_of_plain_conv_loads():
    plain = nn.Conv2d(4, 6, 3, padding=1)
    explainable = ExplainableConv2d(4, 6, 3, padding=1)
    missing, unexpected = explainable.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["threshold"] and unexpected == []
    torch.testing.assert_close(explainable.weight, plain.weight)


def test_mask_is_binary_and_attention_sums_to_k2():
    conv = ExplainableConv2d(2, 2, 3, padding=1)
    x = torch.zeros(1, 2, 12, 12)
    x[..., :4, :4] = 1.0  # only the top-left corner exceeds the threshold 0
    conv(x)
    mask = conv.last_mask
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert mask.sum().item() == 2 * 16
    attention = conv.last_attention
    torch.testing.assert_close(attention.sum(dim=(-1, -2)), torch.full((1, 2), 9.0))
    # The active region is the top-left ninth of the image: that kernel tap gets the most weight.
    assert attention[0, 0].argmax().item() == 0
    assert attention[0, 0, 0, 0] > 1.0 > attention[0, 0, 2, 2]


def test_per_sample_kernels_follow_each_input():
    conv = ExplainableConv2d(2, 4, 3, padding=1)
    x = torch.zeros(2, 2, 9, 9)
    x[0, :, :3, :3] = 1.0
    x[1, :, 6:, 6:] = 1.0
    conv(x)
    attention = conv.last_attention
    assert attention[0, 0].argmax().item() == 0 and attention[1, 0].argmax().item() == 8
    weights = conv.per_sample_weight(attention)
    assert weights.shape == (2, 4, 2, 3, 3)
    assert not torch.allclose(weights[0], weights[1])


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_batch_independence(groups):
    conv = ExplainableConv2d(4, 8, 3, padding=1, groups=groups)
    x = torch.randn(4, 4, 11, 10)
    batched = conv(x)
    for b in range(4):
        torch.testing.assert_close(conv(x[b : b + 1]), batched[b : b + 1], rtol=1e-5, atol=1e-5)


def test_straight_through_gradient_reaches_threshold_and_input():
    conv = ExplainableConv2d(3, 3, 3, padding=1, groups=3)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    conv(x).square().mean().backward()
    for name, param in [("threshold", conv.threshold), ("weight", conv.weight), ("bias", conv.bias)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_gradient_matches_plain_conv_when_threshold_is_frozen_and_mask_uniform():
    plain = nn.Conv2d(2, 2, 3, padding=1)
    explainable = ExplainableConv2d.from_conv(plain)
    explainable.threshold.requires_grad_(False)
    with torch.no_grad():
        explainable.threshold.fill_(-1e3)
    x = torch.rand(2, 2, 6, 6)
    explainable(x).sum().backward()
    plain(x).sum().backward()
    torch.testing.assert_close(explainable.weight.grad, plain.weight.grad)


def test_convert_any_model_with_predicate():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 3, 5, padding=2))
    x = torch.rand(2, 3, 10, 10)
    before = model(x)
    convert_to_explainable(model)
    names = list(explainable_convs(model))
    assert names == ["0", "3"], "1x1 convs stay standard by default"
    with torch.no_grad():
        for conv in explainable_convs(model).values():
            conv.threshold.fill_(-1e3)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    convert_to_explainable(model, predicate=lambda name, conv: name == "2")
    assert list(explainable_convs(model)) == ["0", "2", "3"]


def _reference(conv: ExplainableConv2d, x: torch.Tensor) -> torch.Tensor:
    """Eqs. 16-20 written out per sample: hard mask, adaptive pooling, k^2 softmax, own kernel."""
    kh, kw = conv.kernel_size
    mask = (x > conv.threshold.view(1, -1, 1, 1)).float()
    pooled = F.adaptive_avg_pool2d(mask, (kh, kw)).flatten(2) / conv.attention_temperature
    attention = (torch.softmax(pooled, -1) * kh * kw).view(x.shape[0], -1, kh, kw)
    weights = conv.per_sample_weight(attention)
    return torch.cat([F.conv2d(x[b : b + 1], weights[b], conv.bias, conv.stride, conv.padding,
                               conv.dilation, conv.groups) for b in range(x.shape[0])])


@pytest.mark.parametrize("groups", [1, 6])
def test_inference_and_training_forwards_follow_the_mask(groups):
    """Without gradients (inference) and with them (training, the export forms) the output is
    the mask-attended convolution, not the plain one."""
    conv = ExplainableConv2d(6, 6, 3, padding=1, groups=groups)
    with torch.no_grad():
        conv.threshold.normal_(0, 0.5)
    x = torch.randn(3, 6, 11, 13)
    expected = _reference(conv, x)
    with torch.inference_mode():
        inferred = conv(x)
    trained = conv(x.clone().requires_grad_())
    torch.testing.assert_close(inferred, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trained.detach(), expected, rtol=1e-5, atol=1e-5)
    plain = F.conv2d(x, conv.weight, conv.bias, padding=1, groups=groups)
    assert (inferred - plain).abs().max() > 1e-2


def test_bad_temperatures():
    with pytest.raises(ValueError, match="temperature"):
        ExplainableConv2d(2, 2, 3, ste_temperature=0)
    with pytest.raises(ValueError, match="temperature"):
        ExplainableConv2d(2, 2, 3, attention_temperature=-1)


def test_training_form_equals_export_form(monkeypatch):
    """The grouped convolution and adaptive pooling that training uses give the outputs and
    gradients of the export form (shifted multiply-adds, cumulative-sum pooling)."""
    import interir.models.explainable_conv as module

    torch.manual_seed(0)
    conv = module.ExplainableConv2d(6, 6, 3, padding=1, groups=6)
    x = torch.rand(2, 6, 13, 11, requires_grad=True)
    results = []
    for exporting in (False, True):
        monkeypatch.setattr(module, "is_exporting", lambda exporting=exporting: exporting)
        out = conv(x)
        grads = torch.autograd.grad(out.square().sum(), (x, conv.weight, conv.threshold))
        results.append((out.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
