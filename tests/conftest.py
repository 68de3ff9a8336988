"""Shared pytest configuration. Shared helpers live in the ``tests/helpers`` package."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator: the suite is deterministic."""
    return np.random.default_rng(20170305)


@pytest.fixture(autouse=True)
def _quiet_numba() -> None:
    logging.getLogger("numba").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny convolutions run fastest on one thread (and do not fight other processes).

    Autouse for the whole suite.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
