"""bench/latency.py counts missed deadlines by the kernel's own rule, wherever it applies it
(the relay's reads, the sensor stand-in's writes), so the loop's count can be compared with
the machine's floor measured in the same run."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers.sensor_protocol import FRAME_LEN
from fescontrol.kernel import COMPILED, CyKernel, PyKernel

from .conftest import stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import latency  # noqa: E402

PERIOD_US = int(1e6 / latency.RATE_HZ)


@pytest.mark.timeout(60)
@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 6 * PERIOD_US), min_size=1, max_size=300))
def test_missed_deadlines_is_the_kernels_rule(delays_us):
    """Frames 1 ms apart by their timestamps, each arriving ``delay`` µs after its nominal time:
    the bench's count equals the kernel's (``_account_lateness``, drift check off)."""
    kernel = PyKernel(latency.bench_profile())
    kernel.set_clock_rate(0.0)
    arrival_us = [5_000_000 + i * PERIOD_US + d for i, d in enumerate(delays_us)]
    for i, now_us in enumerate(arrival_us):
        kernel.t_us = latency.FIRST_TS_US + i * PERIOD_US
        kernel._account_lateness(now_us)
    misses, lateness = latency.missed_deadlines(np.array(arrival_us, dtype=np.int64) * 1000, PERIOD_US * 1000)
    assert misses == kernel.missed_deadlines
    assert int(lateness.max()) // 1000 == kernel.max_lateness_us


@pytest.mark.timeout(10)
def test_missed_deadlines_anchor_follows_the_soonest_frame():
    """A frame earlier than all before it moves the anchor: the ones after are late against it."""
    ms = 1_000_000
    arrival = np.array([0, 1 * ms, 2 * ms - ms // 2, 3 * ms + ms // 2, 4 * ms + ms // 10])
    misses, lateness = latency.missed_deadlines(arrival, ms)
    assert lateness.tolist() == [0, 0, 0, ms, ms // 2 + ms // 10]
    assert misses == 0
    assert latency.missed_deadlines(np.array([0, 2 * ms + 1]), ms)[0] == 1
    assert latency.missed_deadlines(np.array([], dtype=np.int64), ms)[0] == 0


def _frames_1khz(n: int) -> bytes:
    return stream(np.full(n, 400.0), rate_hz=latency.RATE_HZ, t0_us=latency.FIRST_TS_US)


def _take(kernel, fd: int, frames: int) -> None:
    deadline = time.monotonic() + 5.0
    while kernel.frames < frames:
        kernel.run_fd(fd, 2_000)
        assert time.monotonic() < deadline, "the frames written were not taken"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kernel_cls", [PyKernel] + ([CyKernel] if COMPILED else []))
def test_run_fd_counts_every_frame_that_queued_behind_a_late_take(kernel_cls):
    """Frames 1..5 reach the loop together, 6 ms after frame 0: taken at once, frames 1..4 are
    each at least 2 ms late by their timestamps, so each is a missed deadline (a device misses
    the deadline of every one of them), not only the newest frame of the read."""
    kernel = kernel_cls(latency.bench_profile())
    kernel.set_clock_rate(0.0)
    data = _frames_1khz(6)
    r, w = os.pipe()
    try:
        os.write(w, data[:FRAME_LEN])
        _take(kernel, r, 1)
        time.sleep(0.006)
        os.write(w, data[FRAME_LEN:])
        _take(kernel, r, 6)
    finally:
        os.close(r)
        os.close(w)
    assert kernel.missed_deadlines >= 4
    assert kernel.max_lateness_us >= 4_000
    assert int(kernel.lateness_hist.sum()) == 6


@pytest.mark.parametrize("kernel_cls", [PyKernel] + ([CyKernel] if COMPILED else []))
def test_a_batch_replay_counts_no_wall_clock_lateness(kernel_cls):
    kernel = kernel_cls(latency.bench_profile())
    kernel.feed(_frames_1khz(50))
    kernel.process()
    assert kernel.frames == 50 and kernel.missed_deadlines == 0 and int(kernel.lateness_hist.sum()) == 0
