"""The web page as a Hugging Face Space (or ``python app.py`` in a checkout): see docs/webapp.md.

It serves the same page as ``interir app``. Settings come from the environment, which is how a
Space is configured:

- ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``: address and port (a Space sets them; default
  127.0.0.1:7860, this computer only);
- ``INTERIR_APP_MODELS``: comma-separated models for the menu ([ours]; default: the shipped
  pretrained models), each a shipped name, a checkpoint folder or a ``.safetensors`` file.

When ``interir`` is not installed (a Space built from this repository's files), it is imported
from ``src/`` next to this file.
"""

import importlib.util
import os
import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parent / "src"
if importlib.util.find_spec("interir") is None and _SRC.is_dir():
    sys.path.insert(0, str(_SRC))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from interir.webapp.page import DEFAULT_PORT, launch  # noqa: E402 - needs the path above
from interir.webapp.service import AppSettings  # noqa: E402


def settings_from_env() -> AppSettings:
    """The page's settings, with the models of ``INTERIR_APP_MODELS`` when it is set."""
    models = [m.strip() for m in os.environ.get("INTERIR_APP_MODELS", "").split(",") if m.strip()]
    return AppSettings(models=models) if models else AppSettings()


if __name__ == "__main__":
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT))
    print(f"serving on http://{host}:{port}", flush=True)
    launch(settings_from_env(), host=host, port=port)
