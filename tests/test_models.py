"""The registered networks: shapes, gradients, batch independence, operator adjoint, errors."""

import pytest
import torch

import interir
from helpers import act_like_trained
from interir.models import InterIR, KroneckerOperator
from interir.models.epblock import EPBlock
from interir.models.unfolding import InterIRConfig

ALL_MODELS = interir.list_models()
# v1 forms: a fresh v1 network already acts on its input, which the feature tests below rely on
V1 = dict(stage_update="subtract", output_skip="input")


def test_registry_lists_required_names():
    names = interir.list_models()
    for required in ["interir", "interir-small", "interir-tiny", "deepsn"]:
        assert required in names


def test_unknown_name_and_option_suggest_the_closest():
    with pytest.raises(ValueError, match='Did you mean "interir-tiny"') as info:
        interir.create_model("interir-tyni")
    assert "interir-small" in str(info.value)
    with pytest.raises(ValueError, match='unknown option .widht.*Did you mean "width"'):
        interir.create_model("interir-tiny", widht=8)
    with pytest.raises(ValueError, match="conv must be one of"):
        interir.create_model("interir-tiny", conv="fancy")


def test_paper_size_budget():
    """Paper Table 8: 27 M parameters (+-10 %) and 22 G multiply-adds (+-25 %) at 3x256x256."""
    from torch.utils.flop_counter import FlopCounterMode

    model = interir.create_model("interir").eval()
    params = sum(p.numel() for p in model.parameters())
    assert 0.9 * 27e6 <= params <= 1.1 * 27e6, params
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.rand(1, 3, 256, 256))
    macs = counter.get_total_flops() / 2
    assert 0.75 * 22e9 <= macs <= 1.25 * 22e9, macs
    deepsn = interir.create_model("deepsn")
    assert deepsn.config.conv == "standard" and deepsn.config.resm == "deepsn" and deepsn.config.dmum_mum == "deepsn"
    assert deepsn.config.width == model.config.width and deepsn.config.stages == model.config.stages


@pytest.mark.parametrize("name", ALL_MODELS)
def test_odd_sizes_and_gradients(name):
    model = interir.create_model(name)
    x = torch.rand(2, 3, 37, 53)
    y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert without_grad == []


@pytest.mark.parametrize("name", ["interir-tiny", "deepsn-small", "interir-small"])
def test_batch_independence(name):
    model = act_like_trained(interir.create_model(name)).eval()
    x = torch.rand(3, 3, 24, 20)
    with torch.no_grad():
        batched = model(x)
        assert not torch.allclose(batched, x, atol=1e-3), "a network that returns its input tests nothing"
        for b in range(3):
            torch.testing.assert_close(model(x[b : b + 1]), batched[b : b + 1], rtol=1e-4, atol=1e-5)


def test_same_seed_same_output():
    outputs = []
    for seed in (123, 123, 124):
        torch.manual_seed(seed)
        model = act_like_trained(interir.create_model("interir-tiny")).eval()
        with torch.no_grad():
            outputs.append(model(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert not torch.allclose(outputs[0], outputs[2], atol=1e-4), "another seed must give another network"


def test_kronecker_adjoint_identity():
    g = torch.Generator().manual_seed(0)
    p_h = torch.randn(2, 3, 7, 7, generator=g, dtype=torch.float64)
    p_w = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    op = KroneckerOperator(p_h, p_w)
    x = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    lhs = (op.apply(x) * y).sum()
    rhs = (x * op.adjoint(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.apply(x)))
    # Against the explicit (H'W') x (H'W') Kronecker matrix on one channel (row-major vec).
    full = torch.kron(p_h[0, 0], p_w[0, 0].T.contiguous())
    torch.testing.assert_close(full @ x[0, 0].reshape(-1), op.apply(x)[0, 0].reshape(-1))


def test_return_stages_trajectory():
    model = interir.create_model("interir-tiny").eval()
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        out, stages = model(x, return_stages=True)
        plain = model(x)
    assert len(stages) == model.config.stages
    assert all(s.shape == x.shape for s in stages)
    torch.testing.assert_close(stages[-1], out)
    torch.testing.assert_close(out, plain)


def test_fresh_v1_network_starts_at_the_isn_step():
    """v1 (stage_update="subtract"): the InterIR weights start at the ISN step (1, -1, 1)."""
    model = interir.create_model("interir-tiny", stage_update="subtract", output_skip="input")
    w1, w2, w3 = model.stages[0].resm.term_weights(torch.rand(1, 3 * 16, 4, 4))
    for w, value in [(w1, 1.0), (w2, -1.0), (w3, 1.0)]:
        torch.testing.assert_close(w, torch.full_like(w, value))


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(3, 32, 32), r"\(B, 3, H, W\)"),
        (torch.rand(1, 1, 32, 32), r"\(B, 3, H, W\)"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), "floating-point"),
        (torch.rand(1, 3, 2, 32), "smaller than this model's minimum"),
        ("not a tensor", "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_value_error(bad, match):
    model = interir.create_model("interir-tiny")
    with pytest.raises(ValueError, match=match):
        model(bad)


def test_tiny_model_overfits_one_pair():
    """Loss on one 64x64 degraded/clean pair falls at least tenfold in a few hundred steps."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    clean = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(6 * xx) * torch.cos(5 * yy)]).unsqueeze(0)
    degraded = 0.6 * clean + 0.4 * 0.8  # haze: transmission 0.6 towards airlight 0.8
    model = InterIR(InterIRConfig(width=16, stages=2, downsample=4, head_expansion=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(250):
        optimizer.zero_grad()
        loss = (model(degraded) - clean).abs().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_registered_cpu_sizes_have_a_full_rank_working_space():
    # Up maps C channels at 1/s to 3*s*s pixel values: with C < 3*s*s (v1's interir-small, C = 32)
    # and the pixel Up, part of any pixel pattern, e.g. white noise, is out of reach of the
    # predicted residual. A learned Up ends at full resolution (EPBlock, 3x3 conv to 3 channels).
    model = interir.create_model("interir-base")
    c, s = model.config.width, model.config.downsample
    assert c >= 3 * s * s and model.config.down_up == "pixel"
    assert torch.linalg.matrix_rank(model.up[0].weight.detach().flatten(1)) == 3 * s * s
    small = interir.create_model("interir-small")
    assert small.config.down_up == "learned" and small.config.width < 3 * small.config.downsample**2
    assert isinstance(small.up[2], EPBlock) and small.up[-1].out_channels == 3
    v1_small = interir.create_model("interir-small", width=32, down_up="pixel")
    assert torch.linalg.matrix_rank(v1_small.up[0].weight.detach().flatten(1)) < 3 * v1_small.config.downsample**2


def test_refinement_starts_as_identity_and_is_trainable():
    torch.manual_seed(0)
    with_refine = interir.create_model("interir-tiny", refine_blocks=2, refine_width=8)
    plain = interir.create_model("interir-tiny")
    plain.load_state_dict({k: v for k, v in with_refine.state_dict().items() if not k.startswith("refine.")})
    x = torch.rand(2, 3, 20, 28)
    torch.testing.assert_close(with_refine(x), plain(x))  # a fresh refinement adds nothing
    out, stages = with_refine(x, return_stages=True)
    torch.testing.assert_close(stages[-1], out)
    (with_refine(x) - 0.9 * x).abs().mean().backward()
    assert with_refine.refine.outro.weight.grad.abs().sum() > 0
    assert interir.create_model("interir-base").config.refine_blocks > 0
    with pytest.raises(ValueError, match="refine_blocks"):
        interir.create_model("interir-tiny", refine_blocks=-1)


def test_airlight_statistics_start_at_zero_and_see_the_whole_image():
    torch.manual_seed(0)
    with_stats = interir.create_model("interir-tiny", airlight_stats=True, **V1).eval()
    plain = interir.create_model("interir-tiny", **V1).eval()
    plain.load_state_dict({k: v for k, v in with_stats.state_dict().items() if not k.startswith("global_stats.")})
    x = torch.rand(2, 3, 24, 32) * 0.5
    with torch.no_grad():
        torch.testing.assert_close(with_stats(x), plain(x))  # zero-initialised: adds nothing yet
        with_stats.global_stats.proj.weight.normal_()
        # Brightening one far corner block changes the statistics, and through them the output
        # everywhere, also in the opposite corner (a 3x3-conv network of this depth sees far less).
        bright = x.clone()
        bright[:, :, :4, :4] = 1.0
        far = (with_stats(bright) - with_stats(x))[:, :, -4:, -4:].abs().amax()
        far_plain = (plain(bright) - plain(x))[:, :, -4:, -4:].abs().amax()
    assert float(far) > 10 * float(far_plain) + 1e-4
    stats = with_stats.global_stats
    blocks = torch.nn.functional.avg_pool2d(bright, stats.block)
    expected = stats.proj(torch.cat([blocks.amax((2, 3), keepdim=True), blocks.amin((2, 3), keepdim=True)], 1))
    torch.testing.assert_close(stats(bright), expected)
    assert expected.shape == (2, with_stats.config.width, 1, 1)
    assert bool(torch.all(stats(bright)[0] != stats(x)[0]))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace
def test_windowed_mean_pool_matches_a_brute_force_shifted_window():
    from interir.models.layers import WindowedMeanPool

    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 7)
    out = WindowedMeanPool(4)(x)
    expected = torch.empty_like(x)
    for i in range(11):
        for j in range(7):
            top, left = min(max(i - 2, 0), 11 - 4), min(max(j - 2, 0), 7 - 4)
            expected[:, :, i, j] = x[:, :, top : top + 4, left : left + 4].mean(dim=(-2, -1))
    torch.testing.assert_close(out, expected)
    # The traced (gather) form agrees, so an exported network computes the same windows.
    traced = torch.jit.trace(WindowedMeanPool(4), torch.randn(1, 3, 9, 9))
    torch.testing.assert_close(traced(x), expected)
    torch.testing.assert_close(traced(x[..., :3, :2]), x[..., :3, :2].mean(dim=(-2, -1), keepdim=True).expand(2, 3, 3, 2))
    # A map no larger than the window, and window 0, give the global average.
    torch.testing.assert_close(WindowedMeanPool(11)(x), x.mean(dim=(-2, -1), keepdim=True).expand_as(x))
    torch.testing.assert_close(WindowedMeanPool(0)(x), x.mean(dim=(-2, -1), keepdim=True))
    with pytest.raises(ValueError, match="window"):
        WindowedMeanPool(-1)


def test_pool_window_changes_only_images_larger_than_the_window():
    from interir.models.epblock import EPBlock

    torch.manual_seed(0)
    plain = interir.create_model("interir-tiny", refine_blocks=1, refine_width=8, **V1).eval()
    windowed = interir.create_model("interir-tiny", refine_blocks=1, refine_width=8, pool_window=32, **V1).eval()
    # Same parameters: the window is a way of running a trained network, not a new layer.
    windowed.load_state_dict(plain.state_dict())
    small, large = torch.rand(1, 3, 32, 24), torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        for net in (plain, windowed):
            for module in net.modules():
                if isinstance(module, EPBlock):  # fresh blocks are the identity: switch them on
                    module.beta.fill_(1.0)
        torch.testing.assert_close(windowed(small), plain(small))
        assert float((windowed(large) - plain(large)).abs().amax()) > 1e-6
    s = windowed.config.downsample
    pools = {name: m.window for name, m in windowed.named_modules() if type(m).__name__ == "WindowedMeanPool"}
    assert {w for name, w in pools.items() if name.startswith("refine.")} == {32}
    assert {w for name, w in pools.items() if not name.startswith("refine.")} == {32 // s}
    with pytest.raises(ValueError, match="pool_window"):
        interir.create_model("interir-tiny", pool_window=-8)


def test_windowed_channel_attention_is_local():
    from interir.models.epblock import EPBlock

    torch.manual_seed(0)
    block = EPBlock(4, pool_window=4).eval()
    with torch.no_grad():
        block.beta.fill_(1.0)
        x = torch.rand(1, 4, 4, 16)
        changed = x.clone()
        changed[..., :4] += 1.0  # the first window only
        delta = (block(changed) - block(x)).abs().amax(dim=(0, 1, 2))
    # Columns 8+ pool over windows that exclude columns 0-3 and their 3x3 conv reach.
    assert float(delta[:4].amin()) > 0
    assert float(delta[9:].amax()) == 0.0


@pytest.mark.parametrize("memory", [torch.contiguous_format, torch.channels_last])
def test_layernorm2d_normalises_each_pixel_over_channels(memory, monkeypatch):
    """The fused form (layer_norm over the channels-last view) equals the textbook formula in
    value and gradient, in both memory formats, and keeps the input's memory format; the export
    form (plain ops) gives the same values."""
    from interir.models import layers

    torch.manual_seed(0)
    norm = layers.LayerNorm2d(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = (3 * torch.randn(2, 6, 5, 7) + 1).contiguous(memory_format=memory).requires_grad_()
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    out = norm(x)
    assert out.is_contiguous(memory_format=memory)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, norm.weight], grad_out)
    want = torch.autograd.grad(expected, [x, norm.weight], grad_out)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    monkeypatch.setattr(layers, "is_exporting", lambda: True)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
