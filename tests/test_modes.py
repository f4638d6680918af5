"""Patient modes on a real controller: walk/pause/resume/stop, training, test burst, intensity.

Sensor bytes are synthetic (heel walk, seated stream) and run through the real kernel,
gait machine and safety supervisor; commands are applied between frames, as the live loop
does. Output is read from the kernel trace, sample by sample.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.loop.controller import Controller, TraceCollector
from fescontrol.machine.gait import GaitState
from fescontrol.session.modes import (BurstRecord, IntensityChange, IntensityControl, IntensityRefused, Mode,
                                      ModeChange, ModeError, PatientModes, restore_intensity, training_envelope)
from fescontrol.ui.patient_ui import seated_frames

from .conftest import heel_walk, profile_with, stream

RATE_HZ = 100.0
PERIOD_S = 1 / RATE_HZ


class FakeClock:
    """Monotonic seconds that a test moves by hand (the intensity rate limit reads it)."""

    def __init__(self):
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def walking_bytes(strides: int = 12, seed: int = 0) -> bytes:
    heel = heel_walk(strides, standing_s=1.0)
    heel = heel + np.random.default_rng(seed).normal(0, 3.0, len(heel)).clip(0)
    return stream(heel.clip(0))


def seated_bytes(seconds: float) -> bytes:
    return seated_frames(seconds, RATE_HZ, has_heel=True, has_imu=False).tobytes()


class Rig:
    """Controller + PatientModes fed frame by frame; records every mode record."""

    def __init__(self, profile, data: bytes, implementation: str = "auto", start_ma: float | None = None):
        self.c = Controller(profile, implementation=implementation, trace_capacity=4096)
        self.collector = TraceCollector()
        self.c.trace_sink = self.collector
        self.clock = FakeClock()
        self.records: list = []
        self.m = PatientModes(self.c, start_intensity_ma=start_ma, clock=self.clock, wall=lambda: 0.0,
                              recorders=[self.records.append])
        self.data = data
        self.pos = 0

    @property
    def frames_left(self) -> int:
        return (len(self.data) - self.pos) // sp.FRAME_LEN

    def feed(self, frames: int | None = None) -> None:
        n = self.frames_left if frames is None else min(frames, self.frames_left)
        end = self.pos + n * sp.FRAME_LEN
        self.c.feed(self.data[self.pos:end])
        self.pos = end
        self.m.poll()

    def feed_until(self, predicate, limit: int = 100_000) -> None:
        for _ in range(limit):
            if predicate() or not self.frames_left:
                return
            self.feed(1)

    def trace(self) -> dict:
        self.c.finish()
        return self.collector.arrays()

    def of(self, kind):
        return [r for r in self.records if isinstance(r, kind)]


def runs(on: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    edges = np.diff(on.astype(np.int8), prepend=0, append=0)
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def assert_ramps_down(trace, i0: int, amplitude_ma: float, ramp_down_ms: int) -> int:
    """From sample i0 on the output never rises, falls at most the ramp-down rate per sample
    (no jump to zero) and reaches zero within the ramp; returns the first zero index."""
    cur = trace["current_ma"][i0:]
    step_max = amplitude_ma * PERIOD_S * 1000 / ramp_down_ms + 1e-9
    zero = int(np.flatnonzero(cur == 0.0)[0])
    assert np.all(np.diff(cur[:zero + 1]) <= 1e-12), "output rose after pause/stop"
    assert np.all(-np.diff(cur[:zero + 1]) <= step_max), "output jumped down instead of ramping"
    assert zero <= ramp_down_ms / 1000 / PERIOD_S + 2
    return i0 + zero


# ----- walk -----------------------------------------------------------------------------------

def test_walk_counts_steps_and_stimulates_each(kernel_impl, default_profile):
    rig = Rig(default_profile, walking_bytes(10), kernel_impl)
    rig.feed(10)
    rig.m.walk()
    assert rig.m.mode == Mode.WALK
    rig.feed()
    tr = rig.trace()
    steps = rig.of(BurstRecord)
    assert 8 <= rig.m.steps == len(steps) <= 10
    assert len(runs(tr["current_ma"] > 0)) == len(steps)
    for b in steps:
        assert b.kind == "step" and b.complete and b.peak_ma == default_profile.start_amplitude_ma
        assert b.heel_off_us == b.onset_us and b.heel_strike_us is not None
        assert 0 < b.duration_ms <= default_profile.envelope.max_stim_ms
    assert tr["current_ma"].max() <= default_profile.patient.amplitude_max_ma


@pytest.mark.parametrize("command", ["pause", "stop"])
def test_pause_and_stop_mid_burst_ramp_down_and_never_leave_output_on(kernel_impl, default_profile, command):
    p = default_profile
    rig = Rig(p, walking_bytes(10), kernel_impl)
    rig.feed(10)
    rig.m.walk()
    rig.feed_until(lambda: rig.m.machine.state == GaitState.SWING)
    assert rig.c.kernel.current_ma > 0
    i0 = int(rig.c.kernel.frames)  # trace index of the next sample
    getattr(rig.m, command)()
    assert rig.m.mode == (Mode.PAUSED if command == "pause" else Mode.STANDBY)
    rig.feed()  # the rest of the walk: heel-offs keep coming
    tr = rig.trace()
    zero = assert_ramps_down(tr, i0, p.start_amplitude_ma, p.envelope.ramp_down_ms)
    assert np.all(tr["current_ma"][zero:] == 0.0), f"output came back on while {command}d"
    last = rig.of(BurstRecord)[-1]
    assert command in last.events and last.end_us == tr["t_us"][zero]
    modes = [r.mode for r in rig.of(ModeChange)]
    assert modes == [Mode.WALK, Mode.PAUSED if command == "pause" else Mode.STANDBY]


def test_resume_walks_again_and_stop_from_pause(kernel_impl, default_profile):
    rig = Rig(default_profile, walking_bytes(14), kernel_impl)
    rig.feed(10)
    rig.m.walk()
    rig.feed(400)
    steps_before_pause = rig.m.steps
    rig.m.pause()
    rig.feed(400)
    assert rig.m.steps - steps_before_pause <= 1  # at most the burst that was running
    paused_steps = rig.m.steps
    with pytest.raises(ModeError):
        rig.m.pause()
    with pytest.raises(ModeError):
        rig.m.walk()  # walk from pause is not a fresh start: resume it
    rig.m.resume()
    rig.feed(500)
    assert rig.m.steps >= paused_steps + 3
    rig.m.pause()
    rig.m.stop()
    assert rig.m.mode == Mode.STANDBY
    rig.feed()
    tr = rig.trace()
    assert tr["current_ma"][-200:].max() == 0.0
    with pytest.raises(ModeError, match="nothing to stop"):
        rig.m.stop()
    assert [r.mode for r in rig.of(ModeChange)] == [Mode.WALK, Mode.PAUSED, Mode.WALK, Mode.PAUSED,
                                                    Mode.STANDBY]


def test_walk_needs_sensor_data_and_no_fault(default_profile):
    rig = Rig(default_profile, walking_bytes(2))
    with pytest.raises(ModeError, match="no sensor data"):
        rig.m.walk()
    rig.feed(10)
    rig.m.emergency_stop("test")
    assert rig.m.mode == Mode.FAULT and rig.m.last_fault.code.name == "USER_STOP"
    with pytest.raises(ModeError, match="fault is latched"):
        rig.m.walk()
    with pytest.raises(ModeError, match="name of the person"):
        rig.m.clear_fault("  ")
    rig.m.clear_fault("Dr Test")
    assert rig.m.mode == Mode.STANDBY
    rig.feed(5)
    rig.m.walk()
    assert rig.m.mode == Mode.WALK


# ----- training ---------------------------------------------------------------------------------

TRAINING = {"on_s": 2.0, "off_s": 1.5, "ramp_up_ms": 400, "ramp_down_ms": 300, "session_min": 0.25}


def test_training_cycles_on_off_with_ramps_and_ends_by_itself(kernel_impl):
    p = profile_with(training=TRAINING)
    rig = Rig(p, seated_bytes(25), kernel_impl)
    rig.feed(20)
    start_us = int(rig.c.kernel.t_us)
    rig.m.train()
    assert rig.m.mode == Mode.TRAINING
    left = [rig.m.training_remaining_s()]
    while rig.m.mode == Mode.TRAINING and rig.frames_left:
        rig.feed(100)
        if rig.m.mode == Mode.TRAINING:
            left.append(rig.m.training_remaining_s())
    assert rig.m.mode == Mode.STANDBY and rig.m.last_training_done
    assert rig.of(ModeChange)[-1].cause == "training complete"
    assert left[0] == pytest.approx(15.0) and np.all(np.diff(left) < 0), "the countdown must run down"
    rig.feed()
    tr = rig.trace()
    t_s = (tr["t_us"] - start_us) / 1e6
    on = runs(tr["current_ma"] > 0)
    bursts = rig.of(BurstRecord)
    assert len(on) == len(bursts) == rig.m.counts["training"]
    # 15 s session, 2 s on + 1.5 s off: 4 whole contractions fit (the 5th would end at 16 s)
    assert len(on) == 4
    amp = p.start_amplitude_ma
    for k, (a, b) in enumerate(on):
        assert (b - a + 1) * PERIOD_S <= TRAINING["on_s"] + 1e-9, "a contraction outlasted on_s"
        assert t_s[b] <= 15.0
        rise = np.flatnonzero(tr["current_ma"][a:b + 1] >= amp)[0]
        assert rise * PERIOD_S == pytest.approx(TRAINING["ramp_up_ms"] / 1000, abs=2 * PERIOD_S)
        assert tr["current_ma"][a:b + 1].max() == amp
        assert np.all(np.diff(tr["current_ma"][a:a + rise + 1]) > 0)
        if k:
            rest_s = (a - on[k - 1][1] - 1) * PERIOD_S
            assert rest_s >= TRAINING["off_s"] - 1e-9
            assert rest_s <= TRAINING["off_s"] + 2 * PERIOD_S
    assert tr["current_ma"][on[-1][1] + 1:].max() == 0.0, "stimulation after the session ended"
    # the walking envelope is back for what comes next
    assert rig.m.envelope.name == "walking"


def test_training_stops_at_session_time_even_mid_rest(kernel_impl):
    # 10 s session: 2 contractions (0-2, 3.5-5.5), a third would end at 9 s, fits, a fourth not
    p = profile_with(training={**TRAINING, "session_min": 10 / 60})
    rig = Rig(p, seated_bytes(16), kernel_impl)
    rig.feed(5)
    t0 = rig.c.kernel.t_us
    rig.m.train()
    rig.feed_until(lambda: rig.m.mode != Mode.TRAINING)
    assert rig.m.mode == Mode.STANDBY
    assert (rig.c.kernel.t_us - t0) / 1e6 == pytest.approx(10.0, abs=2 * PERIOD_S)
    assert rig.m.counts["training"] == 3


def test_stop_training_mid_contraction_ramps_down(kernel_impl):
    p = profile_with(training=TRAINING)
    rig = Rig(p, seated_bytes(8), kernel_impl)
    rig.feed(5)
    rig.m.train()
    rig.feed_until(lambda: rig.m.machine.state == GaitState.TRAINING_ON)
    rig.feed(20)
    i0 = int(rig.c.kernel.frames)
    rig.m.stop()
    rig.feed()
    tr = rig.trace()
    zero = assert_ramps_down(tr, i0, p.start_amplitude_ma, TRAINING["ramp_down_ms"])
    assert tr["current_ma"][zero:].max() == 0.0
    assert rig.m.envelope.name == "walking"


def test_training_refuses_out_of_caps_and_when_not_in_standby(default_profile):
    from fescontrol.core.profile import Training
    with pytest.raises(ModeError, match="off_s"):
        training_envelope(Training.model_construct(on_s=5.0, off_s=0.2, ramp_up_ms=100, ramp_down_ms=100,
                                                   session_min=1.0))
    with pytest.raises(ModeError, match="on_s"):
        training_envelope(Training.model_construct(on_s=45.0, off_s=2.0, ramp_up_ms=100, ramp_down_ms=100,
                                                   session_min=1.0))
    rig = Rig(default_profile, walking_bytes(3))
    rig.feed(10)
    rig.m.walk()
    with pytest.raises(ModeError, match="stop first"):
        rig.m.train()
    with pytest.raises(ModeError, match="stop first"):
        rig.m.test_burst(800)


# ----- test burst -------------------------------------------------------------------------------

@pytest.mark.parametrize("duration_ms", [400, 800, 3000])
def test_test_burst_is_one_burst_within_its_time_limit(kernel_impl, default_profile, duration_ms):
    p = default_profile
    rig = Rig(p, seated_bytes(6), kernel_impl)
    rig.feed(10)
    rig.m.test_burst(duration_ms)
    assert rig.m.mode == Mode.TEST
    rig.feed()
    tr = rig.trace()
    on = runs(tr["current_ma"] > 0)
    assert len(on) == 1 and rig.m.counts["test"] == 1
    a, b = on[0]
    assert (b - a + 1) * PERIOD_S * 1000 <= duration_ms
    assert (b - a + 1) * PERIOD_S * 1000 >= duration_ms - p.envelope.ramp_down_ms - 6 * PERIOD_S * 1000
    assert tr["current_ma"].max() == p.start_amplitude_ma
    assert rig.m.mode == Mode.STANDBY and rig.of(ModeChange)[-1].cause == "test burst done"
    assert rig.of(BurstRecord)[0].kind == "test" and rig.m.envelope.name == "walking"


@pytest.mark.parametrize("duration_ms", [10, 3001, 60_000])
def test_test_burst_outside_its_limits_is_refused(default_profile, duration_ms):
    rig = Rig(default_profile, seated_bytes(1))
    rig.feed(10)
    with pytest.raises(ModeError, match="allowed"):
        rig.m.test_burst(duration_ms)
    assert rig.m.mode == Mode.STANDBY and not rig.records[1:]


# ----- intensity --------------------------------------------------------------------------------

def test_intensity_steps_within_bounds_and_step_size(default_profile):
    b = default_profile.patient  # 15..30 mA, 1 mA steps, 300 ms
    clock = FakeClock()
    ic = IntensityControl(b, 28.0, clock)
    levels = []
    for _ in range(5):
        clock.now_s += 1
        try:
            levels.append(ic.step(+1))
        except IntensityRefused as err:
            levels.append(str(err))
    assert levels[:2] == [29.0, 30.0] and all("highest" in x for x in levels[2:])
    for _ in range(20):
        clock.now_s += 1
        try:
            ic.step(-1)
        except IntensityRefused as err:
            assert "lowest" in str(err)
    assert ic.level_ma == b.amplitude_min_ma


def test_intensity_step_stops_at_the_bound_not_past_it():
    p = profile_with(patient={"amplitude_min_ma": 10, "amplitude_max_ma": 21, "step_ma": 2})
    ic = IntensityControl(p.patient, 20.0, FakeClock())
    assert ic.step(+1) == 21.0


def test_intensity_is_rate_limited(default_profile):
    clock = FakeClock()
    ic = IntensityControl(default_profile.patient, 20.0, clock)
    assert ic.step(+1) == 21.0
    clock.now_s += 0.1
    with pytest.raises(IntensityRefused, match="too quick"):
        ic.step(+1)
    assert ic.level_ma == 21.0
    clock.now_s += 0.21
    assert ic.step(+1) == 22.0


def test_intensity_change_mid_burst_applies_at_the_next_burst(kernel_impl, default_profile):
    rig = Rig(default_profile, walking_bytes(8), kernel_impl, start_ma=25.0)
    rig.feed(10)
    rig.m.walk()
    rig.feed_until(lambda: rig.m.machine.state == GaitState.SWING)
    i0 = int(rig.c.kernel.frames)
    rig.clock.now_s += 1
    assert rig.m.intensity_step(-1) == 24.0
    rig.feed()
    tr = rig.trace()
    on = runs(tr["current_ma"] > 0)
    first = next(r for r in on if r[0] <= i0 <= r[1])
    assert tr["current_ma"][first[0]:first[1] + 1].max() == 25.0
    assert np.all(tr["current_ma"][i0:first[1] + 1] <= 25.0)
    later = [r for r in on if r[0] > first[1]]
    assert later and all(tr["current_ma"][a:b + 1].max() == 24.0 for a, b in later)
    assert [r.level_ma for r in rig.of(IntensityChange)] == [25.0, 24.0]


COMMANDS = st.lists(st.one_of(
    st.tuples(st.just("feed"), st.integers(1, 120)),
    st.tuples(st.sampled_from(["walk", "pause", "resume", "stop", "up", "down", "test", "train"]),
              st.floats(0.0, 1.0))), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands=COMMANDS, start_ma=st.sampled_from([15.0, 22.0, 30.0]))
def test_output_never_above_bounds_and_never_jumps_mid_burst(commands, start_ma):
    """Random patient commands over a walk: the output stays within the patient's bounds and
    the profile amplitude, and within one burst the amplitude never changes (the envelope
    level times one amplitude, so a step is only the ramp)."""
    p = profile_with(training={**TRAINING, "session_min": 0.1})
    rig = Rig(p, walking_bytes(12, seed=3), start_ma=start_ma)
    rig.feed(5)
    for name, arg in commands:
        if name == "feed":
            rig.feed(arg)
            continue
        rig.clock.now_s += arg  # 0..1 s: some steps come too quickly
        try:
            if name in ("up", "down"):
                rig.m.intensity_step(1 if name == "up" else -1)
            elif name == "test":
                rig.m.test_burst(600)
            else:
                getattr(rig.m, {"train": "train"}.get(name, name))()
        except ModeError:
            pass
        b = p.patient
        assert b.amplitude_min_ma <= rig.m.intensity.level_ma <= b.amplitude_max_ma
    rig.feed(300)
    tr = rig.trace()
    cur, level = tr["current_ma"], tr["level"]
    assert cur.max(initial=0) <= min(p.patient.amplitude_max_ma, p.stimulation.amplitude_ma)
    assert np.all(np.isfinite(cur)) and cur.min(initial=0) >= 0
    for a, b in runs(cur > 0):
        amplitude = cur[a:b + 1] / level[a:b + 1]
        assert np.allclose(amplitude, amplitude[0], rtol=0, atol=1e-9), "amplitude changed mid-burst"
        assert p.patient.amplitude_min_ma - 1e-9 <= amplitude[0] <= p.patient.amplitude_max_ma + 1e-9
        # the level moves by at most one ramp step per sample: no jump up
        rise_max = PERIOD_S * 1000 / min(p.envelope.ramp_up_ms, TRAINING["ramp_up_ms"]) + 1e-9
        assert np.all(np.diff(level[a:b + 1]) <= rise_max)


# ----- remembered level ---------------------------------------------------------------------------

@pytest.mark.parametrize("remembered, expected", [(None, 30.0), (22.0, 22.0), (45.0, 30.0), (3.0, 15.0)])
def test_remembered_intensity_is_restored_within_bounds(default_profile, remembered, expected):
    level, note = restore_intensity(default_profile, remembered)
    assert level == expected
    if remembered is not None and remembered != expected:
        assert f"{remembered:g} mA" in note and f"starting at {expected:g} mA" in note


def test_restored_level_is_what_the_kernel_uses(kernel_impl, default_profile):
    rig = Rig(default_profile, walking_bytes(4), kernel_impl, start_ma=18.0)
    assert rig.c.kernel.amplitude_ma == 18.0
    rig.feed(10)
    rig.m.walk()
    rig.feed()
    tr = rig.trace()
    assert tr["current_ma"].max() == 18.0
    with pytest.raises(ModeError):
        rig.m.set_intensity(31.0)


def test_burst_stopped_during_its_ramp_up_records_the_current_it_reached(kernel_impl, default_profile):
    rig = Rig(default_profile, walking_bytes(4), kernel_impl)
    rig.feed(10)
    rig.m.walk()
    rig.feed_until(lambda: rig.m.machine.state == GaitState.RAMP_UP)
    rig.feed(6)
    rig.m.stop()
    rig.feed()
    tr = rig.trace()
    b = rig.of(BurstRecord)[-1]
    assert "stop" in b.events and b.complete
    assert 0 < b.peak_ma <= tr["current_ma"].max() < default_profile.start_amplitude_ma
