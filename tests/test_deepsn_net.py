"""The DeepSN-Net baseline (issue 25): DeepSN-Net's own basic block, P = Q = I, registered beside
the ablation variants, saved and loaded like every model."""

import pytest
import torch

import interir
from interir.engine.checkpoint import save_checkpoint
from interir.loading import load_model
from interir.models.baselines.deepsn_net import BasicBlock, DeepSNNet, DeepSNNetConfig
from interir.models.epblock import EPBlock


def test_registered_and_any_size():
    model = interir.create_model("deepsn-net-small").eval()
    assert isinstance(model, DeepSNNet) and len(model.image_steps) == 2 and len(model.multiplier_steps) == 1
    for size in ((1, 3, 37, 29), (2, 3, 16, 16), (1, 3, 3, 5)):
        x = torch.rand(size)
        with torch.no_grad():
            assert model(x).shape == x.shape


def test_published_light_model_size():
    model = interir.create_model("deepsn-net")
    assert len(model.image_steps) == 6 and model.config.width == 48
    assert 2.4e6 < sum(p.numel() for p in model.parameters()) < 2.7e6


def test_basic_block_is_dense_with_channel_attention_and_a_frequency_branch():
    block = BasicBlock(48, DeepSNNetConfig(spatial_expansion=2))
    convs = [m for m in block.spatial if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.groups) for c in convs] == [
        (48, 96, (3, 3), 1), (96, 48, (3, 3), 1)]
    assert block.frequency.w_in.shape == (2, 48, 48)
    assert not any(isinstance(m, EPBlock) for m in block.modules())


def test_frequency_branch_is_bounded_by_the_spatial_branch():
    torch.manual_seed(0)
    block = BasicBlock(12, DeepSNNetConfig()).eval()
    with torch.no_grad():
        block.frequency.w_out.mul_(1e3)  # a frequency branch far larger than the spatial one
        x = torch.randn(2, 12, 8, 8)
        spatial = block.spatial(x)
        frequency_part = block(x) - spatial - x
        bound = spatial.amax(dim=1, keepdim=True).clamp_min(1.0)
    assert (frequency_part.abs() <= bound + 1e-5).all()
    assert frequency_part.abs().max() > 0.5  # and it does contribute


def test_image_step_data_term_is_the_identity_operator():
    """With the prior blocks giving zero, the step moves I towards D: I - eta (I - D) (+ J^T part)."""
    config = DeepSNNetConfig(downsample=1, stages=2)
    model = DeepSNNet(config).eval()
    step = model.image_steps[0]
    for block in (step.prior2, step.jacobian2):
        block.register_forward_hook(lambda m, args, out: torch.zeros_like(out))
    image, degraded = torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        out = step(image, degraded, torch.zeros_like(image))
    torch.testing.assert_close(out, image - config.step_init * (image - degraded))


def test_checkpoint_round_trip(tmp_path):
    model = interir.create_model("deepsn-net-small").eval()
    path = save_checkpoint(tmp_path / "ck", model)
    loaded = load_model(str(path)).eval()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
