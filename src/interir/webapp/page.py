"""The gradio page of ``interir app``: layout and event wiring only.

The logic is in :mod:`interir.webapp.service`. This module imports gradio (the ``app`` extra),
so it is imported only when the page is built. Every image the page returns is a PNG file
written by the service (lossless); the image components are also set to PNG, because gradio's
default, WebP, is lossy.

HTTP API (``/gradio_api/info`` lists it): ``restore`` (files, model), ``example`` (combination,
seed, model) and ``explain`` (model) each return the values of the page's output components.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from interir.webapp.service import (
    EXAMPLE_COMBINATIONS,
    AppError,
    AppSettings,
    ModelCache,
    exit_cleanly_on_terminate,
    explain_photo,
    new_work_folder,
    restore_uploads,
    run_example,
)

__all__ = ["build_app", "launch", "DEFAULT_PORT"]

log = logging.getLogger(__name__)

#: Port of ``interir app`` unless ``--port`` says otherwise (gradio's usual one).
DEFAULT_PORT = 7860
#: Largest upload the server accepts ([ours]: a 25-MP 16-bit PNG is about 150 MB).
MAX_UPLOAD = "200mb"

_INTRO = """# InterIR: restore photos hit by haze, rain and noise
Upload one or more photos, pick a model and press **Restore**. The restored images are lossless
PNG files. **Try an example** degrades a CC0 photo with the haze/rain/noise combination and seed
you choose and scores the restoration against the clean photo. **Explain** shows what each
unfolding stage did on the selected photo (a centre crop, for speed)."""


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or ""


def _progress_callback(progress: gr.Progress):
    return lambda fraction, text: progress(fraction, desc=text)


class _Handlers:
    """The page's event handlers; each returns the values of its output components."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.models = ModelCache(settings.models, settings.device)
        #: The last error of each browser session, until :meth:`show_error` puts it on the page.
        self.errors: dict[str, str] = {}

    def fail(self, exc: Exception, request: gr.Request | None) -> gr.Error:
        """The error to raise: its message stays on screen (a toast that waits to be closed, and
        the status pane through :meth:`show_error`); the HTTP API gets it as an error event.

        A user's mistake (:class:`AppError`) is one log line, not a traceback; anything else is
        a bug and is logged with its traceback.
        """
        if isinstance(exc, AppError):
            message = str(exc)
            log.info("request refused: %s", message)
        else:
            message = f"restoration failed: {type(exc).__name__}: {exc}"
            log.exception("web page request failed")
        self.errors[_session(request)] = message
        return gr.Error(message, duration=None, print_exception=False)

    def show_error(self, request: gr.Request):
        """The status pane's text after a failed request (its ``.failure`` listener)."""
        return f"**Error:** {self.errors.pop(_session(request), 'the request failed')}"

    def restore(self, files: list[str] | None, model: str, request: gr.Request,
                progress=gr.Progress()):
        try:
            net = self.models.get(model)
            out = new_work_folder(self.settings.work_dir)
            photos, problems = restore_uploads(
                files or [], net, out, self.settings, _progress_callback(progress))
        except Exception as exc:  # noqa: BLE001 - shown to the user; the server keeps running
            raise self.fail(exc, request) from exc
        lines = [f"- **{p.name}**: {p.width}x{p.height}, {p.seconds:.1f} s" for p in photos]
        lines += [f"- skipped: {message}" for message in problems]
        pairs = [(str(p.degraded), str(p.restored)) for p in photos]
        state = {"pairs": pairs, "clean": None, "selected": 0}
        gallery = [(str(p.restored), f"{p.name} restored") for p in photos]
        return (pairs[0], gallery, [str(p.restored) for p in photos],
                f"Restored with `{model}`:\n" + "\n".join(lines), state)

    def example(self, combination: str, seed: float | None, model: str, request: gr.Request,
                progress=gr.Progress()):
        try:
            net = self.models.get(model)
            out = new_work_folder(self.settings.work_dir)
            result = run_example(net, combination, 0 if seed is None else seed, out,
                                 self.settings.tile, _progress_callback(progress))
        except Exception as exc:  # noqa: BLE001
            raise self.fail(exc, request) from exc
        (dp, ds), (rp, rs) = result.scores["degraded"], result.scores["restored"]
        levels = ", ".join(f"{k} {v:g}" for k, v in result.levels.items())
        status = (
            f"Example: {result.combination} ({levels}), seed {result.seed}, model `{model}`\n\n"
            "| | PSNR (dB) | SSIM |\n|---|---|---|\n"
            f"| degraded | {dp:.2f} | {ds:.4f} |\n| restored | {rp:.2f} | {rs:.4f} |\n\n"
            "RGB, 8-bit, whole image, against the clean photo."
        )
        pair = (str(result.degraded), str(result.restored))
        gallery = [(pair[0], f"degraded {dp:.2f} dB"), (pair[1], f"restored {rp:.2f} dB"),
                   (str(result.clean), "clean")]
        state = {"pairs": [pair], "clean": str(result.clean), "selected": 0}
        return pair, gallery, [pair[1]], status, state

    def select(self, state: dict | None, evt: gr.SelectData):
        """Show the pair of the gallery item clicked (the example's gallery has one pair)."""
        if not state or not state.get("pairs"):
            return gr.skip(), state
        index = min(int(evt.index), len(state["pairs"]) - 1)
        return state["pairs"][index], {**state, "selected": index}

    def explain(self, files: list[str] | None, state: dict | None, model: str,
                request: gr.Request, progress=gr.Progress()):
        """Explain the photo shown above, else the first upload (the HTTP API has no state)."""
        if state and state.get("pairs"):
            degraded = Path(state["pairs"][state.get("selected", 0)][0])
            clean = Path(state["clean"]) if state.get("clean") else None
        elif files:
            degraded, clean = Path(files[0]), None
        else:
            raise self.fail(AppError("upload a photo or try an example first, then explain it"), request)
        progress(0.1, desc="explaining (one forward pass with the trace)")
        try:
            net = self.models.get(model)
            out = new_work_folder(self.settings.work_dir)
            result = explain_photo(net, degraded, out, clean, self.settings.explain_crop,
                                   self.settings.max_pixels)
        except Exception as exc:  # noqa: BLE001
            raise self.fail(exc, request) from exc
        text = (result.psnr_line + "\n\n" if result.psnr_line else "") + result.table
        return [(str(p), caption) for p, caption in result.figures], text, str(result.archive)


def _outputs() -> dict[str, Any]:
    """The result components (created inside the current Blocks context)."""
    return {
        "pair": gr.ImageSlider(label="degraded | restored (drag the handle)", type="filepath",
                               format="png", elem_id="interir-pair"),
        # height "auto": a single result is shown whole, not cropped in a small scroll box.
        "gallery": gr.Gallery(label="Restored (click one to compare it above)", format="png",
                              columns=4, height="auto", preview=False, object_fit="contain",
                              elem_id="interir-gallery"),
        "files": gr.File(label="Download the restored PNGs", file_count="multiple",
                         elem_id="interir-downloads"),
        "status": gr.Markdown(elem_id="interir-status"),
    }


def _explain_section(handlers: _Handlers, photos: gr.File, state: gr.State,
                     model: gr.Dropdown) -> None:
    with gr.Accordion("Explain: what each unfolding stage did", open=False):
        button = gr.Button("Explain the selected photo", elem_id="interir-explain")
        # One figure per row at its own height: two per row made their labels unreadable.
        figures = gr.Gallery(label="Explanation", format="png", columns=1, height="auto",
                             object_fit="contain", elem_id="interir-figures")
        table = gr.Markdown(elem_id="interir-explain-status")
        report = gr.File(label="The full report (index.html and figures, zipped)")
    button.click(handlers.explain, [photos, state, model], [figures, table, report],
                 api_name="explain").failure(handlers.show_error, None, table,
                                             api_visibility="private")


def build_app(settings: AppSettings | None = None) -> gr.Blocks:
    """The page: upload, model menu, restore, example, explanation.

    Args:
        settings: models offered, limits, device (default: :class:`AppSettings`).
    """
    settings = settings or AppSettings()
    handlers = _Handlers(settings)
    with gr.Blocks(title="InterIR", delete_cache=(3600, 3600)) as page:
        gr.Markdown(_INTRO)
        state = gr.State(None)
        model = gr.Dropdown(settings.models, value=settings.models[0], label="Model")
        with gr.Row():
            with gr.Column(scale=1):
                photos = gr.File(label="Photos", file_count="multiple", file_types=["image"],
                                 elem_id="interir-upload")
                restore = gr.Button("Restore", variant="primary", elem_id="interir-restore")
                with gr.Accordion("Try an example", open=True):
                    combination = gr.Dropdown(list(EXAMPLE_COMBINATIONS), value="haze+rain+noise",
                                              label="Degradations")
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                    example = gr.Button("Try an example", elem_id="interir-example")
            with gr.Column(scale=2):
                out = _outputs()
        results = [out["pair"], out["gallery"], out["files"], out["status"], state]
        restore.click(handlers.restore, [photos, model], results, api_name="restore").failure(
            handlers.show_error, None, out["status"], api_visibility="private")
        example.click(handlers.example, [combination, seed, model], results, api_name="example").failure(
            handlers.show_error, None, out["status"], api_visibility="private")
        out["gallery"].select(handlers.select, [state], [out["pair"], state],
                              api_visibility="private")
        _explain_section(handlers, photos, state, model)
    return page


def launch(
    settings: AppSettings | None = None, host: str = "127.0.0.1", port: int | None = DEFAULT_PORT,
    share: bool = False, block: bool = True,
) -> gr.Blocks:
    """Build the page and serve it on ``host:port`` (``share``: also through a gradio link).

    With ``block=False`` the call returns once the server runs (tests); ``page.close()`` stops it.
    """
    settings = settings or AppSettings()
    if block:
        exit_cleanly_on_terminate()  # the temporary work folder is removed on `kill` too
    page = build_app(settings)
    page.queue(default_concurrency_limit=1)  # one restoration at a time: they share the cores
    # quiet unless sharing: gradio's own banner tells a user to "set share=True in launch()",
    # which is `--share` for `interir app` (the command prints its own address line).
    options = dict(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                   allowed_paths=[str(settings.work_dir)], footer_links=["api"],
                   quiet=not block or not share)
    try:
        page.launch(prevent_thread_lock=not block, **options)
    except ValueError as exc:
        if share or not _self_check_timed_out(exc, page):
            raise
        log.warning("gradio's start-up check of %s got no answer in time (busy machine); "
                    "the page is served anyway", page.local_url)
        if block:
            page.block_thread()
    return page


def _self_check_timed_out(exc: ValueError, page: gr.Blocks) -> bool:
    """True for gradio's "localhost is not accessible" error on a server that did start.

    Once its server runs, gradio sends it one request with a 3-second timeout and gives up on a
    timeout. On a saturated CPU the answer can take longer although the server works; we keep
    serving then ([ours]).
    """
    return "localhost is not accessible" in str(exc) and bool(getattr(page, "is_running", False))
