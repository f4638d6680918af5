"""Raw sensor frames (the wire frames of docs/protocol.md, e.g. a ``*.fesraw`` walk that
``fes calibrate --save-walk`` kept) as a :class:`fescontrol.sim.recording.Recording`."""
from __future__ import annotations

import numpy as np

from fescontrol.drivers import sensor_protocol as sp

from ..recording import SOURCES, Recording, RecordingError


def recording_from_frames(data: bytes, *, name: str = "device", side: str = "left"):
    """A :class:`fescontrol.sim.recording.Recording` from raw sensor bytes (wire frames).

    Frames are placed by their sequence number; lost frames become invalid samples
    (interpolated). The rate is the median frame interval of the sensor clock. The
    recording has no reference events (calibration then uses the structure objective).
    Raises RecordingError (fewer than 2 valid frames, a sensor clock that does not advance).
    """
    parser = sp.FrameParser()
    frames = parser.feed(bytes(data))
    if len(frames) < 2:
        raise RecordingError(f"{name}: fewer than 2 valid sensor frames "
                               f"({parser.counters.crc_errors} CRC errors)")
    seq = np.array([f.seq for f in frames], dtype=np.int64)
    ts = np.array([f.timestamp_us for f in frames], dtype=np.int64)
    idx = np.concatenate([[0], np.cumsum((np.diff(seq) & 0xFFFF))])
    dts = np.diff(ts) & 0xFFFFFFFF
    steps = np.diff(idx)
    period_us = float(np.median(dts[steps > 0] / steps[steps > 0]))
    if not period_us > 0:
        raise RecordingError(f"{name}: the sensor clock does not advance")
    n = int(idx[-1]) + 1
    flags = np.bitwise_or.reduce([f.flags for f in frames])
    valid = np.zeros(n, dtype=bool)
    valid[idx] = True
    grid = np.arange(n)

    def fill(values: np.ndarray) -> np.ndarray:
        if values.ndim == 1:
            return np.interp(grid, idx, values)
        return np.stack([np.interp(grid, idx, values[:, k]) for k in range(values.shape[1])], 1)

    heel = acc = gyro = None
    if flags & sp.FLAG_HEEL_PRESENT:
        heel = fill(np.array([f.heel_force for f in frames], float) * sp.HEEL_N_PER_COUNT)
    if flags & sp.FLAG_IMU_PRESENT:
        acc = fill(np.array([f.acc for f in frames], float) * sp.ACC_MS2_PER_COUNT)
        gyro = fill(np.array([f.gyro for f in frames], float) * sp.GYRO_DPS_PER_COUNT)
    # "device" is the honest source name; older sim.recording versions only know their sources
    source = "device" if "device" in SOURCES else "synthetic"
    return Recording(name=name, source=source, side=side, rate_hz=round(1e6 / period_us, 3),
                     heel_n=heel, acc_ms2=acc, gyro_dps=gyro, valid=valid,
                     toe_off_s=np.zeros(0), heel_strike_s=np.zeros(0),
                     heel_off_s=None if heel is None else np.zeros(0), quiet_intervals_s=(),
                     meta={"origin": "sensor frames", "frames": len(frames),
                           "first_timestamp_us": int(frames[0].timestamp_us),
                           "crc_errors": parser.counters.crc_errors})
