"""What a batch replay keeps (``replay(..., trace=..., events=...)``): a sweep's replay (no
trace, no event log, bursts from :class:`BurstCollector`) and ``fes evaluate``'s (only
``t_us`` and ``current_ma``, no event log: the event counts) give the same bursts, faults,
counters, report and delivered figures as the full replay, on every bundled walk (both
kernels, with sensor faults too); the chunked burst collector equals
:func:`bursts_from_trace` of the whole trace on hypothesis currents cut into random chunks."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.core.profile import default_profile_for, load_profile
from fescontrol.sim.faults import apply_sensor_faults, parse_fault
from fescontrol.sim.replay import T0_US, BurstCollector, bursts_from_trace, recording_stream, replay
from fescontrol.sim.run import delivered_summary, load_any
from fescontrol.sim.scoring import score
from fescontrol.sim.sources import list_bundled

pytestmark = pytest.mark.timeout(300)


def _faults(result):
    return [(f.reason, f.detail, f.t_us) for f in result.faults]


@pytest.mark.parametrize("kernel", ["cython", "python"])
@pytest.mark.parametrize("name", list_bundled())
def test_kept_less_gives_the_same_figures(name, kernel):
    for side in ("left", "right"):
        rec = load_any(name, side)
        prof = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
        full = replay(rec, prof, implementation=kernel)
        sweep = replay(rec, prof, implementation=kernel, trace="none", events=False)
        current = replay(rec, prof, implementation=kernel, trace="current", events=False)
        assert sweep.trace == {} and list(sweep.events) == [] and list(current.events) == []
        assert sorted(current.trace) == ["current_ma", "t_us"]
        assert full.bursts_s == sweep.bursts_s == current.bursts_s
        assert full.counters == sweep.counters == current.counters
        assert _faults(full) == _faults(sweep) == _faults(current)
        logged = {}
        for e in full.events:
            logged[e.event] = logged.get(e.event, 0) + 1
        assert full.event_counts == sweep.event_counts == current.event_counts == logged
        assert logged["heel_off"] > 20
        summary = delivered_summary(full)
        assert summary["heel_offs_detected"] == logged["heel_off"]
        assert summary["heel_strikes_detected"] == logged.get("heel_strike", 0)
        assert summary["max_cutoffs"] == logged.get("timeout", 0)
        assert repr(summary) == repr(delivered_summary(current))
        assert repr(score(rec, full.bursts_s).to_dict()) == repr(score(rec, sweep.bursts_s).to_dict())


def test_kept_less_with_sensor_faults():
    """Faults latched mid-walk (garbled frames, drops, a stuck heel) end bursts the same way."""
    rec = load_any(list_bundled()[0], "left")
    prof = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
    frames, _ = recording_stream(rec)
    for spec in (("crc@20:30", "drop@45:3"), ("stuck-heel@30",)):
        chunks, _, _ = apply_sensor_faults(frames, rec.rate_hz, [parse_fault(f) for f in spec])
        stream = b"".join(chunks)
        full = replay(rec, prof, stream=stream)
        sweep = replay(rec, prof, stream=stream, trace="none", events=False)
        assert full.bursts_s == sweep.bursts_s and full.counters == sweep.counters
        assert _faults(full) == _faults(sweep) and full.faults
        assert full.event_counts == sweep.event_counts and full.event_counts.get("fault", 0) >= 1


def test_unknown_trace_keep_is_refused():
    rec = load_any(list_bundled()[0], "left")
    prof = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
    with pytest.raises(ValueError, match="trace 'some'; allowed: all, current, none"):
        replay(rec, prof, trace="some")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.5, 30.0]), min_size=1, max_size=300),
       st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(0, 3))
def test_burst_collector_equals_bursts_from_whole_trace(current, cuts, step_us):
    current = np.asarray(current)
    t_us = T0_US + np.cumsum(np.full(len(current), 10_000 + step_us, dtype=np.int64))
    col = BurstCollector()
    start = 0
    for n in cuts * (len(current) // max(1, sum(cuts)) + 1):
        if start >= len(current):
            break
        end = min(len(current), start + n)
        # the kernel hands its whole buffer and the number of valid samples
        buf_t = np.zeros(64, dtype=np.int64)
        buf_c = np.full(64, 99.0)
        buf_t[:end - start] = t_us[start:end]
        buf_c[:end - start] = current[start:end]
        col({"t_us": buf_t, "current_ma": buf_c}, end - start)
        start = end
    t0_s = T0_US / 1e6
    expected = [(a - t0_s, b - t0_s) for a, b in bursts_from_trace(t_us, current)]
    assert col.bursts_s(T0_US) == expected
