"""Model registry: explicit name -> builder mapping, filled by ``@register_model``.

Builders take keyword overrides of their configuration dataclass and return an ``nn.Module``.
Unknown names and unknown overrides fail with the list of valid choices and the closest match,
so a typo never silently falls back to a default.

The mapping is filled by :mod:`interir.models.factory` (it registers the named variants), which
this module imports on the first lookup (:func:`_registered`): ``import interir`` stays free of
torch and the network code until a model is asked for (start-up time, issue 30).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import TYPE_CHECKING, Any, Callable

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
