"""The gait state machine: the table, deliberate handling of invalid triggers, fault latch."""
from __future__ import annotations

import pytest
from transitions import MachineError

from fescontrol.kernel import PyKernel
from fescontrol.core.codes import Event, Fault, Phase
from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.machine.gait import (GAIT_EVENTS, TRANSITIONS, GaitMachine, GaitState, diagram_dot,
                                     write_diagram)

S = GaitState


class RecordingKernel(PyKernel):
    """The real pure-Python kernel, also keeping the commands the machine gave it."""

    def __init__(self):
        super().__init__(load_profile(bundled_profile_path("default")))
        self.phases: list[tuple[int, int]] = []
        self.detection: list[bool] = []

    def set_phase(self, phase, hold_limit_us=0):
        self.phases.append((int(phase), int(hold_limit_us)))
        super().set_phase(phase, hold_limit_us)

    def set_detection(self, enabled):
        self.detection.append(bool(enabled))
        super().set_detection(enabled)


@pytest.fixture
def machine():
    return GaitMachine(RecordingKernel(), extension_ms=150)


def test_one_stride(machine):
    k = machine.kernel
    machine.start()
    assert machine.state == S.STANCE and k.detection == [True]
    for trigger, state, phase in (("heel_off", S.RAMP_UP, (Phase.RISE, 0)),
                                  ("ramp_up_done", S.SWING, (Phase.HOLD, 0)),
                                  ("heel_strike", S.EXTENSION, (Phase.HOLD, 150_000)),
                                  ("hold_done", S.RAMP_DOWN, (Phase.FALL, 0)),
                                  ("ramp_down_done", S.STANCE, None)):
        machine.trigger(trigger)
        assert machine.state == state
        if phase:
            assert k.phases[-1] == phase


def test_zero_extension_still_ends_the_hold():
    m = GaitMachine(RecordingKernel(), extension_ms=0)
    m.start()
    m.trigger("heel_off")
    m.trigger("heel_strike")
    assert m.kernel.phases[-1] == (Phase.HOLD, 1)


def test_no_shortcut_into_stimulating_states(machine):
    for state in S:
        assert not hasattr(machine, f"to_{state.value}")


@pytest.mark.parametrize("state", [S.STANDBY, S.PAUSED, S.FAULT])
def test_gait_events_never_start_stimulation_when_not_walking(state):
    m = GaitMachine(RecordingKernel(), extension_ms=100)
    if state == S.PAUSED:
        m.start()
        m.pause()
    elif state == S.FAULT:
        m.enter_fault(Fault.SENSOR_STALE)
    rise_before = m.kernel.phases.count((Phase.RISE, 0))
    for event in GAIT_EVENTS:
        m.trigger(event)
        assert m.state == state
    assert m.kernel.phases.count((Phase.RISE, 0)) == rise_before
    assert m.ignored == len(GAIT_EVENTS)


def test_invalid_user_commands_raise_and_change_nothing(machine):
    machine.start()
    with pytest.raises(MachineError):
        machine.resume()
    with pytest.raises(MachineError):
        machine.start()
    assert machine.state == S.STANCE
    assert machine.kernel.fault == 0


def test_fault_is_latched_until_cleared(machine):
    machine.start()
    machine.trigger("heel_off")
    machine.enter_fault(Fault.SEQUENCE_GAP)
    assert machine.state == S.FAULT and machine.kernel.fault == Fault.SEQUENCE_GAP
    assert machine.kernel.phase == Phase.OFF
    for trigger in ("start", "resume"):
        with pytest.raises(MachineError):
            machine.trigger(trigger)
    assert machine.state == S.FAULT
    machine.fault_cleared()
    assert machine.state == S.STANDBY


def test_pause_and_stop_ramp_down_and_disable_detection(machine):
    machine.start()
    machine.trigger("heel_off")
    machine.pause()
    assert machine.kernel.phases[-1] == (Phase.FALL, 0) and machine.kernel.detection[-1] is False
    machine.resume()
    assert machine.kernel.detection[-1] is True
    machine.trigger("heel_off")
    machine.stop()
    assert machine.state == S.STANDBY and machine.kernel.phases[-1] == (Phase.FALL, 0)


def test_exception_in_a_callback_forces_output_off():
    class Broken(RecordingKernel):
        def set_phase(self, phase, hold_limit_us=0):
            if phase == Phase.RISE:
                raise RuntimeError("boom")
            super().set_phase(phase, hold_limit_us)


    m = GaitMachine(Broken(), extension_ms=100)
    m.start()
    with pytest.raises(RuntimeError):
        m.trigger("heel_off")
    assert m.kernel.fault == Fault.EXCEPTION
    assert m.kernel.phase == Phase.OFF and m.kernel.current_ma == 0.0


def test_kernel_event_mapping(machine):
    machine.start()
    assert machine.on_kernel_event(Event.HEEL_OFF) == "heel_off"
    assert machine.state == S.RAMP_UP
    assert machine.on_kernel_event(Event.MAX_STIM) == "timeout"
    assert machine.state == S.RAMP_DOWN


def test_diagram_dot_has_every_transition(tmp_path):
    dot = diagram_dot()
    edges = sum(len(src) if isinstance(src, list) else 1 for _, src, _ in TRANSITIONS)
    assert dot.count("->") == edges
    out = write_diagram(str(tmp_path / "g.png"))
    assert out.endswith((".png", ".dot"))
    assert (tmp_path / out.split("/")[-1]).stat().st_size > 100


# ----- programmed modes: training and test burst ------------------------------------------------

class FakeProgram:
    """A BurstProgram whose answers the test sets."""

    def __init__(self, hold_us=2_000_000, rest_us=1_500_000, time_left=True, fits=True):
        self.hold_us, self.rest = hold_us, rest_us
        self.left, self.fits = time_left, fits

    def plateau_hold_us(self):
        return self.hold_us

    def rest_us(self, now_us):
        return self.rest

    def time_left(self, now_us):
        return self.left

    def burst_fits(self, now_us):
        return self.fits


def test_training_cycle_and_its_end(machine):
    k, prog = machine.kernel, FakeProgram()
    machine.start_training(prog)
    assert machine.state == S.TRAINING_RAMP_UP and k.phases[-1] == (Phase.RISE, 0) and k.detection[-1] is False
    for trigger, state, phase in (("ramp_up_done", S.TRAINING_ON, (Phase.HOLD, 2_000_000)),
                                  ("hold_done", S.TRAINING_RAMP_DOWN, (Phase.FALL, 0)),
                                  ("ramp_down_done", S.TRAINING_REST, (Phase.HOLD, 1_500_000)),
                                  ("hold_done", S.TRAINING_RAMP_UP, (Phase.RISE, 0)),
                                  ("timeout", S.TRAINING_RAMP_DOWN, (Phase.FALL, 0))):
        machine.trigger(trigger)
        assert machine.state == state and k.phases[-1] == phase
        assert machine.stimulating == (state != S.TRAINING_REST)
    prog.left = False  # no time for another rest: the session ends after this ramp down
    machine.trigger("ramp_down_done")
    assert machine.state == S.STANDBY and machine.program is None


def test_training_ends_from_rest_when_no_burst_fits(machine):
    prog = FakeProgram(fits=False)
    machine.start_training(prog)
    for trigger in ("ramp_up_done", "hold_done", "ramp_down_done"):
        machine.trigger(trigger)
    assert machine.state == S.TRAINING_REST
    machine.trigger("hold_done")
    assert machine.state == S.STANDBY


def test_gait_events_are_ignored_in_programmed_modes(machine):
    machine.start_training(FakeProgram())
    machine.trigger("ramp_up_done")
    ignored = machine.ignored
    machine.trigger("heel_off")
    machine.trigger("heel_strike")
    assert machine.state == S.TRAINING_ON and machine.ignored == ignored + 2
    with pytest.raises(MachineError):
        machine.pause()  # training has no pause
    machine.stop()
    assert machine.state == S.STANDBY and machine.kernel.phases[-1] == (Phase.FALL, 0)


def test_test_burst_is_one_burst(machine):
    k = machine.kernel
    machine.start_test(FakeProgram(hold_us=500_000, time_left=False, fits=False))
    assert machine.state == S.TEST_RAMP_UP and k.detection[-1] is False
    machine.trigger("ramp_up_done")
    assert machine.state == S.TEST_ON and k.phases[-1] == (Phase.HOLD, 500_000)
    machine.trigger("hold_done")
    machine.trigger("ramp_down_done")
    assert machine.state == S.STANDBY
    machine.start_test(FakeProgram())
    machine.trigger("timeout")
    assert machine.state == S.TEST_RAMP_DOWN
    machine.enter_fault(Fault.STIMULATOR)
    assert machine.state == S.FAULT and k.current_ma == 0.0 and machine.program is None


def test_programmed_modes_start_only_from_standby_with_a_program(machine):
    machine.start()
    with pytest.raises(MachineError):
        machine.start_training(FakeProgram())
    with pytest.raises(MachineError):
        machine.start_test(FakeProgram())
    machine.stop()
    with pytest.raises(ValueError):
        machine.start_training()
    assert machine.kernel.fault == Fault.EXCEPTION  # a broken call latches, never stimulates
