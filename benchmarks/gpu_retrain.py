"""Retrain + rank time of the engine on a 50k-image pool, on CUDA.

Usage: python benchmarks/gpu_retrain.py [--pool 50000] [--labeled 1000] [--classes 10] [--size 32]
       [--device cuda] [--config-json '{"model": {"train_steps": 500}}'] [--seed 0]
(from the repository root, with the package installed by `pip install .`, or with PYTHONPATH=.)

Builds a synthetic pool in memory (gray images whose class sets the orientation and frequency of a
grating, with random phase, contrast and noise), fits the engine with ``EngineConfig.for_device(device)``
on ``--labeled`` labeled images and ranks the ``--pool`` unlabeled ones. Prints one JSON object: the
settings, retrain and rank seconds, the device name, peak GPU memory and the accuracy of the predicted
labels on the pool (a check that the model learned something).

On a machine without CUDA it prints ``{"run": false, "reason": ...}`` and exits 0. ``--device cpu``
runs the same measurement on the CPU (with small sizes, as a smoke test of the script).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from autoal_engine.config import EngineConfig
from autoal_engine.engine import Engine


def synthetic_images(
    n: int, classes: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size) float32 images in [0, 1] and labels; class k is a grating at angle k*pi/classes."""
    labels = rng.integers(classes, size=n)
    angle = labels * np.pi / classes + rng.normal(scale=0.05, size=n)
    frequency = 2.0 + (labels % 3) + rng.normal(scale=0.1, size=n)  # cycles per image
    phase = rng.uniform(0, 2 * np.pi, size=n)
    contrast = rng.uniform(0.3, 0.5, size=n)
    grid = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = np.empty((n, size, size), dtype=np.float32)
    for start in range(0, n, 4096):  # chunks keep the float64 temporaries small
        s = slice(start, min(start + 4096, n))
        direction = (np.cos(angle[s])[:, None, None] * xx + np.sin(angle[s])[:, None, None] * yy)
        wave = np.sin(2 * np.pi * frequency[s][:, None, None] * direction + phase[s][:, None, None])
        noise = rng.normal(scale=0.1, size=wave.shape)
        images[s] = np.clip(0.5 + contrast[s][:, None, None] * wave + noise, 0.0, 1.0)
    return images, labels


def not_run(reason: str) -> int:
    print(json.dumps({"run": False, "reason": reason}))
    return 0


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=50_000)
    parser.add_argument("--labeled", type=int, default=1_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config-json", default="{}", help="engine config overrides (to_dict form)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        if torch.version.cuda is None:
            return not_run(f"torch {torch.__version__} is a CPU-only build")
        return not_run(f"no CUDA device is visible (torch {torch.__version__} for CUDA {torch.version.cuda})")

    config = EngineConfig.for_device(args.device).to_dict()
    for section, values in json.loads(args.config_json).items():
        if isinstance(values, dict):
            config[section].update(values)
        else:
            config[section] = values
    config["seed"] = args.seed
    config = EngineConfig.from_dict(config)

    rng = np.random.default_rng(args.seed)
    images, labels = synthetic_images(args.labeled + args.pool, args.classes, args.size, rng)
    labeled_x, labeled_y = images[: args.labeled], labels[: args.labeled]
    pool_x, pool_y = images[args.labeled :], labels[args.labeled :]

    if on_cuda:
        torch.zeros(1, device=args.device)  # create the CUDA context before the clock starts
        torch.cuda.reset_peak_memory_stats()
        device_name = torch.cuda.get_device_name(torch.device(args.device))
    else:
        device_name = platform.processor() or platform.machine()

    engine = Engine(config)
    start = time.perf_counter()
    engine.fit(labeled_x, labeled_y, pool_size=len(pool_x))
    synchronize(args.device)
    retrain_seconds = time.perf_counter() - start
    retrain_peak = torch.cuda.max_memory_allocated() if on_cuda else None

    start = time.perf_counter()
    ranking = engine.rank(pool_x)
    synchronize(args.device)
    rank_seconds = time.perf_counter() - start

    result = {
        "run": True,
        "device": args.device,
        "device_name": device_name,
        "torch": torch.__version__,
        "pool": args.pool,
        "labeled": args.labeled,
        "classes": args.classes,
        "image_size": args.size,
        "backbone": config.model.backbone,
        "model_image_size": config.model.image_size,
        "train_steps": config.model.train_steps,
        "search_iterations": config.search.iterations,
        "mixed_precision": config.model.mixed_precision and on_cuda,
        "retrain_seconds": round(retrain_seconds, 3),
        "rank_seconds": round(rank_seconds, 3),
        "total_seconds": round(retrain_seconds + rank_seconds, 3),
        "peak_gpu_memory_mb_retrain": round(retrain_peak / 2**20, 1) if on_cuda else None,
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if on_cuda else None,
        "pool_accuracy": round(float(np.mean(np.asarray(ranking.predicted_label) == pool_y)), 4),
        "ranked": len(ranking),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
