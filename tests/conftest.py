"""Shared test settings: small thread count, deterministic seeds, paths to bundled data."""

from pathlib import Path

import pytest
import torch

TEST_DATA = Path(__file__).parent / "data"

# `make test` runs two pytest workers (pytest-xdist) on the two cores; one thread each avoids
# OpenMP oversubscription, which slowed small ops here by 10-100x when threads competed.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
