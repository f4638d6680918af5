"""Shared fixtures: profiles, sensor byte streams, both kernel implementations."""
from __future__ import annotations

import numpy as np
import pytest

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.kernel import COMPILED
from fescontrol.core.profile import bundled_profile_path, load_profile, profile_from_dict

BUNDLED_PROFILES = ("default", "pace_heel", "walkaide_tilt", "combined")

KERNELS = [pytest.param("python", id="python"),
           pytest.param("cython", id="cython",
                        marks=pytest.mark.skipif(not COMPILED, reason="Cython kernel not built"))]


@pytest.fixture(params=KERNELS)
def kernel_impl(request) -> str:
    """Run the test once per kernel implementation."""
    return request.param


@pytest.fixture
def default_profile():
    return load_profile(bundled_profile_path("default"))


def profile_with(base: str = "default", **sections):
    """A bundled profile with some sections (dicts) merged in."""
    data = load_profile(bundled_profile_path(base)).model_dump(mode="json")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            merged = dict(data[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                else:
                    merged[k] = v
            data[key] = merged
        else:
            data[key] = value
    return profile_from_dict(data, f"{base}+test")


def stream(heel_n=None, gyro_y_dps=None, *, rate_hz: float = 100.0, first_seq: int = 0,
           t0_us: int = 1_000_000, flags_or: int = 0, drop: tuple[int, ...] = ()) -> bytes:
    """Sensor bytes for arrays of heel force (N) and gyro y (deg/s; toe-up rate is its negative)."""
    n = len(heel_n) if heel_n is not None else len(gyro_y_dps)
    acc = gyro = None
    if gyro_y_dps is not None:
        gyro = np.zeros((n, 3))
        gyro[:, 1] = gyro_y_dps
        acc = np.zeros((n, 3))
        acc[:, 2] = 9.81
    flags, heel, acc_c, gyro_c = sp.counts_from_units(heel_n, acc, gyro, n=n)
    flags = flags | flags_or
    idx = np.arange(n)
    t_us = t0_us + np.rint(idx * 1e6 / rate_hz).astype(np.int64)
    frames = sp.encode_frames(first_seq + idx, t_us, flags, heel, acc_c, gyro_c)
    if drop:
        frames = np.delete(frames, [d for d in set(drop) if d < n], axis=0)
    return frames.tobytes()


def heel_walk(strides: int = 10, *, stride_s: float = 1.0, stance_fraction: float = 0.62,
              load_n: float = 500.0, rate_hz: float = 100.0, standing_s: float = 1.0) -> np.ndarray:
    """A square-ish heel force: standing loaded, then strides (loaded stance, 0 N swing)."""
    stand = np.full(int(standing_s * rate_hz), load_n)
    t = np.arange(int(strides * stride_s * rate_hz)) / rate_hz
    walk = np.where((t % stride_s) < stance_fraction * stride_s, load_n, 0.0)
    return np.concatenate([stand, walk, stand])


VIRTUAL_HARDWARE_THREADS = ("pty-sensor", "rehastim2-emulator", "p24-emulator")


@pytest.fixture(autouse=True)
def no_virtual_hardware_left_running():
    """Like python-can's virtual-bus check: a test must stop every emulator and pty sensor it
    started, or later tests would share a device that is still stimulating."""
    import threading
    import time
    yield
    deadline = time.monotonic() + 2.0
    while True:
        alive = [t.name for t in threading.enumerate() if t.name in VIRTUAL_HARDWARE_THREADS and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not alive, f"test left virtual hardware running: {alive}"
