"""Real-time latency over real pseudo-terminals at 1 kHz, against the machine's own floor.

Three processes, as on the device: a sensor unit writing frames at 1 kHz to a pty
(child process), a far end on a second pty (child process), and the process under test
(this one) between them.

* **loop** — the device loop: the compiled kernel, the gait machine, the supervisor and a
  real stimulator driver; the far end is that stimulator's emulator (``backend="rehastim2"``:
  the ScienceMode2 driver and the RehaStim2 emulator; ``backend="p24"``: the ScienceMode4
  driver and the P24 emulator). Latency = time a sensor
  frame was written → time the stimulator command it caused was read and parsed by the
  emulator, both on the system-wide monotonic clock. Missed deadlines come from the
  kernel's own lateness accounting (a frame processed more than one period after the
  sensor clock says).
* **relay** — the floor: the same sensor process, ptys and far-end process, with a minimal
  relay in this process that forwards every byte it reads at once (poll, read, write; no
  control logic). Latency = time a frame was written → time the far end read its last byte.
  Whatever the relay shows, the pty layer and the scheduler cost any loop on this machine.

The sensor, emulator and far-end processes stand in for hardware that keeps its own time, so
they run at SCHED_FIFO 50 in every run where that is permitted (``stand_ins`` in the result says
what they got). On a normal-priority stand-in the other users' work and the hog delay the
*writer*: under the hog its frames fell 0.5 s behind their timestamps and the loop rightly
latched CLOCK_DRIFT, and every frame the stand-in writes late counts as a missed deadline of
the loop (the kernel measures lateness against the sensor's timestamps). ``sensor_late`` says
how late the stand-in itself wrote (the kernel's rule applied to its write times), so a miss
can be told from one the loop caused.

``load=True`` runs a CPU hog (bench/load.py) on one core for the whole run. ``rt=True``
applies :func:`fescontrol.loop.realtime.hardened_loop` (mlockall, SCHED_FIFO 50, frozen gc) to
this process (the loop or the relay).

Missed deadlines have one definition everywhere: a frame taken in more than one sample period
after the time its timestamp says, against the soonest arrival so far (the kernel's
``_account_lateness``; :func:`missed_deadlines` applies it to arrival times, and
tests/test_bench_latency.py proves both agree). The relay reports its own count by that rule:
what this machine's pty layer and scheduler cost a program with no control logic at all.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import select
import sys
import time

import numpy as np

from fescontrol.drivers import sciencemode2 as sm
from fescontrol.drivers.sensor_protocol import FRAME_LEN
from fescontrol.loop import realtime
from fescontrol.loop.controller import Controller
from fescontrol.core.profile import Realtime, bundled_profile_path, load_profile, profile_from_dict
from fescontrol.loop.runner import open_sensor, open_stimulator
from fescontrol.sim.replay import recording_stream

RATE_HZ = 1000.0
FIRST_TS_US = 1_000_000
RT_PRIORITY = 50
STEADY_EVENT_HISTORY = 8
#: applied to the process under test with rt=True: what `fes run --rt` applies by default
RT_SETTINGS = Realtime(enabled=True, fifo_priority=RT_PRIORITY)


def bench_profile(**device):
    """The default profile at 1 kHz (stale after 50 ms, 10 missing frames allowed; ``device``
    overrides more of the device section)."""
    base = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    base["device"].update(sample_rate_hz=RATE_HZ, stale_ms=50, max_missing_frames=10, **device)
    return profile_from_dict(base, "bench-1kHz")


def rt_permitted() -> bool:
    """Whether this process may use SCHED_FIFO (tried in a throw-away child)."""
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_try_fifo)
    proc.start()
    proc.join(10)
    return proc.exitcode == 0


def _try_fifo() -> None:
    os._exit(0 if realtime.set_fifo_priority(1).granted else 1)


def _stand_in_sched() -> str:
    """SCHED_FIFO for a stand-in process (hardware keeps its own time); the console line of
    what it got (a refusal says so: the stand-in then runs at normal priority)."""
    return realtime.set_fifo_priority(RT_PRIORITY).line()


def missed_deadlines(arrival_ns: np.ndarray, period_ns: int) -> tuple[int, np.ndarray]:
    """The kernel's missed-deadline rule applied to the times (ns) frame 0, 1, 2 … arrived,
    one ``period_ns`` apart by their timestamps: lateness against the soonest arrival so far
    (the anchor moves to any frame that comes earlier than expected); a miss is lateness of more
    than one period. Returns (misses, lateness ns per frame)."""
    offset = np.asarray(arrival_ns, dtype=np.int64) - np.arange(len(arrival_ns), dtype=np.int64) * period_ns
    if len(offset) == 0:
        return 0, offset
    lateness = offset - np.minimum.accumulate(offset)
    return int(np.count_nonzero(lateness > period_ns)), lateness


def _sensor_late(write_times_ns: np.ndarray) -> dict:
    """How late the sensor stand-in wrote its frames, by the kernel's rule: its misses and the
    lateness p50/p99/max (ms)."""
    misses, lateness = missed_deadlines(write_times_ns, int(1e9 / RATE_HZ))
    return {"missed_deadlines": misses, **_stats(lateness / 1e6)}


def _sensor_process(frames_bytes: bytes, n: int, conn, start_evt) -> None:
    from fescontrol.sim.pty_sensor import frames_sensor
    sched = _stand_in_sched()  # before the writer thread starts: threads inherit the policy
    frames = np.frombuffer(frames_bytes, dtype=np.uint8).reshape(n, -1)
    sensor = frames_sensor(frames, RATE_HZ, keep_times=True)
    conn.send((sensor.port, sched))
    start_evt.wait()
    sensor.start()
    while not sensor.done.wait(0.05) and not conn.poll():
        pass  # all frames written, or the process under test ended early (a fault)
    conn.recv()  # "done": keep the pty open until the process under test has stopped reading
    sensor.stop()
    conn.send(sensor.write_times[: sensor.sent].copy())


#: the emulator and the command that carries a new output, per stimulator backend
BACKENDS = ("rehastim2", "p24")


def _emulator_process(conn, backend: str) -> None:
    sched = _stand_in_sched()
    if backend == "p24":
        from fescontrol.drivers.sciencemode4 import Command as P24Command
        from fescontrol.sim.p24 import P24Emulator
        emulator, update_cmd = P24Emulator(tick_s=0.002), P24Command.ML_UPDATE
    else:
        from fescontrol.sim.rehastim2 import RehaStim2Emulator
        emulator, update_cmd = RehaStim2Emulator(tick_s=0.002), sm.Command.START_CHANNEL_LIST_MODE
    with emulator as emu:
        conn.send((emu.port, sched))
        conn.recv()  # stop
        updates = [t for t, p in emu.received if p.cmd == update_cmd]
        conn.send(updates)


def _reader_process(conn, n: int) -> None:
    """The relay's far end: reads a raw pty as the emulator does (select, read) and records
    the monotonic time (ns) at which each whole frame had arrived."""
    from fescontrol.sim.pty_sensor import open_raw_pty
    sched = _stand_in_sched()
    master, slave, port = open_raw_pty()
    conn.send((port, sched))
    arrival = np.zeros(n, dtype=np.int64)
    got = 0
    try:
        while got < n * FRAME_LEN:
            ready, _, _ = select.select([master], [], [], 0.002)
            if conn.poll():
                break  # stop asked (the relay ended early)
            if not ready:
                continue
            data = os.read(master, 4096)
            now = time.monotonic_ns()
            before = got // FRAME_LEN
            got += len(data)
            arrival[before: got // FRAME_LEN] = now
    finally:
        conn.send(arrival[: got // FRAME_LEN])
        os.close(master)
        os.close(slave)


def walking_frames(duration_s: float):
    """``duration_s`` of the bundled PhysioNet walk at 1 kHz, repeated with continuous
    sequence numbers and timestamps."""
    from fescontrol.sim.sources import load_recording
    rec = load_recording("physionet:GaCo01", side="left").resampled(RATE_HZ)
    n = int(duration_s * RATE_HZ)
    frames, _ = recording_stream(rec)
    reps = int(np.ceil(n / len(frames)))
    if reps > 1:  # continue the walk with continuous sequence numbers and timestamps
        rec_frames = [recording_stream(rec, first_seq=k * len(frames),
                                       first_timestamp_us=FIRST_TS_US + int(k * len(frames) * 1000))[0]
                      for k in range(reps)]
        frames = np.concatenate(rec_frames)
    return frames[:n]


class _DeliveryTimes:
    """Delivery listener writing sensor times into a preallocated array (no per-call objects kept)."""

    def __init__(self, capacity: int):
        self.t_us = np.zeros(capacity, dtype=np.int64)
        self.n = 0

    def __call__(self, t_us: int, current_ma: float) -> None:
        if self.n < len(self.t_us):
            self.t_us[self.n] = t_us
            self.n += 1


def _stats(latency_ms: np.ndarray) -> dict:
    if len(latency_ms) == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "samples": 0}
    return {"p50": float(np.median(latency_ms)), "p99": float(np.percentile(latency_ms, 99)),
            "max": float(latency_ms.max()), "samples": int(len(latency_ms))}


def _start_children(frames, far_end, far_args):
    """The sensor stand-in and the far end; returns them, their pipes, the start event and
    (sensor port, far-end port, stand-ins' scheduler lines)."""
    ctx = mp.get_context("fork")
    s_parent, s_child = ctx.Pipe()
    f_parent, f_child = ctx.Pipe()
    start_evt = ctx.Event()
    sensor = ctx.Process(target=_sensor_process, args=(frames.tobytes(), len(frames), s_child, start_evt),
                         daemon=True)
    far = ctx.Process(target=far_end, args=(f_child, *far_args), daemon=True)
    sensor.start()
    far.start()
    (sensor_port, sensor_sched), (far_port, far_sched) = s_parent.recv(), f_parent.recv()
    stand_ins = sorted({sensor_sched, far_sched})
    return sensor, far, s_parent, f_parent, start_evt, (sensor_port, far_port, stand_ins)


def measure(duration_s: float = 60.0, *, rt: bool = False, backend: str = "rehastim2",
            raw: bool = False) -> dict:
    """The device loop for ``duration_s`` at 1 kHz on the stimulator ``backend`` (one of
    :data:`BACKENDS`, driven through its emulator; ValueError otherwise). Returns latency stats (ms), missed
    deadlines, frames, lateness p99 (µs) and the allocated-block growth of the steady state
    (from 5 s in to the end). ``raw``: also ``raw`` = the paired outputs' frame index, the sensor
    stand-in's write time and the emulator's parse time (monotonic ns), for bench/phases.py."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: allowed {', '.join(BACKENDS)}")
    profile = bench_profile()
    frames = walking_frames(duration_s)
    sensor_proc, emu_proc, s_parent, e_parent, start_evt, (sensor_port, emu_port, stand_ins) = \
        _start_children(frames, _emulator_process, (backend,))
    stimulator = open_stimulator(profile, f"{backend}:{emu_port}")
    stimulator.open()
    link = open_sensor(sensor_port)
    # a short event history, full before the steady-state window opens at 5 s, so the block
    # count shows what the loop keeps per call, not the history filling (memory.py uses the
    # device's DEVICE_EVENT_HISTORY over a whole hour)
    controller = Controller(profile, stimulator=stimulator, event_history=STEADY_EVENT_HISTORY)
    delivered = _DeliveryTimes(len(frames))
    controller.supervisor.delivery_listeners.append(delivered)
    blocks = _BlockProbe(controller.kernel, steady_from_frame=int(5 * RATE_HZ))
    kernel = controller.kernel
    t_end = time.monotonic() + duration_s + 1.0
    n_frames = len(frames)

    def should_stop() -> bool:
        blocks.check()
        return time.monotonic() > t_end or bool(kernel.fault) or kernel.frames >= n_frames

    settings = []
    try:
        with realtime.hardened_loop(RT_SETTINGS) if rt else _no_hardening() as report:
            settings = report.lines() if report is not None else []
            controller.start()
            start_evt.set()
            controller.run(link.fileno(), should_stop)
            blocks.finish()
    finally:
        s_parent.send("done")
        write_times = s_parent.recv()
        stimulator.close()
        link.close()
        e_parent.send("stop")
        update_times = e_parent.recv()
        sensor_proc.join(5)
        emu_proc.join(5)
    # a fault ends the run early (the device stops stimulating, fail-safe): reported, not hidden
    faults = [f.text for f in controller.supervisor.faults]
    # pair each delivered update with the frame that caused it (first update = start command)
    n = min(delivered.n, len(update_times))
    frame_idx = np.rint((delivered.t_us[:n] - FIRST_TS_US) / 1000.0).astype(int)
    ok = frame_idx < len(write_times)
    update_ns = np.rint(np.array(update_times[:n]) * 1e9).astype(np.int64)
    latency_ms = (update_ns[ok] - write_times[frame_idx[ok]]) / 1e6
    extra = {"raw": {"frame": frame_idx[ok], "written_ns": write_times[frame_idx[ok]],
                     "parsed_ns": update_ns[ok]}} if raw else {}
    return {**extra, "latency_ms": _stats(latency_ms), "missed_deadlines": int(kernel.missed_deadlines),
            "frames": int(kernel.frames), "frames_lost": int(kernel.frames_lost),
            "duration_s": float(kernel.frames / RATE_HZ),
            "lateness_p99_us": _hist_percentile(kernel.lateness_hist, 99),
            "max_lateness_us": int(kernel.max_lateness_us), "kernel": controller.implementation,
            "steady_state_blocks": blocks.growth, "steady_state_s": blocks.seconds,
            "rt_settings": settings, "faults": faults, "backend": backend,
            "updates_paired": int(ok.sum()), "stand_ins": stand_ins, "sensor_late": _sensor_late(write_times)}


def measure_relay(duration_s: float = 30.0, *, rt: bool = False) -> dict:
    """The floor: the same sensor and far-end processes and ptys, a minimal relay in between.
    Returns latency stats (ms) over every frame (sensor write → far end), how many were later
    than one period, and the relay's own missed deadlines by the kernel's rule (frames read by
    the relay, against their timestamps)."""
    frames = walking_frames(duration_s)
    n = len(frames)
    sensor_proc, reader_proc, s_parent, r_parent, start_evt, (sensor_port, reader_port, stand_ins) = \
        _start_children(frames, _reader_process, (n,))
    link_in = open_sensor(sensor_port)
    link_out = open_sensor(reader_port)  # the same pyserial open as a stimulator port
    fd_in, fd_out = link_in.fileno(), link_out.fileno()
    poller = select.poll()
    poller.register(fd_in, select.POLLIN)
    forwarded = 0
    taken_ns = np.zeros(n, dtype=np.int64)   # when the relay had read each whole frame
    t_end = time.monotonic() + duration_s + 1.0
    settings = []
    try:
        with realtime.hardened_loop(RT_SETTINGS) if rt else _no_hardening() as report:
            settings = report.lines() if report is not None else []
            start_evt.set()
            while forwarded < n * FRAME_LEN and time.monotonic() < t_end:
                if not poller.poll(20):
                    continue
                data = os.read(fd_in, 4096)
                if not data:
                    break
                taken_ns[forwarded // FRAME_LEN: (forwarded + len(data)) // FRAME_LEN] = time.monotonic_ns()
                os.write(fd_out, data)
                forwarded += len(data)
    finally:
        s_parent.send("done")
        write_times = s_parent.recv()
        try:
            r_parent.send("stop")  # the reader may have read every frame and be gone already
        except OSError:
            pass
        arrival = r_parent.recv()
        link_in.close()
        link_out.close()
        sensor_proc.join(5)
        reader_proc.join(5)
    m = min(len(arrival), len(write_times))
    latency_ms = (arrival[:m] - write_times[:m]) / 1e6
    misses, _ = missed_deadlines(taken_ns[: forwarded // FRAME_LEN], int(1e9 / RATE_HZ))
    return {"latency_ms": _stats(latency_ms), "frames": int(m),
            "over_one_period": int(np.count_nonzero(latency_ms > 1000.0 / RATE_HZ)),
            "missed_deadlines": misses, "rt_settings": settings, "stand_ins": stand_ins,
            "sensor_late": _sensor_late(write_times)}


class _no_hardening:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class _BlockProbe:
    """``sys.getallocatedblocks()`` at the start of the steady state and at the end.

    Checked from the loop's ``should_stop`` (once per wake-up); the probe reads once at each
    end, so it adds nothing in between. With the collector off (rt) the count is exact: any
    growth is memory the loop keeps (a leak, or cycles never collected). With the collector
    on, garbage waiting for the next collection counts too, so small ± numbers are noise.
    """

    def __init__(self, kernel, steady_from_frame: int):
        self.kernel = kernel
        self.steady_from_frame = steady_from_frame
        self.start_blocks = None
        self.start_t = 0.0
        self.growth = None
        self.seconds = 0.0

    def check(self) -> None:
        if self.start_blocks is None and self.kernel.frames >= self.steady_from_frame:
            self.start_t = time.monotonic()
            self.start_blocks = sys.getallocatedblocks()

    def finish(self) -> None:
        if self.start_blocks is not None:
            self.growth = sys.getallocatedblocks() - self.start_blocks
            self.seconds = round(time.monotonic() - self.start_t, 1)


def _hist_percentile(hist, q: float) -> float:
    hist = np.asarray(hist)
    if hist.sum() == 0:
        return 0.0
    c = np.cumsum(hist) / hist.sum()
    return float(np.searchsorted(c, q / 100.0) * 100)


def compare(loop: dict, relay: dict) -> dict:
    """Loop minus relay and loop / relay for p50, p99 and max (ms)."""
    a, b = loop["latency_ms"], relay["latency_ms"]
    out = {}
    for k in ("p50", "p99", "max"):
        out[f"{k}_diff_ms"] = a[k] - b[k]
        out[f"{k}_ratio"] = a[k] / b[k] if b[k] > 0 else float("inf")
    return out

