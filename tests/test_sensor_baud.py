"""``--sensor-baud`` is the sensor unit's baud: the reference firmware's by default, a standard
rate only, and what the user gives is what the port is set to (a real pseudo-terminal)."""
from __future__ import annotations

import inspect
import os
import pty
import re
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from click.testing import CliRunner

from fescontrol.drivers.sensor_protocol import SENSOR_BAUD_DEFAULT
from fescontrol.cli import main
from fescontrol.cli.types import SENSOR_BAUDS

REPO = Path(__file__).resolve().parents[1]


def test_default_is_the_reference_firmwares_baud_everywhere():
    makefile = (REPO / "firmware" / "Makefile").read_text()
    firmware_baud = int(re.search(r"^BAUD\s*\?=\s*(\d+)$", makefile, re.M).group(1))
    assert firmware_baud == SENSOR_BAUD_DEFAULT == 1_000_000
    for command in ("run", "walk", "train", "live", "calibrate"):
        params = {p.name: p for p in main.commands[command].params}
        assert params["sensor_baud"].default == SENSOR_BAUD_DEFAULT, command
    from fescontrol.tools.calibration import record_walk
    from fescontrol.tools.live.session import port_source
    from fescontrol.ui.patient_ui import PatientSession
    from fescontrol.loop.runner import open_sensor, run_device
    for func, name in ((open_sensor, "baudrate"), (run_device, "sensor_baud"), (record_walk, "baudrate"),
                       (port_source, "baudrate"), (PatientSession.__init__, "sensor_baud")):
        assert inspect.signature(func).parameters[name].default == SENSOR_BAUD_DEFAULT, func.__qualname__


def test_help_and_docs_say_it_must_match_the_unit():
    out = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--sensor-baud" in out and "docs/firmware.md" in out and "1000000" in out
    doc = (REPO / "docs" / "firmware.md").read_text()
    assert "--sensor-baud" in doc


def test_allowed_bauds_are_standard_and_carry_100_hz_frames():
    linux = {int(name[1:]) for name in dir(termios) if re.fullmatch(r"B\d+", name)}
    assert set(SENSOR_BAUDS) <= linux
    assert SENSOR_BAUD_DEFAULT in SENSOR_BAUDS and min(SENSOR_BAUDS) >= 33 * 10 * 100


def _fes(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ}
    env.pop("FES_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "fescontrol.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("value, says", [
    ("921601", "921601 Bd is not a standard serial rate that carries 100 Hz frames; allowed: 38400, "),
    ("9600", "9600 Bd is not a standard serial rate"),
    ("fast", "'fast' is not a whole number of Bd; allowed: 38400"),
    ("1e6", "'1e6' is not a whole number of Bd"),
])
def test_a_bad_baud_is_one_line_before_anything_opens(value, says):
    done = _fes("run", "--sensor", "/dev/null", "--stim", "emulator", "--duration", "1", "--sensor-baud", value)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith(("Usage: ", "Try '"))]
    assert len(lines) == 1 and says in lines[0] and "'--sensor-baud'" in lines[0], done.stderr
    assert "emulator on" not in done.stdout  # refused before the stimulator emulator started


@pytest.mark.timeout(90)
@pytest.mark.parametrize("baud, speed", [(500_000, termios.B500000), (None, termios.B1000000)])
def test_the_given_baud_is_what_the_port_is_set_to(baud, speed):
    controller, device = pty.openpty()
    try:
        termios.tcsetattr(device, termios.TCSANOW, _with_speed(termios.tcgetattr(device), termios.B9600))
        extra = ["--sensor-baud", str(baud)] if baud else []
        done = _fes("run", "--sensor", os.ttyname(device), "--stim", "emulator", "--duration", "0.5",
                    "--allow-pure-python", *extra)
        assert "running:" in done.stdout, done.stdout + done.stderr  # it opened the port and ran
        attrs = termios.tcgetattr(device)
        assert (attrs[4], attrs[5]) == (speed, speed)
    finally:
        os.close(controller)
        os.close(device)


def _with_speed(attrs: list, speed: int) -> list:
    attrs = list(attrs)
    attrs[4] = attrs[5] = speed
    return attrs


@pytest.mark.parametrize("command", [["live", "--sensor", "/dev/null", "--port", "0"],
                                     ["calibrate", "--sensor", "/dev/null", "--profile", "configs/default.yaml"]])
def test_live_and_calibrate_refuse_a_bad_baud_in_one_line(command):
    done = _fes(*command, "--sensor-baud", "921601")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith(("Usage: ", "Try '"))]
    assert len(lines) == 1 and "921601 Bd is not a standard serial rate" in lines[0], done.stderr


@pytest.mark.timeout(90)
def test_calibrate_sets_the_given_baud_on_the_port():
    controller, device = pty.openpty()
    try:
        termios.tcsetattr(device, termios.TCSANOW, _with_speed(termios.tcgetattr(device), termios.B9600))
        done = _fes("calibrate", "--sensor", os.ttyname(device), "--profile", str(REPO / "configs" / "default.yaml"),
                    "--seconds", "0.5", "--sensor-baud", "500000")
        assert "Traceback" not in done.stderr and "recording the walk from" in done.stdout, done.stdout + done.stderr
        attrs = termios.tcgetattr(device)
        assert (attrs[4], attrs[5]) == (termios.B500000, termios.B500000)
    finally:
        os.close(controller)
        os.close(device)
