"""Batched deliveries (a batch replay with no stimulator): the supervisor checks and counts a
ramp's deliveries in one call, and everything comes out as when each delivery goes to
``SafetySupervisor.deliver`` singly: traces, events, faults (reason, detail, sample),
``deliveries``, the last delivered current. A value the supervisor refuses, in the middle of
a ramp, is refused on the same sample with the same words. The kernel's table CRC parses
exactly like the protocol's parser."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.core.codes import Fault
from fescontrol.core.profile import default_profile_for, load_profile
from fescontrol.drivers import sensor_protocol as sp
from fescontrol.kernel import COMPILED, CyKernel, PyKernel
from fescontrol.loop.controller import Controller, TraceCollector
from fescontrol.sim.faults import apply_sensor_faults, parse_fault
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.run import load_any
from fescontrol.sim.sources import list_bundled

pytestmark = pytest.mark.timeout(300)

IMPLEMENTATIONS = ["python", "cython"] if COMPILED else ["python"]


def _walks():
    return [(name, side) for name in list_bundled() for side in ("left", "right")]


def _run(stream: bytes, profile, batch: bool, implementation: str = "auto", allowed_ma: float | None = None):
    """Replay ``stream``; ``allowed_ma`` narrows what the supervisor allows below what the
    kernel asks for (a kernel asking too much). Returns everything that is compared, and how
    many times ``deliver`` ran."""
    c = Controller(profile, implementation=implementation, trace_capacity=4096, dispatch="table")
    c.BATCH_DELIVERIES = batch
    sup = c.supervisor
    if allowed_ma is not None:
        ch, pw, _ = sup.channels[0]
        sup.channels = ((ch, pw, allowed_ma),)
        sup._max_ma = allowed_ma
    calls = [0]
    single = sup.deliver

    def counting_deliver():
        calls[0] += 1
        single()
    sup.deliver = counting_deliver
    col = TraceCollector()
    c.trace_sink = col
    c.start()
    c.feed(stream)
    c.finish()
    k, m = c.kernel, c.machine
    out = {"events": c.events, "trace": col.arrays(),
           "counters": (k.frames, k.crc_errors, k.garbage_bytes, k.seq_gaps, k.frames_lost, k.fault,
                        k.delivered_ma, k.last_deliver_us, m.state, m.transitions_done),
           "deliveries": sup.deliveries, "last": (sup.last_delivered_ma, sup.last_delivered_channels_ma),
           "faults": [(f.reason, f.detail, f.t_us) for f in sup.faults]}
    return out, calls[0]


def _same(a: dict, b: dict) -> None:
    assert a["events"] == b["events"]
    assert a["counters"] == b["counters"]
    assert a["deliveries"] == b["deliveries"]
    assert a["last"] == b["last"]
    assert a["faults"] == b["faults"]
    assert a["trace"].keys() == b["trace"].keys()
    for name in a["trace"]:
        np.testing.assert_array_equal(a["trace"][name], b["trace"][name], err_msg=name)


@pytest.mark.parametrize("faults", [(), ("crc@20:30", "drop@45:3"), ("stuck-heel@30",)])
@pytest.mark.parametrize("name,side", _walks())
def test_batched_deliveries_identical_on_the_bundled_walks(name, side, faults):
    rec = load_any(name, side)
    profile = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
    frames, _ = recording_stream(rec)
    chunks, _, _ = apply_sensor_faults(frames, rec.rate_hz, [parse_fault(f) for f in faults])
    stream = b"".join(chunks)
    single, single_calls = _run(stream, profile, batch=False)
    batched, batched_calls = _run(stream, profile, batch=True)
    _same(batched, single)
    assert single["deliveries"] > 100
    assert single_calls >= single["deliveries"]
    assert batched_calls < single_calls / 2      # the batch path is the one taken


def test_batched_deliveries_identical_in_both_kernel_builds():
    rec = load_any(*_walks()[0])
    profile = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
    stream = recording_stream(rec)[0][:3000].tobytes()
    runs = [_run(stream, profile, batch, impl)[0] for impl in IMPLEMENTATIONS for batch in (False, True)]
    for other in runs[1:]:
        _same(other, runs[0])


@pytest.fixture(scope="module")
def walk():
    rec = load_any(*_walks()[0])
    profile = load_profile(default_profile_for(rec.has_heel, rec.has_imu))
    return profile, recording_stream(rec)[0][:2500].tobytes()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.01, 0.999), implementation=st.sampled_from(IMPLEMENTATIONS))
def test_a_refused_value_in_the_middle_of_a_ramp_is_refused_as_singly(walk, fraction, implementation):
    """The supervisor allows less than the kernel's amplitude: the first delivery above it,
    mid-ramp, latches OUTPUT_LIMIT on the same sample, with the same words, both ways."""
    profile, stream = walk
    allowed = fraction * profile.stimulation.amplitude_ma
    single, _ = _run(stream, profile, False, implementation, allowed_ma=allowed)
    batched, _ = _run(stream, profile, True, implementation, allowed_ma=allowed)
    _same(batched, single)
    (reason, detail, t_us), = batched["faults"]
    assert reason == Fault.OUTPUT_LIMIT and "above the allowed" in detail
    trace = batched["trace"]
    at = int(np.flatnonzero(trace["t_us"] == t_us)[0])
    assert trace["current_ma"][at] > allowed       # refused on the sample that asked for it ...
    assert trace["fault"][at] == 0                 # ... the first refusal: no fault before it
    assert batched["deliveries"] > 0 or trace["current_ma"][:at].max() == 0.0


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_kernel_that_breaks_its_ceiling_is_refused_by_the_batch_check(walk, implementation):
    """The supervisor re-checks each batch against the ceiling it checked: a kernel taking more
    than that (here: a ceiling raised behind the supervisor's back) latches OUTPUT_LIMIT, and
    nothing above the allowed current is counted as delivered."""
    profile, stream = walk
    c = Controller(profile, implementation=implementation, dispatch="table")
    sup = c.supervisor
    ch, pw, _ = sup.channels[0]
    sup.channels, sup._max_ma = ((ch, pw, 5.0),), 5.0
    checked = sup.begin_batch

    def broken_ceiling():
        on = checked()
        c.kernel.set_delivery_ceiling(1000.0)
        return on
    sup.begin_batch = broken_ceiling
    c.start()
    c.feed(stream)
    (reason, detail, _), = [(f.reason, f.detail, f.t_us) for f in sup.faults]
    assert reason == Fault.OUTPUT_LIMIT
    assert "above the allowed 5 mA (in a batch of " in detail
    assert 0.0 <= sup.last_delivered_ma <= 5.0


def test_no_batching_when_someone_listens_to_deliveries(walk):
    """A delivery listener (a session log, a patient model) sees every delivery singly."""
    profile, stream = walk
    c = Controller(profile, dispatch="table")
    heard = []
    c.supervisor.delivery_listeners.append(lambda t_us, ma: heard.append((t_us, ma)))
    assert not c.supervisor.begin_batch()
    c.supervisor.end_batch()
    c.start()
    c.feed(stream)
    assert len(heard) == c.supervisor.deliveries > 10
    assert c.kernel.batch_ceiling_ma < 0


def test_batching_is_off_outside_feed(walk):
    """The real-time loop (``run``/``run_fd``) never batches: the ceiling is off after feed."""
    profile, stream = walk
    c = Controller(profile, dispatch="table")
    assert c.kernel.batch_ceiling_ma < 0
    c.start()
    c.feed(stream)
    assert c.kernel.batch_ceiling_ma < 0 and c.kernel.batched_deliveries == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(0, 40), kernel=st.sampled_from(IMPLEMENTATIONS))
def test_table_crc_parses_like_the_protocol_parser(walk, seed, flips, kernel):
    """Random byte flips in a real stream: the kernel counts the same frames, CRC errors and
    garbage bytes as ``sensor_protocol.FrameParser``."""
    profile, stream = walk
    data = bytearray(stream[:FRAMES * sp.FRAME_LEN])
    rng = np.random.default_rng(seed)
    for pos in rng.integers(0, len(data), flips):
        data[pos] ^= int(rng.integers(1, 256))
    parser = sp.FrameParser()
    parser.feed(bytes(data))
    k = (CyKernel if kernel == "cython" else PyKernel)(profile)
    k.feed(bytes(data))
    while True:       # the event level's part, minimally: take events, mark outputs sent
        ret = k.process()
        while k.pop_event():
            pass
        if k.deliver_due:
            k.mark_delivered()
        if not ret:
            break
    assert (k.frames, k.crc_errors, k.garbage_bytes, k.length_errors) == (
        parser.counters.frames, parser.counters.crc_errors, parser.counters.garbage_bytes,
        parser.counters.length_errors)
    assert flips or k.frames == FRAMES


FRAMES = 300
