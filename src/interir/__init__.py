"""InterIR: physically interpretable multi-degradation image restoration.

Public API:
    create_model(name, **overrides)  build a registered network
    list_models()                    the registered names
    load_pretrained(name="default")  the model shipped inside the package (sha256-checked)
"""

from interir.pretrained import list_pretrained, load_pretrained
from interir.registry import create_model, list_models, model_config

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "model_config", "load_pretrained", "list_pretrained", "__version__"]
