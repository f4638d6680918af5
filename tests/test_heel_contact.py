""""No heel contact" is a state, not a fault (issue 11).

A heel that stays at its unloaded level (sitting with the foot unloaded, forefoot walking)
must not latch ``heel_stuck``: stimulation ends by ``max_stim_ms``, the device waits and says
why, and it stimulates again from the first steps once the heel loads.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from fescontrol.loop.controller import Controller, TraceCollector
from fescontrol.core.profile import load_profile
from fescontrol.sim.replay import bursts_from_trace, recording_stream
from fescontrol.sim.scoring import score
from fescontrol.sim.synthetic import Sit, Stand, Walk, synthesize

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
WALK_S, SIT_S, TRANSITION_S = 10.0, 60.0, 1.0


@pytest.fixture(scope="module")
def seated_minute():
    """Walk, sit a minute with the foot fully unloaded (heel exactly 0 N), walk again."""
    return synthesize([Stand(3), Walk(WALK_S, 100), Sit(SIT_S, transition_s=TRANSITION_S, seated_heel_n=0.0),
                       Walk(WALK_S, 100), Stand(3)], name="synthetic:seated_minute")


@pytest.mark.parametrize("config", ["default.yaml", "combined.yaml"])
@pytest.mark.timeout(120)
def test_seated_minute_with_the_heel_unloaded_then_walking(seated_minute, config, kernel_impl):
    rec = seated_minute
    profile = load_profile(CONFIGS / config)
    frames, _ = recording_stream(rec)
    c = Controller(profile, implementation=kernel_impl, trace_capacity=4096)
    collector = TraceCollector()
    c.trace_sink = collector
    c.start()
    sit_start = 3 + WALK_S
    sit_end = sit_start + SIT_S
    mid = int((sit_start + SIT_S / 2) * rec.rate_hz)
    c.feed(frames[:mid].tobytes())
    assert c.supervisor.fault is None
    assert c.waiting_reason == "no heel contact: waiting for the heel to load"     # the status says why
    c.feed(frames[mid:].tobytes())
    c.finish()
    assert c.supervisor.fault is None, c.supervisor.fault
    assert c.waiting_reason == ""
    trace = collector.arrays()
    bursts = [(a - 1.0, b - 1.0) for a, b in bursts_from_trace(trace["t_us"], trace["current_ma"])]
    # sitting down unloads the heel like a heel-off: that burst (if any) ends by max_stim_ms
    delay_s = profile.trigger.heel.max_onset_delay_ms / 1000 if profile.trigger.mode.value == "heel" else 0.0
    settled = sit_start + TRANSITION_S + delay_s + profile.envelope.max_stim_ms / 1000 + 0.05
    assert not [b for b in bursts if b[1] > settled and b[0] < sit_end - TRANSITION_S], "stimulation while seated"
    after = [s for s in rec.reference_swings() if s[0] > sit_end]
    report_after = score(rec, [b for b in bursts if b[0] > sit_end - TRANSITION_S])
    first_two = after[:2]
    assert all(any(to - 0.6 <= a < hs for a, _ in bursts) for to, hs in first_two), "first steps not stimulated"
    assert report_after.swings_detected == len(after)
