"""`fes run --sensor PORT --stim p24:PORT --profile configs/two_channel.yaml` (and rehastim2:PORT)
end to end over real pseudo-terminals: a sensor pty replaying a walk, the stimulator's emulator,
and the device process driving two channels, each with its own amplitude, pulse width and timing."""
from __future__ import annotations

import signal
import time

import pytest

from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.p24 import P24Emulator
from fescontrol.sim.rehastim2 import RehaStim2Emulator

from .test_run_p24 import finish, start_fes, wait_for, walk_sensor

PROFILE = bundled_profile_path("two_channel")
EMULATORS = {"p24": P24Emulator, "rehastim2": RehaStim2Emulator}


def initialised(backend: str, emu) -> bool:
    return emu.status == 2 if backend == "p24" else emu.mode == 1


def bursts(emu, channel: int, gap_s: float = 0.1) -> list[tuple[float, float]]:
    """(start, end) of each stretch with a train on ``channel``, trains closer than gap_s merged."""
    out: list[list[float]] = []
    now = time.monotonic()
    for tr in sorted(t for t in emu.segments if t.channel == channel):
        end = tr.t_end_s if tr.t_end_s is not None else now
        if out and tr.t_start_s - out[-1][1] < gap_s:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([tr.t_start_s, end])
    return [tuple(b) for b in out]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", sorted(EMULATORS))
def test_two_channels_end_to_end(backend):
    profile = load_profile(PROFILE)
    ch2 = profile.extra_channels[0]
    with EMULATORS[backend]() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, f"{backend}:{emu.port}", PROFILE)
        try:
            # the sensor starts with the handshake (the first frames wait in the pty), so the loop
            # finds data at once even when this test process is slow to notice the handshake
            assert wait_for(lambda: emu.received, 15), "fes run never talked to the stimulator"
            sensor.start()
            assert wait_for(lambda: initialised(backend, emu), 15), f"fes run did not initialise the {backend}"
            enough = wait_for(lambda: len(bursts(emu, 2)) >= 6 or proc.poll() is not None, 25)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
            assert enough and len(bursts(emu, 2)) >= 6, f"too few channel-2 bursts: {bursts(emu, 2)}\n{out}"
        finally:
            finish(proc, sensor)
        assert proc.returncode == 0, out
        assert "heel_off" in out and "stopped:" in out
        assert not emu.stimulating and emu.errors == []
        assert [p.cmd for _, p in emu.received][-1] == 34          # ml_stop / StopChannelListMode last
        trains = emu.segments
        one = [t for t in trains if t.channel == 1]
        two = [t for t in trains if t.channel == 2]
        assert {t.channel for t in trains} == {1, 2}
        assert all(t.pulse_width_us == profile.stimulation.pulse_width_us for t in one)
        assert all(t.pulse_width_us == ch2.pulse_width_us for t in two)
        assert 0 < max(t.current_ma for t in one) <= profile.stimulation.amplitude_ma
        assert 0 < max(t.current_ma for t in two) <= ch2.amplitude_ma
        if backend == "p24":
            assert all(t.balanced and t.period_ms == 25.0 for t in trains)
        # channel 2: its own burst, 100 ms after each channel-1 onset (heel-off), 400 ms long. In
        # wall time on a shared machine: a stalled device process catches up on a backlog of
        # frames, so intervals may shrink or stretch by up to stale_ms (exact sensor-time
        # timing: tests/test_two_channel.py)
        b1, b2 = bursts(emu, 1)[:-1], bursts(emu, 2)[:-1]
        slack_s = profile.device.stale_ms / 1000
        assert len(b2) >= 5
        for start, end in b2:
            assert end - start <= ch2.timing.duration_ms / 1000 + slack_s
            lead = min((start - s1 for s1, _ in b1 if s1 <= start), default=None)
            assert lead is not None and 0.1 - slack_s <= lead <= 0.1 + 0.035 + slack_s, (start, b1)
        assert all(end - start <= profile.envelope.max_stim_ms / 1000 + 0.05 for start, end in b1)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_an_electrode_error_on_channel_two_stops_both_and_names_it():
    with P24Emulator() as emu:
        sensor = walk_sensor()
        proc = start_fes(sensor.port, f"p24:{emu.port}", PROFILE)
        try:
            assert wait_for(lambda: emu.received, 15)
            sensor.start()
            assert wait_for(lambda: emu.status == 2, 15)
            assert wait_for(lambda: any(t.channel == 2 and t.t_end_s is None for t in emu.segments), 25)
            emu.inject_channel_error(2)
            out, _ = proc.communicate(timeout=15)
        finally:
            finish(proc, sensor)
        assert proc.returncode == 1, out
        fault_line = [line for line in out.splitlines() if line.startswith("FAULT:")]
        assert fault_line and "electrode_error" in fault_line[0] and "channel 2" in fault_line[0], out
        assert not emu.stimulating and emu.status == 0            # ml_stop after the fault
        assert emu.channel_faults[0][1:] == (2, 1)
