"""The learned onset delay (adaptive.onset_delay; fescontrol/machine/onset_delay.py, the gait
machine's DELAY state, docs/adaptive.md "The onset delay"): zero output after the push-off,
lengthened on a walker that tolerates it, backed off on one whose foot drops, never beyond its
bounds; logged per stride and replayed bit-identically."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.core import limits
from fescontrol.core.codes import Phase
from fescontrol.core.profile import (AdaptiveOnsetDelay, ProfileError, bundled_profile_path, load_profile,
                                     profile_from_dict)
from fescontrol.loop.controller import Controller, TraceCollector
from fescontrol.machine.gait import GaitMachine, GaitState
from fescontrol.machine.onset_delay import PUSH_STRIDES_MIN, OnsetDelayLearner, push_off_ms
from fescontrol.session.log import LogWriter, SessionLog
from fescontrol.session.modes import CommandRecord, PatientModes, replay_session
from fescontrol.sim.patient.adaptive import reference_target, with_adaptive
from fescontrol.sim.patient.closed_loop import closed_loop_replay
from fescontrol.sim.patient.params import BUNDLED_POPULATIONS, draw_population, load_population_spec
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.synthetic import Stand, Walk, synthesize

from tests.test_gait_machine import RecordingKernel

pytestmark = pytest.mark.timeout(180)

S = GaitState
SPEC = load_population_spec(BUNDLED_POPULATIONS["drop-foot"])
ADAPTIVE = load_profile(bundled_profile_path("adaptive"))
#: the section as measured in docs/adaptive.md (not in the bundled profile: see there)
ONSET_DELAY = {"max_ms": 100, "step_ms": 10, "lead_ms": 80, "lengthen_within_deg": 2, "lengthen_every_strides": 10,
               "back_off_beyond_deg": 6, "hold_strides": 20}
SECTION = {**ADAPTIVE.adaptive.model_dump(mode="json"), "onset_delay": ONSET_DELAY}
CFG = AdaptiveOnsetDelay(max_ms=100, step_ms=10, lead_ms=70, lengthen_within_deg=2, back_off_beyond_deg=6,
                         hold_strides=20, lengthen_every_strides=1)


@pytest.fixture(scope="module")
def walk():
    return synthesize([Stand(2), Walk(20, 105), Stand(2)], seed=4)


@pytest.fixture(scope="module")
def profile(walk):
    return with_adaptive(ADAPTIVE, {**SECTION, "target": reference_target(walk, ADAPTIVE, margin_deg=4.0)})


def _frames(rec) -> bytes:
    frames, _ = recording_stream(rec)
    return frames.tobytes()


# ----- the gait machine's DELAY ----------------------------------------------------------------------

def test_a_delayed_heel_off_holds_zero_then_ramps():
    m = GaitMachine(RecordingKernel(), extension_ms=150)
    k = m.kernel
    m.start()
    m.onset_delay_us = 40_000
    m.trigger("heel_off")
    assert m.state == S.DELAY and k.phases[-1] == (Phase.HOLD, 40_000) and not m.stimulating
    m.trigger("heel_off")                       # a second onset changes nothing
    assert m.state == S.DELAY
    m.trigger("hold_done")
    assert m.state == S.RAMP_UP and k.phases[-1] == (Phase.RISE, 0)


def test_a_heel_strike_in_the_delay_ends_the_stride_without_a_burst():
    for trigger in ("heel_strike", "timeout"):
        m = GaitMachine(RecordingKernel(), extension_ms=150)
        m.start()
        m.onset_delay_us = 40_000
        m.trigger("heel_off")
        m.trigger(trigger)
        assert m.state == S.STANCE and m.kernel.phases[-1] == (Phase.FALL, 0)


def test_without_a_delay_or_from_the_ramp_down_the_heel_off_ramps_at_once():
    m = GaitMachine(RecordingKernel(), extension_ms=150)
    m.start()
    m.trigger("heel_off")
    assert m.state == S.RAMP_UP
    for t in ("ramp_up_done", "heel_strike", "hold_done"):
        m.trigger(t)
    m.onset_delay_us = 40_000
    m.trigger("heel_off")                       # the output is not zero in RAMP_DOWN: no hold
    assert m.state == S.RAMP_UP


def test_pause_and_stop_leave_the_delay():
    for cmd, dest in (("pause", S.PAUSED), ("stop", S.STANDBY)):
        m = GaitMachine(RecordingKernel(), extension_ms=150)
        m.start()
        m.onset_delay_us = 40_000
        m.trigger("heel_off")
        m.trigger(cmd)
        assert m.state == dest


# ----- the learner -----------------------------------------------------------------------------------

def test_push_off_is_the_fastest_toe_down_rotation_in_the_first_half():
    pitch = [0.0, -1.0, -3.0, -8.0, -16.0, -18.0, -10.0, 0.0, 10.0, 20.0, 25.0, 26.0]
    assert push_off_ms(pitch, len(pitch), 10_000) == 30.0      # -8 -> -16 between samples 3 and 4
    assert math.isnan(push_off_ms(pitch, 3, 10_000))


def test_the_delay_grows_on_a_walker_that_tolerates_it_up_to_the_push_off_bound():
    d = OnsetDelayLearner(CFG)
    out = [d.learned(0.5, -2.0, 140.0) for _ in range(12)]
    assert out[:PUSH_STRIDES_MIN - 1] == [0.0] * (PUSH_STRIDES_MIN - 1)   # cold start: bound unknown
    assert out[-1] == 70.0 == d.bound_ms()                                  # 140 - lead 70
    assert all(b - a <= CFG.step_ms for a, b in zip(out, out[1:]))
    d2 = OnsetDelayLearner(CFG)
    assert [d2.learned(0.5, -2.0, 300.0) for _ in range(20)][-1] == 100.0  # max_ms


def test_the_delay_lengthens_at_most_once_per_window_and_not_in_the_first_climb():
    d = OnsetDelayLearner(CFG.model_copy(update={"lengthen_every_strides": 4}))
    assert [d.learned(0.0, 0.0, 140.0, may_lengthen=False) for _ in range(5)] == [0.0] * 5
    out = [d.learned(0.0, 0.0, 140.0) for _ in range(12)]
    assert out == [10.0] * 4 + [20.0] * 4 + [30.0] * 4


def test_a_saturated_foot_gets_no_delay():
    d = OnsetDelayLearner(CFG)
    for _ in range(10):
        d.learned(0.0, 0.0, 140.0)
    assert d.delay_ms > 0 and d.saturated() == 0.0


def test_a_short_push_off_allows_little_delay():
    d = OnsetDelayLearner(CFG)
    assert max(d.learned(0.0, 0.0, 80.0) for _ in range(20)) == 10.0


def test_the_delay_backs_off_at_once_on_a_dropping_foot_and_waits():
    for bad in (lambda d: d.learned(6.5, 0.0, 140.0), lambda d: d.learned(1.0, 6.5, 140.0),
                lambda d: d.early_contact(), lambda d: d.learned(math.nan, 0.0, 140.0)):
        d = OnsetDelayLearner(CFG)
        for _ in range(10):
            d.learned(0.0, 0.0, 140.0)
        assert d.delay_ms == 70.0
        assert bad(d) == 35.0 and d.last == "back off"
        assert [d.learned(0.0, 0.0, 140.0) for _ in range(CFG.hold_strides)] == [35.0] * CFG.hold_strides
        assert d.learned(0.0, 0.0, 140.0) == 45.0


def test_frozen_strides_and_errors_outside_the_band_hold_the_delay():
    d = OnsetDelayLearner(CFG)
    for _ in range(6):
        d.learned(0.0, 0.0, 140.0)
    held = d.delay_ms
    assert d.frozen() == held
    assert d.learned(3.0, 0.0, 140.0) == held             # 2 < error <= 6: no change


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(["learn", "early", "frozen", "saturated"]), st.floats(-1e3, 1e3),
                                 st.floats(-1e3, 1e3), st.floats(-1e4, 1e4) | st.just(math.nan)),
                       max_size=80),
       max_ms=st.integers(0, limits.ONSET_DELAY_MS_MAX), step=st.integers(1, 50), lead=st.integers(0, 300))
def test_the_delay_never_leaves_its_bounds(events, max_ms, step, lead):
    d = OnsetDelayLearner(AdaptiveOnsetDelay(max_ms=max_ms, step_ms=step, lead_ms=lead))
    prev = 0.0
    for kind, err, mid, push in events:
        bound_before = d.bound_ms()
        out = (d.frozen() if kind == "frozen" else d.early_contact() if kind == "early"
               else d.saturated() if kind == "saturated" else d.learned(err, mid, push))
        assert 0.0 <= out <= max_ms <= limits.ONSET_DELAY_MS_MAX
        assert out <= max(prev, d.bound_ms(), bound_before)
        assert out - prev <= step
        prev = out


@pytest.mark.parametrize("change, words", [
    ({"max_ms": limits.ONSET_DELAY_MS_MAX + 1}, "max_ms"),
    ({"max_ms": 50, "sideways": 1}, "sideways"),
    ({"max_ms": 50, "step_ms": 0}, "step_ms"),
])
def test_bad_onset_delay_sections_are_refused_with_one_line(change, words):
    raw = ADAPTIVE.model_dump(mode="json")
    raw["adaptive"]["onset_delay"] = change
    with pytest.raises(ProfileError) as err:
        profile_from_dict(raw, "bad")
    assert words in str(err.value) and "\n" not in str(err.value).strip()


# ----- in the loop ---------------------------------------------------------------------------------

def test_in_the_loop_the_delay_grows_within_its_bound_and_saves_charge_keeping_the_lift(walk, profile):
    patient = draw_population(SPEC, 15, n=2)[1]
    none = with_adaptive(profile, {**profile.adaptive.model_dump(mode="json"), "onset_delay": None})
    with_delay = closed_loop_replay(walk, profile, patient, SPEC.gait)
    without = closed_loop_replay(walk, none, patient, SPEC.gait)
    records = with_delay.meta["adaptive"]
    delays = [r.onset_delay_ms for r in records]
    assert max(delays) > 0 and all(0 <= d <= profile.adaptive.onset_delay.max_ms for d in delays)
    assert all(r.onset_delay_ms == 0 for r in without.meta["adaptive"])
    assert sum(with_delay.current_ma) < sum(without.current_ma)
    assert with_delay.toe_drag_strides <= without.toe_drag_strides + 1


def test_adaptive_without_a_delay_is_the_same_as_a_delay_bounded_at_zero(walk, profile):
    data = _frames(walk)
    traces = []
    for od in (None, {"max_ms": 0}):
        p = with_adaptive(profile, {**profile.adaptive.model_dump(mode="json"), "onset_delay": od})
        c = Controller(p, trace_capacity=1024)
        col = TraceCollector()
        c.trace_sink = col
        c.start()
        c.feed(data)
        c.finish()
        assert c.machine.onset_delay_us == 0
        traces.append(col.arrays())
    for name in traces[0]:
        np.testing.assert_array_equal(traces[0][name], traces[1][name], err_msg=name)


def test_the_learned_delay_is_logged_and_replays_bit_identically(tmp_path, walk, profile):
    # the recorded foot does not answer the current (no patient model): a wide band lets it grow
    section = profile.adaptive.model_dump(mode="json")
    profile = with_adaptive(profile, {**section, "approach": {**section["approach"], "settle_within_deg": 20},
                                      "onset_delay": {"max_ms": 100, "lengthen_within_deg": 20,
                                                      "back_off_beyond_deg": 30, "lengthen_every_strides": 1}})
    c = Controller(profile, trace_capacity=1024)
    col = TraceCollector()
    c.trace_sink = col
    records = []
    m = PatientModes(c, wall=lambda: 0.0, recorders=[records.append])
    data = _frames(walk)
    c.feed(data[:33 * 10])
    m.walk()
    c.feed(data[33 * 10:])
    c.finish()
    live = [r for r in records if type(r).__name__ == "AdaptiveStride"]
    assert max(r.onset_delay_ms for r in live) > 0
    assert "onset delay" in c.adaptive.status
    slog = SessionLog(tmp_path / "s.db")
    sid = slog.begin_session(profile, kernel=c.implementation)
    writer = LogWriter(slog, sid, profile)
    for r in records:
        writer.put(r)
    writer.close("test", int(c.kernel.frames))
    with SessionLog(tmp_path / "s.db") as again:
        rows = again.adaptive_strides(sid)
    assert [r["onset_delay_ms"] for r in rows] == [r.onset_delay_ms for r in live]
    commands = [{"name": r.name, "frame": r.frame, "value": r.value, "detail": r.detail}
                for r in records if isinstance(r, CommandRecord)]
    out = replay_session(profile, data, commands)
    np.testing.assert_array_equal(out.current_ma.view(np.uint64), col.arrays()["current_ma"].view(np.uint64))
    assert [r.onset_delay_ms for r in out.controller.adaptive.records] == [r.onset_delay_ms for r in live]


def test_a_new_delay_restarts_the_wind_up_guards_fit():
    """Strides at two delays in one window: the foot is lower at the longer delay whatever the
    current, and the fit would read that as no lift per mA (the guard would cap the current)."""
    from fescontrol.machine.adaptive import LearningLaw, SaturationGuard
    law = LearningLaw(ADAPTIVE.adaptive, ADAPTIVE.patient)
    sat = ADAPTIVE.adaptive.saturation
    ceilings = []
    for forget in (False, True):
        guard = SaturationGuard(sat, law)
        for k in range(sat.window_strides):
            if k == sat.window_strides // 2 and forget:
                guard.forget_window()
            used = 20.0 + 0.5 * k
            guard.limit(used, -1.0 if k < sat.window_strides // 2 else 1.0, used + 0.5)
        ceilings.append(guard.ceiling_ma)
    assert ceilings[0] is not None and ceilings[1] is None
