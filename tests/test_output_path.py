"""The real-time output path made cheap, and still the same: what the supervisor's fast path
lets through, what the RehaStim2 driver writes, and how a POSIX port is read and written
without pyserial's per-call machinery (bench/phases.py measures what they cost).

Every check here compares the fast path against the plain one or against the protocol's own
frame layout, over real ptys and the emulator; none times anything.
"""
from __future__ import annotations

import functools
import math
import time

import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.core.codes import Fault
from fescontrol.drivers import sciencemode2 as sm
from fescontrol.drivers import stimulator as stim_mod
from fescontrol.drivers.rehastim2 import RehaStim2
from fescontrol.drivers.stimulator import ChannelOutput, StimulatorTimeoutError
from fescontrol.loop.controller import Controller
from fescontrol.sim.rehastim2 import RehaStim2Emulator

from .conftest import heel_walk, profile_with, stream

ACK_TIMEOUT_S = 0.1


def _reference_frame(pkt: int, cmd: int, data: bytes) -> bytes:
    """The ScienceMode2 frame as docs/sciencemode2.md lays it out, written out independently."""
    body = bytearray()
    for byte in bytes((pkt, cmd)) + data:
        body += bytes((0x81, byte ^ 0x55)) if byte in (0xF0, 0x0F, 0x81) else bytes((byte,))
    crc = 0
    for byte in body:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return bytes((0xF0, 0x81, crc ^ 0x55, 0x81, len(body) ^ 0x55)) + bytes(body) + b"\x0f"


@settings(max_examples=300, deadline=None)
@given(pkt=st.integers(0, 255), cmd=st.integers(0, 255), data=st.binary(max_size=60))
def test_a_frame_from_a_stuffed_payload_is_the_protocols_frame(pkt, cmd, data):
    assert sm.encode_stuffed_frame(pkt, cmd, sm.stuff(data)) == _reference_frame(pkt, cmd, data)
    assert sm.encode_frame(pkt, cmd, data) == _reference_frame(pkt, cmd, data)


@pytest.mark.parametrize("bad", [(-1, 32), (256, 32), (3, 256), (True + 255, 32)])
def test_a_stuffed_frame_refuses_what_is_not_a_byte(bad):
    with pytest.raises(ValueError, match="is not a byte"):
        sm.encode_stuffed_frame(*bad, b"")


# --------------------------------------------------------------------------- the driver

@pytest.fixture
def emulator():
    emu = RehaStim2Emulator().start()
    yield emu
    emu.stop()
    assert emu.errors == [], "the emulator thread hit an internal error"


def _settle(stim, timeout_s: float = 1.0) -> None:
    deadline = time.monotonic() + timeout_s
    while stim.pending_acks:
        stim.poll()
        assert time.monotonic() < deadline, "acknowledgements did not settle"
        time.sleep(0.001)


class _Spy:
    """Records every frame the driver writes (then writes it)."""

    def __init__(self, stim):
        self.frames: list[bytes] = []
        real = stim._write
        stim._write = lambda frame: (self.frames.append(bytes(frame)), real(frame))[1]


@pytest.fixture
def two_channel(emulator):
    s = RehaStim2(emulator.port, channels=(1, 2), ack_timeout_s=ACK_TIMEOUT_S)
    s.open()
    yield s
    s.stop()
    s.close()


outputs = st.lists(st.tuples(st.floats(0, 126.99), st.sampled_from([0, 20, 150, 300, 500]),
                             st.floats(0, 126.99), st.sampled_from([0, 20, 129, 240, 500])),
                   min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=outputs, stop_first=st.booleans(), cache_max=st.sampled_from([0, 2, 1024]))
def test_the_driver_writes_what_the_codec_builds(two_channel, seq, stop_first, cache_max, monkeypatch):
    """Each update is byte for byte ``start_channel_list_mode`` of the values rounded down (with
    InitChannelListMode first after a stop), whatever the payload cache holds or is allowed."""
    stim = two_channel
    monkeypatch.setattr(stim, "UPDATE_CACHE_MAX", cache_max)
    stim._updates.clear()
    if stop_first:
        stim.stop()
    spy = _Spy(stim)
    try:
        for c1, pw1, c2, pw2 in seq:
            initialised = stim._initialised
            pkt = stim._pkt
            stim.set_output([ChannelOutput(1, c1, pw1), ChannelOutput(2, c2, pw2)])
            frame = spy.frames[-1]
            expect = sm.start_channel_list_mode((pkt + (1 if initialised else 2)) % 256,
                                                [(0, pw1, math.floor(c1)), (0, pw2, math.floor(c2))])
            if not initialised:
                expect = stim._init_frame((pkt + 1) % 256) + expect
            assert frame == expect
            _settle(stim)
        assert len(stim._updates) <= cache_max
    finally:
        del stim._write


@pytest.mark.parametrize("current_ma, pulse_width_us", [(127.0, 300), (12.0, 19), (12.0, 501)])
def test_a_value_outside_the_device_range_is_refused_before_any_write(two_channel, current_ma, pulse_width_us):
    stim = two_channel
    stim.set_output([ChannelOutput(1, 12.0, 300)])       # a valid one first: the cache holds it
    _settle(stim)
    spy = _Spy(stim)
    try:
        for _ in range(2):                               # refused the first time and every time
            with pytest.raises(ValueError):
                stim.set_output([ChannelOutput(1, current_ma, pulse_width_us)])
        assert spy.frames == []
        assert all(pw != pulse_width_us or c != math.floor(current_ma) for key in stim._updates
                   for c, pw in key)
    finally:
        del stim._write


def test_an_unanswered_update_is_named_in_the_timeout(emulator):
    """The text of a pending update is formatted only when needed, and says what it did."""
    stim = RehaStim2(emulator.port, ack_timeout_s=ACK_TIMEOUT_S)
    stim.open()
    try:
        _settle(stim)
        emulator.ack_enabled = False
        stim.set_output([ChannelOutput(1, 12.7, 300)])
        pkt = stim._pkt
        time.sleep(ACK_TIMEOUT_S + 0.05)
        with pytest.raises(StimulatorTimeoutError) as err:
            stim.poll()
        assert str(err.value) == (f"no acknowledgement for StartChannelListMode pkt {pkt} (ch1 12 mA 300 µs) "
                                  f"within 100 ms")
    finally:
        emulator.ack_enabled = True
        stim.stop()
        stim.close()


# --------------------------------------------------------------------------- the port

def test_a_pty_is_read_and_written_directly_and_a_url_through_pyserial(emulator):
    port = serial.serial_for_url(emulator.port, timeout=0)
    loop = serial.serial_for_url("loop://", timeout=0)
    try:
        assert stim_mod._posix_fd(port) == port.fileno()
        assert stim_mod._posix_fd(loop) is None
    finally:
        port.close()
        loop.close()


@pytest.mark.timeout(30)
def test_a_full_port_times_out_as_pyserial_says_and_nothing_is_lost():
    """The emulator stops reading (its thread waits for its lock): the direct write takes what
    the pty has room for, pyserial waits its write timeout for the rest, and the driver reports
    a blocked write; every byte written before it reaches the device."""
    emu = RehaStim2Emulator().start()
    stim = RehaStim2(emu.port, ack_timeout_s=ACK_TIMEOUT_S)
    stim.open()
    written = 0
    try:
        assert stim._fd is not None
        with emu._lock:
            time.sleep(0.05)                              # the emulator thread is now stuck
            chunk = bytes(range(16, 240)) * 16          # no F0/0F inside: garbage to the decoder
            t0 = time.monotonic()
            with pytest.raises(StimulatorTimeoutError, match="blocked"):
                while time.monotonic() - t0 < 20:
                    stim._write(chunk)
                    written += len(chunk)
            blocked_s = time.monotonic() - t0
        assert written > 0 and blocked_s >= 0.09
        deadline = time.monotonic() + 5
        while emu._decoder.garbage_bytes < written and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emu._decoder.garbage_bytes >= written
    finally:
        stim.close()
        emu.stop()


# --------------------------------------------------------------------------- the supervisor

def _deliveries(profile, data: bytes, allowed_ma: float | None, fast: bool):
    c = Controller(profile, implementation="python", dispatch="table")
    sup = c.supervisor
    if allowed_ma is not None:
        ch, pw, _ = sup.channels[0]
        sup.channels = ((ch, pw, allowed_ma),)
    if not fast:
        sup._checked_top_ma = -1.0                        # every delivery through check_outputs
    sent: list[tuple[int, float]] = []
    sup.delivery_listeners.append(lambda t_us, ma: sent.append((t_us, ma)))
    c.start()
    c.feed(data)
    return sent, [(f.reason, f.detail, f.t_us) for f in sup.faults], sup.deliveries


@functools.lru_cache(maxsize=1)
def _walk():
    """The default profile and 8 strides of heel frames (not a fixture: hypothesis would print
    the whole stream with every failing example)."""
    return profile_with(), stream(heel_walk(8))


@settings(max_examples=20, deadline=None)
@given(fraction=st.one_of(st.none(), st.floats(0.01, 1.2), st.just(math.nan), st.just(-1.0)))
def test_the_fast_path_delivers_and_refuses_exactly_as_the_checks(fraction):
    """The one-channel fast path (a current within the range checked when ``channels`` was
    set) against every delivery going through ``check_outputs``: the same outputs at the same
    sensor times, the same refusal with the same words."""
    profile, data = _walk()
    allowed = None if fraction is None else fraction * profile.stimulation.amplitude_ma
    fast = _deliveries(profile, data, allowed, True)
    plain = _deliveries(profile, data, allowed, False)
    assert fast == plain
    sent, faults, _ = fast
    assert sent or faults, "the walk delivered nothing: the comparison checks nothing"
    if allowed is not None and 0.0 <= allowed < profile.stimulation.amplitude_ma:
        assert faults and faults[0][0] == Fault.OUTPUT_LIMIT and "above the allowed" in faults[0][1]
        assert max((ma for _, ma in sent), default=0.0) <= allowed


def test_the_fast_path_range_follows_the_channels_and_the_caps():
    profile, _ = _walk()
    sup = Controller(profile, implementation="python").supervisor
    ch, _, top = sup.channels[0]
    assert top == profile.stimulation.amplitude_ma and sup._checked_top_ma == top
    sup.channels = ((ch, 10_000, top),)                   # a pulse width no check passes
    assert sup._checked_top_ma == -1.0
    sup.channels = ((ch, 300, 12.0), (2, 300, 12.0))      # two channels: always the full checks
    assert sup._checked_top_ma == -1.0
    sup.channels = ((ch, 300, 12.0),)
    assert sup._checked_top_ma == 12.0
