"""Rank-time scaling of the engine on synthetic 28x28 pools (issue 2 targets).

Prints one JSON object: for pools of 10k, 50k and 100k images, the wall time of ``Engine.rank`` with the
default candidate set and the AutoAL search on (opt-in, the heavier path), the same for an entropy-only
engine, their ratio, and the peak resident memory of a process that loads the engine and ranks the pool;
plus the fit timings (search vs whole retrain). Each measurement runs in a fresh child process so that
peak memory is its own.

    python benchmarks/rank_scaling.py [--sizes 10000,50000,100000] [--labeled 500]

Targets: 50k ranked in <= 60 s; AutoAL <= 1.5x entropy-only; search <= 10% of a retrain; peak memory
< 4 GB at 100k; time linear in the pool size.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import tempfile
import time

import numpy as np
import torch

from autoal_engine.config import EngineConfig
from autoal_engine.engine import Engine

SIDE = 28
CLASSES = 10


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent oriented gratings plus noise, values in [0, 1], shape (n, 28, 28)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    images = np.empty((n, SIDE, SIDE), np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        angle = labels[start:stop, None, None] * np.pi / CLASSES
        phase = rng.uniform(0, 2 * np.pi, (stop - start, 1, 1))
        wave = np.sin(2 * np.pi * 3 * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
        noise = rng.normal(0, 0.6, (stop - start, SIDE, SIDE))
        images[start:stop] = np.clip(0.5 + 0.25 * (wave + noise), 0, 1)
    return images, labels


def _rank_child(directory: str, size: int, queue) -> None:
    torch.set_num_threads(torch.get_num_threads())
    engine = Engine.load(directory)
    pool, _ = synthetic_images(size, seed=size)
    started = time.perf_counter()
    engine.rank(pool)
    seconds = time.perf_counter() - started
    queue.put({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def measure(directory: str, size: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_rank_child, args=(directory, size, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--labeled", type=int, default=500)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    images, labels = synthetic_images(args.labeled, seed=1)
    result: dict = {"machine": {"cpus": multiprocessing.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "processor": platform.processor() or platform.machine(),
                                "cuda": torch.cuda.is_available()},
                    "labeled": args.labeled, "pools": {}}
    with tempfile.TemporaryDirectory() as autoal_dir, tempfile.TemporaryDirectory() as entropy_dir:
        autoal_config = EngineConfig()
        autoal_config.search.enabled = True  # the opt-in search is the heavier path: measure that one
        autoal = Engine(autoal_config).fit(images, labels, pool_size=sizes[len(sizes) // 2])
        autoal.save(autoal_dir)
        entropy_config = EngineConfig(strategies=("entropy",))
        entropy_config.search.enabled = False
        entropy = Engine(entropy_config).fit(images, labels)
        entropy.save(entropy_dir)
        timings = autoal.report["timings"]
        result["fit"] = {
            **{k: round(v, 3) for k, v in timings.items()},
            "search_share_of_retrain": round(timings["search_seconds"] / timings["fit_seconds"], 4),
            "entropy_only_fit_seconds": round(entropy.report["timings"]["fit_seconds"], 3),
            "holdout_accuracy": autoal.report["holdout_accuracy"],
        }
        for size in sizes:
            a, e = measure(autoal_dir, size), measure(entropy_dir, size)
            result["pools"][str(size)] = {
                "autoal_rank_seconds": round(a["seconds"], 3),
                "entropy_rank_seconds": round(e["seconds"], 3),
                "autoal_over_entropy": round(a["seconds"] / e["seconds"], 3),
                "autoal_peak_rss_mb": round(a["peak_rss_mb"], 1),
                "autoal_seconds_per_10k": round(a["seconds"] / size * 10_000, 3),
            }
            print(json.dumps({"progress": size, **result["pools"][str(size)]}), flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
