"""Memory growth of the device loop over a fast-forwarded walk (default: one hour).

An hour of walking (the bundled PhysioNet recording at 1 kHz, repeated with continuous
sequence numbers and timestamps) goes through the real loop as fast as it reads: a sensor
process writes it to a pty, this process runs the controller (compiled kernel, gait
machine, supervisor, ScienceMode2 driver) with the collector frozen and off as under
``--rt``, and the RehaStim2 emulator answers on a second pty. RSS (``VmRSS``) and
``sys.getallocatedblocks()`` are read after a warm-up (the first tenth of the walk) and at
the end; growth is scaled to one hour of walking. With the collector off, any block the
loop keeps per call shows up here, cycles included.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import numpy as np

from fescontrol.loop import realtime
from fescontrol.loop.controller import Controller
from fescontrol.loop.runner import DEVICE_EVENT_HISTORY, open_sensor, open_stimulator

from latency import FIRST_TS_US, RATE_HZ, _emulator_process, bench_profile


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _fast_sensor_process(seconds: float, conn) -> None:
    """Write ``seconds`` of walking at 1 kHz to a pty as fast as the reader takes it."""
    from fescontrol.sim.pty_sensor import open_raw_pty
    from fescontrol.sim.replay import recording_stream
    from fescontrol.sim.sources import load_recording
    rec = load_recording("physionet:GaCo01", side="left").resampled(RATE_HZ)
    n_total = int(seconds * RATE_HZ)
    parts, made = [], 0
    while made < n_total:  # all of it before the start: encoding takes longer than stale_ms
        frames, _ = recording_stream(rec, first_seq=made & 0xFFFF, first_timestamp_us=FIRST_TS_US + made * 1000)
        parts.append(frames[: n_total - made])
        made += len(parts[-1])
    data = memoryview(np.concatenate(parts).tobytes())
    del parts
    master, slave, port = open_raw_pty()
    conn.send(port)
    conn.recv()  # start
    sent = 0
    try:
        while sent < len(data):
            sent += os.write(master, data[sent:sent + 65536])
        conn.send(sent)
        conn.recv()  # keep the pty open until the loop is done
    finally:
        os.close(master)
        os.close(slave)


def measure(walk_s: float = 3600.0) -> dict:
    """RSS and allocated-block growth of the loop over ``walk_s`` of walking, per hour walked."""
    # acks may lag on a busy machine at ~500× real time: allow the longest the profile permits
    profile = bench_profile(ack_timeout_ms=500)
    ctx = mp.get_context("fork")
    s_parent, s_child = ctx.Pipe()
    e_parent, e_child = ctx.Pipe()
    sensor_proc = ctx.Process(target=_fast_sensor_process, args=(walk_s, s_child), daemon=True)
    emu_proc = ctx.Process(target=_emulator_process, args=(e_child, "rehastim2"), daemon=True)
    sensor_proc.start()
    emu_proc.start()
    sensor_port, (emu_port, _emu_sched) = s_parent.recv(), e_parent.recv()
    stimulator = open_stimulator(profile, emu_port)
    stimulator.open()
    link = open_sensor(sensor_port)
    controller = Controller(profile, stimulator=stimulator, event_history=DEVICE_EVENT_HISTORY)
    controller.set_sensor_clock_rate(0)  # as fast as it reads: no sensor/wall drift check
    kernel = controller.kernel
    n_total = int(walk_s * RATE_HZ)
    warm_frames = n_total // 10
    marks: dict[str, tuple[int, int, int, float]] = {}

    def should_stop() -> bool:
        if "warm" not in marks and kernel.frames >= warm_frames:
            marks["warm"] = (kernel.frames, _rss_kb(), sys.getallocatedblocks(), time.monotonic())
        return bool(kernel.fault) or kernel.frames >= n_total

    t0 = time.monotonic()
    try:
        with realtime.quiet_gc():
            controller.start()
            s_parent.send("start")
            controller.run(link.fileno(), should_stop)
            marks["end"] = (kernel.frames, _rss_kb(), sys.getallocatedblocks(), time.monotonic())
    finally:
        wall_s = time.monotonic() - t0
        s_parent.send("done")
        stimulator.close()
        link.close()
        e_parent.send("stop")
        if e_parent.poll(10):
            e_parent.recv()
        for proc in (sensor_proc, emu_proc):
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    faults = [f.text for f in controller.supervisor.faults]
    if faults or "warm" not in marks:
        raise RuntimeError(f"the fast-forwarded walk did not complete: {faults or 'no warm-up mark'}")
    (f0, rss0, blocks0, _), (f1, rss1, blocks1, _) = marks["warm"], marks["end"]
    hours = (f1 - f0) / RATE_HZ / 3600.0
    return {"walk_s": walk_s, "wall_s": round(wall_s, 1), "speed_x": round(kernel.frames / RATE_HZ / wall_s, 1),
            "frames": int(kernel.frames), "deliveries": controller.supervisor.deliveries,
            "events": len(controller.events), "rss_kb": [rss0, rss1],
            "rss_growth_kb_per_h": round((rss1 - rss0) / hours, 1),
            "blocks_growth_per_h": round((blocks1 - blocks0) / hours),
            "missed_deadlines": int(kernel.missed_deadlines)}


if __name__ == "__main__":
    import json
    print(json.dumps(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0)))
