"""Shared test settings: small thread count, deterministic seeds, paths to bundled data."""

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


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
