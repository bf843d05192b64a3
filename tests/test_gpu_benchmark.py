"""benchmarks/gpu_retrain.py: says it did not run without CUDA, and measures on the CPU when asked."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_retrain.py"
TINY = {
    "model": {"train_steps": 5, "threads": 1, "mc_samples": 2},
    "holdout": {"fitnet_steps": 2},
    "search": {"iterations": 2},
}


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_retrain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the benchmark would run")
def test_without_cuda_it_says_it_did_not_run(capsys):
    assert load_benchmark().main([]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run"] is False
    assert "CUDA" in result["reason"] or "CPU-only" in result["reason"]


def test_synthetic_pool_classes_are_learnable():
    import numpy as np

    images, labels = load_benchmark().synthetic_images(1000, 10, 32, np.random.default_rng(0))
    assert images.shape == (1000, 32, 32) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(labels.tolist()) == set(range(10))
    # the class sets the pattern: nearest class centroid of the (phase-free) amplitude spectrum
    spectrum = np.abs(np.fft.fft2(images - images.mean(axis=(1, 2), keepdims=True))).reshape(1000, -1)
    spectrum /= np.linalg.norm(spectrum, axis=1, keepdims=True)
    centroids = np.stack([spectrum[:500][labels[:500] == k].mean(axis=0) for k in range(10)])
    predicted = np.argmax(spectrum[500:] @ centroids.T, axis=1)
    assert np.mean(predicted == labels[500:]) > 0.9  # chance is 0.1


def test_cpu_run_reports_times_for_the_whole_pool(capsys):
    argv = ["--device", "cpu", "--pool", "200", "--labeled", "60", "--config-json", json.dumps(TINY)]
    assert load_benchmark().main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run"] is True and result["ranked"] == 200 and result["pool"] == 200
    assert result["retrain_seconds"] > 0 and result["rank_seconds"] > 0
    assert result["backbone"] == "small_cnn" and result["train_steps"] == 5
    assert result["peak_gpu_memory_mb"] is None
    assert 0.0 <= result["pool_accuracy"] <= 1.0
