"""How late this machine wakes a sleeping thread, at normal priority and at SCHED_FIFO.

The device loop sleeps in ``poll`` between frames; every frame it handles late by more than one
sample period is a missed deadline. This measures the part no loop code can change: a thread
that sleeps 1 ms (``time.sleep``) a few thousand times, once at the normal scheduler
(SCHED_OTHER, nice 0) and once at SCHED_FIFO 50 (where permitted), both at the same time so
that they see the same load. Prints the wake-up delay beyond the 1 ms asked for (p50/p99/max
and how many exceed one 1 kHz period) and the load average. Not a test: it depends on what else
the machine runs. ``.venv/bin/python bench/wakeup.py [SECONDS]``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import numpy as np

SLEEP_S = 0.001


def _sleeper(seconds: float, fifo: bool, conn) -> None:
    note = "SCHED_OTHER nice 0"
    if fifo:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
            note = "SCHED_FIFO 50"
        except OSError as err:
            conn.send((f"SCHED_FIFO NOT granted ({err.strerror})", None))
            return
    gaps = []
    t = time.monotonic_ns()
    end = t + int(seconds * 1e9)
    while t < end:
        time.sleep(SLEEP_S)
        now = time.monotonic_ns()
        gaps.append(now - t)
        t = now
    conn.send((note, np.array(gaps, dtype=np.int64)))


def measure(seconds: float = 10.0) -> list[dict]:
    """Both sleepers for ``seconds`` side by side; one dict per scheduler (delays in µs)."""
    ctx = mp.get_context("fork")
    runs = []
    for fifo in (False, True):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_sleeper, args=(seconds, fifo, child), daemon=True)
        proc.start()
        runs.append((proc, parent))
    out = []
    for proc, parent in runs:
        note, gaps = parent.recv()
        proc.join(5)
        if gaps is None:
            out.append({"scheduler": note})
            continue
        late_us = (gaps - int(SLEEP_S * 1e9)) / 1e3
        out.append({"scheduler": note, "wakeups": int(len(late_us)), "p50_us": float(np.median(late_us)),
                    "p99_us": float(np.percentile(late_us, 99)), "max_us": float(late_us.max()),
                    "over_1ms": int(np.count_nonzero(late_us > 1000))})
    return out


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 10.0
    load = os.getloadavg()
    for r in measure(seconds):
        if "wakeups" not in r:
            print(f"{r['scheduler']}")
            continue
        print(f"{r['scheduler']:<20} woke late by p50 {r['p50_us']:.0f} µs, p99 {r['p99_us']:.0f} µs, "
              f"max {r['max_us']:.0f} µs; {r['over_1ms']} of {r['wakeups']} more than 1 ms late")
    print(f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
