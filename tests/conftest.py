"""Shared pytest configuration. Area-specific fixtures live in ``tests/helpers_<area>.py``."""

from __future__ import annotations

import logging

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator: the suite is deterministic."""
    return np.random.default_rng(20170305)


@pytest.fixture(autouse=True)
def _quiet_numba() -> None:
    logging.getLogger("numba").setLevel(logging.WARNING)
