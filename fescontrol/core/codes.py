"""Integer codes shared by the per-sample kernels (Cython and pure Python).

The kernels speak in these small integers so that the hot path creates no
Python objects; the event-level code turns them into names.
This is their only definition: ``kernel/core.py`` takes its constants from here at import
(C globals in the compiled build; tests/test_kernel_twins.py checks them).
"""
from __future__ import annotations

import enum


class Phase(enum.IntEnum):
    """What the envelope does on each sample."""

    FALL = 0   # ramp toward zero at the ramp-down rate, then stay at zero
    RISE = 1   # ramp toward the plateau at the ramp-up rate
    HOLD = 2   # keep the level; optional hold limit then EVT_HOLD_DONE
    OFF = 3    # output is zero at once (fault)


class Event(enum.IntEnum):
    """Events the kernel reports to the gait state machine."""

    NONE = 0
    HEEL_OFF = 1        # swing onset detected (heel-off / push-off)
    HEEL_STRIKE = 2     # swing end detected
    RAMP_UP_DONE = 3    # envelope reached the plateau
    HOLD_DONE = 4       # hold limit (extension after heel strike) elapsed
    RAMP_DOWN_DONE = 5  # envelope reached zero in FALL
    MAX_STIM = 6        # max_stim_ms cut-off forced the envelope down
    FAULT = 7           # the sample guard latched a fault (see Fault)


class Fault(enum.IntEnum):
    """Why the output was forced to zero. Latched until a person clears it."""

    NONE = 0
    SENSOR_STALE = 1       # no valid frame for longer than stale_ms
    SEQUENCE_GAP = 2       # more consecutive frames lost than allowed
    CLOCK_JUMP = 3         # device timestamp went backwards, stood still or leapt
    PARSE_ERROR = 4        # a frame with a good CRC but impossible content
    CHANNEL_MISSING = 5    # the trigger mode needs a channel the sensor does not send
    HEEL_SENSOR_FAULT = 6  # the sensor flags its heel channel as broken
    IMU_SATURATED = 7      # the sensor flags IMU saturation
    HEEL_STUCK = 8         # heel reading frozen stuck_ms under load, or through IMU strides
    OUTPUT_LIMIT = 9       # an output outside the profile or hard limits was asked for
    BUFFER_OVERRUN = 10    # input arrived faster than the loop consumed it
    STIMULATOR = 11        # the stimulator reported an error, reset or did not acknowledge
    EXCEPTION = 12         # software error in the control path
    USER_STOP = 13         # emergency stop by a person
    LINK_ERRORS = 14       # too many corrupt frames on the sensor link
    CLOCK_DRIFT = 15       # sensor clock and wall clock disagree (rate or offset; real-time loop only)


class Ret(enum.IntFlag):
    """Why a kernel ``process``/``run_fd`` call returned (bit flags)."""

    NEED_DATA = 0
    EVENT = 1      # events are queued: read them with pop_event()
    DELIVER = 2    # the output changed enough to send to the stimulator
    TIMEOUT = 4    # the wake-up interval elapsed with nothing else to report
    TRACE_FULL = 8 # the trace buffer is full: drain it and call again
    CLOSED = 16    # the sensor port reached end of file


FAULT_TEXT = {
    Fault.SENSOR_STALE: "sensor data stale (no valid frame in time)",
    Fault.SEQUENCE_GAP: "too many sensor frames lost in a row",
    Fault.CLOCK_JUMP: "sensor clock jumped",
    Fault.PARSE_ERROR: "sensor frame could not be parsed",
    Fault.CHANNEL_MISSING: "sensor does not send a channel the trigger mode needs",
    Fault.HEEL_SENSOR_FAULT: "heel sensor reports a fault (no footswitch?)",
    Fault.IMU_SATURATED: "IMU saturated",
    Fault.HEEL_STUCK: "heel sensor stuck (reading unchanged)",
    Fault.OUTPUT_LIMIT: "output outside the allowed limits",
    Fault.BUFFER_OVERRUN: "sensor input overran the loop",
    Fault.STIMULATOR: "stimulator error",
    Fault.EXCEPTION: "software exception in the control path",
    Fault.USER_STOP: "emergency stop",
    Fault.LINK_ERRORS: "too many corrupt sensor frames",
    Fault.CLOCK_DRIFT: "sensor clock and wall clock disagree",
}
