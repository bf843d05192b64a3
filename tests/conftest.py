"""Shared test fixtures: small real data (scikit-learn's bundled digits) and a fast engine config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from autoal_engine.config import EngineConfig

# Two cores are shared by the test process and the servers some tests start: one torch thread avoids
# oversubscription, which slows small CPU kernels down several-fold.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target


def fast_config(**search) -> EngineConfig:
    """Engine settings that fit in about a second on digits (still the real code paths)."""
    config = EngineConfig()
    config.model.image_size = 16
    config.model.train_steps = 80
    config.model.mc_samples = 5
    config.holdout.fitnet_steps = 30
    config.search.iterations = 40
    config.tuning.enabled = False  # the fixed recipe: a tuning takes its budget of seconds (tests/test_tuning.py)
    for key, value in search.items():
        setattr(config.search, key, value)
    return config


@pytest.fixture
def small_config() -> EngineConfig:
    return fast_config()
