"""Batch replay throughput: the compiled kernel vs its pure-Python twin on one recorded stream.

The whole per-sample path runs (parse, guard, filters, detection, envelope,
cut-off, delivery decisions) with the gait machine and the supervisor handling
every event and output, exactly as in a replay; no trace is kept.
"""
from __future__ import annotations

import time

import numpy as np

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.loop.controller import Controller
from fescontrol.core.profile import bundled_profile_path, load_profile


def recorded_heel_stream(min_samples: int, rate_hz: float | None = None) -> tuple[bytes, int, str]:
    """A real heel-force recording (bundled PhysioNet walk, 100 Hz; resampled to ``rate_hz``
    when given), repeated to ``min_samples`` with continuous sequence numbers and timestamps.
    Returns (bytes, n, description)."""
    from fescontrol.sim.sources import load_recording
    rec = load_recording("physionet:GaCo01", side="left")
    if rate_hz is not None:
        rec = rec.resampled(rate_hz)
    reps = int(np.ceil(min_samples / rec.n_samples))
    heel = np.tile(rec.heel_n, reps)
    n = len(heel)
    flags, heel_c, acc, gyro = sp.counts_from_units(heel, None, None, n=n)
    idx = np.arange(n)
    t_us = 1_000_000 + np.rint(idx * 1e6 / rec.rate_hz).astype(np.int64)
    frames = sp.encode_frames(idx, t_us, flags, heel_c, acc, gyro)
    return frames.tobytes(), n, f"{rec.name} ({rec.rate_hz:g} Hz) ×{reps}"


def time_replay(data: bytes, implementation: str, rate_hz: float, repeats: int = 3,
                profile_name: str = "default") -> float:
    """Best wall time (s) of replaying ``data`` through a fresh controller."""
    from fescontrol.core.profile import profile_from_dict
    base = load_profile(bundled_profile_path(profile_name)).model_dump(mode="json")
    base["device"]["sample_rate_hz"] = rate_hz
    profile = profile_from_dict(base)
    best = float("inf")
    for _ in range(repeats):
        c = Controller(profile, implementation=implementation)
        c.start()
        t0 = time.perf_counter()
        c.feed(data)
        best = min(best, time.perf_counter() - t0)
        assert c.supervisor.deliveries > 0 and not c.supervisor.faults, "the replay must stimulate, fault-free"
    return best


def measure(rate_hz: float | None = None, cython_samples: int = 400_000, python_samples: int = 40_000) -> dict:
    """Samples/s of both kernels on the same stream. At the recording's own 100 Hz the
    event level (the transitions machine, ~10 µs per trigger, ~5 triggers and ~9 outputs per
    stride) is a large share of the compiled path's time; at 1 kHz it is ten times smaller."""
    data, n, what = recorded_heel_stream(cython_samples, rate_hz)
    rate = rate_hz or 100.0
    t_cy = time_replay(data, "cython", rate)
    n_py = min(python_samples, n)
    t_py = time_replay(data[:n_py * sp.FRAME_LEN], "python", rate, repeats=1)
    cy_rate, py_rate = n / t_cy, n_py / t_py
    return {"stream": what, "rate_hz": rate, "cython_samples": n, "python_samples": n_py,
            "cython_samples_per_s": cy_rate, "python_samples_per_s": py_rate,
            "speedup": cy_rate / py_rate, "us_per_sample": 1e6 / cy_rate,
            "python_us_per_sample": 1e6 / py_rate}


def measure_channels(rate_hz: float = 1000.0, samples: int = 400_000) -> dict:
    """Compiled kernel, one stream, measured back to back in the same run: the single-channel
    default profile against configs/two_channel.yaml (channel 2 with its own timed burst).
    ``ratio`` = two-channel time / one-channel time (1.0: the second channel costs nothing)."""
    data, n, what = recorded_heel_stream(samples, rate_hz)
    t_one = time_replay(data, "cython", rate_hz)
    t_two = time_replay(data, "cython", rate_hz, profile_name="two_channel")
    return {"stream": what, "rate_hz": rate_hz, "samples": n, "one_channel_us_per_sample": 1e6 * t_one / n,
            "two_channel_us_per_sample": 1e6 * t_two / n, "ratio": t_two / t_one}
