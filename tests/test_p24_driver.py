"""The P24 driver against the P24 emulator over a real pseudo-terminal: handshake, balanced
pulses, keep-alive from the caller's loop only, every fault path latched and named."""
from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sciencemode4 as sm4
from fescontrol.drivers.p24 import P24
from fescontrol.drivers.stimulator import (
    ChannelOutput,
    StimulationFault,
    StimulatorError,
    StimulatorInitError,
    StimulatorOperationError,
    StimulatorTimeoutError,
    get_stimulator_class,
    known_stimulators,
)
from fescontrol.sim.p24 import WATCHDOG_TIMEOUT_S, P24Emulator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def emu():
    emulator = P24Emulator()
    emulator.start()
    yield emulator
    emulator.stop()
    assert emulator.errors == []


def commands(emulator) -> list[int]:
    return [p.cmd for _, p in emulator.received]


def loop(stim: P24, seconds: float, period_s: float = 0.01) -> None:
    """What the control loop does each iteration: poll, then keep-alive."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        stim.poll()
        stim.keepalive()
        time.sleep(period_s)


def settle(stim: P24, timeout_s: float = 1.0) -> None:
    end = time.monotonic() + timeout_s
    while stim.pending_acks and time.monotonic() < end:
        stim.poll()
        time.sleep(0.002)
    assert stim.pending_acks == 0


def test_registered_like_rehastim2():
    assert get_stimulator_class("p24") is P24
    assert "p24" in known_stimulators() and "rehastim2" in known_stimulators()


def test_handshake_reads_id_version_status_then_initialises_mid_level(emu):
    with P24(emu.port) as stim:
        assert stim.device_id == "P24EMU0001"
        assert stim.firmware_version.firmware == (1, 0, 0)
        assert emu.status == sm4.StimStatus.ML_INITIALIZED
    assert commands(emu) == [52, 68, 62, 30, 34]
    ml_init = [p for _, p in emu.received if p.cmd == 30][0]
    assert ml_init.data == b"\x01"                 # stop all channels on any error
    assert emu.status == sm4.StimStatus.IDLE


@pytest.mark.parametrize("leftover, stop_cmd", [("mid", 34), ("low", 4)])
def test_handshake_stops_a_level_left_active(emu, leftover, stop_cmd):
    import serial
    with serial.Serial(emu.port, timeout=0.5) as raw:
        if leftover == "mid":
            raw.write(sm4.ml_init(1) + sm4.ml_update(2, {1: sm4.ChannelConfig(25.0, sm4.balanced_biphasic(20, 300))}))
        else:
            raw.write(sm4.ll_init(1))
        time.sleep(0.2)
    assert emu.status in (1, 3)
    with P24(emu.port) as stim:
        assert stim.is_open
        assert not emu.stimulating
    cmds = commands(emu)
    assert cmds[-6:] == [52, 68, 62, stop_cmd, 30, 34]


def test_output_is_a_balanced_biphasic_pulse_at_the_profile_frequency(emu):
    with P24(emu.port, channels=(1, 2), frequency_hz=30) as stim:
        stim.set_output([ChannelOutput(1, 20.9, 300), ChannelOutput(2, 12, 250)])
        loop(stim, 0.5)
        (one, two) = [t for t in emu.segments if t.t_end_s is None]
        assert (one.channel, one.current_ma, one.pulse_width_us) == (1, 20, 300)   # rounded down
        assert (two.channel, two.current_ma, two.pulse_width_us) == (2, 12, 250)
        assert one.period_ms == two.period_ms == 33.5       # never faster than asked
        assert one.balanced and two.balanced
        assert one.points == (sm4.Point(300, 20.0), sm4.Point(300, -20.0))
        stim.set_output([ChannelOutput(1, 0, 300)])        # channel 2 not named: zero too
        loop(stim, 0.1)
        assert not emu.stimulating and emu.status == 3    # mid level running, at 0 mA
        stim.set_output([ChannelOutput(2, 5, 300)])
        loop(stim, 0.1)
        assert emu.delivered_current_ma(2) == 5 and emu.delivered_current_ma(1) == 0
    assert emu.status == 0 and not emu.stimulating and 34 in commands(emu)


def test_one_update_in_flight_and_the_newest_wins(emu):
    with P24(emu.port) as stim:
        for ma in range(1, 41):
            stim.set_output([ChannelOutput(1, ma, 300)])
            assert stim.pending_acks <= 2          # ml_update (and at most one ml_init)
        settle(stim)
        assert emu.delivered_current_ma(1) == 40
        updates = [p for _, p in emu.received if p.cmd == 32]
        assert 1 <= len(updates) < 40
        nrs = [p.nr for _, p in emu.received]
        assert len(nrs) == len(set(nrs))           # no packet number reused (fewer than 64 sent)


def test_refuses_values_the_device_cannot_deliver_without_sending(emu):
    with P24(emu.port) as stim:
        before = len(emu.received)
        with pytest.raises(ValueError, match="0..130 mA"):
            stim.set_output([ChannelOutput(1, 131, 300)])
        with pytest.raises(ValueError, match="pulse_width_us=5"):
            stim.set_output([ChannelOutput(1, 10, 5)])
        with pytest.raises(ValueError, match="not configured"):
            stim.set_output([ChannelOutput(3, 10, 300)])
        assert len(emu.received) == before
    with pytest.raises(ValueError, match="frequency_hz"):
        P24(emu.port, frequency_hz=0)
    with pytest.raises(ValueError, match="channels 1..8"):
        P24(emu.port, channels=(9,))


def test_keepalive_only_from_the_loop_and_the_device_stops_when_it_ends(emu):
    with P24(emu.port, keepalive_interval_s=0.3) as stim:
        stim.set_output([ChannelOutput(1, 20, 300)])
        loop(stim, 2.6)                           # longer than the watchdog: kept alive
        assert emu.stimulating and not emu.watchdog_stops
        polls = [t for t, p in emu.received if p.cmd == 36]
        assert len(polls) >= 6 and max(b - a for a, b in zip(polls, polls[1:])) < 0.45
        # the "loop" hangs: nothing else sends
        time.sleep(WATCHDOG_TIMEOUT_S + 0.3)
        assert not emu.stimulating
        t_last = [t for t, p in emu.received if p.cmd in (32, 36)][-1]
        assert WATCHDOG_TIMEOUT_S - 0.05 <= emu.watchdog_stops[0] - t_last <= WATCHDOG_TIMEOUT_S + 0.1
        # when the loop comes back it must not simply carry on: a latched fault, nothing sent
        n = len(emu.received)
        with pytest.raises(StimulationFault, match="nothing sent to the P24 for 2.") as info:
            stim.set_output([ChannelOutput(1, 20, 300)])
        assert info.value.reason == "device_stopped"
        with pytest.raises(StimulationFault):
            stim.set_output([ChannelOutput(1, 20, 300)])
        loop(stim, 0.3)
        assert len(emu.received) == n and not emu.stimulating


def test_a_device_that_stopped_without_notice_is_a_fault_naming_the_channel(emu):
    with P24(emu.port, channels=(1, 2)) as stim:
        stim.set_output([ChannelOutput(1, 0, 300), ChannelOutput(2, 20, 300)])
        loop(stim, 0.5)
        emu.halt_stimulation()
        with pytest.raises(StimulationFault) as info:
            loop(stim, 1.0)
        assert info.value.reason == "device_stopped" and info.value.channel == 2
        assert "channel 2 not stimulating" in str(info.value)


def test_no_keepalive_before_stimulation_or_after_stop(emu):
    with P24(emu.port) as stim:
        loop(stim, 0.5)
        assert 36 not in commands(emu)
        stim.set_output([ChannelOutput(1, 10, 300)])
        loop(stim, 0.5)
        assert 36 in commands(emu)
        stim.stop()
        n = len(emu.received)
        loop(stim, 0.5)
        assert len(emu.received) == n             # a lost ml_stop is not kept alive by us


@pytest.mark.parametrize("kind, reason", [(1, "electrode_error"), (2, "pulse_timeout"), (3, "low_current")])
def test_channel_errors_latch_a_fault_naming_the_channel(emu, kind, reason):
    with P24(emu.port, channels=(1, 2)) as stim:
        stim.set_output([ChannelOutput(1, 20, 300), ChannelOutput(2, 20, 300)])
        loop(stim, 0.3)
        emu.inject_channel_error(2, kind)
        with pytest.raises(StimulationFault) as info:
            loop(stim, 1.0)
        assert info.value.reason == reason and info.value.channel == 2
        assert "channel 2" in str(info.value)
        assert stim.fault is info.value and not stim.is_running
        assert not emu.stimulating                # s=1: the device stopped every channel
        with pytest.raises(StimulationFault):
            stim.set_output([ChannelOutput(1, 20, 300)])
        emu.clear_channel_error(2)
        stim.recover()
        stim.set_output([ChannelOutput(1, 20, 300), ChannelOutput(2, 20, 300)])
        loop(stim, 0.3)
        assert emu.delivered_current_ma(2) == 20


def test_a_channel_error_is_seen_while_updates_keep_flowing(emu):
    """Ramps on several channels keep ml_update going for a whole stride, and an update may
    clear the error the device reported: the poll goes out every keep-alive interval anyway."""
    with P24(emu.port, channels=(1, 2), keepalive_interval_s=0.3) as stim:
        level = 10

        def ramping_loop(seconds: float) -> None:
            nonlocal level
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                stim.poll()
                level = 10 + (level - 9) % 10              # a new output every 25 ms
                stim.set_output([ChannelOutput(1, level, 300), ChannelOutput(2, level, 250)])
                stim.keepalive()
                time.sleep(0.025)

        ramping_loop(0.7)
        polls = [t for t, p in emu.received if p.cmd == 36]
        assert len(polls) >= 2 and max(b - a for a, b in zip(polls, polls[1:])) < 0.45
        emu.inject_channel_error(2)
        t_error = time.monotonic()
        with pytest.raises(StimulationFault) as info:
            ramping_loop(1.0)
        assert info.value.reason == "electrode_error" and info.value.channel == 2
        assert time.monotonic() - t_error <= 0.3 + 0.15


def test_missing_acknowledgement_is_a_timeout(emu):
    with P24(emu.port, ack_timeout_s=0.1) as stim:
        emu.ack_enabled = False
        stim.set_output([ChannelOutput(1, 20, 300)])
        with pytest.raises(StimulatorTimeoutError, match="ml_update"):
            loop(stim, 0.5)
        emu.ack_enabled = True


def test_an_unanswered_update_names_its_values_and_packet_number(emu):
    with P24(emu.port, ack_timeout_s=0.1) as stim:
        emu.ack_enabled = False
        stim.set_output([ChannelOutput(1, 20.9, 300)])
        nr = stim._update_nr
        with pytest.raises(StimulatorTimeoutError) as info:
            loop(stim, 0.5)
        emu.ack_enabled = True
    assert str(info.value) == f"no acknowledgement for ml_update (ch1 20 mA 300 µs) nr {nr} within 100 ms"


def _expected_update(nr: int, period_ms: float, levels) -> bytes:
    """ml_update as the codec builds it from the values: zero current or width is a 0 mA pulse
    of at least the device's 10 µs point."""
    configs = {}
    for ch, (current_ma, pulse_width_us) in levels.items():
        if current_ma == 0 or pulse_width_us == 0:
            current_ma, pulse_width_us = 0, max(pulse_width_us, 10)
        configs[ch] = sm4.ChannelConfig(period_ms, sm4.balanced_biphasic(current_ma, pulse_width_us))
    return sm4.ml_update(nr, configs)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=st.lists(st.tuples(st.floats(0, 100.99), st.sampled_from([0, 10, 150, 300, 500]),
                              st.floats(0, 100.99), st.sampled_from([0, 20, 129, 240])), min_size=1, max_size=8),
       cache_max=st.sampled_from([0, 2, 1024]))
def test_each_update_is_the_codecs_ml_update_whatever_the_payload_cache_holds(emu, seq, cache_max):
    """The driver keeps validated ml_update payloads per output; every frame it writes is still
    byte for byte ``sm4.ml_update`` of the values (rounded down), and the cache stays bounded."""
    with P24(emu.port, channels=(1, 2)) as stim:
        stim.UPDATE_CACHE_MAX = cache_max
        written = []
        real = stim._write
        stim._write = lambda frame: (written.append(bytes(frame)), real(frame))[1]
        for c1, pw1, c2, pw2 in seq:
            stim.set_output([ChannelOutput(1, c1, pw1), ChannelOutput(2, c2, pw2)])
            levels = {1: (math.floor(c1), pw1), 2: (math.floor(c2), pw2)}
            assert written[-1] == _expected_update(stim._update_nr, stim.period_ms, levels)
            settle(stim)
        assert len(stim._updates) <= cache_max


@pytest.mark.parametrize("current_ma, pulse_width_us", [(131.0, 300), (12.0, 4096)])
def test_an_output_outside_the_device_range_is_refused_before_any_write_every_time(emu, current_ma,
                                                                                   pulse_width_us):
    with P24(emu.port) as stim:
        stim.set_output([ChannelOutput(1, 12.0, 300)])       # a valid one first: the cache holds it
        settle(stim)
        written = []
        stim._write = written.append
        for _ in range(2):
            with pytest.raises(ValueError):
                stim._send_output({1: (int(current_ma), pulse_width_us)})
        assert written == [] and list(stim._updates) == [((12, 300),)]
        del stim._write


def test_refused_command_is_an_operation_error_with_the_result_named(emu):
    with P24(emu.port) as stim:
        emu.nack_result = sm4.Result.PARAMETER_ERROR
        stim.set_output([ChannelOutput(1, 20, 300)])
        with pytest.raises(StimulatorOperationError, match="parameter error") as info:
            loop(stim, 0.5)
        assert info.value.result == 2


def test_corrupted_acknowledgement_is_an_error(emu):
    with P24(emu.port) as stim:
        emu.corrupt_acks = True
        stim.set_output([ChannelOutput(1, 20, 300)])
        with pytest.raises(StimulatorError, match="corrupted frame"):
            loop(stim, 0.5)
        assert stim.link_stats["crc_errors"] == 1
        emu.corrupt_acks = False


def test_general_error_and_unknown_command_packets_are_errors(emu):
    with P24(emu.port) as stim:
        with emu._lock:
            emu._send(sm4.general_error(0, sm4.Result.TRANSFER_ERROR))
        with pytest.raises(StimulatorOperationError, match="general error.*transfer error"):
            loop(stim, 0.3)
        with emu._lock:
            emu._send(sm4.unknown_command(0))
        with pytest.raises(StimulatorOperationError, match="unknown command"):
            loop(stim, 0.3)


def test_handshake_failures_are_init_errors(emu):
    emu.ack_enabled = False
    with pytest.raises(StimulatorInitError, match="GetDeviceId"):
        P24(emu.port, init_timeout_s=0.2).open()
    emu.ack_enabled = True
    emu.nack_result = sm4.Result.BUSY
    with pytest.raises(StimulatorInitError, match="busy"):
        P24(emu.port).open()
    with pytest.raises(StimulatorInitError, match="cannot open"):
        P24("/dev/nonexistent-p24").open()


def test_unplugged_device_is_a_disconnected_fault(emu):
    with P24(emu.port) as stim:
        stim.set_output([ChannelOutput(1, 20, 300)])
        loop(stim, 0.2)
        emu.disconnect()
        with pytest.raises(StimulationFault) as info:
            for _ in range(100):
                stim.poll()
                stim.set_output([ChannelOutput(1, 20, 300)])
                time.sleep(0.01)
        assert info.value.reason == "disconnected"
