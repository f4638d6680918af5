"""Where the real-time loop's time goes: per-phase timestamps around every kernel call.

Runs :func:`latency.measure` (the device loop at 1 kHz over real ptys, RehaStim2 emulator) with
the controller's loop timed at each step: ``run_fd`` (the compiled kernel: poll, read, parse,
per-sample work; the wait for frames is inside it), ``handle`` (gait events and the supervised
stimulator write), ``service`` (stimulator replies and the keep-alive), and the Python gap
between two ``run_fd`` calls (every frame arriving meanwhile waits). Also counts garbage
collections and reports the sensor stand-in's own late writes, the thread CPU time of each
iteration, and every output's latency in three parts (sensor write -> the kernel call returned,
-> the stimulator packet written, -> the emulator parsed it). Prints one line per phase.

``.venv/bin/python bench/phases.py [SECONDS] [--rt] [--load]``. A dev tool, not a test.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from collections import Counter
from contextlib import nullcontext

import numpy as np

import latency
from fescontrol.core.codes import Fault
from fescontrol.drivers.stimulator import Stimulator
from fescontrol.loop.controller import _CLOSED, Controller
from load import CpuHog

CAPACITY = 400_000


class _Timed:
    """Controller.run with a timestamp before and after each step, into preallocated arrays."""

    def __init__(self):
        self.rec = np.zeros((CAPACITY, 6), dtype=np.int64)  # call, returned, handled, serviced, flags, cpu
        self.n = 0
        self.writes = np.zeros(CAPACITY, dtype=np.int64)   # monotonic ns of every stimulator write
        self.n_writes = 0
        self.gcs: list[tuple[int, int]] = []
        self._gc_start = 0

    def on_write(self) -> None:
        if self.n_writes < CAPACITY:
            self.writes[self.n_writes] = time.monotonic_ns()
            self.n_writes += 1

    def on_gc(self, phase, info) -> None:
        if phase == "start":
            self._gc_start = time.monotonic_ns()
        else:
            self.gcs.append((info["generation"], time.monotonic_ns() - self._gc_start))

    def run(self, controller, sensor_fd, should_stop, wake_ms=20):
        wake_us = wake_ms * 1000
        mono, cpu = time.monotonic_ns, time.thread_time_ns
        sup, kernel, rec = controller.supervisor, controller.kernel, self.rec
        try:
            while not should_stop():
                due_us = sup.service_due_in_us()
                t0 = mono()
                ret = kernel.run_fd(sensor_fd, wake_us if due_us is None else min(wake_us, due_us))
                t1 = mono()
                c1 = cpu()
                if ret & _CLOSED:
                    sup.latch(Fault.SENSOR_STALE, "sensor port closed")
                    return
                controller.handle(ret)
                t2 = mono()
                sup.service()
                t3 = mono()
                c3 = cpu()
                if self.n < CAPACITY:
                    rec[self.n] = (t0, t1, t2, t3, ret, c3 - c1)
                    self.n += 1
        finally:
            sup._stop_stimulator()


def _line(name: str, us: np.ndarray) -> str:
    if len(us) == 0:
        return f"  {name:<26} (none)"
    return (f"  {name:<26} p50 {np.median(us):7.0f}  p99 {np.percentile(us, 99):7.0f}  max {us.max():8.0f} µs"
            f"  ({len(us)})")


def _split_outputs(raw: dict, rec: np.ndarray, writes: np.ndarray) -> None:
    """Each output's latency in three parts: the sensor stand-in's write -> the kernel call that
    took the frame returned (wake-up, kernel, any frames queued before it), -> the stimulator
    write (the Python work before the packet goes out), -> the emulator parsed it."""
    parsed, written = raw["parsed_ns"], raw["written_ns"]
    if len(parsed) == 0 or len(writes) == 0:
        return
    w = writes[np.clip(np.searchsorted(writes, parsed, side="right") - 1, 0, len(writes) - 1)]
    returned = rec[:, 1]
    t1 = returned[np.clip(np.searchsorted(returned, w, side="right") - 1, 0, len(returned) - 1)]
    total = (parsed - written) / 1e3
    worst = total >= np.percentile(total, 95)
    for name, us in (("output: frame -> kernel returned", (t1 - written) / 1e3),
                     ("output: returned -> write", (w - t1) / 1e3),
                     ("output: write -> emulator", (parsed - w) / 1e3)):
        print(_line(name, us) + f"; in the slowest 5 %: p50 {np.median(us[worst]):.0f} µs")


def main(argv: list[str]) -> int:
    seconds = float(next((a for a in argv if not a.startswith("--")), 20.0))
    rt, loaded = "--rt" in argv, "--load" in argv
    timed = _Timed()
    original, original_write = Controller.run, Stimulator._write
    Controller.run = lambda self, fd, stop, wake_ms=20: timed.run(self, fd, stop, wake_ms)

    def timed_write(self, frame):
        timed.on_write()
        return original_write(self, frame)

    Stimulator._write = timed_write
    gc.callbacks.append(timed.on_gc)
    load_before = os.getloadavg()[0]
    try:
        with CpuHog(0) if loaded else nullcontext():
            r = latency.measure(seconds, rt=rt, raw=True)
    finally:
        Controller.run, Stimulator._write = original, original_write
        gc.callbacks.remove(timed.on_gc)
    rec = timed.rec[: timed.n]
    flags = rec[:, 4]
    print(f"{seconds:g} s at 1 kHz, rt={rt}, hog={loaded}, load average {load_before:.2f} -> "
          f"{os.getloadavg()[0]:.2f}; stand-ins: {r['stand_ins'][0]}")
    print(f"  loop: latency p50/p99/max {r['latency_ms']['p50']:.3f} / {r['latency_ms']['p99']:.3f} / "
          f"{r['latency_ms']['max']:.3f} ms over {r['latency_ms']['samples']} outputs; missed deadlines "
          f"{r['missed_deadlines']} of {r['frames']}; max lateness {r['max_lateness_us']} µs; faults {r['faults']}")
    s = r["sensor_late"]
    print(f"  sensor stand-in: {s['missed_deadlines']} frames written late; lateness p99 {s['p99']:.3f} ms, "
          f"max {s['max']:.3f} ms")
    print(_line("run_fd (incl. the wait)", (rec[:, 1] - rec[:, 0]) / 1e3))
    print(_line("python gap between calls", (rec[1:, 0] - rec[:-1, 1]) / 1e3))
    deliver = (flags & 2) != 0
    print(_line("handle, with an output", (rec[deliver, 2] - rec[deliver, 1]) / 1e3))
    print(_line("handle, events only", (rec[~deliver & ((flags & 1) != 0), 2]
                                         - rec[~deliver & ((flags & 1) != 0), 1]) / 1e3))
    print(_line("service", (rec[:, 3] - rec[:, 2]) / 1e3))
    print(_line("handle+service, thread CPU", rec[:, 5] / 1e3))
    print(_line("  the same, with an output", rec[deliver, 5] / 1e3))
    _split_outputs(r["raw"], rec, timed.writes[: timed.n_writes])
    during = [(g, ns) for g, ns in timed.gcs]
    print(f"  garbage collections: {dict(Counter(g for g, _ in during))} (by generation), longest "
          f"{max((ns for _, ns in during), default=0) / 1e3:.0f} µs (the --rt freeze's own collect included)")
    print(f"  wake-ups by reason: {dict(Counter(int(f) for f in flags))} (1 event, 2 output, 4 timeout)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
