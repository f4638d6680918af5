"""Replay a gait recording through the device's own control path.

A :class:`fescontrol.sim.recording.Recording` becomes a stream of sensor frames in our
wire protocol (docs/protocol.md) at the recording's rate, with absent channels
flagged absent. :func:`replay` pushes the stream through a
:class:`fescontrol.loop.controller.Controller` (the same kernel, machine and
supervisor as ``fes run``) and returns the per-sample trace, the events, the
faults and the delivered stimulation bursts, ready for scoring.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.loop.controller import Controller, LoggedEvent, TraceCollector
from fescontrol.core.profile import Profile, ProfileError


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


def recording_stream(recording, *, first_seq: int = 0, first_timestamp_us: int = 1_000_000,
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


def bursts_from_trace(t_us: np.ndarray, current_ma: np.ndarray) -> list[tuple[float, float]]:
    """Delivered bursts as (onset_s, offset_s): first nonzero sample to first zero sample after."""
    on = current_ma > 0.0
    if not on.any():
        return []
    edges = np.diff(on.astype(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    t_s = t_us / 1e6
    last = len(t_s) - 1
    return [(float(t_s[a]), float(t_s[min(b, last)])) for a, b in zip(starts, stops)]


@dataclass
class ReplayResult:
    trace: dict[str, np.ndarray]
    events: list[LoggedEvent]
    faults: list
    bursts_s: list[tuple[float, float]]
    t0_us: int
    implementation: str
    counters: dict = field(default_factory=dict)


def replay(recording, profile: Profile, *, implementation: str = "auto", stream: bytes | None = None,
           chunk_bytes: int = 4096, dispatch: str = "table") -> ReplayResult:
    """Run the whole recording (or a prepared byte ``stream``) through a controller.

    Burst times are seconds from the recording's first sample. ``dispatch`` is the gait
    machine's: "table" (the default here, cheap) or "transitions" (the device's); both give
    identical results (tests/test_gait_dispatch.py).
    """
    check_channels(recording, profile)
    if stream is None:
        frames, _ = recording_stream(recording)
        stream = frames.tobytes()
    controller = Controller(profile, implementation=implementation, trace_capacity=4096, dispatch=dispatch)
    collector = TraceCollector()
    controller.trace_sink = collector
    controller.FEED_CHUNK_BYTES = chunk_bytes
    controller.start()
    controller.feed(stream)
    controller.finish()
    trace = collector.arrays() if collector.parts else {}
    t0_us = 1_000_000
    bursts = []
    if trace:
        bursts = [(a - t0_us / 1e6, b - t0_us / 1e6)
                  for a, b in bursts_from_trace(trace["t_us"], trace["current_ma"])]
    k = controller.kernel
    counters = {"frames": int(k.frames), "crc_errors": int(k.crc_errors), "garbage_bytes": int(k.garbage_bytes),
                "seq_gaps": int(k.seq_gaps), "frames_lost": int(k.frames_lost),
                "deliveries": controller.supervisor.deliveries}
    return ReplayResult(trace, controller.events, list(controller.supervisor.faults), bursts, t0_us,
                        controller.implementation, counters)
