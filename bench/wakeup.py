"""How late this machine wakes a sleeping thread, at normal priority and at SCHED_FIFO.

The device loop sleeps in ``poll`` between frames; every frame it handles late by more than one
sample period is a missed deadline. This measures the part no loop code can change: a thread
that sleeps 1 ms (``time.sleep``) a few thousand times, once at the normal scheduler
(SCHED_OTHER, nice 0) and once at SCHED_FIFO 50 (where permitted), both at the same time so
that they see the same load. Prints the wake-up delay beyond the 1 ms asked for (p50/p99/max
and how many exceed one 1 kHz period) and the load average. Not a test: it depends on what else
the machine runs. ``.venv/bin/python bench/wakeup.py [SECONDS]``.

``--hybrid`` compares instead, at SCHED_FIFO 50 and side by side, that sleeper with a hybrid
wait (the busy-poll of real-time loops): sleep until ``HYBRID_SPIN_S`` before each 1 ms tick,
then spin on the clock until the tick. It also prints the longest gap between two clock reads
inside the spin: time the running thread was not given its CPU at all.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import numpy as np

SLEEP_S = 0.001
HYBRID_SPIN_S = 0.0003


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


def _ticker(seconds: float, spin: bool, conn) -> None:
    """SCHED_FIFO 50: wait for each 1 ms tick by sleeping (``spin`` False) or by sleeping until
    HYBRID_SPIN_S before it and spinning; sends the lateness (ns) at each tick and the longest
    gap between two clock reads while spinning (ns)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
    except OSError as err:
        conn.send((f"SCHED_FIFO NOT granted ({err.strerror})", None, 0))
        return
    period = int(SLEEP_S * 1e9)
    margin = int(HYBRID_SPIN_S * 1e9) if spin else 0
    late = np.zeros(int(seconds / SLEEP_S), dtype=np.int64)
    longest_gap = 0
    t0 = time.monotonic_ns() + period
    for i in range(len(late)):
        tick = t0 + i * period
        delay = tick - margin - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        now = time.monotonic_ns()
        while now < tick:          # the spin (hybrid only: otherwise the sleep ended at the tick)
            before, now = now, time.monotonic_ns()
            longest_gap = max(longest_gap, now - before)
        late[i] = now - tick
    note = f"SCHED_FIFO 50, {'hybrid (spin the last %.0f µs)' % (margin / 1e3) if spin else 'sleep'}"
    conn.send((note, late, longest_gap))


def _side_by_side(target, seconds: float, variants) -> list[tuple]:
    ctx = mp.get_context("fork")
    runs = []
    for variant in variants:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(seconds, variant, child), daemon=True)
        proc.start()
        runs.append((proc, parent))
    out = []
    for proc, parent in runs:
        out.append(parent.recv())
        proc.join(5)
    return out


def _summary(note: str, late_ns) -> dict:
    if late_ns is None:
        return {"scheduler": note}
    late_us = np.asarray(late_ns) / 1e3
    return {"scheduler": note, "wakeups": int(len(late_us)), "p50_us": float(np.median(late_us)),
            "p99_us": float(np.percentile(late_us, 99)), "max_us": float(late_us.max()),
            "over_1ms": int(np.count_nonzero(late_us > 1000))}


def measure(seconds: float = 10.0) -> list[dict]:
    """Both sleepers for ``seconds`` side by side; one dict per scheduler (delays in µs)."""
    return [_summary(note, None if gaps is None else gaps - int(SLEEP_S * 1e9))
            for note, gaps in _side_by_side(_sleeper, seconds, (False, True))]


def measure_hybrid(seconds: float = 10.0) -> list[dict]:
    """Sleep vs hybrid wait at SCHED_FIFO 50, side by side; one dict each (lateness at the
    tick in µs; ``longest_spin_gap_us``: the longest the spinning thread lost its CPU)."""
    return [{**_summary(note, late), "longest_spin_gap_us": gap / 1e3}
            for note, late, gap in _side_by_side(_ticker, seconds, (False, True))]


def main(argv: list[str]) -> int:
    hybrid = "--hybrid" in argv
    argv = [a for a in argv if a != "--hybrid"]
    seconds = float(argv[0]) if argv else 10.0
    load = os.getloadavg()
    for r in (measure_hybrid if hybrid else measure)(seconds):
        if "wakeups" not in r:
            print(f"{r['scheduler']}")
            continue
        print(f"{r['scheduler']:<20} woke late by p50 {r['p50_us']:.0f} µs, p99 {r['p99_us']:.0f} µs, "
              f"max {r['max_us']:.0f} µs; {r['over_1ms']} of {r['wakeups']} more than 1 ms late"
              + (f"; longest gap in the spin {r['longest_spin_gap_us']:.0f} µs" if "hybrid" in r["scheduler"] else ""))
    print(f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
