"""A documented CPU load for the latency bench: one core kept busy, started and stopped by the bench.

The hog is a separate Python process doing 256×256 float64 matrix products with numpy
(single-threaded BLAS: ``OPENBLAS_NUM_THREADS=1`` and friends), pinned to one CPU with
``sched_setaffinity`` at normal priority (nice 0). It keeps that core 100 % busy and churns
its caches (512 kB per matrix), as a second application on a shared computer would.
The scheduler may still run the process under test on that core; SCHED_FIFO (``--rt``)
is what lets it preempt the hog.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

HOG_CODE = """
import numpy as np
a = np.random.default_rng(0).random((256, 256))
b = a.copy()
while True:
    b = a @ b
    b /= np.abs(b).max()
"""

SINGLE_THREAD_ENV = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


class CpuHog:
    """Context manager: a numpy hog pinned to ``cpu`` for the body, killed (by its pid) after."""

    def __init__(self, cpu: int = 0):
        self.cpu = cpu
        self.proc: subprocess.Popen | None = None

    @property
    def description(self) -> str:
        return (f"numpy 256x256 matmul loop, 1 process, single-threaded BLAS, pinned to CPU {self.cpu}, "
                f"nice 0")

    def __enter__(self) -> "CpuHog":
        self.proc = subprocess.Popen([sys.executable, "-c", HOG_CODE], env={**os.environ, **SINGLE_THREAD_ENV},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.sched_setaffinity(self.proc.pid, {self.cpu})
        time.sleep(0.5)  # numpy imported, the core busy
        if self.proc.poll() is not None:
            raise RuntimeError(f"the CPU hog exited at once (code {self.proc.returncode})")
        return self

    def cpu_seconds(self) -> float:
        """CPU time the hog has used so far (s), from /proc."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
