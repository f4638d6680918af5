"""Several stimulation channels: the profile schema, the per-channel kernel envelopes (both
kernels, identical), the supervisor's checks on every channel and across them."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.core import limits
from fescontrol.core.codes import Fault
from fescontrol.loop.controller import Controller
from fescontrol.kernel import COMPILED
from fescontrol.core.profile import ProfileError, bundled_profile_path, load_profile, profile_from_dict

from .conftest import BUNDLED_PROFILES, heel_walk, stream
from .helpers import run_stream

TWO = bundled_profile_path("two_channel")
RATE_HZ = 100.0


def two_channel(**changes):
    """The bundled two-channel profile with top-level sections or channel 2's fields replaced."""
    data = load_profile(TWO).model_dump(mode="json")
    extra = data["extra_channels"][0]
    for key, value in changes.items():
        if key in extra:
            extra[key] = value
        else:
            data[key] = value
    return profile_from_dict(data, "two_channel+test")


def refused(data_changes) -> str:
    data = load_profile(TWO).model_dump(mode="json")
    data_changes(data)
    with pytest.raises(ProfileError) as info:
        profile_from_dict(data, "p.yaml")
    return str(info.value)


class Recorder:
    """Every output the supervisor let through: (sensor µs, per-channel mA)."""

    def __init__(self, controller: Controller):
        self.outputs: list[tuple[int, tuple[float, ...]]] = []
        controller.supervisor.channel_delivery_listeners.append(lambda t, ma: self.outputs.append((t, ma)))

    def channel(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.array([t for t, _ in self.outputs], dtype=np.int64)
        ma = np.array([m[index] for _, m in self.outputs], dtype=float)
        return t, ma


def run(profile, data: bytes, implementation: str):
    """Replay ``data`` walking; returns (controller, outputs recorder, kernel trace arrays)."""
    c = Controller(profile, implementation=implementation, trace_capacity=1024)
    rec = Recorder(c)
    c.start()
    c, trace = run_stream(profile, data, implementation, controller=c)
    return c, rec, trace


def on_spans(t: np.ndarray, ma: np.ndarray) -> list[tuple[int, int]]:
    """(first nonzero output µs, the zero output that ended it µs) of each burst in a delivery record."""
    spans, start = [], None
    for ti, mi in zip(t, ma):
        if mi > 0 and start is None:
            start = ti
        elif mi == 0 and start is not None:
            spans.append((start, ti))
            start = None
    return spans


# ----- the profile ------------------------------------------------------------------------------

def test_the_bundled_two_channel_profile():
    p = load_profile(TWO)
    assert p.channel_numbers == (1, 2) and p.patient.adjust == "together"
    ch2 = p.extra_channels[0]
    assert (ch2.amplitude_ma, ch2.pulse_width_us, ch2.timing.after.value, ch2.timing.onset_ms,
            ch2.timing.duration_ms) == (25, 250, "heel_off", 100, 400)
    assert p.total_charge_rate_uc_per_s == pytest.approx((30 * 300 + 25 * 250) / 1000 * 40)


@pytest.mark.parametrize("name", BUNDLED_PROFILES)
def test_single_channel_profiles_are_unchanged(name):
    p = load_profile(bundled_profile_path(name))
    assert p.extra_channels == [] and p.patient.adjust is None and p.channel_numbers == (p.stimulation.channel,)
    assert "extra_channels" not in open(bundled_profile_path(name), encoding="utf-8").read()


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["extra_channels"][0].update(channel=1), "extra_channels[0].channel = 1: channel 1 is already used"),
    (lambda d: d["extra_channels"][0].update(channel=9), "extra_channels[0].channel = 9"),
    (lambda d: d["extra_channels"][0].update(amplitude_ma=120), "extra_channels[0].amplitude_ma = 120"),
    (lambda d: d["extra_channels"][0].update(pulse_width_us=400, amplitude_ma=90),
     "extra_channels[0]: amplitude_ma × pulse_width_us = 36 µC per phase"),
    (lambda d: d["extra_channels"][0]["patient"].update(amplitude_max_ma=26),
     "patient.amplitude_max_ma (26 mA) must not exceed amplitude_ma (25 mA)"),
    (lambda d: d["extra_channels"][0]["patient"].update(adjust="together"), "belongs in the top-level patient"),
    (lambda d: d["extra_channels"][0]["timing"].update(duration_ms=1600),
     "timing.duration_ms (1600 ms) must not exceed envelope.max_stim_ms (1500 ms)"),
    (lambda d: d["extra_channels"][0]["timing"].update(ramp_up_ms=300, ramp_down_ms=200),
     "ramp_up_ms + ramp_down_ms = 500 ms; allowed ≤ duration_ms (400 ms)"),
    (lambda d: d["extra_channels"][0]["timing"].update(after="toe_off"), "extra_channels[0].timing.after"),
    (lambda d: d["extra_channels"][0]["timing"].pop("onset_ms"), "extra_channels[0].timing.onset_ms: missing"),
    (lambda d: d["extra_channels"][0].update(speed=3), "extra_channels[0].speed"),
    (lambda d: d["patient"].pop("adjust"), "patient.adjust: missing (required with extra_channels)"),
    (lambda d: d["extra_channels"].extend(
        [dict(d["extra_channels"][0], channel=n) for n in (3, 4, 5)]), "extra_channels"),
])
def test_bad_channels_are_refused_with_one_line_naming_them(change, fragment):
    text = refused(change)
    assert text.startswith("p.yaml: ") and fragment in text, text


def test_total_charge_rate_is_a_hard_cap_across_channels():
    # four channels each within every per-channel cap, together above the total
    def four_strong(d):
        d["stimulation"].update(amplitude_ma=100, pulse_width_us=300, frequency_hz=40)
        d["patient"].update(amplitude_max_ma=100)
        ch = dict(d["extra_channels"][0], amplitude_ma=100, pulse_width_us=300,
                  patient={"amplitude_min_ma": 10, "amplitude_max_ma": 100})
        d["extra_channels"] = [dict(ch, channel=n) for n in (2, 3, 4)]
    text = refused(four_strong)
    assert "4800 µC/s" in text and f"allowed ≤ {limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S:g} µC/s" in text
    # no single channel can reach it: its own caps bound it below
    assert limits.CHARGE_PER_PHASE_MAX_UC * limits.FREQUENCY_MAX_HZ <= limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S


# ----- the kernels ------------------------------------------------------------------------------

def walk_bytes(strides: int = 12) -> bytes:
    return stream(heel_walk(strides), rate_hz=RATE_HZ)


def test_channel_one_is_exactly_what_the_single_channel_profile_gives(kernel_impl):
    two = load_profile(TWO)
    one = profile_from_dict({k: v for k, v in two.model_dump(mode="json").items() if k != "extra_channels"}
                            | {"patient": {**two.patient.model_dump(mode="json"), "adjust": None}}, "one")
    data = walk_bytes()
    c2, rec2, tr2 = run(two, data, kernel_impl)
    c1, rec1, tr1 = run(one, data, kernel_impl)
    for name in tr1:
        np.testing.assert_array_equal(tr1[name], tr2[name], err_msg=name)
    assert [(e.t_us, e.event) for e in c1.events] == [(e.t_us, e.event) for e in c2.events]
    assert c2.supervisor.deliveries > c1.supervisor.deliveries      # channel 2's changes are delivered too


def test_channel_two_bursts_after_each_heel_off_with_its_own_timing(kernel_impl):
    p = load_profile(TWO)
    c, rec, trace = run(p, walk_bytes(), kernel_impl)
    heel_offs = [e.t_us for e in c.events if e.event == "heel_off"]
    assert len(heel_offs) >= 10 and not c.supervisor.faults
    t, ch2 = rec.channel(1)
    spans = on_spans(t, ch2)
    assert len(spans) == len(heel_offs)
    period_us = 1e6 / RATE_HZ
    pulse_us = 1e6 / p.stimulation.frequency_hz     # outputs change at most once per pulse period while ramping
    for (start, end), off in zip(spans, heel_offs):
        assert 100_000 < start - off <= 100_000 + period_us + pulse_us     # onset 100 ms after heel-off
        assert 400_000 - period_us <= end - off - 100_000 <= 400_000 + period_us   # 400 ms, ramps included
    assert ch2.max() == 25.0 and rec.channel(0)[1].max() == 30.0
    # channel 2 rises no faster than its 50 ms ramp allows between two outputs
    rises = np.diff(ch2)[np.diff(t) > 0] / (np.diff(t)[np.diff(t) > 0] / 1e3)
    assert rises.max() <= 25.0 / 50 + 1e-9


def test_heel_strike_channel_and_a_following_channel(kernel_impl):
    p = two_channel(timing={"after": "heel_strike", "onset_ms": 0, "duration_ms": 200, "ramp_up_ms": 0,
                            "ramp_down_ms": 0})
    c, rec, _ = run(p, walk_bytes(), kernel_impl)
    strikes = [e.t_us for e in c.events if e.event == "heel_strike"]
    spans = on_spans(*rec.channel(1))
    assert len(spans) == len(strikes) >= 10
    assert all(0 <= s - hs <= 10_000 and 190_000 <= e - s <= 210_000 for (s, e), hs in zip(spans, strikes))
    follow = two_channel(timing=None)
    _, rec, _ = run(follow, walk_bytes(), kernel_impl)
    t, ch1 = rec.channel(0)
    _, ch2 = rec.channel(1)
    np.testing.assert_allclose(ch2 * 30.0, ch1 * 25.0)      # the same envelope, its own amplitude


def test_a_fault_zeroes_every_channel_on_the_same_sample(kernel_impl):
    p = load_profile(TWO)
    c = Controller(p, implementation=kernel_impl)
    c.start()
    data = walk_bytes(6)
    for i in range(0, len(data), 33):                 # frame by frame until channel 2 stimulates
        c.feed(data[i:i + 33])
        if c.kernel.channel_current_ma(1) > 0.0:
            break
    assert c.kernel.channel_current_ma(1) > 0.0 and c.kernel.current_ma > 0.0
    c.supervisor.latch(Fault.USER_STOP, "test")
    assert c.kernel.current_ma == 0.0 and c.kernel.channel_current_ma(1) == 0.0
    assert c.supervisor.last_delivered_channels_ma == (0.0, 0.0)


def test_pausing_ramps_a_timed_burst_down_and_none_starts_while_paused(kernel_impl):
    p = load_profile(TWO)
    c = Controller(p, implementation=kernel_impl)
    rec = Recorder(c)
    c.start()
    data = walk_bytes(6)
    for i in range(0, len(data), 33):
        c.feed(data[i:i + 33])
        if c.kernel.channel_level(1) >= 1.0:
            break
    c.machine.pause()
    t_pause = c.kernel.t_us
    c.feed(data[i + 33:])
    t, ch2 = rec.channel(1)
    after = ch2[t > t_pause]
    assert after[-1] == 0.0 and np.all(np.diff(after) <= 0)          # only down, to zero
    t_zero = t[(t > t_pause) & (ch2 == 0)][0]
    assert t_zero - t_pause <= 100_000 + 10_000                       # within its 100 ms ramp down
    assert not np.any(ch2[t > t_zero])                                # and no burst while paused


def test_patient_amplitude_per_channel_applies_at_the_next_burst(kernel_impl):
    c = Controller(load_profile(TWO), implementation=kernel_impl)
    k = c.kernel
    k.request_channel_amplitude(1, 12.0)
    assert k.channel_amplitude_ma(1) == 12.0 and k.channel_pending_ma(1) == 12.0
    with pytest.raises(ValueError, match="outside 0..25"):
        k.request_channel_amplitude(1, 26.0)
    with pytest.raises(ValueError, match="indexes 0..1"):
        k.request_channel_amplitude(2, 5.0)
    rec = Recorder(c)
    c.start()
    c.feed(walk_bytes(4))
    assert rec.channel(1)[1].max() == 12.0


# ----- both kernels, identical, and the invariants per channel ----------------------------------

timing = st.fixed_dictionaries({
    "after": st.sampled_from(["heel_off", "heel_strike"]), "onset_ms": st.integers(0, 400),
    "duration_ms": st.integers(100, 900), "ramp_up_ms": st.integers(0, 50), "ramp_down_ms": st.integers(0, 50)})
segment = st.tuples(st.integers(1, 80), st.floats(0, 900))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(segment, min_size=1, max_size=30), timings=st.lists(st.one_of(st.none(), timing),
                                                                               min_size=1, max_size=3),
       cutoff=st.sampled_from(["ramp_down", "zero"]), drops=st.lists(st.integers(0, 2000), max_size=3))
def test_random_walks_per_channel_invariants_and_identical_kernels(segments, timings, cutoff, drops):
    # a real walk first (every channel bursts), then whatever hypothesis makes of the heel
    heel = np.concatenate([heel_walk(6)] + [np.full(n, h) for n, h in segments])
    data = stream(heel, drop=tuple(d for d in drops if d < len(heel)))
    base = load_profile(TWO).model_dump(mode="json")
    ch = base["extra_channels"][0]
    extras = [dict(ch, channel=2 + i, amplitude_ma=20 - 4 * i, pulse_width_us=200 + 50 * i,
                   patient={"amplitude_min_ma": 1, "amplitude_max_ma": 20 - 4 * i},
                   timing=None if t is None else dict(t, duration_ms=max(t["duration_ms"],
                                                                          t["ramp_up_ms"] + t["ramp_down_ms"])))
              for i, t in enumerate(timings)]
    profile = profile_from_dict({**base, "extra_channels": extras,
                                 "envelope": {**base["envelope"], "cutoff": cutoff, "max_stim_ms": 1000}}, "rnd")
    runs = {}
    for impl in ("python", "cython") if COMPILED else ("python",):
        c, rec, trace = run(profile, data, impl)
        runs[impl] = (rec.outputs, [(e.t_us, e.event) for e in c.events], c.supervisor.deliveries, trace)
        sup = c.supervisor
        assert [f.reason for f in sup.faults if f.reason == Fault.OUTPUT_LIMIT] == []
        assert all(rec.channel(i)[1].max() > 0 for i in range(len(sup.channels)))     # all stimulated
        for index, (_channel, pulse_width_us, max_ma) in enumerate(sup.channels):
            t, ma = rec.channel(index)
            assert np.all(ma >= 0) and np.all(ma <= max_ma)
            assert np.all(ma * pulse_width_us / 1000 <= limits.CHARGE_PER_PHASE_MAX_UC)
            t_timing = timings[index - 1] if index else None
            for start, end in on_spans(t, ma):
                assert end - start <= profile.envelope.max_stim_ms * 1000
                if t_timing is not None:
                    assert end - start <= max(t_timing["duration_ms"], t_timing["ramp_up_ms"]
                                              + t_timing["ramp_down_ms"]) * 1000 + 20_000
        totals = [sum(m * pw * 40 / 1000 for m, (_, pw, _) in zip(ma, sup.channels)) for _, ma in rec.outputs]
        assert max(totals, default=0) <= limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S
        fault_t = [f.t_us for f in sup.faults]
        if fault_t:
            assert all(not any(ma) for t, ma in rec.outputs if t > fault_t[0])
    if COMPILED:
        py, cy = runs["python"], runs["cython"]
        assert py[:3] == cy[:3]
        for name in py[3]:
            np.testing.assert_array_equal(py[3][name], cy[3][name], err_msg=name)


def test_supervisor_refuses_any_channel_out_of_bounds_and_the_sum():
    c = Controller(load_profile(TWO))
    sup = c.supervisor
    assert sup.check_outputs((30.0, 25.0)) is None
    assert sup.check_outputs((30.0, 25.5)) == "channel 2: current 25.5 mA above the allowed 25 mA"
    assert sup.check_outputs((math.nan, 0.0)).startswith("channel 1: current nan")
    assert sup.check_outputs((0.0, -1.0)).startswith("channel 2: current -1")
    sup.channels = ((1, 300, 100.0), (2, 300, 100.0))          # as if caps were wider than the sum allows
    sup._frequency_hz = 100.0
    assert "µC/s summed over the channels above the cap 3000 µC/s" in sup.check_outputs((60.0, 60.0))


# ----- patient +/- ------------------------------------------------------------------------------

def modes_for(profile):
    from fescontrol.session.modes import PatientModes
    now = [0.0]
    c = Controller(profile)
    return PatientModes(c, clock=lambda: now[0], wall=lambda: 0.0), now


def test_patient_steps_every_channel_together_each_in_its_own_range():
    m, now = modes_for(load_profile(TWO))
    k = m.kernel
    assert m.intensity_step(-1) == 29.0
    assert (k.channel_pending_ma(0), k.channel_pending_ma(1)) == (29.0, 24.0)
    for _ in range(14):
        now[0] += 1.0
        m.intensity_step(-1)
    assert (k.channel_pending_ma(0), k.channel_pending_ma(1)) == (15.0, 10.0)   # both at their lowest
    now[0] += 1.0
    from fescontrol.session.modes import IntensityRefused
    with pytest.raises(IntensityRefused, match="lowest level \\(15 mA\\)"):
        m.intensity_step(-1)


def test_patient_steps_the_chosen_channel_when_the_profile_says_per_channel():
    data = load_profile(TWO).model_dump(mode="json")
    data["patient"]["adjust"] = "per_channel"
    m, now = modes_for(profile_from_dict(data, "per"))
    k = m.kernel
    assert m.select_channel(1) == 2
    assert m.intensity_step(-1) == 24.0
    assert (k.channel_pending_ma(0), k.channel_pending_ma(1)) == (30.0, 24.0)
    now[0] += 1.0
    m.select_channel(0)
    assert m.intensity_step(-1) == 29.0 and k.channel_pending_ma(1) == 24.0


def test_patient_screen_shows_every_channel_and_which_one_plus_minus_changes():
    from fescontrol.ui.patient_ui import KEY_HELP, Status, render
    lines = [text for text, _ in render(Status(channels="ch1 30 mA  ch2* 24 mA"))]
    assert "Channels    ch1 30 mA  ch2* 24 mA" in lines
    assert not any(text.startswith("Channels") for text, _ in render(Status()))
    assert "1-4 channel for +/-" in KEY_HELP[1]
