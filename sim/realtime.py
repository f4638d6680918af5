"""Real-time replay over pseudo-terminals: the recording's frames go out on a pty at their
own pace, the device loop reads them exactly as ``fes run`` does, and the real RehaStim2
driver talks to the emulator on a second pty. What the patient would have received is
taken from the emulator's record of delivered pulse trains.
"""
from __future__ import annotations

import threading
import time

from fescontrol.loop.runner import open_sensor, open_stimulator
from .faults import STIM_FAULT_ACTIONS
from .pty_sensor import PtySensor
from .rehastim2 import RehaStim2Emulator
from .replay import ReplayResult, build_result, replay_controller

def emulator_bursts(emulator: RehaStim2Emulator, t0_s: float, channel: int = 1) -> list[tuple[float, float]]:
    """Merge the emulator's nonzero pulse trains into bursts (s from ``t0_s``)."""
    bursts: list[list[float]] = []
    for train in emulator.segments:
        if train.channel != channel or train.current_ma <= 0:
            continue
        end = train.t_end_s if train.t_end_s is not None else time.monotonic()
        start = train.t_start_s - t0_s
        if bursts and start - bursts[-1][1] < 1e-3:
            bursts[-1][1] = end - t0_s
        else:
            bursts.append([start, end - t0_s])
    return [(a, b) for a, b in bursts]


def realtime_replay(recording, profile, chunks, times_s, unplug_s, stim_faults, *, echo=print,
                    speed: float = 1.0) -> ReplayResult:
    """Replay through the device loop over ptys; returns what was delivered.

    At ``speed`` 1 the bursts are what the emulator delivered, on the sensor's clock; at
    any other speed wall time no longer matches the recording, so they come from the
    loop's own trace (the same outputs, as the supervisor passed them on)."""
    stimulator = open_stimulator(profile, "emulator")     # the registered emulator backend
    emulator = stimulator.emulator
    sensor = PtySensor(chunks, times_s, unplug_s=unplug_s, speed=speed)
    timers = [threading.Timer(f.at_s / (speed or 1e9), STIM_FAULT_ACTIONS[f.name], (emulator,))
              for f in stim_faults]
    link = None
    try:
        stimulator.open()
        link = open_sensor(sensor.port)
        controller, collector = replay_controller(profile, stimulator=stimulator)
        controller.set_sensor_clock_rate(speed)   # N × real time; 0: no wall relation (no drift check)
        controller.start()
        sensor.start()
        for t in timers:
            t.start()
        echo(f"real-time replay: sensor {sensor.port}, stimulator emulator {emulator.port}")
        n_frames = sum(len(c) for c in chunks) // 33
        done_at: list[float] = []

        def finished() -> bool:
            # the end of a replay is not a lost sensor: stop once the last frame is in
            if controller.kernel.fault:
                return True
            if not sensor.done.is_set() or unplug_s is not None:
                return False
            done_at.append(time.monotonic())
            if stimulator.pending_acks and done_at[-1] - done_at[0] <= stimulator.ack_timeout_s + 0.05:
                return False  # let the last acknowledgements come in (or time out: a fault)
            return controller.kernel.frames >= n_frames or done_at[-1] - done_at[0] > 0.05

        controller.run(link.fileno(), finished)
        controller.finish()
        # the patient's view: what the emulator actually delivered, on the sensor's clock; at any
        # other speed, the loop's own trace (build_result's default)
        bursts = emulator_bursts(emulator, sensor.t0, profile.stimulation.channel) if speed == 1.0 else None
    finally:
        for t in timers:
            t.cancel()
        sensor.stop()
        if link is not None:
            link.close()
        stimulator.close()
    return build_result(controller, collector, bursts_s=bursts, realtime=True)
