"""Rank-time scaling of the engine on synthetic 28x28 pools (issue 2 targets).

Prints one JSON object: for pools of 10k, 50k and 100k images, the wall time of ``Engine.rank`` with the
default candidate set and the AutoAL search on (opt-in, the heavier path), the same for an entropy-only
engine, their ratio, and the peak resident memory of a process that loads the engine and ranks the pool;
plus the fit timings (search vs whole retrain). Each measurement runs in a fresh child process so that
peak memory is its own.

    python benchmarks/rank_scaling.py [--sizes 10000,50000,100000] [--labeled 500]
    python benchmarks/rank_scaling.py --fast-path [--sizes 100000,300000,1000000]

Targets: 50k ranked in <= 60 s; AutoAL <= 1.5x entropy-only; search <= 10% of a retrain; peak memory
< 4 GB at 100k; time linear in the pool size.

``--fast-path`` (the two-speed issue): the default engine (equal weights over the 11 candidates) ranks
pools of cached 64-d embeddings: the vectors of 10,000 synthetic images under the fitted backbone, tiled
with noise to each size, stored in an `EmbeddingCache`; a fresh child process reads them back (timed) and
ranks them with `Engine.rank_vectors` (timed), and reports its peak memory. Targets: 10^6 ranked in
<= 60 s and <= 4 GB, time linear in the pool.
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


def _rank_vectors_child(directory: str, cache_dir: str, size: int, queue) -> None:
    from autoal_engine.embedding_cache import EmbeddingCache

    engine = Engine.load(directory)
    started = time.perf_counter()
    with EmbeddingCache(cache_dir, engine.vector_width) as cache:
        vectors, found = cache.get(_keys(size))
    read = time.perf_counter() - started
    assert found.all()
    started = time.perf_counter()
    engine.rank_vectors(vectors)
    seconds = time.perf_counter() - started
    queue.put({"read_seconds": read, "seconds": seconds,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _keys(size: int) -> list[bytes]:
    return [i.to_bytes(8, "little") for i in range(size)]


def measure(directory: str, size: int, cache_dir: str | None = None) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    if cache_dir is not None:
        child = context.Process(target=_rank_vectors_child, args=(directory, cache_dir, size, queue))
    else:
        child = context.Process(target=_rank_child, args=(directory, size, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="pool sizes (default 10000,50000,100000; --fast-path 100000,300000,1000000)")
    parser.add_argument("--labeled", type=int, default=500)
    parser.add_argument("--fast-path", action="store_true", help="rank cached embeddings (Engine.rank_vectors)")
    args = parser.parse_args()
    if args.fast_path:
        fast_path([int(s) for s in (args.sizes or "100000,300000,1000000").split(",")], args.labeled)
        return
    sizes = [int(s) for s in (args.sizes or "10000,50000,100000").split(",")]
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


def fast_path(sizes: list[int], labeled: int) -> None:
    from autoal_engine.embedding_cache import EmbeddingCache

    images, labels = synthetic_images(labeled, seed=1)
    result: dict = {"machine": {"cpus": multiprocessing.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "processor": platform.processor() or platform.machine()},
                    "labeled": labeled, "pools": {}}
    with tempfile.TemporaryDirectory() as engine_dir, tempfile.TemporaryDirectory() as cache_root:
        engine = Engine(EngineConfig()).fit(images, labels, pool_size=max(sizes))
        engine.save(engine_dir)
        base = engine.vectors(synthetic_images(10_000, seed=2)[0])
        rng = np.random.default_rng(0)
        for size in sizes:
            cache_dir = f"{cache_root}/{size}"
            started = time.perf_counter()
            with EmbeddingCache(cache_dir, base.shape[1]) as cache:
                keys = _keys(size)
                for start in range(0, size, 100_000):
                    stop = min(size, start + 100_000)
                    rows = base[np.arange(start, stop) % len(base)]
                    noisy = rows + rng.normal(0, 0.05, rows.shape).astype(np.float32) * rows.std(axis=0)
                    cache.put(keys[start:stop], noisy)
            written = time.perf_counter() - started
            m = measure(engine_dir, size, cache_dir)
            result["pools"][str(size)] = {
                "cache_write_seconds": round(written, 2),
                "cache_read_seconds": round(m["read_seconds"], 2),
                "rank_vectors_seconds": round(m["seconds"], 2),
                "seconds_per_100k": round(m["seconds"] / size * 100_000, 3),
                "peak_rss_mb": round(m["peak_rss_mb"], 1),
            }
            print(json.dumps({"progress": size, **result["pools"][str(size)]}), flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
