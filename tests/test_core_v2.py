"""InterIR core v2: stages that start as the identity, additive updates, centred factors, and the
per-stage diagnostics (norms, the refinement as its own entry)."""

import json

import pytest
import torch

import interir
from interir.engine.checkpoint import load_checkpoint, save_checkpoint
from interir.loading import build_model
from interir.explain import explain_image
from interir.models.unfolding import gram_factors

V2 = dict(stage_update="add", output_skip="init")
V1 = dict(stage_update="subtract", output_skip="input", factor_init="gram")


def _tiny(**overrides):
    torch.manual_seed(0)
    return interir.create_model("interir-tiny", **overrides)


def test_fresh_v2_network_returns_its_input():
    model = _tiny(**V2).eval()
    x = torch.rand(2, 3, 37, 29)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x, atol=1e-6, rtol=0)


def test_no_v2_stage_shrinks_the_estimate_at_init_while_v1_does():
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        v2 = _tiny(**V2).eval().trace(x)
        v1 = _tiny(**V1).eval().trace(x)
    start = v2.initial_norms[0]
    for norm in v2.image_norms:
        torch.testing.assert_close(norm, start)
    # the landed v1 form shrinks ||I|| from the first stage on (the collapse the issue measured)
    assert v1.image_norms[0] < 0.97 * v1.initial_norms[0]


def test_v2_gates_receive_gradients_at_init():
    model = _tiny(**V2)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    (model(x) - y).abs().mean().backward()
    for name, param in model.named_parameters():
        # the image gates come first: the factor and multiplier gates act through later stages'
        # image steps, so they start learning once those gates have moved off zero
        if name.endswith("resm.update_gate"):
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_v2_interir_forms_add_and_deepsn_forms_keep_their_step():
    model = _tiny(**V2)
    w1, w2, w3 = model.stages[0].resm.term_weights(torch.rand(1, 3 * 16, 4, 4))
    for w in (w1, w2, w3):
        torch.testing.assert_close(w, torch.ones_like(w))
    deepsn = _tiny(**V2, conv="standard", resm="deepsn", dmum_mum="deepsn")
    assert hasattr(deepsn.stages[0].resm, "step_size") and not hasattr(deepsn.stages[0].resm, "update_gate")


def test_centred_factors_ignore_a_constant_offset():
    features = torch.randn(2, 4, 12, 9)
    centred = gram_factors(features, centred=True)
    shifted = gram_factors(features + 5.0, centred=True)
    for a, b in zip(centred, shifted):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    plain, plain_shifted = gram_factors(features, False)[0], gram_factors(features + 5.0, False)[0]
    assert (plain - plain_shifted).abs().max() > 0.1  # the plain Gram is dominated by the offset


def test_checkpoint_without_v2_fields_builds_the_v1_network(tmp_path):
    model = _tiny(**V1)
    path = save_checkpoint(tmp_path / "ck", model)
    meta_path = path / "model.json"
    meta = json.loads(meta_path.read_text())
    for key in ("stage_update", "output_skip", "factor_init", "dmum_expansion"):
        meta["config"].pop(key)
    meta_path.write_text(json.dumps(meta))
    rebuilt = build_model(load_checkpoint(path))
    assert rebuilt.config.stage_update == "subtract" and rebuilt.config.output_skip == "input"
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model.eval()(x))


def test_refinement_is_its_own_entry_with_its_share_of_the_gain():
    torch.manual_seed(0)
    model = interir.create_model("interir-tiny", refine_blocks=1, **V2).eval()
    with torch.no_grad():
        model.refine.outro.bias.fill_(0.02)  # a refinement that changes the image
    x = torch.rand(1, 3, 24, 32) * 0.9
    target = x + 0.04
    exp = explain_image(model, x, target=target, conv_names=[])
    with torch.no_grad():
        torch.testing.assert_close(exp.output, model(x)[0])
    assert exp.refined_image is not None and len(exp.stage_images) == model.config.stages
    torch.testing.assert_close(exp.stage_images[-1], x[0])  # the fresh stages did nothing
    shares = exp.gain_shares()
    assert shares["unfolding_db"] == pytest.approx(0.0, abs=1e-6)
    assert shares["refinement_db"] == pytest.approx(exp.refined_psnr - exp.input_psnr)
    assert shares["refinement_share"] == pytest.approx(1.0)
    assert len(exp.feature_norms) == model.config.stages and exp.initial_norms is not None
    summary = exp.to_dict()
    assert summary["refinement"]["psnr"] == pytest.approx(exp.refined_psnr)


def test_gain_learning_rate_puts_only_the_zero_initialised_gains_in_a_faster_group():
    from interir.engine.optim import parameter_groups

    model = _tiny(**V2)
    assert len(parameter_groups(model, 1e-3)) == 1  # scale 1: the paper's single group
    rest, gains = parameter_groups(model, 1e-3, gain_lr_scale=10.0)
    assert gains["lr"] == pytest.approx(1e-2) and "lr" not in rest
    names = {id(p): n for n, p in model.named_parameters()}
    gain_names = {names[id(p)] for p in gains["params"]}
    assert "stages.0.resm.update_gate" in gain_names and "final_resm.update_gate" in gain_names
    assert all(n.endswith(("update_gate", ".beta", ".gamma", "step_size")) for n in gain_names)
    assert len(gains["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_learned_down_up_keeps_identity_stages_exact_and_trains_the_gates():
    model = _tiny(**V2, down_up="learned", down_up_width=4)
    x = torch.rand(2, 3, 21, 30)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), x, atol=1e-6, rtol=0)
        trace = model.trace(x)
    torch.testing.assert_close(trace.images[-1], trace.output)
    model.train()
    (model(x) - 0.9 * x).abs().mean().backward()
    assert model.final_resm.update_gate.grad.abs().sum() > 0
    assert any(isinstance(m, torch.nn.PixelShuffle) for m in model.up.modules())


@pytest.mark.parametrize("down_up", ["pixel", "learned"])
def test_parameter_order_is_down_init_stages_final_up(down_up):
    """The optimizer state is stored by parameter order: a run saved earlier resumes only if the
    modules keep their registration order."""
    model = _tiny(**V2, down_up=down_up, down_up_width=4, refine_blocks=1, refine_width=4)
    tops = []
    for name, _ in model.named_parameters():
        top = name.split(".")[0]
        if not tops or tops[-1] != top:
            tops.append(top)
    assert tops == ["down", "init", "stages", "final_resm", "up", "refine"]
