"""The web page of ``interir app``: restore photos in a browser (gradio, the ``app`` extra).

- :mod:`interir.webapp.service`: the page's logic in plain Python (uploads, restoration, the
  example photo, the explanation); importable without gradio;
- :mod:`interir.webapp.page`: :func:`~interir.webapp.page.build_app` lays the page out with
  gradio and :func:`~interir.webapp.page.launch` serves it. It imports gradio, so import it only
  when the page is wanted (``pip install "interir[app]"``).

See ``docs/webapp.md``.
"""

from interir.webapp.service import AppError, AppSettings

__all__ = ["AppError", "AppSettings", "APP_HINT"]

#: What to install when gradio is missing.
APP_HINT = 'the web page needs gradio: pip install "interir[app]"'
