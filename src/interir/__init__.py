"""InterIR: physically interpretable multi-degradation image restoration.

Public API:
    create_model(name, **overrides)  build a registered network
    list_models()                    the registered names
    load_model(spec, device="cpu")   a shipped name, checkpoint path or architecture, ready to run
    load_pretrained(name="default")  the model shipped inside the package (sha256-checked)

The names are imported on first use (PEP 562 ``__getattr__``), and the registry imports the
network code on its first lookup: ``import interir`` itself imports neither torch nor any
optional dependency, so ``interir --version`` answers in a fraction of a second (it took 1.5-7 s
when every command imported torch and the models at start-up, issue 30).
"""

from __future__ import annotations

import importlib
from typing import Any

from interir._version import __version__

#: Public name -> the module it lives in.
_LAZY = {
    "create_model": "interir.registry",
    "list_models": "interir.registry",
    "model_config": "interir.registry",
    "load_model": "interir.loading",
    "load_pretrained": "interir.loading",
    "list_pretrained": "interir.pretrained",
}

__all__ = [
    "create_model", "list_models", "model_config", "load_model", "load_pretrained", "list_pretrained",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    try:  # a subpackage not imported yet, e.g. interir.models, interir.inference
        return importlib.import_module(f"interir.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"interir.{name}":
            raise
    raise AttributeError(f"module 'interir' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
