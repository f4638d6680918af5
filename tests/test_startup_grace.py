"""The start-up grace (issue 14's gap), over REAL pseudo-terminals.

Opening its port resets an Arduino Uno or Nano (DTR auto-reset): the sensor unit is silent for
~1–2 s while the bootloader waits. Until the session's first valid frame the loop waits up to
``limits.SENSOR_STARTUP_GRACE_MS`` of wall time instead of ``device.stale_ms``: no stale fault
and no stimulation meanwhile, while the stimulator keep-alive still goes out from the loop (the
P24 stops on its own 2 s watchdog without it). A unit that never sends is SENSOR_STALE at the
end of the grace; after the first frame, ``stale_ms`` applies as before.
"""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from fescontrol.core.codes import Fault
from fescontrol.core.limits import SENSOR_STARTUP_GRACE_MS
from fescontrol.drivers.sciencemode4 import Command as P24Command
from fescontrol.loop.controller import Controller
from fescontrol.drivers import sciencemode2 as sm
from fescontrol.drivers.stimulator import ChannelOutput
from fescontrol.loop.runner import open_sensor, open_stimulator
from fescontrol.sim.p24 import WATCHDOG_TIMEOUT_S, P24Emulator, StimStatus
from fescontrol.sim.realtime import emulator_bursts
from fescontrol.sim.rehastim2 import RehaStim2Emulator
from fescontrol.sim.pty_sensor import PtySensor
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.synthetic import Stand, Walk, synthesize

from .conftest import profile_with
from .test_run_p24 import finish, start_fes, wait_for

GRACE_S = SENSOR_STARTUP_GRACE_MS / 1000
#: an Uno with the older bootloader: silent this long after its port opens
RESET_SILENCE_S = 1.8


def walk_frames(walk_s: float) -> tuple[list[bytes], np.ndarray]:
    rec = synthesize([Stand(1.0)] + ([Walk(walk_s, 110)] if walk_s > 0 else []), seed=7)
    frames, _ = recording_stream(rec)
    return [f.tobytes() for f in frames], np.arange(len(frames)) / rec.rate_hz


def late_sensor(silence_s: float, walk_s: float = 4.0, **kwargs) -> PtySensor:
    """A sensor whose first frame goes out ``silence_s`` after ``start()`` (a unit resetting)."""
    chunks, times = walk_frames(walk_s)
    return PtySensor(chunks, times + silence_s, keep_times=True, **kwargs)


def test_grace_is_bounded_and_longer_than_a_reset():
    """The bound named in code covers an Uno's reset and is finite (a dead unit still faults)."""
    assert RESET_SILENCE_S < GRACE_S <= 5.0
    assert GRACE_S < WATCHDOG_TIMEOUT_S + 1.0  # a fault reaches a person about as fast as the P24 stops


@pytest.mark.timeout(30)
def test_no_stale_fault_before_the_first_frame_then_stale_ms(kernel_impl):
    """Both kernels: a sensor silent for 1.8 s after the loop starts is not stale (on main:
    SENSOR_STALE after stale_ms, 100 ms); once frames have come, silence is stale after stale_ms."""
    profile = profile_with("default")
    sensor = late_sensor(RESET_SILENCE_S, walk_s=0.0)   # 1 s of standing, then the port goes quiet
    link = open_sensor(sensor.port)
    controller = Controller(profile, implementation=kernel_impl)
    k = controller.kernel
    last_frame_at: list[float] = []
    fault_at: list[float] = []

    def should_stop() -> bool:
        if sensor.sent == len(sensor.chunks) and not last_frame_at:
            last_frame_at.append(time.monotonic())
        if k.fault:
            fault_at.append(time.monotonic())
            return True
        return False

    try:
        controller.start()
        t0 = time.monotonic()
        sensor.start()
        controller.run(link.fileno(), should_stop)
    finally:
        sensor.stop()
        link.close()
    first_write_s = sensor.write_times[0] / 1e9
    assert first_write_s - t0 >= RESET_SILENCE_S - 0.05
    assert k.frames == len(sensor.chunks), "frames sent after the silence were not all read"
    fault = controller.supervisor.fault
    assert fault is not None and fault.reason == Fault.SENSOR_STALE, fault
    assert fault_at and last_frame_at
    # the fault is the silence AFTER the last frame (stale_ms), not the silence before the first
    assert fault_at[0] > last_frame_at[0]
    assert controller.supervisor.deliveries == 0 or controller.supervisor.last_delivered_ma == 0


@pytest.mark.timeout(30)
def test_a_unit_that_never_sends_is_stale_at_the_end_of_the_grace(kernel_impl):
    """Both kernels: no frame at all is SENSOR_STALE once the grace is over — not before it, and
    within it plus a slow machine's margin (a dead unit is still found)."""
    profile = profile_with("default")
    sensor = PtySensor([], [])          # the port exists and never sends
    link = open_sensor(sensor.port)
    controller = Controller(profile, implementation=kernel_impl)
    try:
        controller.start()
        t0 = time.monotonic()
        controller.run(link.fileno(), lambda: bool(controller.kernel.fault)
                       or time.monotonic() - t0 > GRACE_S + 5.0)
        elapsed = time.monotonic() - t0
    finally:
        sensor.stop()
        link.close()
    fault = controller.supervisor.fault
    assert fault is not None and fault.reason == Fault.SENSOR_STALE, fault
    assert GRACE_S <= elapsed <= GRACE_S + 2.0, elapsed
    assert controller.kernel.frames == 0 and controller.supervisor.deliveries == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_fes_run_waits_for_a_resetting_unit_and_keeps_the_stimulator_alive():
    """``fes run`` on the RehaStim2 emulator (1.2 s watchdog) with a sensor silent for 1.8 s after
    the loop starts (an Uno resetting): no fault, no train before the first frame, acknowledged
    keep-alives through the silence (the emulator's watchdog never resets it), and stimulation
    in the swings once frames flow. On main the run ended at once with SENSOR_STALE."""
    profile = profile_with("default")
    with RehaStim2Emulator() as emu:
        sensor = late_sensor(RESET_SILENCE_S, walk_s=30.0)
        proc = start_fes(sensor.port, f"rehastim2:{emu.port}")
        try:
            head = []
            while not head or not head[-1].startswith("running:"):
                line = proc.stdout.readline()
                assert line, f"fes run ended before its loop started: {head}"
                head.append(line)
            t_running = time.monotonic()
            sensor.start()
            # stop while frames still flow (silence after them would be stale after stale_ms)
            wait_for(lambda: len(emulator_bursts(emu, 0.0)) >= 3 or proc.poll() is not None
                     or sensor.done.is_set(), 30)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        finally:
            finish(proc, sensor)
        out = "".join(head) + out
        first_frame_s = sensor.write_times[0] / 1e9
        received = emu.received
        bursts = emulator_bursts(emu, 0.0)
        resets = emu.watchdog_resets
    assert proc.returncode == 0, out
    assert "FAULT" not in out, out
    assert first_frame_s - t_running >= RESET_SILENCE_S - 0.1
    assert not resets, resets
    polls = [t for t, p in received if p.cmd == sm.Command.GET_STIMULATION_MODE and t_running < t < first_frame_s]
    # the keep-alive runs every keepalive_ms (300) through the whole silence
    assert len(polls) >= int(RESET_SILENCE_S / (profile.device.keepalive_ms / 1000)) - 1, polls
    assert bursts, "no stimulation once frames flowed"
    assert bursts[0][0] > first_frame_s, (bursts[0], first_frame_s)


@pytest.mark.timeout(30)
def test_a_running_p24_is_kept_alive_through_the_grace():
    """A P24 already running (a zero-current update went out) while the sensor is silent for
    longer than the P24's 2 s watchdog but inside the grace: the loop's get-current-data polls
    keep it running, and no fault latches before the first frame."""
    silence_s = WATCHDOG_TIMEOUT_S + 0.3
    assert silence_s < GRACE_S
    profile = profile_with("default", device={"stimulator": "p24"})
    with P24Emulator() as emu:
        stimulator = open_stimulator(profile, f"p24:{emu.port}")
        stimulator.open()
        sensor = late_sensor(silence_s, walk_s=0.0)
        link = open_sensor(sensor.port)
        controller = Controller(profile, stimulator=stimulator)
        try:
            stimulator.set_output([ChannelOutput(profile.stimulation.channel, 0.0, profile.stimulation.pulse_width_us)])
            assert wait_for(lambda: emu.status == StimStatus.ML_RUNNING, 5), emu.status
            controller.start()
            t0 = time.monotonic()
            sensor.start()
            controller.run(link.fileno(), lambda: bool(controller.kernel.fault) or controller.kernel.frames >= 20)
        finally:
            sensor.stop()
            link.close()
            stimulator.close()
        stops = emu.watchdog_stops
        polls = [t for t, p in emu.received if p.cmd == P24Command.ML_GET_CURRENT_DATA and t > t0]
    assert controller.supervisor.fault is None, controller.supervisor.fault
    assert controller.kernel.frames >= 20
    assert not stops, stops
    assert len(polls) >= int(silence_s / (profile.device.keepalive_ms / 1000)) - 1, polls
