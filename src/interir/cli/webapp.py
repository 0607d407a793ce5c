"""``interir app``: serve the web page of :mod:`interir.webapp` (gradio, the ``app`` extra).

gradio is imported only when the command runs; without it the command says what to install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from interir.cli.app import app


@app.command(
    "app",
    epilog="Examples: interir app | interir app --port 8080 | "
           "interir app -m default -m runs/my-run (a menu of two models)",
)
def app_command(
    port: Annotated[int, typer.Option(
        "--port", "-p", min=1, max=65535, help="Port to serve on.")] = 7860,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; 127.0.0.1 keeps the page on this computer "
                       "(0.0.0.0 opens it to the network).")] = "127.0.0.1",
    share: Annotated[bool, typer.Option(
        "--share/--no-share", help="Also publish the page through a temporary public gradio "
                                   "link (off by default).")] = False,
    models: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", help="Model offered in the menu, repeatable: 'default', a checkpoint "
                              "folder/run/.safetensors, or a registered name (random weights). "
                              "Default: the shipped pretrained models.",
        show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    max_megapixels: Annotated[float, typer.Option(
        "--max-megapixels", min=0.01,
        help="Largest photo accepted, in megapixels (bigger ones are refused with a message; "
             "use `interir restore`).")] = 25.0,
    max_files: Annotated[int, typer.Option(
        "--max-files", min=1, help="Most photos restored in one request.")] = 8,
    work_dir: Annotated[Optional[Path], typer.Option(
        "--work-dir", help="Folder for the PNGs the page writes (default: a temporary folder; "
                           "request folders older than an hour are deleted).",
        show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=0, help="torch CPU threads for every request. Default: "
                                 "$INTERIR_THREADS, else 1 (as `interir restore`: never much "
                                 "slower, far faster on a busy machine; 0: all cores).",
        show_default=False)] = None,
) -> None:
    """Serve a web page that restores uploaded photos (needs the app extra: gradio)."""
    from interir.utils.threads import apply_threads
    from interir.webapp import APP_HINT

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from interir.webapp.page import launch
        from interir.webapp.service import AppSettings
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "gradio":
            raise
        typer.secho(f"error: {APP_HINT}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    apply_threads(threads)  # also exported as INTERIR_THREADS: every restore_tensor call keeps it
    settings = AppSettings(device=device, max_pixels=int(max_megapixels * 1e6),
                           max_files=max_files, work_dir=work_dir,
                           **({"models": list(models)} if models else {}))
    public = "also through a public gradio link" if share else "--share adds a public link"
    typer.echo(f"serving on http://{host}:{port} (models: {', '.join(settings.models)}; "
               f"{public}; Ctrl+C stops)")
    launch(settings, host=host, port=port, share=share)
