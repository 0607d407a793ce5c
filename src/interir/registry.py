"""Model registry: explicit name -> builder mapping, filled by ``@register_model``.

Builders take keyword overrides of their configuration dataclass and return an ``nn.Module``.
Unknown names and unknown overrides fail with the list of valid choices and the closest match,
so a typo never silently falls back to a default.

The mapping is filled by :mod:`interir.models.factory` (it registers the named variants), which
this module imports on the first lookup (:func:`_registered`): ``import interir`` stays free of
torch and the network code until a model is asked for (start-up time, issue 30).

A configuration read from a file (a checkpoint's header or ``model.json``) is checked by
:func:`check_stored_config` before anything is built: every size field has an upper bound
(:data:`STORED_INT_BOUNDS`) and the type of its field, so a damaged or hostile file cannot make
the build run for minutes or allocate terabytes.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # annotations only: importing torch here would slow every command's start-up
    from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULT_CONFIGS: dict[str, Any] = {}
_DESCRIPTIONS: dict[str, str] = {}
_FILLED = False


def _registered() -> dict[str, Callable[..., nn.Module]]:
    """The builders, after importing the module that registers the named variants (once)."""
    global _FILLED
    if not _FILLED:
        _FILLED = True  # set first: the import below calls register_model
        try:
            importlib.import_module("interir.models.factory")
        except BaseException:
            _FILLED = False
            raise
    return _BUILDERS


def closest_match_hint(name: str, choices: list[str]) -> str:
    """Return ' Did you mean "x"?' for the closest of ``choices``, or '' when none is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f' Did you mean "{close[0]}"?' if close else ""


def register_model(name: str, default_config: Any, description: str = ""):
    """Register ``builder(config) -> nn.Module`` under ``name`` with its default config dataclass."""

    def wrap(builder: Callable[..., nn.Module]):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        _DEFAULT_CONFIGS[name] = default_config
        _DESCRIPTIONS[name] = description
        return builder

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_registered())


def describe_model(name: str) -> str:
    _registered()
    return _DESCRIPTIONS.get(name, "")


def model_config(name: str, **overrides: Any) -> Any:
    """The configuration dataclass that ``create_model(name, **overrides)`` would build from."""
    if name not in _registered():
        raise ValueError(
            f"unknown model {name!r}.{closest_match_hint(name, list(_BUILDERS))} "
            f"Valid names: {', '.join(sorted(_BUILDERS))}."
        )
    base = _DEFAULT_CONFIGS[name]
    valid = [f.name for f in dataclasses.fields(base)]
    # Drop None so that CLI defaults left unset do not override the model's own defaults.
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key in overrides:
        if key not in valid:
            raise ValueError(
                f"unknown option {key!r} for model {name!r}.{closest_match_hint(key, valid)} "
                f"Valid options: {', '.join(valid)}."
            )
    return dataclasses.replace(base, **overrides)


#: Fields that older stored configs hold but that are no longer architecture: dropped on load.
#: ``checkpoint_stages`` is a training setting now (``train.checkpoint_stages``).
RETIRED_FIELDS = ("checkpoint_stages",)


#: Upper bound of every integer size field of a registered model's configuration, as read from a
#: file ([ours]: each is several times what any interir model uses: the paper's network has width
#: 92, 15 stages, s = 8, heads x16). The dataclasses check the lower bounds. A field missing here
#: gets :data:`DEFAULT_INT_BOUND`; ``tests/test_reliability_round2_bounds.py`` checks that every
#: integer field of a registered model is listed.
STORED_INT_BOUNDS: dict[str, int] = {
    "width": 4096, "stages": 32, "downsample": 16, "head_expansion": 64, "dw_expansion": 16,
    "ffn_expansion": 16, "dmum_expansion": 16, "refine_blocks": 32, "refine_width": 1024,
    "down_up_width": 1024, "operator_rank": 256, "pool_window": 65536,
    # NAFNet: blocks per level (each entry) and in the middle.
    "encoder_blocks": 64, "decoder_blocks": 64, "middle_blocks": 64,
    # DeepSN-Net.
    "spatial_expansion": 16, "frequency_expansion": 16, "derivative_expansion": 64,
    "attention_reduction": 1024,
}
#: Bound of the size of every number field (a float field sizes no tensor, except
#: ``weight_hidden``, a fraction of the width, bounded on its own).
STORED_FLOAT_BOUNDS: dict[str, float] = {"weight_hidden": 16.0}
DEFAULT_FLOAT_BOUND = 1e6
#: Most entries of a per-level tuple field (NAFNet's levels: each doubles the channels).
STORED_LEVELS_BOUND = 8
DEFAULT_INT_BOUND = 1024


class StoredConfigError(ValueError):
    """A configuration read from a file has a field of the wrong type or out of its bounds."""


def _describe(value: Any) -> str:
    kind = {bool: "true/false", int: "an integer", float: "a decimal number",
            str: "a text", list: "a list", tuple: "a list", dict: "a mapping"}.get(type(value))
    return f"{value!r} ({kind or type(value).__name__})"


def _wrong_type(key: str, value: Any, expected: str) -> StoredConfigError:
    return StoredConfigError(f"field {key!r} is {_describe(value)}, where {expected} is expected")


def _check_int(key: str, value: Any, bound: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(key, value, "an integer")
    if not -bound <= value <= bound:
        raise StoredConfigError(
            f"field {key!r} is {value}, outside the bound of {bound} that every interir model "
            "stays within")


def _check_field(key: str, value: Any, default: Any) -> None:
    """Check ``value`` against the type of the dataclass default ``default`` (and the bounds)."""
    bound = STORED_INT_BOUNDS.get(key, DEFAULT_INT_BOUND)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _wrong_type(key, value, "true/false")
    elif isinstance(default, int):
        _check_int(key, value, bound)
    elif isinstance(default, float):
        limit = STORED_FLOAT_BOUNDS.get(key, DEFAULT_FLOAT_BOUND)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or abs(value) > limit:
            raise _wrong_type(key, value, f"a finite number of size at most {limit:g}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise _wrong_type(key, value, "a text")
    elif isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) > STORED_LEVELS_BOUND:
            raise StoredConfigError(
                f"field {key!r} is {_describe(value)}, where a list of at most "
                f"{STORED_LEVELS_BOUND} integers is expected")
        for item in value:
            _check_int(f"{key}[]", item, bound)


def check_stored_config(name: str, config: Mapping[str, Any]) -> None:
    """Check the types and bounds of a configuration read from a file, before building it.

    Args:
        name: the model name the file gives (an unknown name is left to :func:`create_model`).
        config: field -> value, as JSON gives them (lists for tuples).

    Raises:
        StoredConfigError: a field has the wrong type (e.g. ``1e9`` where an integer is
            expected) or lies beyond its bound in :data:`STORED_INT_BOUNDS`; the message names
            the field, its value and the bound.
    """
    base = _DEFAULT_CONFIGS.get(name)
    defaults = ({f.name: f.default for f in dataclasses.fields(base)}
                if base is not None and dataclasses.is_dataclass(base) else {})
    for key, value in config.items():
        if key in defaults:
            _check_field(key, value, defaults[key])
        elif key in STORED_INT_BOUNDS:  # unknown model: the size fields are still bounded
            _check_field(key, value, () if isinstance(value, (list, tuple)) else 0)


def stored_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Complete a configuration read from a checkpoint for :func:`create_model`.

    A field that the stored config lacks was added to the dataclass after the checkpoint was
    written; the dataclass default of such a field is, by rule, the behaviour that existed before
    it, so it is used rather than the registered variant's value (which may have moved on, as
    interir-small did with core v2). An empty config means "the registered variant as it is".
    Fields of :data:`RETIRED_FIELDS` are dropped.
    """
    config = {k: v for k, v in config.items() if k not in RETIRED_FIELDS}
    _registered()
    base = _DEFAULT_CONFIGS.get(name)
    if not config or base is None or not dataclasses.is_dataclass(base):
        return dict(config)
    missing = {
        f.name: f.default for f in dataclasses.fields(base)
        if f.name not in config and f.default is not dataclasses.MISSING
    }
    return {**missing, **config}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`, e.g. ``"interir"``, ``"interir-small"``, ``"deepsn"``.
        **overrides: fields of the model's configuration dataclass (e.g. ``width=32``).

    Returns:
        The model, in training mode, on the CPU. It maps a ``(B, 3, H, W)`` float batch in [0, 1]
        to a restored batch of the same shape. ``model.model_name`` and ``model.config`` record
        how it was built (checkpoints store both).
    """
    config = model_config(name, **overrides)
    model = _BUILDERS[name](config)
    model.model_name = name
    model.config = config
    return model
