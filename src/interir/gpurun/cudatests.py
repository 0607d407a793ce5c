"""Phase 1: the CUDA tests (``pytest -m cuda``) in a child process, summarised from JUnit XML."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

__all__ = ["run_cuda_tests", "summarise_junit"]

#: Characters of each failure message kept in the report.
MESSAGE_CHARS = 1500
#: Failures listed in the report (the log in the work folder has them all).
MAX_LISTED = 10


def summarise_junit(path: Path) -> dict[str, Any]:
    """Counts and per-test outcomes of a pytest ``--junitxml`` file.

    A module that could not be imported (``"collection failure"``) is counted apart, in
    ``collection_errors``: it may be a test module needing a package the GPU machine lacks, which
    says nothing about the CUDA tests.

    Returns:
        ``{"collected", "passed", "failed", "errors", "skipped", "collection_errors", "cases":
        [{"name", "outcome", "seconds"}], "failures": [{"name", "message"}]}``.
    """
    cases, failures = [], []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "errors"}.get(child.tag, child.tag)
                if child.get("message") == "collection failure":
                    outcome = "collection_errors"
                if child.tag != "skipped" and len(failures) < MAX_LISTED:
                    text = (child.get("message") or "") + "\n" + (child.text or "")
                    failures.append({"name": name, "message": text.strip()[-MESSAGE_CHARS:]})
                break
        cases.append({"name": name, "outcome": outcome, "seconds": round(float(case.get("time", 0)), 3)})
    kinds = ("passed", "failed", "errors", "skipped", "collection_errors")
    counts = {k: sum(c["outcome"] == k for c in cases) for k in kinds}
    collected = len(cases) - counts["collection_errors"]
    return {"collected": collected, **counts, "cases": cases, "failures": failures}


def run_cuda_tests(paths: list[str], work: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``pytest -m cuda`` on ``paths`` in a child process limited to ``timeout_s`` seconds.

    The child inherits the environment (``PYTHONPATH`` points at the installed interir). Its output
    goes to ``work/cuda-tests.log``.

    Returns:
        :func:`summarise_junit`'s summary plus ``"rc"`` (pytest's exit code; ``None`` when it timed
        out), ``"timed_out"``, ``"seconds"`` and ``"log"``.
    """
    work.mkdir(parents=True, exist_ok=True)
    xml, log = work / "cuda-tests.xml", work / "cuda-tests.log"
    xml.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", f"--junitxml={xml}", *paths]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    rc, timed_out = None, False
    with open(log, "w") as handle:
        try:
            rc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            timed_out = True
    summary = summarise_junit(xml) if xml.is_file() else {"collected": 0, "cases": [], "failures": []}
    return {"rc": rc, "timed_out": timed_out, "seconds": round(time.perf_counter() - start, 2),
            "log": str(log), **summary}
