"""Table dispatch of the gait machine (batch replays) is the ``transitions`` dispatch (the
device's): same states, kernel commands, outputs and counters, on real recordings and on
hypothesis-generated trigger sequences (gait events, user commands, faults, programmed modes,
guards, a callback that raises)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.kernel import PyKernel
from fescontrol.core.codes import Fault
from fescontrol.loop.controller import Controller, TraceCollector
from fescontrol.machine.gait import (GAIT_EVENTS, TRANSITIONS, USER_COMMANDS, GaitMachine, GaitState,
                                   dispatch_table)
from fescontrol.core.profile import bundled_profile_path, default_profile_for, load_profile
from fescontrol.sim.faults import apply_sensor_faults, parse_fault
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.run import load_any
from fescontrol.sim.sources import list_bundled

pytestmark = pytest.mark.timeout(300)


class CommandKernel(PyKernel):
    """The real pure-Python kernel, also keeping every command the machine gave it."""

    def __init__(self):
        super().__init__(load_profile(bundled_profile_path("default")))
        self.commands: list[tuple] = []

    def set_phase(self, phase, hold_limit_us=0):
        self.commands.append(("phase", int(phase), int(hold_limit_us)))
        super().set_phase(phase, hold_limit_us)

    def set_detection(self, enabled):
        self.commands.append(("detection", bool(enabled)))
        super().set_detection(enabled)

    def latch_fault(self, code):
        self.commands.append(("fault", int(code)))
        super().latch_fault(code)


class ScriptedProgram:
    """A BurstProgram whose answers come from a drawn script (the same for both machines);
    ``plateau_hold_us`` raises when the script says so (an exception inside a callback)."""

    def __init__(self, answers: list[bool], hold_us: int, broken: bool):
        self.answers, self.k = answers, 0
        self.hold_us, self.broken = hold_us, broken

    def _next(self) -> bool:
        self.k += 1
        return self.answers[(self.k - 1) % len(self.answers)]

    def plateau_hold_us(self) -> int:
        if self.broken:
            raise ValueError("broken program")
        return self.hold_us

    def rest_us(self, now_us: int) -> int:
        return self.hold_us // 2 + 1

    def time_left(self, now_us: int) -> bool:
        return self._next()

    def burst_fits(self, now_us: int) -> bool:
        return self._next()


def _outcome(machine: GaitMachine, step) -> tuple:
    trigger, program = step
    try:
        if trigger == "kernel_fault":
            machine.enter_fault(Fault.SENSOR_STALE)
            result = None
        elif trigger in ("start_training", "start_test") and program is not None:
            result = machine.trigger(trigger, ScriptedProgram(*program))
        else:
            result = machine.trigger(trigger)
    except Exception as err:       # noqa: BLE001 -- the exception itself is what is compared
        result = (type(err).__name__, str(err))
    return (result, machine.state, machine.ignored, machine.transitions_done, machine.kernel.fault,
            tuple(machine.kernel.commands))


TRIGGERS = [*GAIT_EVENTS, *USER_COMMANDS, "fault", "kernel_fault", "no_such_trigger"]
programs = st.one_of(st.none(), st.tuples(st.lists(st.booleans(), min_size=1, max_size=6),
                                          st.integers(1, 400_000), st.booleans()))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), extension_ms=st.integers(0, 400))
def test_table_and_transitions_agree_on_any_trigger_sequence(data, extension_ms):
    """Mostly triggers that are valid in the present state (so long walks, training cycles
    and their guards are reached), some of anything (invalid commands, unknown names)."""
    ref = GaitMachine(CommandKernel(), extension_ms, dispatch="transitions")
    fast = GaitMachine(CommandKernel(), extension_ms, dispatch="table")
    assert fast.state == ref.state
    for _ in range(data.draw(st.integers(0, 80), label="steps")):
        valid = ref.machine.get_triggers(ref.state.name) or TRIGGERS
        trigger = data.draw(st.one_of(st.sampled_from(sorted(valid)), st.sampled_from(TRIGGERS))
                            if data.draw(st.integers(0, 4)) else st.sampled_from(TRIGGERS))
        step = (trigger, data.draw(programs))
        assert _outcome(fast, step) == _outcome(ref, step), step


def test_the_table_is_read_from_the_transitions_machine():
    """Every edge of TRANSITIONS is in the table, with its guard, and nothing else than the
    Machine's edges (the explicit no-op edges for ignored gait events included)."""
    table = dispatch_table()
    template = GaitMachine(CommandKernel(), 0)
    for trigger, event in template.machine.events.items():
        for source, edges in event.transitions.items():
            rows = table.events[trigger][GaitState[source]]
            assert [r[3] for r in rows] == [GaitState[t.dest] if t.dest else None for t in edges]
            assert [len(r[1]) for r in rows] == [len(t.conditions) for t in edges]
    for trigger, source, dest in TRANSITIONS:
        for s in (source if isinstance(source, list) else [source]):
            assert dest in [r[3] for r in table.events[trigger][s]]
    with pytest.raises(ValueError, match="dispatch 'fast'"):
        GaitMachine(CommandKernel(), 0, dispatch="fast")


def _replay(rec, profile, dispatch: str, faults=()):
    frames, _ = recording_stream(rec)
    chunks, _, _ = apply_sensor_faults(frames, rec.rate_hz, [parse_fault(f) for f in faults])
    c = Controller(profile, implementation="auto", trace_capacity=4096, dispatch=dispatch)
    col = TraceCollector()
    c.trace_sink = col
    c.start()
    c.feed(b"".join(chunks))
    c.finish()
    k, m = c.kernel, c.machine
    counters = (k.frames, k.crc_errors, k.garbage_bytes, k.seq_gaps, k.frames_lost, k.fault,
                c.supervisor.deliveries, m.ignored, m.transitions_done, m.state)
    return c.events, col.arrays(), counters, [(f.reason, f.detail, f.t_us) for f in c.supervisor.faults]


@pytest.mark.parametrize("name", list_bundled())
@pytest.mark.parametrize("faults", [(), ("crc@20:30", "drop@45:3"), ("stuck-heel@30",)])
def test_table_and_transitions_agree_on_real_recordings(name, faults):
    for side in ("left", "right"):
        rec = load_any(name, side)
        profile = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
        ev_t, tr_t, cnt_t, f_t = _replay(rec, profile, "transitions", faults)
        ev_f, tr_f, cnt_f, f_f = _replay(rec, profile, "table", faults)
        assert len(ev_t) > 20
        assert ev_f == ev_t
        assert cnt_f == cnt_t
        assert f_f == f_t
        assert tr_f.keys() == tr_t.keys()
        for key in tr_t:
            np.testing.assert_array_equal(tr_f[key], tr_t[key], err_msg=key)
