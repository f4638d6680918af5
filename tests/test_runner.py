"""`fes run` end to end over real pseudo-terminals: a sensor pty, the RehaStim2 emulator,
and the device process. SIGTERM and Ctrl-C stop stimulation first, then exit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fescontrol.sim.pty_sensor import PtySensor
from fescontrol.sim.rehastim2 import RehaStim2Emulator
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.synthetic import Stand, Walk, synthesize


def walk_sensor(walk_s: float = 30.0) -> PtySensor:
    rec = synthesize([Stand(1.0), Walk(walk_s, 110)], seed=5)
    frames, _ = recording_stream(rec)
    return PtySensor([f.tobytes() for f in frames], [i / rec.rate_hz for i in range(len(frames))])


def start_fes(sensor_port: str, stim_port: str, *extra: str) -> subprocess.Popen:
    from fescontrol.core.profile import bundled_profile_path
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fescontrol.cli", "run", "--sensor", sensor_port,
                             "--stim", stim_port, "--profile", str(bundled_profile_path("combined")), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig, exit_code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_stops_stimulation_then_exits(sig, exit_code):
    with RehaStim2Emulator() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, emu.port)
        try:
            assert wait_for(lambda: emu.connected and emu.mode != 0, 10), "fes run did not initialise the device"
            sensor.start()
            assert wait_for(lambda: emu.delivered_current_ma(1) > 0, 10), "no stimulation during the walk"
            proc.send_signal(sig)  # mid-burst
            out, _ = proc.communicate(timeout=10)
            t_exit = time.monotonic()
        finally:
            sensor.stop()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == exit_code, out
        assert emu.delivered_current_ma(1) == 0
        assert not emu.stimulating
        last = emu.segments[-1]
        assert last.t_end_s is not None and last.t_end_s <= t_exit
        assert "heel_off" in out and "stopped:" in out


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_sensor_loss_is_a_fault_with_zero_output():
    with RehaStim2Emulator() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, emu.port)
        try:
            assert wait_for(lambda: emu.connected and emu.mode != 0, 10)
            sensor.start()
            assert wait_for(lambda: emu.delivered_current_ma(1) > 0, 10)
            sensor.unplug()
            t_unplug = time.monotonic()
            out, _ = proc.communicate(timeout=10)
        finally:
            sensor.stop()
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1
        assert "FAULT: sensor_stale" in out
        assert emu.delivered_current_ma(1) == 0
        assert emu.segments[-1].t_end_s - t_unplug < 0.2


def test_run_refuses_pure_python_kernel_unless_allowed(tmp_path):
    env = {**os.environ, "FES_PURE_PYTHON": "1"}
    res = subprocess.run([sys.executable, "-m", "fescontrol.cli", "run", "--sensor", "/dev/null", "--stim",
                          "/dev/null"], capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode == 2 and "refusing to run on the pure-Python kernel" in res.stderr
