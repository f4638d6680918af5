"""The P24 emulator as other ScienceMode4 clients see it, over its real pseudo-terminal.

Two clients that share no code with drivers/sciencemode4.py:

* ``MinimalClient`` below, written straight from the protocol notes (framing, stuffing,
  CRC-16/XMODEM): it sends the notes' worked requests byte for byte and expects the notes'
  worked acknowledgements byte for byte;
* science_mode_4 (the public ScienceMode4 Python library, PyPI), driving the mid level.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
import serial

from fescontrol.sim.p24 import WATCHDOG_TIMEOUT_S, P24Emulator

pytestmark = pytest.mark.timeout(60)

WORKED = {k: bytes.fromhex(v) for k, v in json.loads(
    (Path(__file__).parent / "data" / "sciencemode4_worked_bytes.json").read_text()).items()}


class MinimalClient:
    """A ScienceMode4 client in a few lines, from the notes alone."""

    def __init__(self, port: str):
        self.link = serial.Serial(port, timeout=0)
        self.buf = b""

    def close(self) -> None:
        self.link.close()

    @staticmethod
    def crc(data: bytes) -> int:
        crc = 0
        for b in data:
            crc ^= b << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
                crc &= 0xFFFF
        return crc

    @staticmethod
    def frame(nr: int, cmd: int, data: bytes = b"") -> bytes:
        body = b"".join(bytes((0x81, b ^ 0x55)) if b in (0xF0, 0x0F, 0x81) else bytes((b,))
                        for b in ((nr << 10 | cmd).to_bytes(2, "big") + data))
        length, crc = len(body) + 10, MinimalClient.crc(body)
        head = b"".join(bytes((0x81, b ^ 0x55)) for b in (length >> 8, length & 0xFF, crc >> 8, crc & 0xFF))
        return b"\xf0" + head + body + b"\x0f"

    def send(self, wire: bytes) -> None:
        self.link.write(wire)

    def receive(self, timeout_s: float = 1.0) -> bytes:
        """The next whole frame as it came over the wire."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.buf += self.link.read(4096)
            start = self.buf.find(b"\xf0")
            if start >= 0 and len(self.buf) >= start + 9:
                length = ((self.buf[start + 2] ^ 0x55) << 8) | (self.buf[start + 4] ^ 0x55)
                if len(self.buf) >= start + length:
                    wire, self.buf = self.buf[start:start + length], self.buf[start + length:]
                    assert wire[-1] == 0x0F
                    crc = ((wire[6] ^ 0x55) << 8) | (wire[8] ^ 0x55)
                    assert crc == self.crc(wire[9:-1]), wire.hex()
                    return wire
            time.sleep(0.002)
        raise AssertionError(f"no reply within {timeout_s} s (buffer {self.buf.hex()})")

    def exchange(self, request: str, ack: str) -> None:
        self.send(WORKED[request])
        got = self.receive()
        assert got.hex().upper() == WORKED[ack].hex().upper(), f"{request}: got {got.hex()}"


@pytest.fixture
def emulator():
    emu = P24Emulator(device_id="TESTDEV001", firmware=(1, 2, 3), science_mode=(4, 0, 0),
                      firmware_hash=0x12345678)
    emu.start()
    yield emu
    emu.stop()
    assert emu.errors == []


def test_minimal_client_sees_every_worked_acknowledgement(emulator):
    c = MinimalClient(emulator.port)
    try:
        c.exchange("get_device_id_nr1", "get_device_id_ack_nr1")
        c.exchange("get_extended_version_nr2", "get_extended_version_ack_nr2")
        c.exchange("get_stim_status_nr3", "get_stim_status_ack_nr3")
        c.exchange("ml_update_ch1_20mA_300us_40Hz_nr5", "ml_update_ack_not_initialized_nr5")
        c.exchange("ml_init_nr4", "ml_init_ack_nr4")
        c.exchange("ml_update_ch1_20mA_300us_40Hz_nr5", "ml_update_ack_nr5")
        c.exchange("ml_get_current_data_nr6", "ml_get_current_data_ack_nr6")
        c.exchange("escape_ml_get_current_data_nr60", "escape_ml_get_current_data_ack_nr60")
        c.exchange("escape_ml_update_ch1_20mA_300us_60ms_nr11", "escape_ml_update_60ms_ack_nr11")
        c.exchange("ml_update_ch1_ch2_15mA_300us_40Hz_nr10", "ml_update_ch1_ch2_15mA_ack_nr10")
        # 131 mA is beyond the output stage: a parameter error, built by the minimal client
        over = (300 << 20 | (2 * 131 + 300) << 10).to_bytes(4, "big") + \
               (300 << 20 | (300 - 2 * 131) << 10).to_bytes(4, "big")
        c.send(c.frame(5, 32, bytes((0x01, 0x10, 0x00, 0x64)) + over))
        assert c.receive() == WORKED["ml_update_ack_parameter_error_nr5"]
        emulator.inject_channel_error(1)
        c.exchange("ml_get_current_data_nr6", "ml_get_current_data_ack_ch1_electrode_error_nr6")
        c.exchange("ml_stop_nr9", "ml_stop_ack_nr9")
        c.exchange("ll_init_nr12", "ll_init_ack_nr12")
        emulator.clear_channel_error(1)
        c.send(WORKED["ll_channel_config_ch1_20mA_300us_nr13"])
        assert c.receive() == c.frame(13, 3, bytes((0, 0, 0)))
        c.exchange("ll_stop_nr14", "ll_stop_ack_nr14")
        bad = bytearray(WORKED["ml_stop_nr9"])
        bad[8] ^= 0x01
        c.send(bytes(bad))
        assert c.receive() == WORKED["general_error_transfer_error_nr0"]
        c.send(c.frame(7, 500))
        assert c.receive() == WORKED["unknown_cmd_nr0"]
    finally:
        c.close()
    trains = emulator.segments
    assert [(t.channel, t.current_ma, t.pulse_width_us, t.period_ms) for t in trains] == [
        (1, 20, 300, 25.0), (1, 20, 300, 60.0), (1, 15, 300, 25.0), (2, 15, 300, 25.0)]
    assert all(t.balanced and t.t_end_s is not None for t in trains)
    assert [(p.channel, p.current_ma) for p in emulator.ll_pulses] == [(1, 20)]
    assert emulator.status == 0 and not emulator.stimulating


def test_watchdog_stops_two_seconds_after_the_last_keepalive(emulator):
    c = MinimalClient(emulator.port)
    try:
        c.exchange("ml_init_nr4", "ml_init_ack_nr4")
        c.exchange("ml_update_ch1_20mA_300us_40Hz_nr5", "ml_update_ack_nr5")
        for _ in range(3):                     # polled every 1 s: keeps running
            time.sleep(1.0)
            c.exchange("ml_get_current_data_nr6", "ml_get_current_data_ack_nr6")
        t_last = time.monotonic()
        deadline = t_last + WATCHDOG_TIMEOUT_S + 1.0
        while emulator.stimulating and time.monotonic() < deadline:
            time.sleep(0.005)
        t_stop = emulator.segments[-1].t_end_s
        assert not emulator.stimulating
        assert WATCHDOG_TIMEOUT_S - 0.05 <= t_stop - t_last <= WATCHDOG_TIMEOUT_S + 0.1
        assert emulator.watchdog_stops and emulator.status == 2
        # no notice was sent; a new update restarts it
        assert c.link.read(4096) == b""
        c.exchange("ml_update_ch1_20mA_300us_40Hz_nr5", "ml_update_ack_nr5")
        assert emulator.stimulating
    finally:
        c.close()
    # every pulse until the stop is recorded, 40 Hz from the start of the train
    first = emulator.segments[0]
    pulses = [p for p in emulator.pulses(first.t_start_s, first.t_end_s) if p.channel == 1]
    assert abs(len(pulses) - (first.t_end_s - first.t_start_s) * 40) <= 1.5
    assert all(p.points[0].current_ma == 20 and p.points[1].current_ma == -20 for p in pulses)


def test_knobs_no_ack_and_corrupt_ack(emulator):
    c = MinimalClient(emulator.port)
    try:
        emulator.ack_enabled = False
        c.send(WORKED["ml_init_nr4"])
        with pytest.raises(AssertionError, match="no reply"):
            c.receive(timeout_s=0.3)
        assert emulator.status == 2            # it acted all the same
        emulator.ack_enabled = True
        emulator.corrupt_acks = True
        c.send(WORKED["get_stim_status_nr3"])
        with pytest.raises(AssertionError):
            c.receive()
        emulator.corrupt_acks = False
        emulator.nack_result = 21
        c.send(WORKED["ml_update_ch1_20mA_300us_40Hz_nr5"])
        assert c.receive() == c.frame(5, 33, bytes((21,)))
        assert not emulator.stimulating        # refused, not applied
    finally:
        c.close()


def test_disconnect_is_an_io_error_for_the_client(emulator):
    c = MinimalClient(emulator.port)
    try:
        emulator.disconnect()
        with pytest.raises((serial.SerialException, OSError)):
            for _ in range(50):
                c.link.write(WORKED["ml_stop_nr9"])
                c.link.read(10)
                time.sleep(0.01)
    finally:
        c.close()


# --------------------------------------------------------------------------- science_mode_4

try:
    import science_mode_4  # noqa: F401 - the public client, a test dependency (setup.py extras)
    HAVE_SCIENCE_MODE_4 = True
except ImportError:
    HAVE_SCIENCE_MODE_4 = False
needs_science_mode_4 = pytest.mark.skipif(
    not HAVE_SCIENCE_MODE_4, reason="science_mode_4 is not installed (it needs Python >= 3.11)")


def _run(coro):
    return asyncio.run(coro)


@needs_science_mode_4
def test_science_mode_4_library_drives_the_emulator(emulator):
    from science_mode_4 import ChannelPoint, DeviceP24, MidLevelChannelConfiguration, SerialPortConnection
    from science_mode_4.protocol.types import ResultAndError

    async def session():
        conn = SerialPortConnection(emulator.port)
        conn.open()
        try:
            device = DeviceP24(conn)
            await device.initialize()
            general = device.get_layer_general()
            assert general.device_id == "TESTDEV001"
            mid = device.get_layer_mid_level()
            await mid.init(do_stop_on_all_errors=True)
            config = MidLevelChannelConfiguration(True, 0, 25, [ChannelPoint(300, 20), ChannelPoint(300, -20)])
            await mid.update([config])
            reports = []
            for _ in range(3):
                await asyncio.sleep(0.5)
                reports.append(await mid.get_current_data())
            emulator.inject_channel_error(1)
            after = await mid.get_current_data()
            await mid.stop()
            status = await general.get_stim_status()
            return reports, after, status
        finally:
            conn.close()

    reports, after, status = _run(session())
    assert all(r.is_stimulation_active_per_channel[0] and r.channel_error[0] == ResultAndError.NO_ERROR
               for r in reports)
    assert after.channel_error[0] == ResultAndError.ELECTRODE_ERROR
    assert not after.is_stimulation_active_per_channel[0]
    assert int(status.stim_status) == 0
    (train,) = emulator.segments
    assert (train.channel, train.current_ma, train.pulse_width_us, train.period_ms, train.balanced) == \
        (1, 20, 300, 25.0, True)
    assert 1.4 <= train.t_end_s - train.t_start_s <= 2.0


@needs_science_mode_4
def test_science_mode_4_initialize_stops_a_running_mid_level(emulator):
    from science_mode_4 import DeviceP24, SerialPortConnection
    c = MinimalClient(emulator.port)
    c.exchange("ml_init_nr4", "ml_init_ack_nr4")
    c.exchange("ml_update_ch1_20mA_300us_40Hz_nr5", "ml_update_ack_nr5")
    c.close()
    assert emulator.status == 3

    async def session():
        conn = SerialPortConnection(emulator.port)
        conn.open()
        try:
            await DeviceP24(conn).initialize()
        finally:
            conn.close()

    _run(session())
    assert emulator.status == 0 and not emulator.stimulating


def test_standalone_prints_its_port_and_a_summary():
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "fescontrol.cli", "emulator", "p24", "--pty"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/")
        c = MinimalClient(port)
        try:
            c.exchange("ml_init_nr4", "ml_init_ack_nr4")
            c.exchange("ml_update_ch1_20mA_300us_40Hz_nr5", "ml_update_ack_nr5")
            c.exchange("ml_stop_nr9", "ml_stop_ack_nr9")
        finally:
            c.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "P24 emulator: 1 pulse train(s), max 20 mA" in out
    assert "ch1:  20.0 mA  300 us   40.00 Hz balanced" in out
