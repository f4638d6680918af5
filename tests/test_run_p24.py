"""`fes run --stim p24:PORT` end to end over real pseudo-terminals: a sensor pty replaying a
walk, the P24 emulator, and the device process with the bundled single-channel profile."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.p24 import WATCHDOG_TIMEOUT_S, P24Emulator
from fescontrol.sim.pty_sensor import PtySensor
from fescontrol.sim.replay import recording_stream
from fescontrol.sim.synthetic import Stand, Walk, synthesize

PROFILE = bundled_profile_path("default")


def walk_sensor(walk_s: float = 30.0) -> PtySensor:
    rec = synthesize([Stand(1.0), Walk(walk_s, 110)], seed=7)
    frames, _ = recording_stream(rec)
    return PtySensor([f.tobytes() for f in frames], [i / rec.rate_hz for i in range(len(frames))])


def start_fes(sensor_port: str, stim: str, profile=PROFILE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fescontrol.cli", "run", "--sensor", sensor_port,
                             "--stim", stim, "--profile", str(profile)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def bursts(emu: P24Emulator, gap_s: float = 0.1) -> list[tuple[float, float]]:
    """(start, end) of each stretch with a train on channel 1, trains closer than gap_s merged."""
    out: list[list[float]] = []
    now = time.monotonic()
    for tr in sorted(emu.segments):
        end = tr.t_end_s if tr.t_end_s is not None else now
        if out and tr.t_start_s - out[-1][1] < gap_s:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([tr.t_start_s, end])
    return [tuple(b) for b in out]


def finish(proc: subprocess.Popen, sensor: PtySensor) -> None:
    sensor.stop()
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_run_stimulates_in_swings_and_stops_at_exit():
    profile = load_profile(PROFILE)
    with P24Emulator() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, f"p24:{emu.port}")
        try:
            assert wait_for(lambda: emu.status == 2, 15), "fes run did not initialise the P24"
            sensor.start()
            assert wait_for(lambda: len(bursts(emu)) >= 5, 20), f"too few bursts: {bursts(emu)}"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
            t_exit = time.monotonic()
        finally:
            finish(proc, sensor)
        assert proc.returncode == 0, out
        assert "heel_off" in out and "stopped:" in out
        assert not emu.stimulating and emu.status == 0          # ml_stop: stimulation and HV off
        last_cmds = [p.cmd for _, p in emu.received][-1:]
        assert last_cmds == [34]
        assert emu.segments[-1].t_end_s <= t_exit
        trains = emu.segments
        assert all(t.balanced and t.period_ms == 25.0 and t.pulse_width_us == profile.stimulation.pulse_width_us
                   for t in trains)
        assert 0 < emu.max_current_ma <= profile.stimulation.amplitude_ma
        # one burst per swing: each shorter than the profile's cap, with stance gaps between
        complete = bursts(emu)[:-1]
        assert all(end - start <= profile.envelope.max_stim_ms / 1000 + 0.05 for start, end in complete)
        gaps = [b[0] - a[1] for a, b in zip(complete, complete[1:])]
        assert gaps and min(gaps) > 0.1
        assert not emu.watchdog_stops and emu.errors == []


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_electrode_error_is_a_fault_naming_the_channel():
    with P24Emulator() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, f"p24:{emu.port}")
        try:
            assert wait_for(lambda: emu.status == 2, 15)
            sensor.start()
            assert wait_for(lambda: emu.stimulating, 20)
            emu.inject_channel_error(1)
            out, _ = proc.communicate(timeout=15)
        finally:
            finish(proc, sensor)
        assert proc.returncode == 1, out
        fault_line = [line for line in out.splitlines() if line.startswith("FAULT:")]
        assert fault_line and "electrode_error" in fault_line[0] and "channel 1" in fault_line[0], out
        assert not emu.stimulating and emu.status == 0            # ml_stop after the fault
        assert emu.channel_faults[0][1:] == (1, 1)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_device_watchdog_stops_stimulation_when_the_loop_hangs():
    with P24Emulator() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, f"p24:{emu.port}")
        try:
            assert wait_for(lambda: emu.status == 2, 15)
            sensor.start()
            assert wait_for(lambda: emu.stimulating, 20)
            os.kill(proc.pid, signal.SIGSTOP)                    # the whole device loop freezes
            t_frozen = time.monotonic()
            try:
                stopped = wait_for(lambda: not emu.stimulating, WATCHDOG_TIMEOUT_S + 1.0)
                t_seen = time.monotonic()
                received = emu.received
                n_trains = len(emu.segments)
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=15)
        finally:
            finish(proc, sensor)
        assert stopped, "the P24 kept stimulating while the loop was frozen"
        last_rx = [t for t, p in received if t <= t_frozen + 0.05][-1]
        (stop_t,) = emu.watchdog_stops[:1]
        # nothing arrived while frozen, and the device stopped 2 s after the last packet
        assert all(t <= t_frozen + 0.05 for t, _ in received)
        assert WATCHDOG_TIMEOUT_S - 0.05 <= stop_t - last_rx <= WATCHDOG_TIMEOUT_S + 0.15
        assert t_seen - t_frozen <= WATCHDOG_TIMEOUT_S + 0.2
        assert not emu.stimulating
        # when the loop runs again it faults instead of restarting stimulation
        assert proc.returncode == 1, out
        assert any(line.startswith("FAULT:") for line in out.splitlines()), out
        assert set(p.cmd for t, p in emu.received if t > t_frozen) <= {34}      # only ml_stop
        assert len(emu.segments) == n_trains
