"""InterIR: physically interpretable multi-degradation image restoration.

Public API:
    create_model(name, **overrides)  build a registered network
    list_models()                    the registered names
    load_model(spec, device="cpu")   a shipped name, checkpoint path or architecture, ready to run
    load_pretrained(name="default")  the model shipped inside the package (sha256-checked)

Importing the package imports :mod:`interir.models`, which fills the registry; heavy optional
dependencies (matplotlib, scikit-learn, onnx, gradio, tensorboard) are not imported.
"""

from interir import models  # noqa: F401 - registers the architectures (interir.models.factory)
from interir._version import __version__
from interir.loading import load_model, load_pretrained
from interir.pretrained import list_pretrained
from interir.registry import create_model, list_models, model_config

__all__ = [
    "create_model", "list_models", "model_config", "load_model", "load_pretrained", "list_pretrained",
    "__version__",
]
