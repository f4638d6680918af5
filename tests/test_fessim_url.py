"""The simulated sensor as a pyserial URL: ``fessim://RECORDING?side=left&speed=1``.

Registration both ways (pyserial's test_url.py pattern), parsing with its one-line refusals,
the pace of the stream over a real pty, and ``fes run --sensor fessim://… --stim emulator``
end to end as a real process: stimulation delivered by the emulator backend, clean exit.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.sim import urlhandler
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.run import load_any
from fescontrol.sim.urlhandler.protocol_fessim import MAX_SPEED, FessimURL, parse_url

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registered():
    urlhandler.register()
    yield
    urlhandler.unregister()


def read_until_over(port, timeout_s: float = 20.0) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + timeout_s
    while not port.recording_over() and time.monotonic() < deadline:
        data += port.read(4096)
        if not data or not port.in_waiting:
            time.sleep(0.001)
    return bytes(data)


# ----- registration -------------------------------------------------------------------------

def test_the_url_opens_only_when_registered():
    urlhandler.unregister()
    with pytest.raises(ValueError, match="protocol 'fessim' not known"):
        serial.serial_for_url("fessim://synthetic:walk?speed=0")
    urlhandler.register()
    urlhandler.register()        # idempotent
    try:
        assert serial.protocol_handler_packages.count(urlhandler.PACKAGE) == 1
        with serial.serial_for_url("fessim://synthetic:walk?speed=0", timeout=0) as port:
            assert port.fileno() >= 0 and os.isatty(port.fileno())
    finally:
        urlhandler.unregister()
    assert urlhandler.PACKAGE not in serial.protocol_handler_packages


# ----- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("fessim://physionet:GaCo01", FessimURL("physionet:GaCo01", "left", 1.0)),
    ("fessim://physionet:GaCo01?side=right&speed=0", FessimURL("physionet:GaCo01", "right", 0.0)),
    ("FESSIM://synthetic:walk?speed=2.5", FessimURL("synthetic:walk", "left", 2.5)),
    ("fessim:///data/walk%3F1.txt?side=left", FessimURL("/data/walk?1.txt", "left", 1.0)),
    ("fessim://walks/a.txt?", FessimURL("walks/a.txt", "left", 1.0)),
])
def test_good_urls(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url, fragment", [
    ("fessim://", "no recording"),
    ("fessim://?side=left", "no recording"),
    ("fessim://synthetic:walk?side=up", "side='up'; allowed: left, right"),
    ("fessim://synthetic:walk?speed=-1", "speed='-1'"),
    ("fessim://synthetic:walk?speed=nan", "speed='nan'"),
    ("fessim://synthetic:walk?speed=inf", "speed='inf'"),
    ("fessim://synthetic:walk?speed=fast", "speed='fast'"),
    ("fessim://synthetic:walk?speed=101", "speed='101'"),
    ("fessim://synthetic:walk?sped=1", "unknown option 'sped'; allowed: side, speed"),
    ("fessim://synthetic:walk?side", "option 'side' has no value"),
    ("fessim://synthetic:walk?side=left&side=right", "option 'side' given twice"),
    ("loop://", "not a fessim:// URL"),
])
def test_bad_urls_are_one_clear_line(url, fragment):
    with pytest.raises(serial.SerialException) as info:
        parse_url(url)
    text = str(info.value)
    assert fragment in text and "\n" not in text


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_speed_is_accepted_exactly_when_finite_and_in_range(speed):
    url = f"fessim://synthetic:walk?speed={speed!r}"
    if 0 <= speed <= MAX_SPEED:
        assert parse_url(url).speed == speed
    else:
        with pytest.raises(serial.SerialException, match="speed="):
            parse_url(url)


def test_an_unknown_recording_is_refused_at_open(registered):
    with pytest.raises(serial.SerialException, match=r"recording 'physionet:NoSuch01': not found"):
        serial.serial_for_url("fessim://physionet:NoSuch01")


# ----- the stream ---------------------------------------------------------------------------

def test_speed_zero_streams_every_frame_as_fast_as_read(registered):
    frames, _ = recording_stream(load_any("synthetic:walk", "right"))
    t0 = time.monotonic()
    with serial.serial_for_url("fessim://synthetic:walk?side=right&speed=0", timeout=0) as port:
        assert port.sensor_clock_rate == 0
        data = read_until_over(port)
    assert data == frames.tobytes()                    # the right foot, every frame, in order
    assert time.monotonic() - t0 < 0.5 * len(frames) / 100.0   # far faster than real time


def test_speed_one_paces_frames_at_their_timestamps(registered):
    with serial.serial_for_url("fessim://synthetic:walk?speed=1", timeout=0) as port:
        assert port.sensor_clock_rate == 1
        t0 = time.monotonic()
        data = bytearray()
        while time.monotonic() - t0 < 0.5:
            data += port.read(4096)
            time.sleep(0.005)
        assert not port.recording_over()
    n = len(data) // sp.FRAME_LEN
    # 100 Hz for 0.5 s: about 50 frames (a loaded machine may run late, never ahead)
    assert 10 <= n <= 56, n
    seqs = np.frombuffer(bytes(data[:n * sp.FRAME_LEN]), np.uint8).reshape(n, sp.FRAME_LEN)
    assert bytes(seqs[0, :2]) == sp.SYNC


def test_close_stops_the_writer_and_the_pty(registered):
    port = serial.serial_for_url("fessim://synthetic:walk?speed=1", timeout=0)
    fd = port.fileno()
    port.close()
    port.close()                                   # idempotent
    with pytest.raises(OSError):
        os.fstat(fd)
    # the autouse fixture of conftest.py checks that no pty-sensor thread is left


# ----- fes run end to end -------------------------------------------------------------------

def fes_run(*args: str, timeout: float = 45):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FES_PURE_PYTHON", None)
    return subprocess.run([sys.executable, "-m", "fescontrol.cli", "run", "--allow-pure-python", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def delivered(out: str) -> tuple[int, int]:
    match = re.search(r"RehaStim2 emulator: (\d+) pulse train\(s\), \d+ single pulse\(s\), max (\d+) mA", out)
    assert match, out
    return int(match[1]), int(match[2])


def test_fes_run_replays_a_whole_recording_into_the_emulator_and_exits_cleanly():
    frames, _ = recording_stream(load_any("physionet:GaCo01", "left"))
    res = fes_run("--sensor", "fessim://physionet:GaCo01?side=left&speed=0", "--stim", "emulator")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "FAULT" not in res.stdout
    assert re.search(r"RehaStim2 emulator on /dev/pts/\d+", res.stdout)
    assert f"stopped: {len(frames)} frames, 0 lost, 0 CRC errors" in res.stdout
    trains, max_ma = delivered(res.stdout)
    assert trains >= 50 and max_ma > 0             # about 90 strides, each a burst


@pytest.mark.slow
def test_fes_run_at_real_time_delivers_stimulation_and_stops_at_duration():
    res = fes_run("--sensor", "fessim://physionet:GaCo01?side=left&speed=1", "--stim", "emulator",
                  "--duration", "5")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FAULT" not in res.stdout and "heel_off" in res.stdout
    trains, max_ma = delivered(res.stdout)
    assert trains > 0 and max_ma > 0
