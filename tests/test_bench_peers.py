"""Peer libraries through the benchmark loop (skipped when scripts/install_peers.sh was not run)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from autoal_bench.costs import item_costs
from autoal_bench.datasets import load_digits_dataset
from autoal_bench.peers import peer_selector, precomputed_classifier
from autoal_bench.simulate import ReplaySettings, run_dataset
from autoal_engine.config import EngineConfig

needs_skactiveml = pytest.mark.skipif(importlib.util.find_spec("skactiveml") is None,
                                      reason="scikit-activeml is not installed (scripts/install_peers.sh)")
needs_libact = pytest.mark.skipif(importlib.util.find_spec("libact") is None,
                                  reason="libact is not installed (scripts/install_peers.sh)")


def tiny_config() -> EngineConfig:
    config = EngineConfig()
    config.model.image_size = 8
    config.model.train_steps = 30
    config.model.threads = 1
    return config


def replay(peer: str, batch: int = 10, budget: int = 40) -> dict:
    dataset = load_digits_dataset()
    runs = run_dataset(dataset, item_costs(dataset, "constant"), [peer_selector(peer)],
                       ReplaySettings(init=20, batch=batch, budget=budget), tiny_config(), seeds=[0])
    return runs[0]


@needs_skactiveml
@pytest.mark.parametrize("peer", ["badge", "typiclust", "coreset", "probcover"])
def test_skactiveml_peer_runs_in_the_loop(peer: str) -> None:
    run = replay(peer)
    assert run["strategy"] == f"skactiveml.{peer}"
    assert [r["labels"] for r in run["rounds"]] == [20, 30, 40]


@needs_skactiveml
def test_precomputed_classifier_returns_the_task_models_probabilities() -> None:
    features = np.arange(12, dtype=np.float64).reshape(4, 3)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]])
    classifier = precomputed_classifier(features, probs)
    assert np.array_equal(classifier.predict_proba(features[[3, 1]]), probs[[3, 1]])


@needs_libact
def test_albl_runs_sequentially_including_a_batch_of_one() -> None:
    run = replay("albl", batch=1, budget=24)
    assert run["strategy"] == "libact.albl"
    assert [r["labels"] for r in run["rounds"]] == [20, 21, 22, 23, 24]


def test_unknown_peer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown peer 'modal'"):
        peer_selector("modal")
