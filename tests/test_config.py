"""Typed training configuration: YAML + overrides, validated once, helpful errors."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from interir.config import ConfigError, config_to_yaml, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
BASE = {"data": {"train_roots": ["some/folder"]}}


def test_shipped_configs_validate():
    names = {p.stem for p in CONFIGS}
    assert {"paper-mdir", "paper-derain", "paper-dehaze", "cpu-small", "cpu-tiny"} <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg.output.name == path.stem
        # the paper's loss everywhere except the default's stages 2-5 (PSNR loss, no FFT term),
        # each of which starts from the previous stage's best weights
        if cfg.loss.pixel == "l1":
            assert cfg.loss.fft_weight == 0.1
        else:
            # A fine-tuning stage: it starts from the best weights of another shipped config's run.
            assert (cfg.loss.pixel, cfg.loss.fft_weight) == ("psnr", 0.0)
            start = Path(str(cfg.train.init_from))
            assert start.parts[0] == "runs" and start.parts[2:] == ("checkpoints", "best"), path
            # (or from the equal-budget rematch's run of a registered model, scripts/rematch.sh)
            assert start.parts[1] in names or start.parts[1].startswith("rematch-"), path
            assert start.parts[1] != path.stem, path
        assert cfg.optim.name == "adam" and cfg.optim.schedule == "cosine"


def test_paper_configs_carry_the_paper_recipe():
    for name in ("paper-mdir", "paper-derain", "paper-dehaze"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.model.name == "interir"
        assert cfg.train.batch_size == 32 and cfg.data.augment
        assert (cfg.optim.lr, cfg.optim.lr_final, cfg.data.patch_size, cfg.train.iterations) == (
            2e-4, 1e-6, 256, 300000)
    mdir = load_config(REPO / "configs" / "paper-mdir.yaml")
    assert len(mdir.data.combinations) == 7
    assert mdir.data.max_levels == {"haze": 150.0, "rain": 300.0, "noise": 50.0}


def test_cpu_configs_hold_out_validation_images():
    for name in ("cpu-small", "cpu-tiny"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert "configs/splits/bsds432-val.txt" in cfg.data.exclude
        assert cfg.data.val.include == ["configs/splits/bsds432-val.txt"]
        assert any("overlap_with_Rain100H" in e for e in cfg.data.exclude)
        assert not any("eval" in r for r in cfg.data.train_roots + cfg.data.val.roots)
    split = [ln for ln in (REPO / "configs/splits/bsds432-val.txt").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert len(split) == 8


def test_overrides_merge_and_coerce():
    cfg = load_config(
        REPO / "configs" / "cpu-tiny.yaml",
        ["optim.lr=1e-4", "train.batch_size=4", "model.overrides.width=8", "data.combinations=[rain,noise+haze]",
         "train.ema_decay=null", "output.name=x", "output.tensorboard=off"],
    )
    assert cfg.optim.lr == 1e-4 and cfg.train.batch_size == 4
    assert cfg.model.overrides == {"width": 8}
    assert cfg.data.combinations == ["rain", "haze+noise"]  # canonical order
    assert cfg.train.ema_decay is None and cfg.output.name == "x"
    assert cfg.output.tensorboard == "off"  # YAML reads bare off as False


def test_yaml_round_trip(tmp_path):
    cfg = load_config(REPO / "configs" / "cpu-small.yaml", ["optim.betas=[0.8,0.99]"])
    out = tmp_path / "resolved.yaml"
    out.write_text(config_to_yaml(cfg))
    again = load_config(out)
    assert again == cfg
    assert again.optim.betas == (0.8, 0.99)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.lrr=1", ["'optim.lrr'", 'Did you mean "lr"', "Valid keys in 'optim'", "lr_final"]),
        ("data.val.kindd=paired", ["'data.val.kindd'", 'Did you mean "kind"', "Valid keys in 'data.val'"]),
        ("trian.iterations=3", ["'trian'", 'Did you mean "train"', "model, data, loss, optim, train, output"]),
        ("model.name=interir-tinny", ["unknown model 'interir-tinny'", 'Did you mean "interir-tiny"']),
        ("model.overrides.widht=3", ["unknown option 'widht'", 'Did you mean "width"']),
        ("train.batch_size=-1", ["'train.batch_size'", "greater than 0", "-1"]),
        ("train.amp=fp8", ["'train.amp'", "'auto'", "'bf16'"]),
        ("data.combinations=[snow]", ["'data.combinations'", "invalid combination 'snow'"]),
        ("optim.lr_final=1", ["lr_final", "larger than optim.lr"]),
        ("train.device=gpu", ["'train.device'", "invalid device 'gpu'"]),
        ("data.haze_depth=radial", ["'data.haze_depth'", "'centre'", "'mixed'"]),
        ("data.haze_airlight=[0.9,0.5]", ["haze_airlight", "low <= high"]),
    ],
)
def test_errors_name_the_key_and_the_valid_choices(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override], base=BASE)
    for text in expected:
        assert text in str(info.value), str(info.value)


def test_data_source_rules():
    with pytest.raises(ConfigError, match="no training data"):
        validate_config({"data": {}})
    with pytest.raises(ConfigError, match="set data.paired_fraction"):  # mixing needs its share
        validate_config({"data": {"train_roots": ["a"], "paired_roots": ["b"]}})
    with pytest.raises(ConfigError, match="needs data.val.roots"):
        validate_config({"data": {"train_roots": ["a"], "val": {"kind": "synthetic"}}})


def test_val_may_be_a_list_of_sections():
    one = {"kind": "synthetic", "roots": ["a"]}
    cfg = validate_config({"data": {"train_roots": ["a"], "val": one}})
    assert [v.roots for v in cfg.data.val_sets] == [["a"]] and cfg.data.val.kind == "synthetic"
    two = [one, {**one, "haze_depth": "scene", "haze_airlight": [0.8, 1.0]}, {"kind": "none"}]
    cfg = validate_config({"data": {"train_roots": ["a"], "val": two}})
    sets = cfg.data.val_sets  # the kind-none entry is dropped
    assert [v.haze_depth for v in sets] == ["centre", "scene"] and sets[1].haze_airlight == (0.8, 1.0)
    assert validate_config({"data": {"train_roots": ["a"], "val": {"kind": "none"}}}).data.val_sets == []
    # a list entry's unknown key is named with its index and the section's valid keys
    with pytest.raises(ConfigError) as info:
        validate_config({"data": {"train_roots": ["a"], "val": [one, {**one, "seeed": 1}]}})
    assert "'data.val[1].seeed'" in str(info.value) and 'Did you mean "seed"' in str(info.value)
    assert "haze_depth" in str(info.value) and "list" not in str(info.value)
    with pytest.raises(ConfigError, match="share y_channel and crop_border"):
        validate_config({"data": {"train_roots": ["a"], "val": [one, {**one, "y_channel": True}]}})
    with pytest.raises(ConfigError, match="empty list"):
        validate_config({"data": {"train_roots": ["a"], "val": []}})
    with pytest.raises(ConfigError, match=r"data.val\[0\].haze_airlight.*low <= high"):
        validate_config({"data": {"train_roots": ["a"], "val": [{**one, "haze_airlight": [1.0, 0.2]}]}})
    # an override cannot swap the file's mapping for a list: say so instead of a TypeError
    with pytest.raises(ConfigError, match="edit the YAML file"):
        load_config(None, ["data.val=[]"], base={"data": {"train_roots": ["a"], "val": one}})


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"], base=BASE)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(bad)


def test_cli_reports_config_errors_with_exit_code_2():
    from interir.cli import _load_commands
    from interir.cli.app import app

    _load_commands()
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(REPO / "configs/cpu-tiny.yaml"), "optim.lrr=1"])
    assert res.exit_code == 2
    assert 'Did you mean "lr"' in res.output
    res = runner.invoke(app, ["train", str(REPO / "configs/cpu-tiny.yaml"), "train.iterations=7", "--print-config"])
    assert res.exit_code == 0, res.output
    assert "iterations: 7" in res.output and "name: interir-tiny" in res.output
