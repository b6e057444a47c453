"""Pin the BLAS/OpenMP thread pools of this process to what it is given.

numpy's BLAS (OpenBLAS, MKL) starts one thread per core and spins them while it waits. On a
machine whose cores are busy with anything else (the host tool next to a browser, a board CPU
shared with the probe grabber) those spinning threads fight each other: on a 2-core VM at load
average 4, the software backend fell from 23.7 to 0.81 frames/s unpinned. The 128x128 model's
matrices are small, so one thread is the default and the safe choice; ``--threads N`` raises it.

:func:`pin_threads` uses threadpoolctl (runtime limits of the loaded libraries) and also sets the
usual environment variables, so child processes start with the same limit.
"""

from __future__ import annotations

import os

from qdev.core.errors import ConfigError

__all__ = ["pin_threads", "available_cpus", "DEFAULT_THREADS", "THREAD_ENV"]

DEFAULT_THREADS = 1
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def pin_threads(n: int | None = DEFAULT_THREADS) -> dict:
    """Limit every BLAS/OpenMP pool to ``n`` threads (None: the CPUs this process may use).

    Returns what was done: ``{"threads": n, "pools": [{"library", "api", "threads"}...]}``.
    """
    avail = available_cpus()
    if n is None:
        n = avail
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"--threads {n!r}: must be a positive integer")
    for k in THREAD_ENV:
        os.environ[k] = str(n)
    import numpy  # noqa: F401  (load its BLAS so that the limit reaches it)
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=n)  # applies now and stays (no context manager: process-wide)
    pools = [
        {
            "library": p.get("internal_api"),
            "api": p.get("user_api"),
            "threads": p.get("num_threads"),
        }
        for p in threadpool_info()
    ]
    return {"threads": n, "cpus_available": avail, "pools": pools}
