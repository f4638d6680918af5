"""The emulators are ordinary stimulator backends: found by name through the drivers registry
(entry-point group ``fescontrol.stimulators``), opened and closed like hardware, and the device
loop selects them without importing the simulator."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fescontrol.drivers.stimulator import (ChannelOutput, StimulatorInitError, UnknownStimulatorError,
                                get_stimulator_class, known_stimulators)
from fescontrol.loop.runner import open_stimulator, stimulator_choice
from fescontrol.sim.backend import EmulatedP24, EmulatedRehaStim2

pytestmark = pytest.mark.timeout(30)


def test_the_registry_finds_the_emulators_by_name():
    assert {"emulator", "p24-emulator", "rehastim2", "p24"} <= set(known_stimulators())
    assert get_stimulator_class("emulator") is EmulatedRehaStim2
    assert get_stimulator_class("p24-emulator") is EmulatedP24
    with pytest.raises(UnknownStimulatorError, match="emulator, p24, p24-emulator, rehastim2"):
        get_stimulator_class("rehastim3")


@pytest.mark.parametrize("stim, expected", [
    ("emulator", ("emulator", "")),
    ("p24-emulator", ("p24-emulator", "")),
    ("/dev/ttyUSB1", ("rehastim2", "/dev/ttyUSB1")),
    ("p24:/dev/ttyUSB1", ("p24", "/dev/ttyUSB1")),
    ("spy:///dev/ttyUSB1", ("rehastim2", "spy:///dev/ttyUSB1")),
    ("emulator:/dev/ttyUSB1", ("emulator", "/dev/ttyUSB1")),
])
def test_stim_choice(default_profile, stim, expected):
    assert stimulator_choice(default_profile, stim) == expected


def test_a_backend_with_its_own_device_takes_no_port_and_hardware_needs_one(default_profile):
    with pytest.raises(StimulatorInitError, match="brings its own device and takes no port"):
        open_stimulator(default_profile, "emulator:/dev/ttyUSB1")
    with pytest.raises(StimulatorInitError, match="the p24 backend needs a port"):
        open_stimulator(default_profile, "p24")
    with pytest.raises(ValueError, match="makes its own pseudo-terminal"):
        EmulatedRehaStim2("/dev/ttyUSB1")


@pytest.mark.parametrize("name", ["emulator", "p24-emulator"])
def test_open_deliver_close_like_hardware(default_profile, name):
    stim = open_stimulator(default_profile, name)
    assert not stim.emulator.stimulating
    with stim:
        assert stim.is_open and stim.opened_note().endswith(stim.emulator.port)
        channel = default_profile.stimulation.channel
        stim.set_output([ChannelOutput(channel, 12.0, 200)])
        deadline = time.monotonic() + 2
        while stim.emulator.delivered_current_ma(channel) != 12 and time.monotonic() < deadline:
            stim.poll()
            time.sleep(0.005)
        assert stim.emulator.delivered_current_ma(channel) == 12
    # the context manager stopped the output, closed the port and stopped the emulator
    assert not stim.is_open and not stim.emulator.stimulating
    assert "1 pulse train(s)" in stim.closed_note()
    # (conftest's autouse check: no emulator thread is left running)


def test_a_failed_handshake_stops_the_emulator(default_profile):
    stim = open_stimulator(default_profile, "emulator")
    stim.emulator.ack_enabled = False
    stim.handshake_timeout_s = 0.6
    with pytest.raises(StimulatorInitError):
        stim.open()
    assert not stim.is_open


def test_the_device_loop_selects_the_emulator_without_importing_the_simulator():
    code = ("import sys; import fescontrol.loop.runner, fescontrol.loop.controller; "
            "print(sorted(m for m in sys.modules if m == 'sim' or m.startswith('sim.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         env={**os.environ}).stdout
    assert out.strip() == "[]"
