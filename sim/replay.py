"""Replay sensor bytes through the device's own control path and build the result: the one copy.

A :class:`fescontrol.sim.recording.Recording` becomes a stream of sensor frames in our
wire protocol (docs/protocol.md) at the recording's rate, with absent channels
flagged absent. :func:`replay` pushes the stream through a
:class:`fescontrol.loop.controller.Controller` (the same kernel, machine and
supervisor as ``fes run``) and returns the per-sample trace, the events, the
faults and the delivered stimulation bursts, ready for scoring.

Every replay of the project builds its :class:`ReplayResult` here, with the one set of
:func:`kernel_counters`: the batch replay (``fes sim``, calibration, sweeps, evaluation), the
report's replay with a progress bar, the patient model's closed loop, the unplugged-sensor tail
of ``fes sim --fault unplug@T`` and the real-time replay over pseudo-terminals differ only in
how the bytes reach the kernel (:func:`replay_controller` + :func:`build_result`).

Times: the kernel trace is on the sensor clock (µs); burst times are seconds from the first
frame, whose timestamp is ``t0_us`` (:data:`T0_US` unless a caller chose another).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fescontrol.loop.controller import Controller, LoggedEvent, TraceCollector
from fescontrol.drivers import sensor_protocol as sp
from fescontrol.core.profile import Profile, ProfileError


#: sensor timestamp (µs) of the first frame of a replayed recording
T0_US = 1_000_000
#: kernel and supervisor figures every replay reports (``fes sim --json`` "delivered" keys)
COUNTERS = ("frames", "crc_errors", "garbage_bytes", "seq_gaps", "frames_lost", "deliveries")
#: added by a replay through the real-time loop (lateness of the loop against the sensor)
REALTIME_COUNTERS = ("missed_deadlines", "max_lateness_us")
#: per-sample trace buffer of a replay's kernel (samples between flushes into the collector)
TRACE_CAPACITY = 4096


def check_channels(recording, profile: Profile) -> None:
    """Refuse a profile whose trigger mode needs a channel the recording lacks."""
    mode = profile.trigger.mode
    missing = []
    if mode.needs_heel and not recording.has_heel:
        missing.append("a heel force sensor")
    if mode.needs_imu and not recording.has_imu:
        missing.append("an IMU")
    if missing:
        have = [c for c, ok in (("heel", recording.has_heel), ("IMU", recording.has_imu)) if ok]
        raise ProfileError(profile.name, [
            f"trigger.mode = {mode.value!r} needs {' and '.join(missing)}, but recording "
            f"{recording.name!r} has only: {', '.join(have) or 'nothing'}; choose a profile whose "
            f"trigger mode matches (heel: heel sensor, tilt: IMU, heel+tilt: both)"])


def recording_stream(recording, *, first_seq: int = 0, first_timestamp_us: int = T0_US,
                     send_invalid: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The recording as wire frames: (frames (n, FRAME_LEN) uint8, sample index of each frame).

    Samples the source dropped (``valid`` False) are sent interpolated when
    ``send_invalid``; otherwise they are left out of the stream, as a sensor
    link that lost them would (their sequence numbers are skipped).
    """
    n = recording.n_samples
    idx = np.arange(n)
    t_us = first_timestamp_us + np.rint(idx * 1e6 / recording.rate_hz).astype(np.int64)
    heel = recording.heel_n
    flags, heel_c, acc_c, gyro_c = sp.counts_from_units(
        heel, recording.acc_ms2, recording.gyro_dps, n=n)
    frames = sp.encode_frames(first_seq + idx, t_us, flags, heel_c, acc_c, gyro_c)
    if not send_invalid:
        keep = np.asarray(recording.valid, dtype=bool)
        return frames[keep], idx[keep]
    return frames, idx


@dataclass
class ReplayResult:
    """What a replay did: ``trace`` (kernel trace arrays by field, sensor clock µs; empty when
    nothing was traced), ``events`` and ``faults`` (the supervisor's latched ones, in order),
    ``bursts_s`` (delivered bursts as (onset, offset) s from the first frame), ``t0_us`` (the
    first frame's timestamp), ``implementation`` ("cython"/"python"), ``counters``
    (:data:`COUNTERS`, plus :data:`REALTIME_COUNTERS` for a real-time replay) and
    ``event_counts`` (the events by name, ``Controller.event_counts``: kept also when
    ``events`` is not)."""
    trace: dict[str, np.ndarray]
    events: list[LoggedEvent]
    faults: list
    bursts_s: list[tuple[float, float]]
    t0_us: int
    implementation: str
    counters: dict = field(default_factory=dict)
    event_counts: dict = field(default_factory=dict)


def bursts_from_trace(t_us: np.ndarray, current_ma: np.ndarray) -> list[tuple[float, float]]:
    """Delivered bursts as (onset_s, offset_s) on the trace's clock: first nonzero sample to
    the first zero sample after it (the last sample when the trace ends on)."""
    on = current_ma > 0.0
    if not on.any():
        return []
    edges = np.diff(on.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    t_s = t_us / 1e6
    last = len(t_s) - 1
    return [(float(t_s[a]), float(t_s[min(b, last)])) for a, b in zip(starts, stops)]


#: what a batch replay keeps of the kernel trace (``replay(..., trace=...)``): every field;
#: only ``t_us`` and ``current_ma`` (enough for the bursts and ``fes sim``'s delivered figures);
#: or no trace, only the bursts (a sweep)
TRACE_KEEP = ("all", "current", "none")


class BurstCollector:
    """A trace sink that keeps only the delivered bursts, chunk by chunk: the same bursts as
    :func:`bursts_from_trace` of the whole trace (an onset at the first sample with current
    > 0, the offset at the first zero sample after it, or at the last sample when the trace
    ends on), without keeping the trace."""

    def __init__(self):
        self.parts: dict = {}        # no trace (as an empty TraceCollector)
        self.edges: list[int] = []   # t_us of onset, offset, onset, ... (sensor clock)
        self.on = False
        self.last_t_us = 0

    def __call__(self, trace: dict, n: int) -> None:
        if n <= 0:
            return
        t_us = trace["t_us"][:n]
        on = np.asarray(trace["current_ma"][:n]) > 0.0
        before = np.empty(n, dtype=bool)
        before[0] = self.on
        before[1:] = on[:-1]
        self.edges.extend(np.asarray(t_us)[np.flatnonzero(on != before)].tolist())
        self.on = bool(on[-1])
        self.last_t_us = int(t_us[n - 1])

    def bursts_s(self, t0_us: int) -> list[tuple[float, float]]:
        """(onset, offset) s from ``t0_us``, computed as :func:`build_result` does."""
        edges = self.edges + [self.last_t_us] if self.on else self.edges
        t0_s = t0_us / 1e6
        return [(a / 1e6 - t0_s, b / 1e6 - t0_s) for a, b in zip(edges[0::2], edges[1::2])]


def kernel_counters(controller: Controller, *, realtime: bool = False) -> dict[str, int]:
    """The one counters set: :data:`COUNTERS` (and :data:`REALTIME_COUNTERS` when
    ``realtime``) of ``controller``'s kernel and supervisor, as plain ints."""
    k = controller.kernel
    counters = {"frames": int(k.frames), "crc_errors": int(k.crc_errors), "garbage_bytes": int(k.garbage_bytes),
                "seq_gaps": int(k.seq_gaps), "frames_lost": int(k.frames_lost),
                "deliveries": int(controller.supervisor.deliveries)}
    if realtime:
        counters["missed_deadlines"] = int(k.missed_deadlines)
        counters["max_lateness_us"] = int(k.max_lateness_us)
    return counters


def replay_controller(profile: Profile, *, implementation: str = "auto", stimulator=None,
                      dispatch: str = "transitions", trace: str = "all",
                      events: bool = True) -> tuple[Controller, TraceCollector | BurstCollector]:
    """A controller for a replay whose whole trace is collected (not yet started).

    ``dispatch`` is the gait machine's: "transitions" (the device's, the default: real-time
    replays keep it) or "table" (cheap, for batch replays); both give identical results
    (tests/test_gait_dispatch.py). ``trace`` is one of :data:`TRACE_KEEP` ("none": a
    :class:`BurstCollector`); ``events`` False keeps no event log (``controller.events``
    stays empty; the machine, the supervisor and the bursts are unchanged). ValueError for
    another ``trace``."""
    if trace not in TRACE_KEEP:
        raise ValueError(f"trace {trace!r}; allowed: {', '.join(TRACE_KEEP)}")
    controller = Controller(profile, stimulator=stimulator, implementation=implementation,
                            trace_capacity=TRACE_CAPACITY, dispatch=dispatch,
                            event_history=None if events else 0)
    collector = (BurstCollector() if trace == "none"
                 else TraceCollector(("t_us", "current_ma") if trace == "current" else None))
    controller.trace_sink = collector
    return controller, collector


def build_result(controller: Controller, collector: TraceCollector, *, t0_us: int = T0_US,
                 bursts_s: list[tuple[float, float]] | None = None, counters: dict | None = None,
                 realtime: bool = False) -> ReplayResult:
    """The result of a finished replay. ``bursts_s`` default: from the collected trace,
    seconds from ``t0_us``; ``counters`` default: :func:`kernel_counters`."""
    trace = collector.arrays() if collector.parts else {}
    if bursts_s is None and isinstance(collector, BurstCollector):
        bursts_s = collector.bursts_s(t0_us)
    if bursts_s is None:
        t0_s = t0_us / 1e6
        bursts_s = ([(a - t0_s, b - t0_s) for a, b in bursts_from_trace(trace["t_us"], trace["current_ma"])]
                    if trace else [])
    if counters is None:
        counters = kernel_counters(controller, realtime=realtime)
    return ReplayResult(trace, controller.events, list(controller.supervisor.faults), bursts_s, t0_us,
                        controller.implementation, counters, dict(controller.event_counts))


def replay_bytes(profile: Profile, stream: bytes, *, implementation: str = "auto", chunk_bytes: int = 4096,
                 progress: Callable[[int], None] | None = None, progress_bytes: int = 1 << 16,
                 dispatch: str = "table", trace: str = "all", events: bool = True) -> ReplayResult:
    """Push a sensor byte ``stream`` (frames of docs/protocol.md, first timestamp
    :data:`T0_US`) through a fresh controller, batch (the device's own kernel, machine and
    supervisor, no stimulator) and return the result. The kernel takes ``chunk_bytes`` per
    call; ``progress(n_bytes)`` is called after each ``progress_bytes`` piece when given.
    ``dispatch``, ``trace`` and ``events`` as for :func:`replay_controller` (dispatch "table"
    here: a batch replay)."""
    controller, collector = replay_controller(profile, implementation=implementation, dispatch=dispatch,
                                              trace=trace, events=events)
    controller.FEED_CHUNK_BYTES = chunk_bytes
    controller.start()
    if progress is None:
        controller.feed(stream)
    else:
        view = memoryview(stream)
        for start in range(0, len(view), progress_bytes):
            piece = view[start:start + progress_bytes]
            controller.feed(piece)
            progress(len(piece))
    controller.finish()
    return build_result(controller, collector)


def replay(recording, profile: Profile, *, implementation: str = "auto", stream: bytes | None = None,
           chunk_bytes: int = 4096, progress: Callable[[int], None] | None = None,
           progress_bytes: int = 1 << 16, dispatch: str = "table", trace: str = "all",
           events: bool = True) -> ReplayResult:
    """Run the whole recording (or a prepared byte ``stream``) through a controller.

    Burst times are seconds from the recording's first sample. Raises ProfileError when the
    profile's trigger mode needs a channel the recording lacks. ``progress`` as for
    :func:`replay_bytes`; ``dispatch``, ``trace`` and ``events`` as for
    :func:`replay_controller` ("table" here). A sweep scores only the bursts (``trace="none",
    events=False``); ``fes evaluate`` needs the current and the events (``trace="current"``).
    """
    check_channels(recording, profile)
    if stream is None:
        frames, _ = recording_stream(recording)
        stream = frames.tobytes()
    return replay_bytes(profile, stream, implementation=implementation, chunk_bytes=chunk_bytes,
                        progress=progress, progress_bytes=progress_bytes, dispatch=dispatch,
                        trace=trace, events=events)
