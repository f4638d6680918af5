"""RehaStim2 driver against the emulator over a REAL pseudo-terminal (no pyserial mocks).

Timing assertions use time.monotonic() on both sides (same process, same clock).
"""
from __future__ import annotations

import importlib.metadata
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from fescontrol.drivers import sciencemode2 as sm
from fescontrol.drivers import stimulator as stim_mod
from fescontrol.drivers.rehastim2 import RehaStim2
from fescontrol.drivers.stimulator import (
    ChannelOutput,
    StimulationFault,
    StimulatorError,
    StimulatorInitError,
    StimulatorOperationError,
    StimulatorTimeoutError,
    UnknownStimulatorError,
    get_stimulator_class,
    known_stimulators,
)
from fescontrol.sim.rehastim2 import RehaStim2Emulator

REPO = Path(__file__).resolve().parents[1]
ACK_TIMEOUT_S = 0.1
TIMING_MARGIN_S = 0.06


# --------------------------------------------------------------------------- fixtures, helpers

@pytest.fixture
def emulator():
    emu = RehaStim2Emulator().start()
    yield emu
    emu.stop()
    assert emu.errors == [], "the emulator thread hit an internal error"


@pytest.fixture
def stim(emulator):
    s = RehaStim2(emulator.port, ack_timeout_s=ACK_TIMEOUT_S)
    s.open()
    yield s
    s.stop()
    s.close()


def settle(stim, timeout_s: float = 0.5) -> None:
    """Poll until every acknowledgement came back (raises what poll raises)."""
    deadline = time.monotonic() + timeout_s
    while stim.pending_acks:
        stim.poll()
        assert time.monotonic() < deadline, "acknowledgements did not settle"
        time.sleep(0.001)


def poll_until_raises(stim, timeout_s: float, keepalive: bool = False) -> tuple[StimulatorError, float]:
    """Poll every ~1 ms until poll() raises; returns (error, monotonic time it was raised)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stim.poll()
            if keepalive:
                stim.keepalive()
        except StimulatorError as exc:
            return exc, time.monotonic()
        time.sleep(0.001)
    raise AssertionError(f"poll() did not raise within {timeout_s} s")


def packets(emulator, cmd: int) -> list[sm.Packet]:
    return [p for _, p in list(emulator.received) if p.cmd == cmd]


# --------------------------------------------------------------------------- handshake

@pytest.mark.timeout(10)
def test_handshake_acks_the_init_pkt_and_initialises(emulator, stim):
    assert stim.is_open and not stim.is_running
    assert emulator.connected and emulator.mode == sm.StimulationMode.INITIALISED
    (init_ack,) = packets(emulator, sm.Command.INIT_ACK)
    assert init_ack.pkt in [pkt for _, pkt in emulator.sent_inits] and init_ack.data == b"\x00"
    # channel 1 at 40 Hz, t2 8 ms: byte for byte the worked example's InitChannelListMode pkt 1
    (init_cl,) = packets(emulator, sm.Command.INIT_CHANNEL_LIST_MODE)
    assert sm.encode_frame(*init_cl) == bytes.fromhex("F0 81 C7 81 5C 01 1E 00 01 00 0D 00 30 00 0F")


@pytest.mark.timeout(10)
def test_open_waits_for_a_fresh_init_after_flushing_stale_ones(emulator):
    time.sleep(1.1)                                   # ~3 Inits pile up in the pty
    s = RehaStim2(emulator.port)
    t0 = time.monotonic()
    s.open()
    try:
        assert time.monotonic() - t0 < 0.5 + 0.1      # at most one Init period
        assert emulator.init_acks == [emulator.sent_inits[-1][1]]
    finally:
        s.close()


@pytest.mark.timeout(10)
def test_open_without_device_fails_with_init_error():
    silent = RehaStim2Emulator()                      # pty exists, device never started
    try:
        s = RehaStim2(silent.port, handshake_timeout_s=0.6)
        t0 = time.monotonic()
        with pytest.raises(StimulatorInitError, match="no Init"):
            s.open()
        assert 0.6 <= time.monotonic() - t0 < 0.6 + 0.2
        assert not s.is_open
    finally:
        silent.stop()


def test_open_bad_port_is_an_init_error(tmp_path):
    with pytest.raises(StimulatorInitError, match="cannot open"):
        RehaStim2(str(tmp_path / "no-such-tty")).open()


@pytest.mark.timeout(10)
def test_device_parameter_nack_during_open_is_an_init_error(emulator):
    # 8 channels need 8 x 1.5 ms slots = 12 ms > t1 = 8 ms at 125 Hz: the device answers -2
    s = RehaStim2(emulator.port, channels=range(1, 9), frequency_hz=125.0)
    with pytest.raises(StimulatorInitError) as info:
        s.open()
    assert isinstance(info.value.__cause__, StimulatorOperationError)
    assert info.value.__cause__.result == sm.Result.PARAMETER_ERROR
    assert not s.is_open and emulator.mode == sm.StimulationMode.START


# --------------------------------------------------------------------------- output

@pytest.mark.timeout(10)
def test_set_output_delivers_exact_values_worked_example(emulator, stim):
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    assert stim.is_running and stim.pending_acks == 1
    settle(stim)
    (start,) = packets(emulator, sm.Command.START_CHANNEL_LIST_MODE)
    assert sm.encode_frame(*start) == bytes.fromhex("F0 81 36 81 53 02 20 00 01 2C 14 0F")
    (train,) = emulator.segments
    assert (train.channel, train.current_ma, train.pulse_width_us, train.t_end_s) == (1, 20, 300, None)
    assert emulator.delivered_current_ma(1) == 20 and emulator.stimulating
    time.sleep(0.2)
    pulses = emulator.pulses(train.t_start_s, train.t_start_s + 0.2)
    assert len(pulses) == 8                                        # 40 Hz for 200 ms
    assert all(math.isclose(b.t_s - a.t_s, 0.025) for a, b in zip(pulses, pulses[1:]))
    assert {(p.channel, p.current_ma, p.pulse_width_us) for p in pulses} == {(1, 20, 300)}


@pytest.mark.timeout(10)
def test_two_channels_and_omitted_channel_gets_zero(emulator):
    with RehaStim2(emulator.port, channels=(2, 1)) as s:
        s.set_output([ChannelOutput(1, 35.0, 250), ChannelOutput(2, 12.0, 150)])
        settle(s)
        assert emulator.delivered_current_ma(1) == 35 and emulator.delivered_current_ma(2) == 12
        s.set_output([ChannelOutput(2, 14.0, 150)])                # channel 1 omitted -> 0
        settle(s)
        assert emulator.delivered_current_ma(1) == 0 and emulator.delivered_current_ma(2) == 14
        start = packets(emulator, sm.Command.START_CHANNEL_LIST_MODE)[-1]
        assert sm.parse_start_channel_list_mode(start.data) == [(0, 0, 0), (0, 150, 14)]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("asked_ma,sent_ma", [(20.99, 20), (15.5, 15), (7.0000001, 7), (0.9, 0), (126.9, 126)])
def test_fractional_current_is_rounded_down(emulator, stim, asked_ma, sent_ma):
    stim.set_output([ChannelOutput(1, asked_ma, 200)])
    settle(stim)
    start = packets(emulator, sm.Command.START_CHANNEL_LIST_MODE)[-1]
    assert sm.parse_start_channel_list_mode(start.data) == [(0, 200, sent_ma)]
    assert emulator.delivered_current_ma(1) == sent_ma
    assert emulator.max_current_ma == sent_ma <= asked_ma


@pytest.mark.timeout(10)
@pytest.mark.parametrize("output,pattern", [
    (ChannelOutput(1, 127.0, 300), r"current_ma=127.*0\.\.126 mA"),
    (ChannelOutput(1, 20.0, 501), r"pulse_width_us=501.*0 or 20\.\.500"),
    (ChannelOutput(1, 20.0, 10), r"pulse_width_us=10.*0 or 20\.\.500"),
    (ChannelOutput(2, 20.0, 300), r"channel 2 is not configured"),
    (ChannelOutput(1, -1.0, 300), r"current_ma=-1.0"),
    (ChannelOutput(1, float("nan"), 300), r"current_ma=nan"),
])
def test_invalid_output_raises_before_sending_anything(emulator, stim, output, pattern):
    sent_before, received_before = stim.last_sent_monotonic, len(emulator.received)
    with pytest.raises(ValueError, match=pattern):
        stim.set_output([output])
    time.sleep(0.02)
    assert stim.last_sent_monotonic == sent_before and len(emulator.received) == received_before
    assert stim.pending_acks == 0 and not emulator.stimulating


# --------------------------------------------------------------------------- acknowledgements

@pytest.mark.timeout(10)
def test_nack_raises_operation_error_with_result(emulator, stim):
    emulator.nack_result = sm.Result.PARAMETER_ERROR
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    error, _ = poll_until_raises(stim, 0.5)
    assert isinstance(error, StimulatorOperationError) and error.result == -2
    assert "StartChannelListMode" in str(error) and "parameter error" in str(error)
    assert not emulator.stimulating and stim.pending_acks == 0


@pytest.mark.timeout(10)
def test_missing_ack_times_out_within_ack_timeout(emulator, stim):
    emulator.ack_enabled = False
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    error, raised_at = poll_until_raises(stim, 1.0)
    elapsed = raised_at - stim.last_sent_monotonic
    assert isinstance(error, StimulatorTimeoutError), error
    assert ACK_TIMEOUT_S <= elapsed <= ACK_TIMEOUT_S + TIMING_MARGIN_S, elapsed
    assert stim.pending_acks == 0


@pytest.mark.timeout(10)
def test_ack_with_bad_crc_is_not_accepted(emulator, stim):
    emulator.corrupt_acks = True
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    error, _ = poll_until_raises(stim, 1.0)
    assert isinstance(error, StimulatorTimeoutError)
    assert stim.link_stats["crc_errors"] >= 1


# --------------------------------------------------------------------------- faults

@pytest.mark.timeout(10)
@pytest.mark.parametrize("code,reason", [(-1, "emergency_switch"), (-2, "electrode_error"), (-3, "module_error")])
def test_stimulation_error_is_a_latched_fault_until_recover(emulator, stim, code, reason):
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    settle(stim)
    emulator.raise_error(code)
    error, _ = poll_until_raises(stim, 0.5)
    assert isinstance(error, StimulationFault) and error.reason == reason
    assert not emulator.stimulating and not stim.is_running and stim.fault is not None
    stim.poll()                                                     # reported once, stays latched
    with pytest.raises(StimulationFault, match="recover"):
        stim.set_output([ChannelOutput(1, 20.0, 300)])
    assert stim.keepalive() is False
    stim.recover()                                                  # device stayed connected: no new InitAck
    assert stim.fault is None and len(emulator.init_acks) == 1
    stim.set_output([ChannelOutput(1, 18.0, 300)])
    settle(stim)
    assert emulator.delivered_current_ma(1) == 18


@pytest.mark.timeout(15)
def test_watchdog_stops_device_then_device_reset_fault_then_recover(emulator, stim):
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    settle(stim)
    # the loop "hangs": nothing is sent any more
    last_sent = stim.last_sent_monotonic
    time.sleep(1.1)
    assert emulator.stimulating, "device stopped before its 1.2 s watchdog"
    error, raised_at = poll_until_raises(stim, 1.0)
    assert isinstance(error, StimulationFault) and error.reason == "device_reset"
    (reset_at,) = emulator.watchdog_resets
    assert 1.2 <= reset_at - last_sent <= 1.5, reset_at - last_sent
    (train,) = emulator.segments
    assert train.t_end_s == reset_at and not emulator.stimulating
    assert any(t >= reset_at for t, _ in emulator.sent_inits)      # Init again after the reset
    assert raised_at - reset_at < 0.1
    # the driver does not re-handshake by itself
    time.sleep(0.6)
    stim.poll()
    assert not emulator.connected and len(emulator.init_acks) == 1
    with pytest.raises(StimulationFault):
        stim.set_output([ChannelOutput(1, 20.0, 300)])
    # a person cleared the fault
    stim.recover()
    assert emulator.connected and emulator.mode == sm.StimulationMode.INITIALISED
    assert len(emulator.init_acks) == 2
    stim.set_output([ChannelOutput(1, 16.0, 300)])
    settle(stim)
    assert emulator.delivered_current_ma(1) == 16


@pytest.mark.timeout(10)
def test_keepalive_from_the_loop_keeps_device_alive_with_gaps_under_half_a_second(emulator, stim):
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    settle(stim)
    t_end = time.monotonic() + 1.6                                 # longer than the 1.2 s watchdog
    while time.monotonic() < t_end:
        stim.poll()
        stim.keepalive()
        time.sleep(0.005)
    assert emulator.watchdog_resets == [] and emulator.stimulating
    times = [t for t, _ in list(emulator.received)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= stim.keepalive_interval_s + 0.03 <= 0.5
    # the keep-alive is acknowledged (GetStimulationMode), so silence would be noticed
    assert len(packets(emulator, sm.Command.GET_STIMULATION_MODE)) >= 4
    assert stim.pending_acks <= 1


@pytest.mark.timeout(5)
def test_keepalive_only_after_a_quiet_interval(emulator, stim):
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    assert stim.keepalive() is False
    time.sleep(stim.keepalive_interval_s)
    assert stim.keepalive() is True
    assert stim.keepalive() is False


@pytest.mark.parametrize("interval_s", [0.51, 1.0, 0.0, -0.1])
def test_keepalive_interval_never_above_half_a_second(interval_s):
    with pytest.raises(ValueError, match="keepalive_interval_s"):
        RehaStim2("loop://", keepalive_interval_s=interval_s)
    RehaStim2("loop://", keepalive_interval_s=0.5)


@pytest.mark.timeout(10)
def test_disconnect_is_a_fault_and_stop_does_not_raise(emulator, stim):
    stim.set_output([ChannelOutput(1, 20.0, 300)])
    settle(stim)
    emulator.disconnect()
    time.sleep(0.02)
    error, _ = poll_until_raises(stim, 0.5, keepalive=True)
    assert isinstance(error, StimulationFault) and error.reason == "disconnected"
    stim.stop()                                                    # best effort, no exception
    stim.close()


# --------------------------------------------------------------------------- stop, restart, context

@pytest.mark.timeout(10)
def test_stop_sends_zero_then_stop_and_device_ends_stopped(emulator, stim):
    stim.set_output([ChannelOutput(1, 30.0, 300)])
    settle(stim)
    stim.stop()
    assert not stim.is_running and stim.pending_acks == 0
    assert not emulator.stimulating and emulator.mode == sm.StimulationMode.START
    assert emulator.delivered_current_ma(1) == 0
    cmds = [p for _, p in list(emulator.received)]
    assert [p.cmd for p in cmds[-2:]] == [sm.Command.START_CHANNEL_LIST_MODE, sm.Command.STOP_CHANNEL_LIST_MODE]
    assert sm.parse_start_channel_list_mode(cmds[-2].data) == [(0, 0, 0)]
    # restart after stop re-initialises the channel list
    stim.set_output([ChannelOutput(1, 10.0, 300)])
    settle(stim)
    assert emulator.delivered_current_ma(1) == 10


@pytest.mark.timeout(10)
def test_stop_on_a_silent_device_returns_after_the_ack_timeout(emulator, stim):
    stim.set_output([ChannelOutput(1, 30.0, 300)])
    settle(stim)
    emulator.ack_enabled = False
    t0 = time.monotonic()
    stim.stop()
    assert time.monotonic() - t0 < ACK_TIMEOUT_S + 0.1
    assert not emulator.stimulating                                 # the commands still arrived


@pytest.mark.timeout(10)
def test_context_manager_stops_and_closes_even_on_error(emulator):
    with pytest.raises(RuntimeError):
        with RehaStim2(emulator.port) as s:
            s.set_output([ChannelOutput(1, 25.0, 300)])
            settle(s)
            raise RuntimeError("control loop crashed")
    assert not s.is_open and not emulator.stimulating and emulator.mode == sm.StimulationMode.START


@pytest.mark.timeout(10)
def test_port_url_spy_wraps_the_pty_and_logs_traffic(emulator, tmp_path):
    log_file = tmp_path / "link.txt"
    with RehaStim2(f"spy://{emulator.port}?file={log_file}") as s:
        s.set_output([ChannelOutput(1, 20.0, 300)])
        settle(s)
    assert emulator.max_current_ma == 20 and not emulator.stimulating
    assert "TX" in log_file.read_text() and "RX" in log_file.read_text()


# --------------------------------------------------------------------------- emulator as a device

def _read_packets(port, decoder, n, timeout_s=1.0):
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += decoder.feed(port.read(port.in_waiting or 1))
    return got


@pytest.mark.timeout(10)
def test_foreign_client_drives_emulator_with_the_worked_bytes():
    """A client that is not ours: raw pyserial and the protocol document's bytes."""
    emu = RehaStim2Emulator()
    port = serial.Serial(emu.port, 460800, parity=serial.PARITY_EVEN, timeout=0.05)
    try:
        emu.start()
        decoder = sm.FrameDecoder()
        first = port.read(9)
        assert first == bytes.fromhex("F0 81 47 81 56 00 01 01 0F")          # device Init pkt 0
        port.write(bytes.fromhex("F0 81 7F 81 56 00 02 00 0F"))               # InitAck
        port.write(bytes.fromhex("F0 81 C7 81 5C 01 1E 00 01 00 0D 00 30 00 0F"))
        port.write(bytes.fromhex("F0 81 36 81 53 02 20 00 01 2C 14 0F"))
        acks = _read_packets(port, decoder, 2)
        assert acks == [sm.Packet(1, 31, b"\x00"), sm.Packet(2, 33, b"\x00")]
        assert emu.delivered_current_ma(1) == 20 and emu.segments[0].pulse_width_us == 300
        bad = bytearray(sm.start_channel_list_mode(3, [(0, 300, 40)]))
        bad[-2] ^= 0x01                                                     # corrupted current byte
        port.write(bytes(bad))
        assert _read_packets(port, decoder, 1) == [sm.Packet(3, 33, b"\xFF")]  # -1: CRC error
        assert emu.delivered_current_ma(1) == 20
        port.write(bytes.fromhex("F0 81 EF 81 57 04 22 0F"))                  # Stop pkt 4
        assert _read_packets(port, decoder, 1) == [sm.Packet(4, 35, b"\x00")]
        assert not emu.stimulating and emu.max_current_ma == 20
    finally:
        port.close()
        emu.stop()
    assert emu.errors == []


@pytest.mark.timeout(10)
def test_emulator_refuses_bad_parameters_and_wrong_mode():
    emu = RehaStim2Emulator()
    port = serial.Serial(emu.port, 460800, parity=serial.PARITY_EVEN, timeout=0.05)
    try:
        emu.start()
        decoder = sm.FrameDecoder()
        (init,) = _read_packets(port, decoder, 1)
        port.write(sm.init_ack(init.pkt))
        port.write(sm.start_channel_list_mode(1, [(0, 300, 20)]))          # not initialised: -3
        port.write(sm.single_pulse(2, 1, 200, 10))                          # start mode: allowed
        port.write(sm.encode_frame(3, 30, bytes([0, 1, 0, 13, 0, 12, 0])))  # t1 = 7 ms: -2
        port.write(sm.init_channel_list_mode(4, [1], 40.0))
        port.write(sm.encode_frame(5, 32, bytes([0, 0x01, 0x2C, 127])))     # 127 mA: -2
        port.write(sm.single_pulse(6, 1, 200, 10))                          # initialised: -3
        port.write(sm.get_stimulation_mode(7))
        port.write(sm.encode_frame(8, 32, bytes([0, 0x01, 0xF5, 20])))      # 501 µs: -2
        results = [(p.cmd, sm.signed_byte(p.data[0])) for p in _read_packets(port, decoder, 8)]
        assert results == [(33, -3), (37, 0), (31, -2), (31, 0), (33, -2), (37, -3), (11, 0), (33, -2)]
        assert emu.mode == sm.StimulationMode.INITIALISED and emu.max_current_ma == 10
    finally:
        port.close()
        emu.stop()


@pytest.mark.timeout(10)
def test_emulator_accepts_what_the_device_accepts():
    """Stop in start mode (0, a no-op), any t2 code (2 ms here), a 10 µs pulse (delivered as
    20 µs), data bytes escaped although they need not be (0x55, 0x0A)."""
    emu = RehaStim2Emulator()
    port = serial.Serial(emu.port, 460800, parity=serial.PARITY_EVEN, timeout=0.05)
    try:
        emu.start()
        decoder = sm.FrameDecoder()
        (init,) = _read_packets(port, decoder, 1)
        port.write(sm.init_ack(init.pkt))
        port.write(sm.stop_channel_list_mode(1))                            # start mode: 0
        port.write(sm.encode_frame(2, 30, bytes([0, 1, 0, 1, 0, 48, 0])))   # t2 = 2 ms: 0
        port.write(sm.encode_frame(3, 32, bytes([0, 0, 10, 20])))           # 10 µs -> 20 µs
        body = bytes([4, 32, 0, 0x01, 0x81, 0x55 ^ 0x55, 0x81, 0x0A ^ 0x55])  # 341 µs, 10 mA
        port.write(bytes([0xF0, 0x81, sm.crc8(body) ^ 0x55, 0x81, len(body) ^ 0x55]) + body + b"\x0f")
        results = [(p.pkt, p.cmd, sm.signed_byte(p.data[0])) for p in _read_packets(port, decoder, 4)]
        assert results == [(1, 35, 0), (2, 31, 0), (3, 33, 0), (4, 33, 0)]
        assert [(s.current_ma, s.pulse_width_us) for s in emu.segments] == [(20, 20), (10, 341)]
    finally:
        port.close()
        emu.stop()


@pytest.mark.timeout(15)
def test_standalone_emulator_process_prints_port_and_summary():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "fescontrol.sim.rehastim2", "--pty"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/"), port
        with RehaStim2(port) as s:
            s.set_output([ChannelOutput(1, 22.0, 280)])
            settle(s)
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "1 pulse train(s)" in out and "ch1:  22 mA 280 us" in out and "max 22 mA" in out


# --------------------------------------------------------------------------- registry

def test_registry_finds_rehastim2_by_name():
    assert get_stimulator_class("rehastim2") is RehaStim2
    assert "rehastim2" in known_stimulators()


def test_registry_unknown_name_lists_known_ones():
    with pytest.raises(UnknownStimulatorError, match=r"unknown stimulator 'nope'; known: .*rehastim2"):
        get_stimulator_class("nope")
    assert issubclass(UnknownStimulatorError, LookupError)


def test_registry_is_lazy():
    code = ("import sys, fescontrol.drivers.stimulator as s; assert 'fescontrol.drivers.rehastim2' not in sys.modules; "
            "s.get_stimulator_class('rehastim2'); assert 'fescontrol.drivers.rehastim2' in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_registry_merges_entry_points_but_builtins_win(monkeypatch):
    group = stim_mod.ENTRY_POINT_GROUP
    eps = importlib.metadata.EntryPoints([
        importlib.metadata.EntryPoint("thirdparty", "fescontrol.drivers.rehastim2:RehaStim2", group),
        importlib.metadata.EntryPoint("rehastim2", "builtins:object", group),
        importlib.metadata.EntryPoint("notastim", "builtins:dict", group),
    ])
    monkeypatch.setattr(stim_mod.importlib.metadata, "entry_points",
                        lambda group=None: eps.select(group=group))
    assert get_stimulator_class("thirdparty") is RehaStim2
    assert get_stimulator_class("rehastim2") is RehaStim2
    assert {"thirdparty", "rehastim2"} <= set(known_stimulators())
    with pytest.raises(StimulatorInitError, match="not a Stimulator"):
        get_stimulator_class("notastim")


def test_error_hierarchy():
    for cls in (StimulatorInitError, StimulatorOperationError, StimulatorTimeoutError, StimulationFault):
        assert issubclass(cls, StimulatorError)
    assert StimulatorOperationError("x", -3).result == -3
    assert StimulationFault("electrode_error").reason == "electrode_error"
    with pytest.raises(ValueError):
        StimulationFault("bored")
