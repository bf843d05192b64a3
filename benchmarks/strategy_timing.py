"""Time every registered strategy's ``score`` on random pool outputs and print JSON.

Usage: PYTHONPATH=. python benchmarks/strategy_timing.py [--sizes 10000 50000 100000] [--dim 64]
       [--classes 10] [--labeled 200] [--batch-size 20] [--repeats 1]

Prints one JSON object: the settings, and per pool size the wall-clock seconds of each strategy (best of
``--repeats``), the process CPU seconds of that best run (all threads; compare the two to see whether the
machine was busy), the wall-clock total over the default candidate set (config.DEFAULT_STRATEGIES) and
the peak resident memory of the process so far. On a busy machine, OPENBLAS_NUM_THREADS=1 gives steadier
numbers: multi-threaded BLAS spin-waits when its threads cannot all run.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from autoal_engine.config import DEFAULT_STRATEGIES
from autoal_engine.pool_outputs import PoolOutputs
from autoal_engine.strategies import STRATEGIES, make_strategy


def random_outputs(n: int, dim: int, classes: int, labeled: int, batch_size: int, seed: int) -> PoolOutputs:
    """Random pool outputs: Gaussian embeddings and logits, 2 MC samples, a random labeled set."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(3, n, classes))
    probs = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs /= probs.sum(axis=2, keepdims=True)
    return PoolOutputs.from_arrays(
        probs[0],
        mc_probs=probs[1:],
        embeddings=rng.normal(size=(n, dim)).astype(np.float32),
        predicted_loss=rng.random(n).astype(np.float32),
        labeled_embeddings=rng.normal(size=(labeled, dim)).astype(np.float32),
        batch_size=batch_size,
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--labeled", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    results = []
    for n in args.sizes:
        outputs = random_outputs(n, args.dim, args.classes, args.labeled, args.batch_size, seed=0)
        seconds, cpu_seconds = {}, {}
        for name in sorted(STRATEGIES):
            strategy = make_strategy(name)
            best, best_cpu = float("inf"), float("inf")
            for _ in range(args.repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                strategy.score(outputs)
                wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
                if wall < best:
                    best, best_cpu = wall, cpu
            seconds[name], cpu_seconds[name] = round(best, 4), round(best_cpu, 4)
        results.append({
            "n": n,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "default_set_total_seconds": round(sum(seconds[name] for name in DEFAULT_STRATEGIES), 3),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        })
    settings = {k: v for k, v in vars(args).items() if k != "sizes"}
    print(json.dumps({"settings": settings, "results": results}, indent=2))


if __name__ == "__main__":
    main()
