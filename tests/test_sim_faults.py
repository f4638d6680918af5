"""Injected faults: each gives zero output within one loop period and a latched fault
with the right reason. Sensor faults in batch replays; the unplugged sensor and the
stimulator faults in real time over real pseudo-terminals with the RehaStim2 emulator."""
from __future__ import annotations

import numpy as np
import pytest

from fescontrol.core.codes import Fault
from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.faults import apply_sensor_faults, parse_fault
from fescontrol.sim.replay import recording_stream, replay
from fescontrol.sim.sources import load_recording
from fescontrol.sim.synthetic import Stand, Walk, synthesize

BATCH_FAULTS = [("drop@20:30", Fault.SEQUENCE_GAP), ("crc@20:10", Fault.LINK_ERRORS),
                ("clock-jump@20", Fault.CLOCK_JUMP), ("stuck-heel@20", Fault.HEEL_STUCK),
                ("garbage@20:5000", None), ("imu-saturation@20:3", Fault.IMU_SATURATED)]


@pytest.fixture(scope="module")
def walk():
    return load_recording("physionet:GaCo01", side="left")


def test_parse_fault_errors_are_clear():
    assert parse_fault("drop@12.5:20").value == 20
    with pytest.raises(ValueError, match="unknown fault 'melt'"):
        parse_fault("melt@1")
    with pytest.raises(ValueError, match="give the time"):
        parse_fault("drop")


@pytest.mark.parametrize("fault, reason", BATCH_FAULTS)
def test_sensor_fault_zeroes_output_on_the_faulting_sample(walk, fault, reason):
    rec = walk
    profile = load_profile(bundled_profile_path("default"))
    if fault.startswith("imu"):  # needs a mode that uses the IMU
        rec = synthesize([Stand(2), Walk(30, 100), Stand(2)], seed=3)
        profile = load_profile(bundled_profile_path("combined"))
    frames, _ = recording_stream(rec)
    chunks, _, _ = apply_sensor_faults(frames, rec.rate_hz, [parse_fault(fault)])
    result = replay(rec, profile, stream=b"".join(chunks))
    tr = result.trace
    if reason is None:  # garbage without lost frames: resynchronise, no fault, walking goes on
        assert result.faults == [] and result.counters["garbage_bytes"] >= 5000
        return
    assert [f.reason for f in result.faults] == [reason]
    first = int(np.flatnonzero(tr["fault"])[0])
    assert tr["current_ma"][first:].max() == 0.0
    assert tr["t_us"][first] / 1e6 - 1.0 >= 19.9  # not before the injected fault


def short_walk():
    return synthesize([Stand(1.5), Walk(5, 110), Stand(0.5)], seed=2)


def run_realtime(fault: str | None):
    from fescontrol.sim.realtime import realtime_replay
    rec = short_walk()
    profile = load_profile(bundled_profile_path("combined"))
    frames, _ = recording_stream(rec)
    specs = [parse_fault(fault)] if fault else []
    chunks, times, unplug_s = apply_sensor_faults(frames, rec.rate_hz, [s for s in specs if s.is_sensor])
    return realtime_replay(rec, profile, chunks, times, unplug_s, [s for s in specs if not s.is_sensor],
                           echo=lambda *_: None), profile


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault, detail", [("unplug@3.3", "sensor port closed"),
                                           ("stim-error@3.3", "electrode_error"),
                                           ("stim-no-ack@3.3", "no acknowledgement"),
                                           ("stim-disconnect@3.3", "disconnected")])
def test_realtime_fault_latches_and_stops(fault, detail):
    result, profile = run_realtime(fault)
    assert len(result.faults) == 1
    f = result.faults[0]
    assert f.reason in (Fault.SENSOR_STALE, Fault.STIMULATOR)
    assert detail in f.detail
    # the controller's own output is zero from the faulting sample on
    tr = result.trace
    assert tr["current_ma"][np.flatnonzero(tr["fault"])].max(initial=0.0) == 0.0
    # stimulation was delivered before the fault, none starts after it
    assert result.bursts_s and result.bursts_s[0][0] < 3.3
    assert all(onset < 3.3 + 0.2 for onset, _ in result.bursts_s)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_realtime_walk_without_faults_matches_batch():
    """Over real ptys the emulator delivers a burst for every swing the batch replay found."""
    result, profile = run_realtime(None)
    batch = replay(short_walk(), profile)
    assert result.faults == []
    assert len(result.bursts_s) == len(batch.bursts_s) >= 4
    onsets_rt = np.array([b[0] for b in result.bursts_s])
    onsets_batch = np.array([b[0] for b in batch.bursts_s])
    # real-time delivery lags the sensor clock by the link and the device's own start
    assert np.all(np.abs(onsets_rt - onsets_batch) < 0.06)


@pytest.mark.timeout(60)
def test_stimulator_error_cleared_by_a_person_then_stimulation_resumes():
    """Electrode error from the device: latched fault, zero output; after a person clears it
    the driver redoes the handshake and walking stimulation works again."""
    from fescontrol.drivers.stimulator import get_stimulator_class
    from fescontrol.loop.controller import Controller
    from fescontrol.machine.gait import GaitState
    from fescontrol.sim.rehastim2 import RehaStim2Emulator
    import time

    rec = synthesize([Stand(1), Walk(12, 110)], seed=4)
    profile = load_profile(bundled_profile_path("combined"))
    frames, _ = recording_stream(rec)
    with RehaStim2Emulator() as emu:
        stim = get_stimulator_class("rehastim2")(emu.port, frequency_hz=profile.stimulation.frequency_hz)
        stim.open()
        c = Controller(profile, stimulator=stim)
        c.start()

        def walk(start, stop):
            for i in range(start, stop, 5):  # 50 ms of frames, then service the stimulator
                c.feed(frames[i:i + 5].tobytes())
                c.supervisor.service()
                time.sleep(0.005)

        walk(0, 500)
        assert emu.max_current_ma > 0
        emu.raise_error(-2)
        time.sleep(0.05)
        walk(500, 520)
        assert c.machine.state == GaitState.FAULT
        assert c.supervisor.fault.reason == Fault.STIMULATOR and "electrode_error" in c.supervisor.fault.detail
        walk(520, 700)
        assert emu.delivered_current_ma(1) == 0 and not emu.stimulating
        n_trains = len(emu.segments)
        c.supervisor.clear("orthotist", "electrode re-seated")
        c.start()
        walk(700, 1200)
        assert c.supervisor.fault is None
        assert any(t.current_ma > 0 for t in emu.segments[n_trains:])
        stim.stop()
        stim.close()
