"""Shared test settings: small thread count, deterministic seeds, paths to bundled data."""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

TEST_DATA = Path(__file__).parent / "data"

# `make test` runs two pytest workers (pytest-xdist) on the two cores; one thread each avoids
# OpenMP oversubscription, which slowed small ops here by 10-100x when threads competed.
torch.set_num_threads(1)

# Typer/rich wrap error boxes to the terminal width; a wide, fixed width keeps messages on one
# line so tests can match them whatever terminal (or none) runs the suite.
os.environ["COLUMNS"] = "240"
os.environ.pop("FORCE_COLOR", None)


# The plotting extra: `pip install ".[dev]"` without `[viz]` skips the tests marked `viz`.
HAS_VIZ = all(importlib.util.find_spec(m) is not None for m in ("matplotlib", "sklearn"))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; `pytest -m cuda` runs only these, and "
                                       "they are skipped where torch sees no GPU")
    config.addinivalue_line("markers", "viz: needs the viz extra (matplotlib, scikit-learn); "
                                       "skipped without it")


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``cuda`` where torch sees no GPU (CI, this 2-core machine), and those
    marked ``viz`` where the viz extra is not installed."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run by scripts/device_run.sh on a lent one)")
    no_viz = pytest.mark.skip(reason='needs the viz extra: pip install "interir[viz]"')
    for item in items:
        if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if item.get_closest_marker("viz") is not None and not HAS_VIZ:
            item.add_marker(no_viz)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
