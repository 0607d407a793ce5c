"""Typed training configuration: YAML + ``key=value`` overrides, validated once.

``load_config("configs/cpu-small.yaml", ["optim.lr=1e-4", "train.batch_size=8"])`` reads the YAML
file with OmegaConf, merges the command-line overrides (OmegaConf dotlist syntax, ``${...}``
interpolation resolved), and validates the result into :class:`TrainConfig`, a tree of pydantic
models that reject unknown keys. Every error names the offending key, the valid keys of its
section and the closest match, e.g.::

    config key 'optim.lrr' is not a valid option. Did you mean "lr"?
    Valid keys in 'optim': name, lr, lr_final, ...

Relative paths in configs (``data.train_roots`` ...) are resolved against the current folder;
the shipped configs assume the repository root (``../shared/data/...``).

The configs of ``configs/`` are shipped inside the package (``interir/configs``), so an installed
``interir`` finds them by name: :func:`resolve_config_path` turns ``"cpu-small"`` into the shipped
file, and :func:`load_config` points a shipped file's ``configs/...`` entries (split lists) at the
shipped copies when the current folder has none ([ours]).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, get_args

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)

from interir.degradations import parse_combinations, parse_level_powers, parse_levels, rain_sampling_for
from interir.registry import closest_match_hint, model_config
from interir.utils.errors import ConfigError
from interir.utils.files import file_in_folder

__all__ = [
    "ConfigError",
    "ModelSection",
    "ValSection",
    "DataSection",
    "LossSection",
    "OptimSection",
    "TrainSection",
    "OutputSection",
    "TrainConfig",
    "load_config",
    "load_train_config",
    "validate_config",
    "list_shipped_configs",
    "resolve_config_path",
    "SHIPPED_CONFIG_DIR",
    "config_to_yaml",
    "config_to_dict",
]


#: The training configs shipped with the package (the repository's ``configs/``).
SHIPPED_CONFIG_DIR = Path(__file__).parent / "configs"


def list_shipped_configs() -> list[str]:
    """Names of the shipped training configs (``interir train NAME``), e.g. ``"cpu-small"``."""
    return sorted(p.stem for p in SHIPPED_CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(spec: str | os.PathLike) -> Path:
    """The YAML file meant by ``spec``: a file, a run folder's ``config.yaml`` or a shipped name.

    A path that exists wins over a shipped config of the same name.

    Raises:
        ConfigError: nothing matches; the message lists the shipped names.
    """
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"'{path}' is a folder without config.yaml")
        return path / "config.yaml"
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    shipped = SHIPPED_CONFIG_DIR / f"{name}.yaml"
    if str(path.parent) in (".", "configs") and shipped.is_file():
        return shipped
    names = ", ".join(list_shipped_configs()) or "none"
    raise ConfigError(f"config '{spec}' is neither a file, a run folder nor a shipped config "
                      f"(shipped: {names})")


def _anchor_shipped_paths(value: Any) -> Any:
    """Point ``configs/...`` strings missing from the current folder at the shipped copies."""
    if isinstance(value, dict):
        return {k: _anchor_shipped_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_anchor_shipped_paths(v) for v in value]
    if isinstance(value, str) and value.startswith("configs/") and not Path(value).exists():
        shipped = SHIPPED_CONFIG_DIR / value[len("configs/"):]
        return str(shipped) if shipped.exists() else value
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())


class ModelSection(_Section):
    """Which network to train.

    Attributes:
        name: a registered model name (``interir models`` lists them).
        overrides: fields of the model's config dataclass, e.g. ``{width: 32}``.
    """

    name: str = "interir-small"
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_model(self) -> "ModelSection":
        model_config(self.name, **self.overrides)  # ValueError names the bad name/option
        return self


def _check_combinations(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return list(parse_combinations(value))


def _check_levels(value: dict[str, float] | None) -> dict[str, float] | None:
    if value is None:
        return None
    return parse_levels(value)


def _check_airlight(value: tuple[float, float] | None) -> tuple[float, float] | None:
    if value is None:
        return None
    lo, hi = value
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"haze_airlight must be [low, high] with 0 <= low <= high <= 1, got {list(value)}")
    return value


def _check_rain_style(value: str) -> str:
    rain_sampling_for(value)  # ValueError lists the styles
    return value


def _check_level_power(value: float | dict[str, float]) -> float | dict[str, float]:
    if max(parse_level_powers(value).values()) > 10:
        raise ValueError(f"level_power must be at most 10, got {value}")
    return value


class ValSection(_Section):
    """Held-out validation, run every ``train.val_every`` steps and at the end.

    Attributes:
        kind: ``"none"``; ``"synthetic"`` (clean images from ``roots`` degraded once with a fixed
            ``seed``, the same pairs every time); or ``"paired"`` (``roots`` are folders of
            degraded/clean pairs, read by :class:`interir.data.PairedImageDataset`).
        name: the set's name in the validation log (``RainTrainH_6: 24.1``); default ``set <k>``.
        roots: folders (see ``kind``). Never point these at benchmark test images used for
            reporting: validation picks the best checkpoint.
        include: when set, only these file names (or files listing names) are used, e.g. a
            held-out split that ``data.exclude`` removes from training.
        exclude: file names (or files listing names, one per line) to leave out.
        limit: at most this many images (the first ones in sorted order); ``None`` for all.
        crop: centre-crop each image to ``crop x crop`` (faster on CPU); ``None`` for full images.
        combinations, max_levels: synthetic degradations; ``None`` means the training ones.
        seed: seed of the synthetic degradations.
        haze_depth: depth of the synthetic haze: ``"centre"`` the CBSD68-MDIR centre-distance
            pseudo-depth; ``"scene"`` etc. as ``data.haze_depth`` (closer to real haze);
            ``"real"``: ``roots`` are folders of views with disparity (``data.depth_roots``'s
            layout) hazed with their own depth, ``include`` naming the held-out scenes ([ours]).
        haze_airlight: airlight range of the synthetic haze (``None``: [0.5, 0.9], CBSD68-MDIR's).
        rain_style: rain recipe of the synthetic rain, as ``data.rain_style`` (default
            ``"classic"``, CBSD68-MDIR's; not inherited from training, so a set stays the same
            pairs whatever the training data).
        y_channel, crop_border: PSNR/SSIM convention (see :mod:`interir.metrics`).

    ``data.val`` may also be a list of such sections (e.g. one hazed like CBSD68-MDIR, one like
    real haze): their pairs are pooled, the run selects its best checkpoint by the mean over all
    of them, and the log reports each set's mean too. The sets must share ``y_channel`` and
    ``crop_border``.
    """

    kind: Literal["none", "synthetic", "paired"] = "none"
    name: str | None = None
    roots: list[str] = Field(default_factory=list)
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=8, gt=0)
    crop: int | None = Field(default=128, ge=16)
    combinations: list[str] | None = None
    max_levels: dict[str, float] | None = None
    seed: int = Field(default=1234, ge=0)
    haze_depth: Literal["centre", "crop", "mixed", "scene", "wide", "scene-wide", "outdoor",
                        "scene-wide-outdoor", "real"] = "centre"
    haze_airlight: tuple[float, float] | None = None
    rain_style: str = "classic"
    y_channel: bool = False
    crop_border: int = Field(default=0, ge=0)

    _combos = field_validator("combinations")(_check_combinations)
    _levels = field_validator("max_levels")(_check_levels)
    _airlight = field_validator("haze_airlight")(_check_airlight)
    _rain_style = field_validator("rain_style")(_check_rain_style)

    @model_validator(mode="after")
    def _check_roots(self) -> "ValSection":
        if self.kind != "none" and not self.roots:
            raise ValueError(f"data.val.kind={self.kind!r} needs data.val.roots (one or more folders)")
        return self


def _check_paired_combinations(value: list[str]) -> list[str]:
    combos = list(parse_combinations(value)) if value else []
    with_rain = [c for c in combos if "rain" in c.split("+")]
    if with_rain:
        raise ValueError(
            f"{with_rain} add rain to real pairs that already hold it; use haze, noise or haze+noise"
        )
    return combos


def _check_mix(d: "DataSection") -> None:
    """The shares of the training sources ([ours]): each extra source next to another one needs
    its fraction, and the fractions leave room for ``train_roots`` (or fill the batch without it)."""
    given = {"paired": (d.paired_roots, d.paired_fraction), "depth": (d.depth_roots, d.depth_fraction)}
    mixed = sum(bool(roots) for roots in (d.train_roots, d.paired_roots, d.depth_roots)) > 1
    for name, (roots, fraction) in given.items():
        if fraction is not None and not roots:
            raise ValueError(f"data.{name}_fraction is set but data.{name}_roots is empty")
        if not mixed and fraction is not None and fraction != 1:
            raise ValueError(
                f"data.{name}_fraction = {fraction:g} but data.{name}_roots is the only training "
                "source: drop the fraction (or mix in data.train_roots)"
            )
        if mixed and roots and fraction is None:
            raise ValueError(
                f"data.{name}_roots is mixed with other training sources: set data.{name}_fraction, "
                "the share of the samples it gives (e.g. 0.25)"
            )
    if d.paired_combinations and not d.paired_roots:
        raise ValueError("data.paired_combinations is set but data.paired_roots is empty")
    if mixed:
        total = sum(f for roots, f in given.values() if roots and f is not None)
        if d.train_roots and total >= 1:
            raise ValueError(
                f"data.paired_fraction + data.depth_fraction = {total:g} leaves no samples for "
                "data.train_roots: make the sum smaller than 1, or drop data.train_roots"
            )
        if not d.train_roots and abs(total - 1) > 1e-9:
            raise ValueError(
                f"data.paired_fraction + data.depth_fraction = {total:g} must be 1 without "
                "data.train_roots (they share every sample)"
            )


# ``data.val`` is one section or a list of them. The tags name the two forms so that pydantic
# validates only the form given (and its errors do not list the other); _format_errors drops them.
_VAL_ONE, _VAL_MANY = "section", "sections"
ValSpec = Annotated[
    Annotated[ValSection, Tag(_VAL_ONE)] | Annotated[list[ValSection], Tag(_VAL_MANY)],
    Discriminator(lambda v: _VAL_MANY if isinstance(v, list) else _VAL_ONE),
]


class DataSection(_Section):
    """Training data.

    Attributes:
        train_roots: folders of clean images; each step draws random patches and degrades them on
            the fly with the seven-combination pipeline (:class:`interir.degradations.DegradationPipeline`).
        paired_roots: folders of real degraded/clean pairs (deraining, dehazing); aligned random
            patches are cut from both. Alone, or mixed with the other sources at
            ``paired_fraction`` ([ours], :mod:`interir.data.mixing`).
        paired_fraction: share of the training samples that are real pairs when ``paired_roots``
            is mixed with ``train_roots`` or ``depth_roots`` (required then), e.g. 0.25.
        paired_combinations: synthetic degradations added to a real pair's degraded image (the
            clean target unchanged), drawn like ``combinations``; no ``rain`` (the pairs bring
            their own). Empty (default): the pairs are used as they are.
        paired_degrade_fraction: share of the real pairs that get one of ``paired_combinations``
            (the others are left as they are).
        depth_roots: folders of clean images with a disparity map (Middlebury layout,
            :class:`interir.data.depth.DepthImageDataset`), degraded like ``train_roots`` but
            hazed with their own depth (``t = exp(-beta d)``, ``d ~ 1 / disparity``) ([ours]).
        depth_fraction: share of the training samples drawn from ``depth_roots`` when they are
            mixed with other sources (required then).
        exclude: file names, or text files listing names (first column, ``#`` comments), to leave
            out of training, e.g. ``bsds432/overlap_with_Rain100H.txt``.
        patch_size: side of the square training patches.
        augment: random horizontal and vertical flips.
        combinations: degradation combinations to draw from (default: all seven).
        max_levels: upper ends of the level ranges (default haze 150, rain 300, noise 50).
        level_power: levels are drawn as ``max * u**level_power``, u uniform in (0, 1]: 1 is the
            test sets' uniform draw, larger values give more lightly degraded images ([ours]);
            a mapping sets it per degradation, e.g. ``{noise: 3}`` (others 1).
        clean_fraction: share of training images left undegraded (all levels 0) ([ours]): a blind
            model otherwise "restores" clean photos too.
        degrade_rng: where the per-image rain/noise fields are drawn (``"cpu"``: identical on
            every machine; ``"same"``: on the training device, faster on GPU).
        haze_depth: depth used to haze a training patch: ``"centre"`` its own centre-distance
            pseudo-depth (the original recipe), ``"crop"`` a window of a larger image's
            pseudo-depth (the test sets' statistics), ``"mixed"`` half crops, half smooth random
            fields, ``"scene"`` half crops, half smooth fields given edges where the clean
            patch has them, ``"wide"`` all such fields over real indoor depth's wide near/far
            range ([ours], docs/degradations.md), ``"scene-wide"`` half crops, half ``"wide"``
            fields ([ours]), ``"outdoor"`` ground receding toward the top with the sky farther
            ([ours]), ``"scene-wide-outdoor"`` a third each of crops, ``"wide"`` and ``"outdoor"``
            ([ours]) (see :func:`interir.degradations.patch_depth`).
        haze_airlight: range of the gray airlight A drawn per image (default [0.5, 0.9], the
            CBSD68-MDIR recipe; RESIDE's SOTS uses [0.7, 1.0]).
        rain_style: rain recipe, a name of :data:`interir.degradations.RAIN_STYLES`: ``"classic"``
            (default; CBSD68-MDIR's), or the layered rain ([ours]) ``"sparse"``, ``"heavy"``,
            ``"varied"`` (Rain100L-, Rain100H-, Rain800/1400-like) or ``"benchmark"`` (one of
            those three per image); see ``docs/degradations.md``.
        num_workers: data-loader worker processes (0: load in the training process).
        prefetch: prepare step ``s + 1``'s batch in a thread while step ``s`` trains ([ours],
            :mod:`interir.data.prefetch`): ``"auto"`` (on for CPU training when the processes'
            threads leave a core free), ``true`` or ``false``. The batches are the same either way.
        val: validation settings: one :class:`ValSection` or a list of them (see there).
    """

    train_roots: list[str] = Field(default_factory=list)
    paired_roots: list[str] = Field(default_factory=list)
    paired_fraction: float | None = Field(default=None, gt=0, le=1)
    paired_combinations: list[str] = Field(default_factory=list)
    paired_degrade_fraction: float = Field(default=0.5, ge=0, le=1)
    depth_roots: list[str] = Field(default_factory=list)
    depth_fraction: float | None = Field(default=None, gt=0, le=1)
    exclude: list[str] = Field(default_factory=list)
    patch_size: int = Field(default=64, gt=0)
    augment: bool = True
    combinations: list[str] | None = None
    max_levels: dict[str, float] | None = None
    level_power: float | dict[str, float] = 1.0
    clean_fraction: float = Field(default=0.0, ge=0, lt=1)
    degrade_rng: Literal["cpu", "same"] = "cpu"
    haze_depth: Literal["centre", "crop", "mixed", "scene", "wide", "scene-wide", "outdoor",
                        "scene-wide-outdoor"] = "centre"
    haze_airlight: tuple[float, float] = (0.5, 0.9)
    rain_style: str = "classic"
    num_workers: int = Field(default=0, ge=0)
    prefetch: bool | Literal["auto"] = "auto"
    val: ValSpec = Field(default_factory=ValSection)

    _combos = field_validator("combinations")(_check_combinations)
    _levels = field_validator("max_levels")(_check_levels)
    _airlight = field_validator("haze_airlight")(_check_airlight)
    _rain_style = field_validator("rain_style")(_check_rain_style)
    _powers = field_validator("level_power")(_check_level_power)
    _paired_combos = field_validator("paired_combinations")(_check_paired_combinations)

    @property
    def val_sets(self) -> list[ValSection]:
        """``data.val`` as a list of sections, without the ``kind: none`` ones."""
        sets = self.val if isinstance(self.val, list) else [self.val]
        return [v for v in sets if v.kind != "none"]

    @field_validator("val")
    @classmethod
    def _check_val_sets(cls, value: ValSection | list[ValSection]) -> ValSection | list[ValSection]:
        if isinstance(value, list):
            if not value:
                raise ValueError("data.val is an empty list: give one or more sections, or kind: none")
            conventions = {(v.y_channel, v.crop_border) for v in value if v.kind != "none"}
            if len(conventions) > 1:
                raise ValueError(
                    "the sets of data.val must share y_channel and crop_border (their scores are "
                    f"averaged); got {sorted(conventions)}"
                )
        return value

    @model_validator(mode="after")
    def _check_sources(self) -> "DataSection":
        if not (self.train_roots or self.paired_roots or self.depth_roots):
            raise ValueError(
                "no training data: set data.train_roots (clean images, degraded on the fly), "
                "data.paired_roots (degraded/clean pairs) or data.depth_roots (images with depth)"
            )
        _check_mix(self)
        return self


class LossSection(_Section):
    """The paper's loss: ``L1(pred, target) + fft_weight * L1(FFT(pred), FFT(target))``.

    Attributes:
        pixel: image-domain term: ``"l1"`` (the paper) or ``"psnr"`` ([ours]: minus the mean
            per-image PSNR, NAFNet's loss; see :mod:`interir.losses`).
        fft_weight: weight of the frequency term (paper: 0.1).
        fft_norm: ``torch.fft.fft2`` normalisation (``"backward"``: unnormalised, as in MIMO-UNet).
    """

    pixel: Literal["l1", "psnr"] = "l1"
    fft_weight: float = Field(default=0.1, ge=0)
    fft_norm: Literal["backward", "ortho", "forward"] = "backward"


class OptimSection(_Section):
    """Optimizer and learning-rate schedule.

    Attributes:
        name: ``"adam"`` (paper) or ``"adamw"``.
        lr, lr_final: the schedule runs from ``lr`` to ``lr_final`` over ``train.iterations``.
        schedule: ``"cosine"`` (paper) or ``"constant"``.
        warmup_iters: linear warm-up steps from 0 before the schedule (0: none).
        betas, eps, weight_decay: Adam parameters.
        grad_clip: clip the global gradient norm to this value (``None``: off).
        gain_lr_scale: [ours] learning-rate multiplier for the scalar gains that start at zero
            (core v2's stage gates ``update_gate``, every EPBlock's ``beta``/``gamma``, v1's step
            sizes). A stage's blocks learn only once both their own gain and the stage gate have
            moved off zero, so with one learning rate for all the start is slow; 1 (the paper's
            single learning rate) keeps one parameter group.
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(default=2e-4, gt=0)
    lr_final: float = Field(default=1e-6, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_iters: int = Field(default=0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=None, gt=0)
    gain_lr_scale: float = Field(default=1.0, gt=0)

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"betas must lie in [0, 1), got {v}")
        return v


class TrainSection(_Section):
    """The loop.

    Attributes:
        iterations: optimizer steps in the whole run.
        batch_size: global batch size (split evenly over the processes under torchrun).
        seed: seeds model initialisation, patch order and degradations.
        ema_decay: keep an exponential moving average of the weights with this decay
            (e.g. 0.999); ``None`` for off.
        amp: mixed precision on CUDA: ``"auto"`` (bf16 when supported, else fp16), ``"bf16"``,
            ``"fp16"`` or ``"off"``. Ignored on CPU.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        log_every: steps between log lines / metric rows.
        val_every: steps between validations (0: only at the end).
        ckpt_every: steps between ``checkpoints/last`` saves (0: only at the end).
        max_minutes: stop cleanly (with a checkpoint) after this much wall time; ``None``: no limit.
        deterministic: request deterministic kernels (GPU; slower).
        threads: CPU threads per process (``None``: ``INTERIR_THREADS``, else 1, the rule of every
            entry point, :mod:`interir.utils.threads`; 0: PyTorch's own choice, all cores).
        init_from: start from these weights (checkpoint folder or .safetensors), not a resume.
        init_missing_ok: let ``init_from`` leave parameters it lacks at their initialisation,
            e.g. a zero-initialised module added to a trained network (``airlight_stats``).
        check_replicas: under DDP, compare the replicas' weights at the end and fail if they differ.
        checkpoint_stages: gradient checkpointing of the unfolded stages (InterIR models): each
            stage is recomputed in the backward pass instead of keeping its activations; less
            memory, the same result, slower steps. Older configs set it as
            ``model.overrides.checkpoint_stages``, which is read as this key.
    """

    iterations: int = Field(default=1000, gt=0)
    batch_size: int = Field(default=8, gt=0)
    seed: int = Field(default=0, ge=0)
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    device: str = "auto"
    log_every: int = Field(default=10, gt=0)
    val_every: int = Field(default=0, ge=0)
    ckpt_every: int = Field(default=500, ge=0)
    max_minutes: float | None = Field(default=None, gt=0)
    deterministic: bool = False
    threads: int | None = Field(default=None, ge=0)
    init_from: str | None = None
    init_missing_ok: bool = False
    check_replicas: bool = True
    checkpoint_stages: bool = False

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto":
            import torch

            try:
                torch.device(v)
            except RuntimeError:
                raise ValueError(f"invalid device {v!r}: use auto, cpu, cuda or cuda:N") from None
        return v


class OutputSection(_Section):
    """Where the run folder goes: ``<dir>/<name>``.

    Attributes:
        dir: parent folder of runs.
        name: run name; default: the config file's name without ``.yaml``.
        tensorboard: ``"auto"`` (when the tensorboard package is installed), ``"on"``, ``"off"``.
    """

    dir: str = "runs"
    name: str | None = None
    tensorboard: Literal["auto", "on", "off"] = "auto"

    @field_validator("name")
    @classmethod
    def _inside_dir(cls, v: str | None) -> str | None:
        # The run folder never leaves output.dir: no absolute name, no '..'.
        if v:
            try:
                file_in_folder("output.dir", v, "run name")
            except ValueError:
                raise ValueError(
                    f"{v!r} would put the run folder outside output.dir (absolute paths and '..' "
                    "are refused). Fix: set output.dir to where runs go and output.name to a "
                    "name inside it") from None
        return v

    @field_validator("tensorboard", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: Any) -> Any:
        # YAML reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class TrainConfig(_Section):
    """The whole training configuration (see ``configs/*.yaml`` and ``docs/training.md``)."""

    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    loss: LossSection = Field(default_factory=LossSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    train: TrainSection = Field(default_factory=TrainSection)
    output: OutputSection = Field(default_factory=OutputSection)

    @model_validator(mode="before")
    @classmethod
    def _read_moved_keys(cls, data: Any) -> Any:
        return _move_training_overrides(data)

    @model_validator(mode="after")
    def _check_recipe(self) -> "TrainConfig":
        if self.optim.lr_final > self.optim.lr:
            raise ValueError(
                f"optim.lr_final ({self.optim.lr_final}) is larger than optim.lr ({self.optim.lr}); "
                "the schedule anneals from lr down to lr_final"
            )
        if self.optim.warmup_iters >= self.train.iterations:
            raise ValueError(
                f"optim.warmup_iters ({self.optim.warmup_iters}) must be smaller than "
                f"train.iterations ({self.train.iterations})"
            )
        return self


#: Training settings that older configs (and run folders) hold in ``model.overrides``.
MOVED_TO_TRAIN = ("checkpoint_stages",)


def _move_training_overrides(data: Any) -> Any:
    """Read an older config's ``model.overrides.<key>`` of :data:`MOVED_TO_TRAIN` as
    ``train.<key>`` (a value set in ``train`` wins)."""
    model = data.get("model") if isinstance(data, dict) else None
    overrides = model.get("overrides") if isinstance(model, dict) else None
    train = (data.get("train") or {}) if isinstance(data, dict) else None
    if not isinstance(overrides, dict) or not isinstance(train, dict):
        return data
    moved = {k: v for k, v in overrides.items() if k in MOVED_TO_TRAIN}
    if not moved:
        return data
    kept = {k: v for k, v in overrides.items() if k not in MOVED_TO_TRAIN}
    return {**data, "model": {**model, "overrides": kept}, "train": {**moved, **train}}


# ----------------------------------------------------------------------------------------------
# loading and error messages


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The section class inside a field's annotation (``ValSpec`` -> :class:`ValSection`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _section_class(loc: Sequence[Any]) -> type[BaseModel] | None:
    """The pydantic model at ``loc`` (field names; list indices are skipped) under :class:`TrainConfig`."""
    cls: type[BaseModel] | None = TrainConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if cls is None:
            return None
        field = cls.model_fields.get(str(part))
        if field is None:
            return None
        cls = _model_in(field.annotation)
    return cls


def _key(loc: Sequence[Any]) -> str:
    """``("data", "val", 1, "seed")`` -> ``"data.val[1].seed"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [p for p in e["loc"] if p not in (_VAL_ONE, _VAL_MANY)]
        key = _key(loc) or "<top level>"
        if e["type"] == "extra_forbidden":
            parent = _section_class(loc[:-1])
            valid = list(parent.model_fields) if parent is not None else []
            where = _key(loc[:-1]) or "the top level"
            lines.append(
                f"config key '{key}' is not a valid option.{closest_match_hint(str(loc[-1]), valid)} "
                f"Valid keys in '{where}': {', '.join(valid)}."
            )
        elif e["type"] == "missing":
            lines.append(f"config key '{key}' is required but missing.")
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            got = e.get("input")
            shown = "" if isinstance(got, dict) or e["type"] == "value_error" else f" (got {got!r})"
            line = f"config key '{key}': {msg.rstrip('.')}{shown}."
            lines.append(line)
    return "invalid training configuration:\n  " + "\n  ".join(lines)


def _parse_overrides(overrides: Sequence[str]):

    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(
                f"override {item!r} must look like key=value, e.g. optim.lr=1e-4 or "
                "data.train_roots=[a,b]"
            )
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as e:  # omegaconf grammar errors
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {e}") from e


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    base: dict[str, Any] | None = None,
    run_dir: str | os.PathLike | None = None,
) -> TrainConfig:
    """Read, merge and validate a training configuration.

    Args:
        path: YAML file (``configs/*.yaml``); ``None`` to start from ``base`` (or defaults).
        overrides: ``key=value`` strings applied on top (``optim.lr=1e-4``, ``train.ema_decay=null``,
            ``data.train_roots=[a,b]``, ``model.overrides.width=24``).
        base: a dict merged under the file (used by tests and the Python API).
        run_dir: the run folder the file is the ``config.yaml`` of: ``output.dir`` and
            ``output.name`` are set to where that folder is now (under the overrides), so a copied
            or moved run folder trains itself, not the folder its file names.

    Returns:
        The validated :class:`TrainConfig`. When ``output.name`` is unset it becomes the config
        file's name without extension (or ``"run"``).

    Raises:
        ConfigError: unreadable file, bad override syntax, or invalid values; the message names
            each offending key with the valid choices.
    """
    parts = [OmegaConf.create(base or {})]
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"config file '{path}' does not exist; shipped configs are named without a path: "
                + ", ".join(list_shipped_configs()))
        try:
            loaded = OmegaConf.load(path)
        except Exception as e:
            raise ConfigError(f"cannot read config file '{path}': {e}") from e
        if not isinstance(loaded, type(parts[0])):
            raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
        parts.append(loaded)
    if run_dir is not None:
        run_dir = Path(run_dir)
        if run_dir.name in ("", ".", ".."):
            run_dir = run_dir.resolve()
        parts.append(OmegaConf.create({"output": {"dir": str(run_dir.parent), "name": run_dir.name}}))
    parts.append(_parse_overrides(overrides))
    try:
        merged = OmegaConf.merge(*parts)
        data = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot resolve configuration: {e}") from e
    except TypeError as e:  # e.g. a list override where the file has a mapping
        raise ConfigError(
            f"cannot merge the overrides into the config file: {e}. An override cannot turn a "
            "mapping into a list or back (e.g. data.val); edit the YAML file instead"
        ) from e
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping")
    if path is not None and path.resolve().parent == SHIPPED_CONFIG_DIR.resolve():
        data = _anchor_shipped_paths(data)
    data.setdefault("output", {})
    if isinstance(data["output"], dict) and not data["output"].get("name"):
        data["output"]["name"] = path.stem if path is not None else "run"
    return validate_config(data)


def load_train_config(spec: str | os.PathLike, overrides: Sequence[str] = ()) -> TrainConfig:
    """The configuration ``interir train SPEC key=value ...`` runs.

    ``spec`` is resolved by :func:`resolve_config_path`; a run folder's ``config.yaml`` is read
    with ``run_dir`` set to that folder (:func:`load_config`).
    """
    path = resolve_config_path(spec)
    return load_config(path, overrides, run_dir=spec if Path(spec).is_dir() else None)


def validate_config(data: dict[str, Any]) -> TrainConfig:
    """Validate a plain dict into :class:`TrainConfig` (raising :class:`ConfigError`)."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e)) from None


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain JSON-compatible dict of a config (tuples become lists)."""
    return config.model_dump(mode="json")


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved configuration as YAML (what the run folder's ``config.yaml`` holds)."""
    return OmegaConf.to_yaml(OmegaConf.create(config_to_dict(config)))
