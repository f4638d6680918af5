"""Safety: hypothesis invariants over random gait and profiles, and one test per rule.

Every rule below has a test that fails when the rule is removed from the kernel,
the machine or the supervisor.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.core import limits
from fescontrol.core.codes import Fault, Phase
from fescontrol.loop.controller import Controller
from fescontrol.machine.gait import GaitState
from fescontrol.core.profile import ProfileError, profile_from_dict

from .conftest import heel_walk, profile_with, stream
from .helpers import bursts, run_stream

# ----- random valid profiles and random sensor sequences ----------------------------------


@st.composite
def profiles(draw):
    amplitude = draw(st.floats(1, limits.AMPLITUDE_MAX_MA))
    pulse_width = draw(st.integers(limits.PULSE_WIDTH_MIN_US, limits.PULSE_WIDTH_MAX_US))
    assume(amplitude * pulse_width / 1000 <= limits.CHARGE_PER_PHASE_MAX_UC)
    max_stim = draw(st.integers(100, limits.MAX_STIM_MS_MAX))
    ramp_up = draw(st.integers(0, max_stim // 2))
    ramp_down = draw(st.integers(0, max_stim - ramp_up))
    patient_max = draw(st.floats(0.5, amplitude))
    data = {
        "stimulation": {"amplitude_ma": amplitude, "pulse_width_us": pulse_width,
                        "frequency_hz": draw(st.floats(10, 100))},
        "envelope": {"ramp_up_ms": ramp_up, "ramp_down_ms": ramp_down, "max_stim_ms": max_stim,
                     "extension_ms": draw(st.integers(0, limits.EXTENSION_MS_MAX)),
                     "cutoff": draw(st.sampled_from(["ramp_down", "zero"]))},
        "trigger": {"mode": draw(st.sampled_from(["heel", "tilt", "heel+tilt"])),
                    "heel": {"debounce_ms": draw(st.integers(0, 50))},
                    "tilt": {"onset_rate_dps": draw(st.floats(10, 200)), "min_stance_ms": draw(st.integers(0, 300))}},
        "patient": {"amplitude_min_ma": 0.0, "amplitude_max_ma": patient_max},
        "device": {"max_missing_frames": draw(st.integers(0, 20)), "stale_ms": draw(st.integers(30, 200))},
    }
    try:
        return profile_from_dict(data)
    except ProfileError:
        assume(False)


segments = st.lists(st.tuples(st.integers(1, 150), st.floats(0, 900), st.floats(-600, 600)),
                    min_size=1, max_size=40)


def gait_from(segs):
    heel = np.concatenate([np.full(n, h) for n, h, _ in segs])
    gyro = np.concatenate([np.full(n, g) for n, _, g in segs])
    return heel, gyro


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(profile=profiles(), segs=segments, drops=st.lists(st.integers(0, 6000), max_size=5))
def test_output_never_above_amplitude_or_caps(profile, segs, drops):
    heel, gyro = gait_from(segs)
    c, tr = run_stream(profile, stream(heel, gyro, drop=tuple(drops)))
    assert (tr["current_ma"] >= 0).all()
    assert (tr["current_ma"] <= profile.patient.amplitude_max_ma).all()
    assert (tr["current_ma"] <= profile.stimulation.amplitude_ma).all()
    assert (tr["current_ma"] <= limits.AMPLITUDE_MAX_MA).all()
    assert (tr["level"] <= 1.0).all()


@SETTINGS
@given(profile=profiles(), segs=segments)
def test_no_burst_longer_than_max_stim(profile, segs):
    heel, gyro = gait_from(segs)
    c, tr = run_stream(profile, stream(heel, gyro))
    for first, last in bursts(tr):
        assert tr["t_us"][last] - tr["t_us"][first] < profile.envelope.max_stim_ms * 1000


@SETTINGS
@given(profile=profiles(), segs=segments)
def test_ramps_never_steeper_than_configured(profile, segs):
    heel, gyro = gait_from(segs)
    c, tr = run_stream(profile, stream(heel, gyro))
    level, t = tr["level"], tr["t_us"]
    dt = np.diff(t).astype(float)
    d = np.diff(level)
    up, down = profile.envelope.ramp_up_ms * 1000, profile.envelope.ramp_down_ms * 1000
    if up:
        assert (d <= dt / up + 1e-12).all()
    if down:
        falls = (d < 0) & (level[1:] > 0)  # a drop to exactly zero is the cut-off or a fault
        assert (-d[falls] <= dt[falls] / down + 1e-12).all()


@SETTINGS
@given(profile=profiles(), segs=segments, fault_at=st.integers(0, 3000), reason=st.sampled_from(list(Fault)[1:]))
def test_always_zero_after_a_fault_until_cleared(profile, segs, fault_at, reason):
    heel, gyro = gait_from(segs)
    data = stream(heel, gyro)
    cut = min(fault_at, len(heel)) * sp.FRAME_LEN
    c, tr1 = run_stream(profile, data[:cut])
    c.supervisor.latch(reason, "test")
    _, tr2 = run_stream(profile, data[cut:] + stream(heel_walk(5), -np.zeros(700), first_seq=len(heel),
                                                  t0_us=1_000_000 + len(heel) * 10_000), controller=c)
    assert c.machine.state == GaitState.FAULT
    assert (tr2["current_ma"] == 0).all()
    assert c.supervisor.fault.reason != Fault.NONE


# ----- one test per rule -------------------------------------------------------------------

def walking_then(profile, tail: bytes, strides: int = 3, impl: str = "auto"):
    """Walk a few strides, stop mid-swing, then feed ``tail``; returns (controller, trace, n_head)."""
    heel = heel_walk(strides, standing_s=1.0)[:-100]
    heel = np.concatenate([heel, np.zeros(20)])  # mid-swing: stimulating
    head = stream(heel, np.zeros(len(heel)))
    c, tr = run_stream(profile, head, impl)
    assert tr["current_ma"][-1] > 0, "the test must start mid-burst"
    _, tr2 = run_stream(profile, tail, controller=c)
    return c, tr2, len(heel)


def tail_frames(n_head, heel_value=0.0, count=10, *, seq_offset=0, ts_offset_us=0, flags_or=0, rate=100.0):
    return stream(np.full(count, heel_value), np.zeros(count), first_seq=n_head + seq_offset,
                  t0_us=1_000_000 + int(n_head * 1e6 / rate) + ts_offset_us, flags_or=flags_or)


def assert_faulted_now(c, tr2, reason):
    assert c.supervisor.fault is not None and c.supervisor.fault.reason == reason
    assert tr2["current_ma"][0] == 0.0, "output must be zero on the very sample that faulted"
    assert (tr2["current_ma"] == 0).all()
    assert c.machine.state == GaitState.FAULT


def test_sequence_gap_beyond_limit_faults(default_profile, kernel_impl):
    n = default_profile.device.max_missing_frames
    c, tr2, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    tail = tail_frames(n_head, seq_offset=n + 1, ts_offset_us=(n + 1) * 10_000)
    _, tr2 = run_stream(default_profile, tail, controller=c)
    assert_faulted_now(c, tr2, Fault.SEQUENCE_GAP)


def test_sequence_gap_within_limit_is_tolerated(default_profile):
    n = default_profile.device.max_missing_frames
    c, tr2, n_head = walking_then(default_profile, b"")
    _, tr2 = run_stream(default_profile, tail_frames(n_head, seq_offset=n, ts_offset_us=n * 10_000), controller=c)
    assert c.supervisor.fault is None and tr2["current_ma"][0] > 0


@pytest.mark.parametrize("jump_us", [2_000_000, -500_000, -10_000])
def test_clock_jump_faults(default_profile, jump_us, kernel_impl):
    c, _, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    _, tr2 = run_stream(default_profile, tail_frames(n_head, ts_offset_us=jump_us), controller=c)
    assert_faulted_now(c, tr2, Fault.CLOCK_JUMP)


def test_impossible_content_with_good_crc_faults(default_profile, kernel_impl):
    c, _, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    frame = sp.frame_from_units(n_head, 1_000_000 + n_head * 10_000, heel_n=0.0,
                                acc_ms2=(0, 0, 9.8), gyro_dps=(0, 0, 0))
    frame.version = 7
    _, tr2 = run_stream(default_profile, sp.encode_frame(frame) + tail_frames(n_head + 1), controller=c)
    assert_faulted_now(c, tr2, Fault.PARSE_ERROR)


@pytest.mark.parametrize("flags_or, reason, base", [
    (sp.FLAG_HEEL_FAULT, Fault.HEEL_SENSOR_FAULT, "default"),
    (sp.FLAG_IMU_SATURATED, Fault.IMU_SATURATED, "combined"),
])
def test_sensor_status_flags_fault(flags_or, reason, base, kernel_impl):
    profile = profile_with(base)
    heel = heel_walk(4)
    t = np.arange(len(heel)) / 100
    gyro = np.where(heel < 50, -200 * np.sin(2 * np.pi * (t % 1 - 0.62) / 0.38), 0)
    n = len(heel)
    data = stream(heel, gyro) + stream(np.full(5, 0.0), np.zeros(5), first_seq=n, t0_us=1_000_000 + n * 10_000,
                                       flags_or=flags_or)
    c, tr = run_stream(profile, data, kernel_impl)
    assert c.supervisor.fault.reason == reason
    assert (tr["current_ma"][n:] == 0).all()


def test_channel_missing_faults(kernel_impl):
    tilt = profile_with("walkaide_tilt")
    c, tr = run_stream(tilt, stream(heel_walk(2), None), kernel_impl)  # heel only, no IMU
    assert c.supervisor.fault.reason == Fault.CHANNEL_MISSING
    assert tr["fault"][0] == Fault.CHANNEL_MISSING and (tr["current_ma"] == 0).all()


def test_stuck_heel_sensor_faults_when_frozen_under_load(default_profile, kernel_impl):
    stuck_s = default_profile.trigger.heel.stuck_ms / 1000
    heel = np.concatenate([heel_walk(3), np.full(int((stuck_s + 1) * 100), 500.0)])
    c, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert c.supervisor.fault.reason == Fault.HEEL_STUCK
    i = int(np.flatnonzero(tr["fault"])[0])
    assert tr["current_ma"][i:].max() == 0.0


def test_heel_frozen_unloaded_is_no_contact_not_a_fault(default_profile, kernel_impl):
    """An unloaded heel sensor reads a constant (sitting, forefoot walking): the device waits,
    says why, and stimulates again once the heel loads."""
    stuck_s = default_profile.trigger.heel.stuck_ms / 1000
    heel = np.concatenate([heel_walk(3), np.full(int((stuck_s + 5) * 100), 0.0)])
    c, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel))), kernel_impl)
    assert c.supervisor.fault is None
    assert c.waiting_reason.startswith("no heel contact")
    max_stim_n = default_profile.envelope.max_stim_ms // 10
    assert tr["current_ma"][len(heel_walk(3)) + max_stim_n + 20:].max() == 0.0  # heel-off burst ended
    _, tr2 = run_stream(default_profile, stream(heel_walk(3), np.zeros(len(heel_walk(3))), first_seq=len(heel),
                                                 t0_us=1_000_000 + len(heel) * 10_000), controller=c)
    assert c.supervisor.fault is None and c.waiting_reason == ""
    assert tr2["current_ma"].max() > 0


def test_heel_frozen_through_imu_strides_faults(kernel_impl):
    """heel+tilt: a heel reading that stays frozen while the IMU sees the foot stride is a broken
    sensor, even at the unloaded level."""
    profile = profile_with("combined")
    n = 1000
    t = np.arange(n) / 100
    u = ((t % 1.0) - 0.6) / 0.4                     # 0..1 over the swing of each 1 s stride
    pitch = np.where(u >= 0, -200 * np.sin(2 * np.pi * u), 0.0)   # push-off (toes down), swing (up)
    pitch[(u < 0) & (u > -0.04)] = -60.0           # the heel-strike dip that ends each swing
    pitch[:100] = 0.0
    gyro = -pitch                                   # toe-up rate = -gyro y
    heel = np.concatenate([heel_walk(1)[:100], np.zeros(n - 100)])
    c, tr = run_stream(profile, stream(heel, gyro), kernel_impl)
    assert c.supervisor.fault is not None and c.supervisor.fault.reason == Fault.HEEL_STUCK
    assert c.kernel.heel_frozen_strides >= profile.trigger.heel.stuck_imu_strides


def test_link_errors_fault(default_profile, kernel_impl):
    c, _, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    limit = default_profile.device.max_missing_frames
    bad = bytearray(tail_frames(n_head, count=limit + 1))
    for k in range(limit + 1):
        bad[k * sp.FRAME_LEN + 12] ^= 0xFF  # corrupt a payload byte: CRC no longer matches
    _, tr2 = run_stream(default_profile, bytes(bad) + tail_frames(n_head + limit + 1), controller=c)
    assert c.supervisor.fault.reason == Fault.LINK_ERRORS
    assert (tr2["current_ma"] == 0).all()


def test_buffer_overrun_faults(default_profile, kernel_impl):
    c = Controller(default_profile, implementation=kernel_impl)
    c.start()
    big = stream(heel_walk(30), np.zeros(3200))
    assert len(big) > 65536
    ret = c.kernel.feed(big)
    c.handle(ret)
    assert c.supervisor.fault.reason == Fault.BUFFER_OVERRUN and c.kernel.current_ma == 0.0


def test_max_stim_cutoff_ramp_down_and_zero(kernel_impl):
    for cutoff in ("ramp_down", "zero"):
        profile = profile_with("default", envelope={"max_stim_ms": 800, "cutoff": cutoff})
        heel = np.concatenate([np.full(100, 500.0), np.zeros(400), np.full(100, 500.0)])  # 4 s heel-off
        c, tr = run_stream(profile, stream(heel, np.zeros(len(heel))), kernel_impl)
        (first, last), = bursts(tr)
        assert tr["t_us"][last] - tr["t_us"][first] < 800_000
        assert tr["t_us"][last] - tr["t_us"][first] >= 700_000
        assert any(e.event == "timeout" for e in c.events)
        if cutoff == "zero":
            assert tr["level"][last] == 1.0  # dropped straight from the plateau
        else:
            assert tr["level"][last] < 0.1   # ramped down in time
        assert c.supervisor.fault is None  # the cut-off is not a fault: walking goes on


def test_output_outside_limits_is_refused_not_clamped(default_profile):
    c = Controller(default_profile, implementation="python")
    sent = []
    c.supervisor._send = lambda ma: sent.append(ma)  # observe what would reach the stimulator
    c.kernel.current_ma = default_profile.stimulation.amplitude_ma + 0.5
    c.kernel.deliver_due = 1
    c.handle(0)
    assert sent == []
    assert c.supervisor.fault.reason == Fault.OUTPUT_LIMIT
    assert c.kernel.current_ma == 0.0
    assert c.supervisor.check_output(10.0, 300) == "current asked for while a fault is latched"
    fresh = Controller(default_profile, implementation="python").supervisor
    for bad in (float("nan"), -1.0, 1e9):
        assert fresh.check_output(bad, 300)
    assert fresh.check_output(10.0, 600)
    assert fresh.check_output(100.0, 300)  # above this profile's 30 mA
    assert fresh.check_output(10.0, 300) is None


def test_exception_in_control_path_latches_fault(default_profile, kernel_impl):
    def broken(event):
        if event.event == "heel_off":
            raise RuntimeError("listener bug")

    c = Controller(default_profile, implementation=kernel_impl, trace_capacity=4096)
    c.event_listeners.append(broken)
    c.start()
    _, tr = run_stream(default_profile, stream(heel_walk(3), np.zeros(500)), controller=c)
    assert c.supervisor.fault.reason == Fault.EXCEPTION
    assert "listener bug" in c.supervisor.fault.detail
    assert tr["current_ma"].max() == 0.0


def test_fault_clears_only_by_a_named_person_then_walking_resumes(default_profile, kernel_impl):
    c, _, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    c.emergency_stop("test")
    with pytest.raises(ValueError):
        c.supervisor.clear("")
    assert c.machine.state == GaitState.FAULT
    c.supervisor.clear("orthotist A. Jones", "electrodes checked")
    assert c.machine.state == GaitState.STANDBY and c.kernel.fault == 0
    c.start()
    heel = heel_walk(4)
    _, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel)), first_seq=n_head + 50,
                                               t0_us=1_000_000 + (n_head + 50) * 10_000), controller=c)
    assert tr["current_ma"].max() > 0
    assert c.supervisor.fault is None


def test_amplitude_change_waits_for_zero_output(default_profile, kernel_impl):
    c, _, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    before = c.kernel.current_ma
    c.kernel.request_amplitude(default_profile.patient.amplitude_min_ma)
    _, tr = run_stream(default_profile, tail_frames(n_head, heel_value=0.0, count=3), controller=c)
    assert tr["current_ma"][0] == pytest.approx(before)  # no jump mid-burst
    with pytest.raises(ValueError):
        c.kernel.request_amplitude(default_profile.stimulation.amplitude_ma + 1)


def test_pause_ramps_down_and_ignores_steps(default_profile, kernel_impl):
    c, _, n_head = walking_then(default_profile, b"", impl=kernel_impl)
    c.machine.pause()
    heel = heel_walk(3)
    _, tr = run_stream(default_profile, stream(heel, np.zeros(len(heel)), first_seq=n_head,
                                               t0_us=1_000_000 + n_head * 10_000), controller=c)
    level = tr["level"]
    assert (np.diff(level) <= 0).all() and level[-1] == 0.0
    assert c.machine.state == GaitState.PAUSED
    assert tr["phase"][-1] == Phase.FALL
