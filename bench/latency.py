"""Real-time latency over real pseudo-terminals at 1 kHz.

Three processes, as on the device: a sensor unit writing frames at 1 kHz to a pty
(child process), the RehaStim2 emulator on a second pty (child process), and the
device loop (this process: the compiled kernel, the gait machine, the supervisor and
the real ScienceMode2 driver). Latency = time a sensor frame was written → time the
stimulator command it caused was read and parsed by the emulator, both on the
system-wide monotonic clock. Missed deadlines come from the kernel's own lateness
accounting (a frame processed more than one period after the sensor clock says).
"""
from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from drivers import sciencemode2 as sm
from fescontrol.controller import Controller
from fescontrol.profile import bundled_profile_path, load_profile, profile_from_dict
from fescontrol.runner import open_sensor, open_stimulator
from sim.replay import recording_stream

RATE_HZ = 1000.0


def _sensor_process(frames_bytes: bytes, n: int, conn, start_evt) -> None:
    from sim.pty_sensor import frames_sensor
    frames = np.frombuffer(frames_bytes, dtype=np.uint8).reshape(n, -1)
    sensor = frames_sensor(frames, RATE_HZ, keep_times=True)
    conn.send(sensor.port)
    start_evt.wait()
    sensor.start()
    sensor.done.wait()
    conn.send(sensor.write_times[: sensor.sent].copy())
    conn.recv()  # keep the pty open until the loop is done
    sensor.stop()


def _emulator_process(conn) -> None:
    from sim.rehastim2 import RehaStim2Emulator
    with RehaStim2Emulator(tick_s=0.002) as emu:
        conn.send(emu.port)
        conn.recv()  # stop
        updates = [(t, p.data) for t, p in emu.received if p.cmd == sm.Command.START_CHANNEL_LIST_MODE]
        conn.send([t for t, _ in updates])


def walking_frames(duration_s: float):
    from sim.sources import load_recording
    rec = load_recording("physionet:GaCo01", side="left").resampled(RATE_HZ)
    n = int(duration_s * RATE_HZ)
    frames, _ = recording_stream(rec)
    reps = int(np.ceil(n / len(frames)))
    if reps > 1:  # continue the walk with continuous sequence numbers and timestamps
        rec_frames = [recording_stream(rec, first_seq=k * len(frames),
                                       first_timestamp_us=1_000_000 + int(k * len(frames) * 1000))[0]
                      for k in range(reps)]
        frames = np.concatenate(rec_frames)
    return frames[:n]


def measure(duration_s: float = 60.0) -> dict:
    base = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    base["device"].update(sample_rate_hz=RATE_HZ, stale_ms=50, max_missing_frames=10)
    profile = profile_from_dict(base, "bench-1kHz")
    frames = walking_frames(duration_s)
    ctx = mp.get_context("fork")
    s_parent, s_child = ctx.Pipe()
    e_parent, e_child = ctx.Pipe()
    start_evt = ctx.Event()
    sensor_proc = ctx.Process(target=_sensor_process, args=(frames.tobytes(), len(frames), s_child, start_evt))
    emu_proc = ctx.Process(target=_emulator_process, args=(e_child,))
    sensor_proc.start()
    emu_proc.start()
    sensor_port, emu_port = s_parent.recv(), e_parent.recv()
    stimulator = open_stimulator(profile, emu_port)
    stimulator.open()
    link = open_sensor(sensor_port)
    controller = Controller(profile, stimulator=stimulator)
    delivered_t_us: list[int] = []
    controller.supervisor.delivery_listeners.append(lambda t_us, ma: delivered_t_us.append(t_us))
    controller.start()
    start_evt.set()
    t_end = time.monotonic() + duration_s + 1.0
    first_ts_us = 1_000_000
    try:
        controller.run(link.fileno(), lambda: time.monotonic() > t_end or bool(controller.kernel.fault)
                       or controller.kernel.frames >= len(frames))
    finally:
        write_times = s_parent.recv()
        s_parent.send("done")
        stimulator.close()
        link.close()
        e_parent.send("stop")
        update_times = e_parent.recv()
        sensor_proc.join(5)
        emu_proc.join(5)
    k = controller.kernel
    assert not controller.supervisor.faults, controller.supervisor.faults
    # pair each delivered update with the frame that caused it (first update = start command)
    n = min(len(delivered_t_us), len(update_times))
    frame_idx = np.rint((np.array(delivered_t_us[:n]) - first_ts_us) / 1000.0).astype(int)
    ok = frame_idx < len(write_times)
    latency_ms = (np.array(update_times[:n])[ok] * 1e9 - write_times[frame_idx[ok]]) / 1e6
    return {"latency_ms": {"p50": float(np.median(latency_ms)), "p99": float(np.percentile(latency_ms, 99)),
                           "max": float(latency_ms.max()), "samples": int(len(latency_ms))},
            "missed_deadlines": int(k.missed_deadlines), "frames": int(k.frames),
            "frames_lost": int(k.frames_lost), "duration_s": float(k.frames / RATE_HZ),
            "lateness_p99_us": _hist_percentile(k.lateness_hist, 99), "kernel": controller.implementation}


def _hist_percentile(hist, q: float) -> float:
    hist = np.asarray(hist)
    if hist.sum() == 0:
        return 0.0
    c = np.cumsum(hist) / hist.sum()
    return float(np.searchsorted(c, q / 100.0) * 100)
