"""Fault injection for replays: each fault is selectable and they combine.

A fault is written ``NAME@T`` or ``NAME@T:ARG`` (T in seconds from the start of the
recording). Sensor faults change the frame stream the device receives; stimulator
faults act on the RehaStim2 emulator and need ``--realtime``.

| name | effect | ARG |
|---|---|---|
| unplug | the sensor stops sending at T (cable pulled) | – |
| garbage | random bytes injected before the frame at T | byte count (default 64) |
| crc | frames from T have a corrupted byte (bad CRC) | frame count (default 10) |
| drop | frames from T are lost | frame count (default 10) |
| stuck-heel | the heel reading freezes under load, at its first value ≥ 20 N from T (¹) | – |
| imu-saturation | frames from T flag IMU saturation | frame count (default 10) |
| clock-jump | the device clock leaps forward at T | jump in ms (default 1000) |
| stim-no-ack | the stimulator stops acknowledging at T | – |
| stim-disconnect | the stimulator link closes at T | – |
| stim-error | the stimulator reports an electrode error at T | – |

(¹) A heel frozen at its unloaded level is a no-contact state, not a fault.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fescontrol.drivers import sensor_protocol as sp

SENSOR_FAULTS = ("unplug", "garbage", "crc", "drop", "stuck-heel", "imu-saturation", "clock-jump")
STIMULATOR_FAULTS = ("stim-no-ack", "stim-disconnect", "stim-error")
#: what each stimulator fault does to an emulator (RehaStim2Emulator's knobs): the one table
#: both the real-time replay and the simulated patient session use
STIM_FAULT_ACTIONS = {
    "stim-no-ack": lambda emu: setattr(emu, "ack_enabled", False),
    "stim-disconnect": lambda emu: emu.disconnect(),
    "stim-error": lambda emu: emu.raise_error(-2),     # electrode error
}
FAULT_NAMES = SENSOR_FAULTS + STIMULATOR_FAULTS
STUCK_HEEL_MIN_N = 20.0   # the stuck-heel fault freezes the reading at a loaded level
_DEFAULT_ARG = {"garbage": 64, "crc": 10, "drop": 10, "imu-saturation": 10, "clock-jump": 1000}


class FaultError(ValueError):
    """A fault written wrongly (unknown name, missing or bad time); the message lists what is allowed."""


@dataclass(frozen=True)
class FaultSpec:
    name: str
    at_s: float
    arg: int | None = None

    @property
    def value(self) -> int:
        return self.arg if self.arg is not None else _DEFAULT_ARG.get(self.name, 0)

    @property
    def is_sensor(self) -> bool:
        return self.name in SENSOR_FAULTS


#: One line per fault: what it does and what its optional ``:ARG`` means (the module docstring's table).
FAULT_HELP = {
    "unplug": ("the sensor stops sending at T (cable pulled)", None),
    "garbage": ("random bytes injected before the frame at T", "byte count"),
    "crc": ("frames from T have a corrupted byte (bad CRC)", "frame count"),
    "drop": ("frames from T are lost", "frame count"),
    "stuck-heel": ("the heel reading freezes under load (its value at the first sample from T that reads "
                   "≥ 20 N)", None),
    "imu-saturation": ("frames from T flag IMU saturation", "frame count"),
    "clock-jump": ("the device clock leaps forward at T", "jump in ms"),
    "stim-no-ack": ("the stimulator stops acknowledging at T (needs --realtime)", None),
    "stim-disconnect": ("the stimulator link closes at T (needs --realtime)", None),
    "stim-error": ("the stimulator reports an electrode error at T (needs --realtime)", None),
}


def fault_table() -> str:
    """The faults ``--fault`` accepts, one per line, for ``fes sim --list-faults``."""
    lines = ["--fault NAME@T[:ARG]  (T: seconds from the start of the recording; repeat to combine)", ""]
    for name in FAULT_NAMES:
        effect, arg = FAULT_HELP[name]
        usage = f"{name}@T" + (f"[:{arg.split()[0].upper()}]" if arg else "")
        default = f"; ARG = {arg}, default {_DEFAULT_ARG[name]}" if arg else ""
        lines.append(f"  {usage:<26} {effect}{default}")
    return "\n".join(lines)


def parse_fault(text: str) -> FaultSpec:
    """``"drop@12.5:20"`` → FaultSpec("drop", 12.5, 20); raises :class:`FaultError` for anything else
    (unknown name, missing, negative or non-finite time, bad count)."""
    name, _, rest = text.partition("@")
    if name not in FAULT_NAMES:
        raise FaultError(f"--fault {text!r}: unknown fault {name!r}; known: {', '.join(FAULT_NAMES)} "
                         f"(written NAME@SECONDS[:COUNT], e.g. unplug@30; see fes sim --list-faults)")
    if not rest:
        raise FaultError(f"--fault {text!r}: give the time, e.g. {name}@10 (seconds from the start)")
    at, _, arg = rest.partition(":")
    try:
        at_s = float(at)
        value = int(arg) if arg else None
    except ValueError:
        raise FaultError(f"--fault {text!r}: expected {name}@SECONDS[:COUNT], e.g. {name}@10 or {name}@10:5") from None
    if not math.isfinite(at_s) or at_s < 0 or (value is not None and value < 0):
        raise FaultError(f"--fault {text!r}: the time must be a finite number of seconds ≥ 0 and the count ≥ 0")
    return FaultSpec(name, at_s, value)


def apply_sensor_faults(frames: np.ndarray, rate_hz: float, faults: list[FaultSpec], seed: int = 0):
    """Apply the sensor faults to an (n, FRAME_LEN) frame array.

    Returns (chunks, send time of each chunk in s, unplug time in s or None); the byte
    stream is ``b"".join(chunks)``. Frames are
    re-encoded with valid CRCs where a fault changes content (stuck heel, saturation,
    clock jump), so only the 'crc' fault produces bad CRCs.
    """
    frames = frames.copy()
    n = len(frames)
    times = np.arange(n) / rate_hz
    rng = np.random.default_rng(seed)
    index = lambda at_s: min(n, max(0, int(round(at_s * rate_hz))))  # noqa: E731
    keep = np.ones(n, dtype=bool)
    insert: dict[int, bytes] = {}
    unplug_s = None
    for f in faults:
        i = index(f.at_s)
        if f.name == "unplug":
            keep[i:] = False
            unplug_s = f.at_s if unplug_s is None else min(unplug_s, f.at_s)
        elif f.name == "garbage":
            junk = rng.integers(0, 256, f.value, dtype=np.uint8).tobytes()
            insert[i] = insert.get(i, b"") + junk
        elif f.name == "crc":
            frames[i:i + f.value, 12] ^= 0x5A
        elif f.name == "drop":
            keep[i:i + f.value] = False
        elif f.name == "stuck-heel":
            counts = frames[i:, 11].astype(np.int64) | (frames[i:, 12].astype(np.int64) << 8)
            loaded = np.flatnonzero(counts >= STUCK_HEEL_MIN_N / sp.HEEL_N_PER_COUNT)
            if len(loaded):
                j = i + int(loaded[0])
                _rewrite(frames, slice(j, n), heel=frames[j, 11:13].copy())
        elif f.name == "imu-saturation":
            _rewrite(frames, slice(i, i + f.value), flags_or=sp.FLAG_IMU_SATURATED)
        elif f.name == "clock-jump":
            _rewrite(frames, slice(i, n), ts_add_us=f.value * 1000)
    parts, out_times = [], []
    for k in range(n):
        if k in insert:
            parts.append(insert[k])
            out_times.append(times[k])
        if keep[k]:
            parts.append(frames[k].tobytes())
            out_times.append(times[k])
    return parts, np.array(out_times), unplug_s


def _rewrite(frames: np.ndarray, rows: slice, *, heel=None, flags_or: int = 0, ts_add_us: int = 0) -> None:
    """Change fields of frames in ``rows`` and recompute their CRC."""
    block = frames[rows]
    if not len(block):
        return
    if heel is not None:
        block[:, 11:13] = heel
        block[:, 13:15] = heel
    if flags_or:
        block[:, 4] |= flags_or
    if ts_add_us:
        ts = block[:, 7:11].copy().view("<u4").astype(np.int64).ravel()
        block[:, 7:11] = ((ts + ts_add_us) & 0xFFFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)
    for row in block:
        crc = sp.crc16_ccitt(row[2:31].tobytes())
        row[31], row[32] = crc & 0xFF, crc >> 8
    frames[rows] = block
