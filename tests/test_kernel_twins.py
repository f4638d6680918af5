"""The compiled kernel and its pure-Python twin agree sample for sample."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.core import codes
from fescontrol.kernel import COMPILED

from .conftest import heel_walk, profile_with, stream
from .helpers import run_stream

pytestmark = pytest.mark.skipif(not COMPILED, reason="Cython kernel not built")


def run_both(profile, data):
    out = {}
    for impl in ("python", "cython"):
        c, trace = run_stream(profile, data, impl)
        k = c.kernel
        out[impl] = dict(trace=trace, events=c.events, faults=[(f.reason, f.t_us) for f in c.supervisor.faults],
                         counters=(k.frames, k.crc_errors, k.length_errors, k.garbage_bytes, k.seq_gaps,
                                   k.frames_lost), state=c.machine.state, deliveries=c.supervisor.deliveries)
    return out["python"], out["cython"]


def assert_same(py, cy):
    assert py["trace"].keys() == cy["trace"].keys()
    for name in py["trace"]:
        np.testing.assert_array_equal(py["trace"][name], cy["trace"][name], err_msg=name)
    for key in ("events", "faults", "counters", "state", "deliveries"):
        assert py[key] == cy[key], key


def test_codes_match_the_compiled_enums():
    from fescontrol._kernel import CODE_TABLE
    for enum_name in ("Phase", "Event", "Fault", "Ret"):
        enum = getattr(codes, enum_name)
        for name, value in CODE_TABLE[enum_name].items():
            assert enum[name] == value, f"{enum_name}.{name}"
    from fescontrol.drivers import sensor_protocol as sp
    from fescontrol import _kernel_py as kp
    const = CODE_TABLE["constants"]
    assert const["FRAME_LEN"] == sp.FRAME_LEN and const["PAYLOAD_LEN"] == sp.PAYLOAD_LEN
    assert const["BUF_BYTES"] == kp.INPUT_BUFFER_BYTES and const["QUEUE_LEN"] == kp.EVENT_QUEUE_LEN
    assert const["FLAG_HEEL_FAULT"] == sp.FLAG_HEEL_FAULT and const["FLAG_IMU_SATURATED"] == sp.FLAG_IMU_SATURATED


@pytest.mark.parametrize("base", ["default", "pace_heel", "walkaide_tilt", "combined"])
def test_walk_identical(base):
    rng = np.random.default_rng(7)
    heel = heel_walk(30) + rng.normal(0, 4, 3200).clip(0)
    t = np.arange(len(heel)) / 100
    gyro = -300 * np.sin(2 * np.pi * t) * (heel < 50) + rng.normal(0, 10, len(t))
    py, cy = run_both(profile_with(base), stream(heel, gyro))
    assert len(py["events"]) > 50
    assert_same(py, cy)


segment = st.tuples(st.integers(1, 80), st.floats(0, 900), st.floats(-500, 500))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(segment, min_size=1, max_size=30),
       base=st.sampled_from(["default", "pace_heel", "walkaide_tilt", "combined"]),
       cutoff=st.sampled_from(["ramp_down", "zero"]),
       garbage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=40)), max_size=4),
       drops=st.lists(st.integers(0, 2000), max_size=6))
def test_random_streams_identical(segments, base, cutoff, garbage, drops):
    heel = np.concatenate([np.full(n, h) for n, h, _ in segments])
    gyro = np.concatenate([np.full(n, g) for n, _, g in segments])
    data = bytearray(stream(heel, gyro, drop=tuple(d for d in drops if d < len(heel))))
    for pos, junk in garbage:
        pos %= len(data) + 1
        data[pos:pos] = junk
    profile = profile_with(base, envelope={"cutoff": cutoff, "max_stim_ms": 600, "ramp_up_ms": 100,
                                           "ramp_down_ms": 100})
    py, cy = run_both(profile, bytes(data))
    assert_same(py, cy)
