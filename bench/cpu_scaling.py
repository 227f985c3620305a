"""What two processes can get from this machine: throughput of 1 vs 2 worker processes on pure CPU work (a Python
loop, a numpy kernel) — the ceiling for the measure lane's worker processes that `copilot bench --postprocess`
measures.

    python bench/cpu_scaling.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np


def python_loop(n: int = 15_000_000) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def numpy_kernel(reps: int = 120) -> float:
    a = np.random.default_rng(0).random((1024, 1024)).astype(np.float32)
    total = 0.0
    for _ in range(reps):
        total += float(np.sort(a, axis=1)[:, 0].sum() + (a > 0.5).sum() + np.cumsum(a, axis=0)[-1, 0])
    return total


def jobs_per_second(fn, processes: int) -> float:
    """2 jobs per process, all at once."""
    t = time.perf_counter()
    with mp.get_context("fork").Pool(processes) as pool:
        pool.starmap(fn, [()] * (2 * processes))
    return 2 * processes / (time.perf_counter() - t)


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{os.cpu_count()} CPUs; 1-min load {os.getloadavg()[0]:.2f}")
    for fn in (python_loop, numpy_kernel):
        one, two = jobs_per_second(fn, 1), jobs_per_second(fn, 2)
        print(f"{fn.__name__}: 2 processes {two / one:.2f}× the throughput of 1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
