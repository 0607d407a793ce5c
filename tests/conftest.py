"""Shared test settings: small thread count, deterministic seeds, paths to bundled data."""

from pathlib import Path

import pytest
import torch

TEST_DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
