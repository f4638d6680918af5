# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The per-sample kernel, written once (Cython pure-Python mode).

This file runs as plain Python (the interpreted build) and, typed by the augmenting
``core.pxd``, compiles to the extension ``fescontrol.kernel.core`` (the compiled build: no
GIL on the hot path, no Python object per sample). ``fescontrol.kernel`` picks one. The
three system calls are the only code written twice: ``_fdio.pxd`` (C) and ``_fdio_py.py``.

Per sensor frame it runs, in this order: parse → sample guard (the supervisor's per-sample
checks) → filters and gait detectors → envelope → max-stimulation cut-off → output. Both
builds execute the same arithmetic in the same order on IEEE doubles and 64-bit integers
(the extension is compiled with -ffp-contract=off), so their outputs agree bit for bit;
tests/test_kernel_twins.py replays the same bytes through both, batch and over a pipe.

Rules for editing (so that both builds stay one program):
  * every method named ``_x`` is a ``cdef ... nogil`` function of the compiled build: it may
    use only attributes and locals typed in ``core.pxd`` (add new ones there), module
    constants declared there, and the helpers ``_min``/``_max``/``_alpha``/``_trunc``;
  * integer ``//`` and ``%`` only on non-negative operands (C and Python round negatives
    differently); ``/`` of two C integers divides as integers when compiled, so write
    ``float(a) / b``; ``int(x)`` of a double truncates toward zero in both (``_trunc``);
  * no Python containers on the hot path: the buffer is a ``bytearray``, the queue and the
    floor ring are ``array.array``, the trace and the lateness histogram numpy arrays (typed
    memoryviews when compiled).

Invariants kept on every sample:
  * output current = level × amplitude_ma with 0 ≤ level ≤ 1;
  * level rises by at most dt/ramp_up and falls by at most dt/ramp_down,
    except a drop to zero on a fault or at the max-stimulation back-stop;
  * a burst's nonzero samples all lie within max_stim_ms of its first one;
  * after a fault the output is zero on that very sample and stays zero
    until ``clear_fault()``.

Two clocks. ``feed``/``process`` (batch replays) run on the sensor's own clock
(µs, unwrapped to int64), so a replay gives the same outputs whatever the
machine does. ``run_fd`` (the real-time loop) adds wall-clock checks on the
monotonic clock: staleness when no frame arrives, the wall-clock back-stop
(no burst longer than max_stim of wall time, whatever the timestamps say) and
the drift fault (the sensor clock and the wall clock disagree beyond
``DRIFT_MAX_PERCENT`` over ``DRIFT_WINDOW_US``, or the sensor clock falls
behind by more than stale_ms). See docs/design.md, "Two clocks".
"""
from __future__ import annotations

import math
from array import array

import numpy as np

from fescontrol.drivers import sensor_protocol as _sp
from fescontrol.core.codes import Event, Fault, Phase, Ret
from fescontrol.kernel import params as _params
from fescontrol.kernel.params import KernelParams, TRACE_FIELDS

try:
    import cython
except ImportError:  # installed without Cython: this file then only ever runs as Python
    from fescontrol.kernel import _cython_shim as cython

if not cython.compiled:  # the compiled build cimports the C versions (core.pxd)
    from fescontrol.kernel._fdio_py import now_us, read_into, wait_readable

COMPILED = cython.compiled

# --- integer codes: the values of codes.py (C globals in the compiled build) ----------------
PH_FALL = int(Phase.FALL)
PH_RISE = int(Phase.RISE)
PH_HOLD = int(Phase.HOLD)
PH_OFF = int(Phase.OFF)
EV_HEEL_OFF = int(Event.HEEL_OFF)
EV_HEEL_STRIKE = int(Event.HEEL_STRIKE)
EV_RAMP_UP_DONE = int(Event.RAMP_UP_DONE)
EV_HOLD_DONE = int(Event.HOLD_DONE)
EV_RAMP_DOWN_DONE = int(Event.RAMP_DOWN_DONE)
EV_MAX_STIM = int(Event.MAX_STIM)
EV_FAULT = int(Event.FAULT)
F_SENSOR_STALE = int(Fault.SENSOR_STALE)
F_SEQUENCE_GAP = int(Fault.SEQUENCE_GAP)
F_CLOCK_JUMP = int(Fault.CLOCK_JUMP)
F_PARSE_ERROR = int(Fault.PARSE_ERROR)
F_CHANNEL_MISSING = int(Fault.CHANNEL_MISSING)
F_HEEL_SENSOR_FAULT = int(Fault.HEEL_SENSOR_FAULT)
F_IMU_SATURATED = int(Fault.IMU_SATURATED)
F_HEEL_STUCK = int(Fault.HEEL_STUCK)
F_BUFFER_OVERRUN = int(Fault.BUFFER_OVERRUN)
F_LINK_ERRORS = int(Fault.LINK_ERRORS)
F_CLOCK_DRIFT = int(Fault.CLOCK_DRIFT)
R_EVENT = int(Ret.EVENT)
R_DELIVER = int(Ret.DELIVER)
R_TIMEOUT = int(Ret.TIMEOUT)
R_TRACE_FULL = int(Ret.TRACE_FULL)
R_CLOSED = int(Ret.CLOSED)
# --- the sensor frame (drivers/sensor_protocol.py) --------------------------------------------
PAYLOAD_LEN = _sp.PAYLOAD_LEN
FRAME_LEN = _sp.FRAME_LEN
VERSION = _sp.VERSION
FLAG_HEEL_PRESENT = _sp.FLAG_HEEL_PRESENT
FLAG_IMU_PRESENT = _sp.FLAG_IMU_PRESENT
FLAG_IMU_SATURATED = _sp.FLAG_IMU_SATURATED
FLAG_HEEL_FAULT = _sp.FLAG_HEEL_FAULT
HEEL_N_PER_COUNT = _sp.HEEL_N_PER_COUNT
_CRC_TABLE = _sp._CRC_TABLE     # CRC-16/CCITT-FALSE of each byte value (for _crc16)
# four bytes per step (the CRC is linear): _CRC_TABLEk[x] is the register after byte x and k - 1
# zero bytes, so crc' = T4[hi ^ b0] ^ T3[lo ^ b1] ^ T2[b2] ^ T1[b3], four independent lookups
_CRC_TABLE2 = [((t & 0xFF) << 8) ^ _CRC_TABLE[t >> 8] for t in _CRC_TABLE]
_CRC_TABLE3 = [((t & 0xFF) << 8) ^ _CRC_TABLE[t >> 8] for t in _CRC_TABLE2]
_CRC_TABLE4 = [((t & 0xFF) << 8) ^ _CRC_TABLE[t >> 8] for t in _CRC_TABLE3]
GYRO_DPS_PER_COUNT = _sp.GYRO_DPS_PER_COUNT
# --- sizes and limits (params.py) ----------------------------------------------------------
BUF_BYTES = _params.INPUT_BUFFER_BYTES
QUEUE_LEN = _params.EVENT_QUEUE_LEN
READ_CHUNK = _params.READ_CHUNK_BYTES
N_BINS = _params.LATENESS_BINS
STALE_RELOOKS = _params.STALE_RELOOKS
BIN_US = _params.LATENESS_BIN_US
DRIFT_WINDOW_US = _params.DRIFT_WINDOW_US
DRIFT_MAX_PERCENT = _params.DRIFT_MAX_PERCENT
FLOOR_BINS = _params.FLOOR_BINS
STRIDE_MAX_US = _params.STRIDE_MAX_US
SWING_BUF_LEN = _params.SWING_BUF_LEN
CHANNELS_MAX = _params.CHANNELS_MAX
TIMED_IDLE = _params.TIMED_IDLE    # timed channel: no burst
TIMED_WAIT = _params.TIMED_WAIT    # its gait event seen: waiting for the onset
TIMED_RISE = _params.TIMED_RISE
TIMED_HOLD = _params.TIMED_HOLD
TIMED_FALL = _params.TIMED_FALL
PI = math.pi
U32_MASK = 0xFFFFFFFF   # the sensor's timestamp wraps at 2^32 µs
U32_WRAP = 0x100000000
U32_HALF = 0x80000000
# --- kernel-internal states -------------------------------------------------------------------
STRIDE_IDLE = 0       # waiting for a swing onset
STRIDE_ACTIVE = 1     # in a swing: waiting for its end
STRIDE_LOCKOUT = 2    # after a stride or cut: waiting until the foot is ready again
TILT_STANCE_WAIT = 0  # tilt detector: waiting for a quiet stance
TILT_ARMED = 1        # stance seen: waiting for a push-off
TILT_ONSET = 2        # push-off seen: waiting for the toe-up swing
TILT_SWING = 3        # in the swing: waiting for the heel-strike rate


def constants() -> dict:
    """The code and size values this build runs with (C globals when compiled), by name:
    tests compare them with codes.py, fescontrol.drivers.sensor_protocol and params.py."""
    return {"PH_FALL": PH_FALL, "PH_RISE": PH_RISE, "PH_HOLD": PH_HOLD, "PH_OFF": PH_OFF,
            "EV_HEEL_OFF": EV_HEEL_OFF, "EV_HEEL_STRIKE": EV_HEEL_STRIKE,
            "EV_RAMP_UP_DONE": EV_RAMP_UP_DONE, "EV_HOLD_DONE": EV_HOLD_DONE,
            "EV_RAMP_DOWN_DONE": EV_RAMP_DOWN_DONE, "EV_MAX_STIM": EV_MAX_STIM, "EV_FAULT": EV_FAULT,
            "F_SENSOR_STALE": F_SENSOR_STALE, "F_SEQUENCE_GAP": F_SEQUENCE_GAP,
            "F_CLOCK_JUMP": F_CLOCK_JUMP, "F_PARSE_ERROR": F_PARSE_ERROR,
            "F_CHANNEL_MISSING": F_CHANNEL_MISSING, "F_HEEL_SENSOR_FAULT": F_HEEL_SENSOR_FAULT,
            "F_IMU_SATURATED": F_IMU_SATURATED, "F_HEEL_STUCK": F_HEEL_STUCK,
            "F_BUFFER_OVERRUN": F_BUFFER_OVERRUN, "F_LINK_ERRORS": F_LINK_ERRORS,
            "F_CLOCK_DRIFT": F_CLOCK_DRIFT, "R_EVENT": R_EVENT, "R_DELIVER": R_DELIVER,
            "R_TIMEOUT": R_TIMEOUT, "R_TRACE_FULL": R_TRACE_FULL, "R_CLOSED": R_CLOSED,
            "PAYLOAD_LEN": PAYLOAD_LEN, "FRAME_LEN": FRAME_LEN, "VERSION": VERSION,
            "FLAG_HEEL_PRESENT": FLAG_HEEL_PRESENT, "FLAG_IMU_PRESENT": FLAG_IMU_PRESENT,
            "FLAG_IMU_SATURATED": FLAG_IMU_SATURATED, "FLAG_HEEL_FAULT": FLAG_HEEL_FAULT,
            "HEEL_N_PER_COUNT": HEEL_N_PER_COUNT, "GYRO_DPS_PER_COUNT": GYRO_DPS_PER_COUNT,
            "BUF_BYTES": BUF_BYTES, "QUEUE_LEN": QUEUE_LEN, "READ_CHUNK": READ_CHUNK,
            "N_BINS": N_BINS, "BIN_US": BIN_US, "DRIFT_WINDOW_US": DRIFT_WINDOW_US,
            "DRIFT_MAX_PERCENT": DRIFT_MAX_PERCENT, "FLOOR_BINS": FLOOR_BINS,
            "STRIDE_MAX_US": STRIDE_MAX_US, "SWING_BUF_LEN": SWING_BUF_LEN,
            "CHANNELS_MAX": CHANNELS_MAX, "PI": PI,
            "TIMED": (TIMED_IDLE, TIMED_WAIT, TIMED_RISE, TIMED_HOLD, TIMED_FALL),
            "U32_MASK": U32_MASK, "U32_WRAP": U32_WRAP, "U32_HALF": U32_HALF}


def _min(a, b):
    return a if a < b else b


def _max(a, b):
    return a if a > b else b


def _trunc(x):
    """A double truncated toward zero to an integer (C cast and Python int() agree)."""
    return int(x)


def _alpha(dt_us, cutoff_hz):
    """Coefficient of a one-pole low-pass for one step of dt_us at cutoff_hz."""
    dt_s = dt_us / 1e6
    tau_s = 1.0 / (2.0 * PI * cutoff_hz)
    return dt_s / (tau_s + dt_s)


class Kernel:
    """Per-sample detection, envelope and sample guard.

    Units: times in µs (sensor clock for ``t_us`` and every timer, monotonic wall clock in
    ``run_fd``'s checks), forces in N, rates in deg/s, currents in mA. Commands come from
    the event level between calls (the gait machine and the supervisor); the kernel
    returns :class:`~fescontrol.core.codes.Ret` flags when the event level is needed.
    """

    implementation = "cython" if cython.compiled else "python"

    def __init__(self, profile, trace_capacity: cython.int = 0):
        """``profile``: a validated :class:`~fescontrol.core.profile.Profile`; ``trace_capacity``:
        samples kept in :attr:`trace` before ``process`` returns TRACE_FULL (0: no trace)."""
        p = KernelParams(profile)
        self.p = p
        self.need_heel = p.need_heel
        self.need_imu = p.need_imu
        self.mode_heel = p.mode_heel
        self.mode_tilt = p.mode_tilt
        self.cutoff_zero = p.cutoff_zero
        self.ramp_up_us = p.ramp_up_us
        self.ramp_down_us = p.ramp_down_us
        self.max_stim_us = p.max_stim_us
        self.heel_off_fraction = p.heel_off_fraction
        self.heel_on_fraction = p.heel_on_fraction
        self.heel_off_min_n = p.heel_off_min_n
        self.heel_on_min_n = p.heel_on_min_n
        self.heel_debounce_us = p.heel_debounce_us
        self.heel_peak_decay_s = p.heel_peak_decay_s
        self.heel_filter_hz = p.heel_filter_hz
        self.heel_stuck_us = p.heel_stuck_us
        self.heel_stuck_imu_strides = p.heel_stuck_imu_strides
        self.heel_absent_us = p.heel_absent_us
        self.heel_floor_bin_us = p.heel_floor_bin_us
        self.heel_floor_max_fraction = p.heel_floor_max_fraction
        self.heel_floor_max_n = p.heel_floor_max_n
        self.heel_floor_walk_fraction = p.heel_floor_walk_fraction
        self.heel_flat_n = p.heel_flat_n
        self.heel_flat_max_fraction = p.heel_flat_max_fraction
        self.heel_flat_us = p.heel_flat_us
        self.heel_floor_window_us = p.heel_floor_window_us
        self.heel_on_max_fraction = p.heel_on_max_fraction
        self.heel_swing_fraction = p.heel_swing_fraction
        self.heel_onset_lead_us = p.heel_onset_lead_us
        self.heel_max_delay_us = p.heel_max_delay_us
        self.heel_learn_strides = p.heel_learn_strides
        self.heel_light_n = p.heel_light_n
        self.tilt_onset_dps = p.tilt_onset_dps
        self.tilt_swing_dps = p.tilt_swing_dps
        self.tilt_strike_dps = p.tilt_strike_dps
        self.tilt_stance_dps = p.tilt_stance_dps
        self.tilt_disarm_dps = p.tilt_disarm_dps
        self.tilt_max_yaw_ratio = p.tilt_max_yaw_ratio
        self.tilt_swing_wait_us = p.tilt_swing_wait_us
        self.tilt_min_stance_us = p.tilt_min_stance_us
        self.tilt_debounce_us = p.tilt_debounce_us
        self.tilt_filter_hz = p.tilt_filter_hz
        self.tilt_adapt_fraction = p.tilt_adapt_fraction
        self.tilt_onset_min_dps = p.tilt_onset_min_dps
        self.tilt_swing_min_dps = p.tilt_swing_min_dps
        self.tilt_learn_strides = p.tilt_learn_strides
        self.tilt_onset_raise_fraction = p.tilt_onset_raise_fraction
        self.tilt_onset_max_dps = p.tilt_onset_max_dps
        self.tilt_late_onset_dps = p.tilt_late_onset_dps
        self.tilt_late_stance_yaw_dps = p.tilt_late_stance_yaw_dps
        self.tilt_late_pivot_deg = p.tilt_late_pivot_deg
        self.stale_us = p.stale_us
        self.startup_grace_us = p.startup_grace_us
        self.max_missing = p.max_missing
        self.deliver_interval_us = p.deliver_interval_us
        self.period_us = p.period_us
        self.amplitude_max_ma = p.amplitude_max_ma
        self.foot_on = p.foot_on
        self.foot_flat_dps = p.foot_flat_dps
        self.foot_flat_us = p.foot_flat_us
        self.swing_pitch = np.zeros(SWING_BUF_LEN, dtype=np.float64)
        self.sw_buf = self.swing_pitch
        self.swing_cap = SWING_BUF_LEN
        self.buf = bytearray(BUF_BYTES)
        self.crc_table = array("i", _CRC_TABLE)
        self.crc_table2 = array("i", _CRC_TABLE2)
        self.crc_table3 = array("i", _CRC_TABLE3)
        self.crc_table4 = array("i", _CRC_TABLE4)
        self.buf_start = 0
        self.buf_end = 0
        self.queue = array("i", [0] * QUEUE_LEN)
        self.queue_head = 0
        self.queue_count = 0
        self.floor_bins = array("d", [0.0] * FLOOR_BINS)
        self.crc_errors = 0
        self.length_errors = 0
        self.garbage_bytes = 0
        self.trace_capacity = trace_capacity
        self.trace = {name: np.zeros(trace_capacity, dtype=np.int64 if name == "t_us" else
                                     np.int8 if name in ("phase", "fault") else
                                     np.int32 if name == "events" else np.float64)
                      for name in TRACE_FIELDS}
        self.tr_t = self.trace["t_us"]
        self.tr_heel = self.trace["heel_n"]
        self.tr_pitch = self.trace["pitch_rate_dps"]
        self.tr_level = self.trace["level"]
        self.tr_current = self.trace["current_ma"]
        self.tr_phase = self.trace["phase"]
        self.tr_events = self.trace["events"]
        self.tr_fault = self.trace["fault"]
        self.trace_len = 0
        self.hist = np.zeros(N_BINS, dtype=np.int64)
        # channels (index 0 unused: level, current_ma, amplitude_ma, delivered_ma are channel 0's)
        self.n_channels = p.n_channels
        self.ch_timed = array("i", p.ch_timed)
        self.ch_after_strike = array("i", p.ch_after_strike)
        self.ch_onset_us = np.array(p.ch_onset_us, dtype=np.int64)
        self.ch_duration_us = np.array(p.ch_duration_us, dtype=np.int64)
        self.ch_ramp_up_us = np.array(p.ch_ramp_up_us, dtype=np.int64)
        self.ch_ramp_down_us = np.array(p.ch_ramp_down_us, dtype=np.int64)
        self.ch_amp_max_ma = array("d", p.ch_amp_max_ma)
        self.ch_amp_ma = array("d", p.ch_start_ma)
        self.ch_pending_ma = array("d", p.ch_start_ma)
        self.ch_level = array("d", [0.0] * CHANNELS_MAX)
        self.ch_current_ma = array("d", [0.0] * CHANNELS_MAX)
        self.ch_delivered_ma = array("d", [0.0] * CHANNELS_MAX)
        self.timed_state = array("i", [0] * CHANNELS_MAX)
        self.timed_event_us = np.zeros(CHANNELS_MAX, dtype=np.int64)
        self.timed_on_us = np.zeros(CHANNELS_MAX, dtype=np.int64)
        self.ch_wall_start_us = np.zeros(CHANNELS_MAX, dtype=np.int64)
        self.amplitude_ma = profile.start_amplitude_ma
        self.pending_amplitude_ma = self.amplitude_ma
        self.overruns = 0
        self.missed_deadlines = 0
        self.taking_from_fd = 0   # 1 inside run_fd: each frame's lateness is accounted as it is taken
        self.max_lateness_us = 0
        self.clock_rate = 1.0
        self._reset_state()

    # ----- state ---------------------------------------------------------------------------
    def _reset_state(self):
        self.fault = 0
        self.phase = PH_FALL
        self.level = 0.0
        self.current_ma = 0.0
        self.detection_enabled = 0
        self.hold_limit_us = 0
        self.hold_us = 0
        self.rise_done_sent = 1
        self.fall_done_pending = 0
        self.burst_start_us = -1
        self.max_stim_sent = 0
        self.have_frame = 0
        self.last_seq = 0
        self.last_ts = 0
        self.t_us = 0
        self.frames = 0
        self.seq_gaps = 0
        self.frames_lost = 0
        self.crc_recent = 0
        self.good_since_crc = 0
        self.last_crc_total = 0
        self.heel_n = 0.0
        self.heel_lp = 0.0
        self.heel_peak = 0.0
        self.heel_loaded = 0
        self.heel_timer_us = 0
        self.heel_last_raw = -1
        self.heel_same_us = 0
        self.heel_frozen_strides = 0
        self.heel_unloaded_us = 0
        self.heel_absent = 0
        self.heel_floor = 0.0
        for k in range(FLOOR_BINS):
            self.floor_bins[k] = 0.0
        self.floor_idx = 0
        self.floor_filled = 0
        self.floor_bin_min = 0.0
        self.floor_bin_us = 0
        self.floor_win_min = 0.0
        self.flat_lo = 0.0
        self.flat_hi = 0.0
        self.flat_us = 0
        self.flat_seen_us = self.heel_floor_window_us     # no plateau seen yet
        self.flat_cand_n = -1.0                           # no plateau waiting for its heel strike
        self.flat_cand_us = 0
        self.heel_since_on_us = 0
        self.heel_since_off_us = 0
        self.heel_stride_us = 0.0
        self.heel_unload_us = 0.0
        self.heel_strides_learned = 0
        self.heel_walk_peak = 0.0
        self.heel_off_peak = 0.0
        self.heel_walk_learned = 0
        self.heel_delay_us = 0
        self.heel_pending = 0
        self.heel_pending_us = 0
        self.heel_unloaded_min = 0.0
        self.heel_contact_peak = 0.0
        self.heel_contact_base = 0.0
        self.heel_light = 0
        self.pitch_lp = 0.0
        self.yaw_lp = 0.0
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        self.tilt_push_min = 0.0
        self.tilt_swing_max = 0.0
        self.tilt_push_peak = 0.0
        self.tilt_swing_peak = 0.0
        self.tilt_push_learned = 0
        self.tilt_swing_learned = 0
        self.tilt_stance_yaw = 0.0
        self.tilt_late = 0
        self.tilt_late_ok = 1
        self.tilt_late_deg = 0.0
        self.late_onsets = 0
        self.stride = STRIDE_LOCKOUT
        self.delivered_ma = 0.0
        self.last_deliver_us = 0
        self.deliver_due = 0
        self.batch_ceiling_ma = -1.0
        self.batched_deliveries = 0
        self.batched_min_ma = 0.0
        self.batched_max_ma = 0.0
        for k in range(CHANNELS_MAX):
            self.ch_level[k] = 0.0
            self.ch_current_ma[k] = 0.0
            self.ch_delivered_ma[k] = 0.0
            self.timed_state[k] = TIMED_IDLE
            self.timed_event_us[k] = 0
            self.timed_on_us[k] = 0
            self.ch_wall_start_us[k] = -1
        self.anchor_wall_us = 0
        self.anchor_dev_us = 0
        self.last_valid_wall_us = 0
        self.burst_wall_start_us = -1
        self.wall_cuts = 0
        self.clock_step_us = 0
        self.drift_late_us = 0
        self.drift_rate_us = 0
        self.foot_pitch_deg = 0.0
        self.foot_rate_prev = 0.0
        self.foot_flat_timer_us = 0
        self.foot_flat_age_us = 0
        self.swing_n = 0
        self.swing_overflow = 0
        self.swing_recording = 0
        self._reset_drift()

    def _reset_drift(self):
        self.drift_win_start_us = 0
        self.drift_win_min_us = 0
        self.drift_prev_min_us = 0
        self.drift_have_prev = 0

    @property
    def lateness_hist(self):
        """Frames read by ``run_fd`` per lateness bin: LATENESS_BIN_US µs wide, the last bin
        counts everything ≥ (LATENESS_BINS - 1) × LATENESS_BIN_US (int64 numpy array)."""
        return np.asarray(self.hist)

    # ----- commands from the event level (the gait machine and the supervisor) -----------
    def set_phase(self, phase: cython.int, hold_limit_us: cython.longlong = 0):
        """Set what the envelope does from the next sample on (a ``Phase``); HOLD ends with
        HOLD_DONE after ``hold_limit_us`` (0: no limit). Ignored while faulted."""
        if self.fault:
            return
        self.phase = int(phase)
        if phase == PH_RISE:
            self.rise_done_sent = 0
        elif phase == PH_HOLD:
            self.hold_us = 0
            self.hold_limit_us = int(hold_limit_us)
        elif phase == PH_FALL:
            # RAMP_DOWN_DONE is owed only for a ramp that still has somewhere to go
            # (or one the cut-off already started)
            if self.level > 0.0:
                self.fall_done_pending = 1
        elif phase == PH_OFF:
            self.level = 0.0
            self.current_ma = 0.0

    def set_envelope(self, ramp_up_us: cython.longlong, ramp_down_us: cython.longlong,
                     max_stim_us: cython.longlong):
        """Ramp times and burst limit (µs) from now on (walking: the profile envelope; training
        and test bursts: theirs). The caller validates them against the hard caps of its mode.
        ValueError for a negative ramp or a burst limit ≤ 0."""
        if min(ramp_up_us, ramp_down_us) < 0 or max_stim_us <= 0:
            raise ValueError("ramp times must be >= 0 and max_stim_us > 0")
        self.ramp_up_us = int(ramp_up_us)
        self.ramp_down_us = int(ramp_down_us)
        self.max_stim_us = int(max_stim_us)

    def set_clock_rate(self, rate: cython.double):
        """Sensor µs expected per wall µs in ``run_fd``: 1 on a device; a replay at N × real
        time sets N (the wall back-stop is then max_stim / N); 0 (as fast as the reader
        takes frames) turns the drift check off and keeps the back-stop at max_stim.
        ValueError for NaN, inf or < 0."""
        if not (math.isfinite(rate) and rate >= 0.0):
            raise ValueError(f"clock rate {rate!r}; allowed a finite number >= 0 (1 = real time)")
        self.clock_rate = float(rate)
        self._reset_drift()

    def set_detection(self, enabled):
        """Enable or disable gait events. On enabling, wait for a stance before any onset."""
        self.detection_enabled = 1 if enabled else 0
        self.swing_recording = 0
        self.stride = STRIDE_LOCKOUT
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        self.tilt_late = 0
        if not enabled:     # walking paused or stopped: timed bursts not begun are dropped, others ramp down
            for i in range(1, self.n_channels):
                if self.timed_state[i] == TIMED_WAIT:
                    self.timed_state[i] = TIMED_IDLE
                elif self.timed_state[i] == TIMED_RISE or self.timed_state[i] == TIMED_HOLD:
                    self.timed_state[i] = TIMED_FALL

    def request_amplitude(self, amplitude_ma: cython.double):
        """Plateau amplitude (mA) for the next burst; applied only while the output is zero.
        ValueError outside 0..the profile's amplitude_ma."""
        if not (0.0 <= amplitude_ma <= self.amplitude_max_ma):
            raise ValueError(f"amplitude_ma {amplitude_ma:g} outside 0..{self.amplitude_max_ma:g}")
        self.pending_amplitude_ma = float(amplitude_ma)
        if self.level == 0.0:
            self.amplitude_ma = self.pending_amplitude_ma

    def request_channel_amplitude(self, index: cython.int, amplitude_ma: cython.double):
        """Plateau amplitude (mA) of channel ``index`` (0 = ``stimulation``, 1.. the profile's
        extra_channels) for its next burst; applied only while that channel's output is zero.
        ValueError outside 0..its profile amplitude or for an index the profile does not drive."""
        if index == 0:
            self.request_amplitude(amplitude_ma)
            return
        if not 0 < index < self.n_channels:
            raise ValueError(f"channel index {index!r}; this profile drives indexes 0..{self.n_channels - 1}")
        if not (0.0 <= amplitude_ma <= self.ch_amp_max_ma[index]):
            raise ValueError(f"amplitude_ma {amplitude_ma:g} outside 0..{self.ch_amp_max_ma[index]:g}")
        self.ch_pending_ma[index] = float(amplitude_ma)
        if self.ch_level[index] == 0.0:
            self.ch_amp_ma[index] = self.ch_pending_ma[index]

    def _index(self, index):
        if not 0 <= index < self.n_channels:
            raise ValueError(f"channel index {index!r}; this profile drives indexes 0..{self.n_channels - 1}")
        return index

    def channel_current_ma(self, index: cython.int):
        """Present output (mA) of channel ``index`` (0 = ``stimulation``)."""
        return self.current_ma if self._index(index) == 0 else self.ch_current_ma[index]

    def channel_level(self, index: cython.int):
        """Present envelope level (0..1) of channel ``index``."""
        return self.level if self._index(index) == 0 else self.ch_level[index]

    def channel_amplitude_ma(self, index: cython.int):
        """Plateau amplitude (mA) channel ``index`` uses now."""
        return self.amplitude_ma if self._index(index) == 0 else self.ch_amp_ma[index]

    def channel_pending_ma(self, index: cython.int):
        """Plateau amplitude (mA) channel ``index`` takes at its next burst."""
        return self.pending_amplitude_ma if self._index(index) == 0 else self.ch_pending_ma[index]

    def latch_fault(self, code: cython.int):
        """Force zero output now and latch ``code`` (a ``Fault``; the first reason wins).
        Called from the event level, so no FAULT event is queued; the kernel's own checks
        queue one (``_fault``)."""
        self._latch(int(code))

    def _latch(self, code):
        if not self.fault:
            self.fault = code
        self.phase = PH_OFF
        self.level = 0.0
        self.current_ma = 0.0
        for i in range(1, self.n_channels):
            self.ch_level[i] = 0.0
            self.ch_current_ma[i] = 0.0
            self.timed_state[i] = TIMED_IDLE
        self.detection_enabled = 0
        self.deliver_due = 1

    def _fault(self, code):
        if not self.fault:
            self._queue(EV_FAULT)
        self._latch(code)

    def clear_fault(self):
        """Leave the fault (a person asked for it). Output stays zero; continuity checks restart."""
        self.fault = 0
        self.have_frame = 0
        self.phase = PH_FALL
        self.fall_done_pending = 0
        self.burst_start_us = -1
        self.crc_recent = 0
        self.good_since_crc = 0
        self.heel_same_us = 0
        self.heel_frozen_strides = 0
        self.last_crc_total = self.crc_errors
        self.burst_wall_start_us = -1
        for i in range(CHANNELS_MAX):
            self.ch_wall_start_us[i] = -1
        self.anchor_wall_us = 0
        self._reset_drift()

    def set_delivery_ceiling(self, ceiling_ma: cython.double):
        """Let ``process`` take deliveries of 0..``ceiling_ma`` mA itself (``_deliver_batched``);
        a negative ceiling (the default) sends every delivery to the supervisor. Only the
        supervisor calls this, for a batch replay with no stimulator attached."""
        self.batch_ceiling_ma = float(ceiling_ma)

    def take_batched(self):
        """(count, lowest mA, highest mA) of the deliveries taken since the last call; resets."""
        out = (int(self.batched_deliveries), float(self.batched_min_ma), float(self.batched_max_ma))
        self.batched_deliveries = 0
        self.batched_min_ma = 0.0
        self.batched_max_ma = 0.0
        return out

    def mark_delivered(self):
        """The current output was sent to the stimulator."""
        self.delivered_ma = self.current_ma
        for i in range(1, self.n_channels):
            self.ch_delivered_ma[i] = self.ch_current_ma[i]
        self.last_deliver_us = self.t_us
        self.deliver_due = 0

    def pop_event(self):
        """The oldest queued ``Event`` code, or 0 (NONE) when the queue is empty."""
        if self.queue_count == 0:
            return 0
        e = self.queue[self.queue_head]
        self.queue_head = (self.queue_head + 1) % QUEUE_LEN
        self.queue_count -= 1
        return e

    def trace_clear(self):
        """Forget the traced samples (the caller has copied them)."""
        self.trace_len = 0

    def _queue(self, event):
        if self.queue_count < QUEUE_LEN:
            self.queue[(self.queue_head + self.queue_count) % QUEUE_LEN] = event
            self.queue_count += 1

    # ----- input ---------------------------------------------------------------------------
    def feed(self, data: cython.const[cython.uchar][:]):
        """Buffer sensor bytes (anything with the buffer protocol). Returns Ret flags: EVENT
        when more than INPUT_BUFFER_BYTES would be buffered (BUFFER_OVERRUN latched, the
        buffer emptied)."""
        n: cython.Py_ssize_t = len(data)
        if (self.buf_end - self.buf_start) + n > BUF_BYTES:
            self.overruns += 1
            self.buf_start = 0
            self.buf_end = 0
            self._fault(F_BUFFER_OVERRUN)
            return R_EVENT
        self._compact(n)
        self.buf[self.buf_end:self.buf_end + n] = data
        self.buf_end += n
        return 0

    def _compact(self, need):
        """Room for ``need`` more bytes at the end: move the unread bytes to the front."""
        if self.buf_end + need > BUF_BYTES:
            self.buf[0:self.buf_end - self.buf_start] = self.buf[self.buf_start:self.buf_end]
            self.buf_end -= self.buf_start
            self.buf_start = 0

    def process(self):
        """Run buffered frames until something needs the event level. Returns Ret flags
        (0: all buffered bytes used). Runs without the GIL in the compiled build."""
        ret: cython.int
        with cython.nogil:
            ret = self._process()
        return ret

    def _process(self):
        while True:
            if self.trace_capacity and self.trace_len >= self.trace_capacity:
                return R_TRACE_FULL
            got = self._next_frame()
            self._check_link()
            if got:
                frames_before = self.frames
                self._sample()
                # every frame, not only the newest of a read: frames that queued behind a
                # late wake-up are each late, and each is a missed deadline
                if self.taking_from_fd and self.frames != frames_before:
                    self._account_lateness(now_us())
            ret = 0
            if self.queue_count:
                ret |= R_EVENT
            if self.deliver_due and not (ret == 0 and self._deliver_batched()):
                ret |= R_DELIVER
            if ret or not got:
                return ret

    def _deliver_batched(self):
        """A delivery due on a sample that raised no event, taken without returning (returns 1):
        only while the supervisor has set a ceiling (``set_delivery_ceiling``; it set one only
        after checking the ceiling itself, with no stimulator attached), with no fault latched,
        on one channel, and for a current within 0..ceiling: the supervisor's checks are
        monotone in the current, so each such value passes them exactly as singly. Anything
        else returns 0 and goes to the supervisor singly (a refusal happens on its own sample).
        The supervisor checks and counts the batch in one call (``take_batched``)."""
        if self.batch_ceiling_ma < 0.0 or self.fault or self.n_channels != 1:
            return 0
        if not (self.current_ma >= 0.0 and self.current_ma <= self.batch_ceiling_ma):
            return 0
        if self.batched_deliveries == 0 or self.current_ma < self.batched_min_ma:
            self.batched_min_ma = self.current_ma
        if self.batched_deliveries == 0 or self.current_ma > self.batched_max_ma:
            self.batched_max_ma = self.current_ma
        self.batched_deliveries += 1
        self.delivered_ma = self.current_ma
        self.last_deliver_us = self.t_us
        self.deliver_due = 0
        return 1

    def _crc16(self, start, n):
        """CRC-16/CCITT-FALSE of buf[start:start + n] (as sensor_protocol.crc16_ccitt), four
        bytes per step through ``crc_table4`` .. ``crc_table`` (independent lookups; a byte at a
        time the serial table chain was ~12 % of a replay), the last n % 4 bytes one by one."""
        crc = 0xFFFF
        i = start
        end = start + n
        while i + 3 < end:
            crc = (self.crc_table4[((crc >> 8) ^ self.buf[i]) & 0xFF] ^ self.crc_table3[(crc ^ self.buf[i + 1]) & 0xFF]
                   ^ self.crc_table2[self.buf[i + 2]] ^ self.crc_table[self.buf[i + 3]])
            i += 4
        while i < end:
            crc = ((crc << 8) & 0xFFFF) ^ self.crc_table[((crc >> 8) ^ self.buf[i]) & 0xFF]
            i += 1
        return crc

    def _next_frame(self):
        """Parse one frame into the f_* fields (returns 1), or return 0 when more bytes are
        needed. Resynchronises like sensor_protocol.FrameParser: every skipped byte counts
        in garbage_bytes; a bad length or CRC skips one byte."""
        i = self.buf_start
        while self.buf_end - i >= 3:
            if self.buf[i] != 0xA5 or self.buf[i + 1] != 0x5A:
                self.garbage_bytes += 1
                i += 1
                continue
            if self.buf[i + 2] != PAYLOAD_LEN:
                self.length_errors += 1
                self.garbage_bytes += 1
                i += 1
                continue
            if self.buf_end - i < FRAME_LEN:
                self.buf_start = i
                return 0
            end = i + 3 + PAYLOAD_LEN
            if self._crc16(i + 2, PAYLOAD_LEN + 1) != (self.buf[end] | (self.buf[end + 1] << 8)):
                self.crc_errors += 1
                self.garbage_bytes += 1
                i += 1
                continue
            b = i + 3
            self.f_version = self.buf[b]
            self.f_flags = self.buf[b + 1]
            self.f_seq = self.buf[b + 2] | (self.buf[b + 3] << 8)
            v = self.buf[b + 7]               # uint32 timestamp, built in 64 bits
            v = (v << 8) | self.buf[b + 6]
            v = (v << 8) | self.buf[b + 5]
            self.f_ts = (v << 8) | self.buf[b + 4]
            self.f_heel = self.buf[b + 8] | (self.buf[b + 9] << 8)
            self.f_gyro_y = self.buf[b + 20] | (self.buf[b + 21] << 8)
            if self.f_gyro_y >= 0x8000:
                self.f_gyro_y -= 0x10000
            self.f_gyro_z = self.buf[b + 22] | (self.buf[b + 23] << 8)
            if self.f_gyro_z >= 0x8000:
                self.f_gyro_z -= 0x10000
            self.buf_start = i + FRAME_LEN
            return 1
        self.buf_start = i
        return 0

    def _check_link(self):
        if self.crc_errors != self.last_crc_total:
            self.crc_recent += self.crc_errors - self.last_crc_total
            self.last_crc_total = self.crc_errors
            self.good_since_crc = 0
            if self.crc_recent > self.max_missing and not self.fault:
                self._fault(F_LINK_ERRORS)

    def _cut(self):
        """The burst limit was reached: ramp down (or zero, already set) and report MAX_STIM once."""
        self.phase = PH_FALL
        self.fall_done_pending = 1
        if self.stride == STRIDE_ACTIVE:
            self.stride = STRIDE_LOCKOUT
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        self.tilt_late = 0
        if not self.max_stim_sent:
            self.max_stim_sent = 1
            self._queue(EV_MAX_STIM)

    # ----- one sample ----------------------------------------------------------------------
    def _sample(self):
        dt_us = self.period_us
        flags = self.f_flags
        queue_before = self.queue_count
        self.frames += 1
        self.good_since_crc += 1
        if self.good_since_crc >= 100:
            self.crc_recent = 0
        # --- sample guard: continuity, clock, content -------------------------------------
        if self.have_frame:
            gap = (self.f_seq - self.last_seq - 1) & 0xFFFF
            dt_us = (self.f_ts - self.last_ts) & U32_MASK
            if gap:
                self.seq_gaps += 1
                self.frames_lost += gap
            if gap > self.max_missing:
                self._fault(F_SEQUENCE_GAP)
            elif dt_us == 0 or dt_us > self.stale_us:
                # signed step for the fault detail; the sample itself advances by one period so
                # that sensor time, filters and timers do not take a bogus (e.g. 2^32-1 µs) step
                self.clock_step_us = dt_us - U32_WRAP if dt_us >= U32_HALF else dt_us
                dt_us = self.period_us
                self._fault(F_CLOCK_JUMP)
        if self.frames == 1:
            self.t_us = self.f_ts
        else:
            self.t_us += dt_us
        self.have_frame = 1
        self.last_seq = self.f_seq
        self.last_ts = self.f_ts
        if self.f_version != VERSION:
            self._fault(F_PARSE_ERROR)
        if self.need_heel and not (flags & FLAG_HEEL_PRESENT):
            self._fault(F_CHANNEL_MISSING)
        if self.need_imu and not (flags & FLAG_IMU_PRESENT):
            self._fault(F_CHANNEL_MISSING)
        if self.need_heel and (flags & FLAG_HEEL_FAULT):
            self._fault(F_HEEL_SENSOR_FAULT)
        if self.need_imu and (flags & FLAG_IMU_SATURATED):
            self._fault(F_IMU_SATURATED)
        # --- filters ---------------------------------------------------------------------
        heel = self.f_heel * HEEL_N_PER_COUNT
        pitch = -(self.f_gyro_y * GYRO_DPS_PER_COUNT)
        yaw = self.f_gyro_z * GYRO_DPS_PER_COUNT
        if self.frames == 1:
            self.heel_lp = heel
            self.pitch_lp = pitch
            self.yaw_lp = yaw
        else:
            self.heel_lp += _alpha(dt_us, self.heel_filter_hz) * (heel - self.heel_lp)
            self.pitch_lp += _alpha(dt_us, self.tilt_filter_hz) * (pitch - self.pitch_lp)
            self.yaw_lp += _alpha(dt_us, self.tilt_filter_hz) * (yaw - self.yaw_lp)
        self.heel_n = heel
        decayed = self.heel_peak - self.heel_peak * (dt_us / 1e6) / self.heel_peak_decay_s
        self.heel_peak = self.heel_lp if self.heel_lp > decayed else decayed
        if self.f_heel == self.heel_last_raw:
            self.heel_same_us += dt_us
        else:
            self.heel_same_us = 0
            self.heel_last_raw = self.f_heel
            self.heel_frozen_strides = 0
        # --- detectors ---------------------------------------------------------------------
        heel_edge_off = 0
        heel_edge_on = 0
        # swing-phase floor: the lowest filtered force of the last floor_window_ms, taken as
        # the unloaded level only when it lies well under the loaded peak (else: standing,
        # the heel did not unload; the floor holds)
        if self.frames == 1:
            self.floor_bin_min = self.heel_lp
        elif self.heel_lp < self.floor_bin_min:
            self.floor_bin_min = self.heel_lp
        self.floor_bin_us += dt_us
        if self.floor_bin_us >= self.heel_floor_bin_us:
            self.floor_bins[self.floor_idx] = self.floor_bin_min
            self.floor_idx = (self.floor_idx + 1) % FLOOR_BINS
            if self.floor_filled < FLOOR_BINS:
                self.floor_filled += 1
            self.floor_bin_us = 0
            self.floor_bin_min = self.heel_lp
            m = self.floor_bins[0]
            for k in range(1, self.floor_filled):
                if self.floor_bins[k] < m:
                    m = self.floor_bins[k]
            self.floor_win_min = m
        cand = self.floor_bin_min
        if self.floor_filled and self.floor_win_min < cand:
            cand = self.floor_win_min
        # a flat unloaded plateau: the filtered force held within floor_flat_n for floor_flat_ms
        # (but not longer than the longest burst) below floor_flat_max_fraction of the peak, ended
        # by the heel loading again. A foot in the air shows only the sensor's preload, which is
        # constant, until the heel strikes; a weight shift's minimum turns around without holding,
        # a seated foot rests for longer. Such a swing, seen within the window, lets the floor rise
        # above floor_max_n (up to floor_flat_max_fraction of the peak).
        if self.frames == 1:
            self.flat_lo = self.heel_lp
            self.flat_hi = self.heel_lp
        elif (_max(self.flat_hi, self.heel_lp) - _min(self.flat_lo, self.heel_lp)) <= self.heel_flat_n:
            self.flat_lo = _min(self.flat_lo, self.heel_lp)
            self.flat_hi = _max(self.flat_hi, self.heel_lp)
            self.flat_us += dt_us
        else:
            if (self.heel_flat_n > 0.0 and self.heel_lp > self.flat_hi and self.heel_flat_us <= self.flat_us
                    and self.flat_us <= self.heel_absent_us
                    and self.flat_hi <= self.heel_flat_max_fraction * self.heel_peak):
                # a plateau that ends upward: a swing only if the heel then loads past what the
                # strike threshold would be with the plateau as the floor, within floor_flat_ms
                # (a seated foot's plateau, flat under a fine or a coarse sensor alike, only
                # wavers out of the band)
                self.flat_cand_n = self.flat_hi
                self.flat_cand_us = 0
            self.flat_lo = self.heel_lp
            self.flat_hi = self.heel_lp
            self.flat_us = 0
        if self.flat_cand_n >= 0.0:
            rise = _max(self.heel_peak - self.flat_cand_n, 0.0)
            rise = _max(2.0 * self.heel_off_min_n, _min(_max(self.heel_on_min_n, self.heel_on_fraction * rise),
                                                         self.heel_on_max_fraction * rise))
            if self.heel_lp > self.flat_cand_n + rise:
                self.flat_seen_us = 0
                self.flat_cand_n = -1.0
            else:
                self.flat_cand_us += dt_us
                if self.flat_cand_us > self.heel_absent_us:
                    self.flat_cand_n = -1.0
        if self.flat_seen_us < self.heel_floor_window_us:
            self.flat_seen_us += dt_us
        # the swing residual is the sensor's, in proportion to the walker's loaded level when walking:
        # once learned, the floor also stays under floor_walk_fraction of the walking stance peak
        # (a light walker's or a low-scaled insole's weight shift nearly unloads the heel to a
        # level under floor_max_n; the decaying peak follows the shift down, the walking one not)
        floor_cap = self.heel_floor_max_n
        if (self.heel_floor_walk_fraction > 0.0 and self.heel_walk_learned >= self.heel_learn_strides
                and self.heel_floor_walk_fraction * self.heel_walk_peak < floor_cap):
            floor_cap = self.heel_floor_walk_fraction * self.heel_walk_peak
        if (cand <= self.heel_floor_max_fraction * self.heel_peak and cand <= floor_cap) or (
                self.flat_seen_us < self.heel_floor_window_us and cand <= self.heel_flat_max_fraction * self.heel_peak):
            self.heel_floor = cand
        span = self.heel_peak - self.heel_floor
        if span < 0.0:
            span = 0.0
        thr_off = self.heel_floor + _max(self.heel_off_min_n, self.heel_off_fraction * span)
        thr_on = self.heel_floor + _max(2.0 * self.heel_off_min_n,
                                        _min(_max(self.heel_on_min_n, self.heel_on_fraction * span),
                                             self.heel_on_max_fraction * span))
        # light contact (heel mode): once a burst's heel has been unloaded as long as this
        # walker's usually is (learned), the foot is on the ground again; a heel rising
        # light_strike_n above its lowest level since the heel-off is that contact (a forefoot or
        # turning step that hardly loads the heel), and the heel-off after it is judged against
        # that contact's own load: below half its rise
        light = 0
        if self.heel_light_n > 0.0 and self.mode_heel:
            if self.heel_loaded:
                if self.heel_light:
                    # the peak is read only for a light contact (set at every contact's edge)
                    if self.heel_lp > self.heel_contact_peak:
                        self.heel_contact_peak = self.heel_lp
                    thr_off = _min(thr_off, self.heel_contact_base
                                   + 0.5 * (self.heel_contact_peak - self.heel_contact_base))
            else:
                if self.heel_lp < self.heel_unloaded_min:
                    self.heel_unloaded_min = self.heel_lp
                if (self.stride == STRIDE_ACTIVE and self.heel_strides_learned >= self.heel_learn_strides
                        and self.heel_since_off_us >= self.heel_unload_us
                        and self.heel_unloaded_min + self.heel_light_n < thr_on):
                    thr_on = self.heel_unloaded_min + self.heel_light_n
                    light = 1
        if self.heel_loaded:
            if self.heel_lp < thr_off:
                self.heel_timer_us += dt_us
                if self.heel_timer_us >= self.heel_debounce_us:
                    self.heel_loaded = 0
                    self.heel_timer_us = 0
                    heel_edge_off = 1
                    self.heel_since_off_us = 0
                    self.heel_off_peak = self.heel_peak
                    self.heel_unloaded_min = self.heel_lp
                    self.heel_light = 0
            else:
                self.heel_timer_us = 0
        else:
            if self.heel_lp > thr_on:
                self.heel_timer_us += dt_us
                if self.heel_timer_us >= self.heel_debounce_us:
                    self.heel_loaded = 1
                    self.heel_timer_us = 0
                    heel_edge_on = 1
                    self.heel_light = light
                    self.heel_contact_peak = self.heel_lp
                    self.heel_contact_base = self.heel_unloaded_min
                    self._learn_stride()
                    self.heel_since_on_us = 0
            else:
                self.heel_timer_us = 0
        self.heel_since_on_us += dt_us
        self.heel_since_off_us += dt_us
        # heel-mode onset, delayed by the walker's own heel-off -> toe-off lag (learned)
        heel_onset = 0
        if heel_edge_off:
            if self.heel_delay_us > 0:
                self.heel_pending = 1
                self.heel_pending_us = 0
            else:
                heel_onset = 1
        elif self.heel_pending:
            if self.heel_loaded:
                self.heel_pending = 0       # the heel came back before the toes could leave
            else:
                self.heel_pending_us += dt_us
                if self.heel_pending_us >= self.heel_delay_us:
                    self.heel_pending = 0
                    heel_onset = 1
        tilt_edge_onset = 0
        tilt_edge_strike = 0
        w = self.pitch_lp
        # thresholds relative to this walker's recent push-off and swing peaks: they only
        # ever go below the profile's (weak push-offs), never under the *_min_dps bounds
        onset_thr = self.tilt_onset_dps
        swing_thr = self.tilt_swing_dps
        if self.tilt_adapt_fraction > 0.0:
            if self.tilt_push_learned >= self.tilt_learn_strides:
                onset_thr = _min(self.tilt_onset_dps, _max(self.tilt_onset_min_dps,
                                                           self.tilt_adapt_fraction * self.tilt_push_peak))
            if self.tilt_swing_learned >= self.tilt_learn_strides:
                swing_thr = _min(self.tilt_swing_dps, _max(self.tilt_swing_min_dps,
                                                           self.tilt_adapt_fraction * self.tilt_swing_peak))
        # ... and above the profile's for a strong walker (never above onset_max_dps): the slap
        # of a heel strike after a step nobody saw (60-100 deg/s) is not the push-off of a walker
        # whose push-offs peak at 300-600 deg/s
        if self.tilt_onset_raise_fraction > 0.0 and self.tilt_push_learned >= self.tilt_learn_strides:
            onset_thr = _max(onset_thr, _min(self.tilt_onset_max_dps,
                                             self.tilt_onset_raise_fraction * self.tilt_push_peak))
        ay = abs(self.yaw_lp)
        ts = self.tilt_state
        if ts == TILT_STANCE_WAIT:
            if self.tilt_late == 2:
                # after a pivoting stance: the toe rise counts as a swing only once the foot has
                # rotated toes-up by late_pivot_deg since the disarm (a pivot's toe rise stays under
                # ~9 deg and turns back, a turning step's swing lifts the toes by up to ~30 deg)
                self.tilt_late_deg += w * (dt_us / 1e6)
            if self.tilt_late and w > self.tilt_late_onset_dps and (
                    self.tilt_late == 1 or self.tilt_late_deg >= self.tilt_late_pivot_deg):
                # the toes keep rising after a stance that did not pivot (or, after one that did,
                # past late_pivot_deg): a weak step's swing (its push-off stayed under the
                # threshold); onset now, late, in the swing
                self.tilt_late = 0
                self.tilt_state = TILT_SWING
                self.tilt_timer_us = 0
                self.tilt_swing_max = w
                self.late_onsets += 1
                tilt_edge_onset = 1
            elif -self.tilt_stance_dps < w < self.tilt_stance_dps:
                if w < self.tilt_strike_dps:
                    self.tilt_late = 0
                if self.tilt_timer_us == 0 or ay > self.tilt_stance_yaw:
                    self.tilt_stance_yaw = ay
                self.tilt_timer_us += dt_us
                if self.tilt_timer_us >= self.tilt_min_stance_us:
                    self.tilt_state = TILT_ARMED
                    self.tilt_timer_us = 0
                    self.tilt_push_min = 0.0
                    self.tilt_late = 0
            else:
                self.tilt_timer_us = 0
                if w < self.tilt_strike_dps:
                    self.tilt_late = 0
        elif ts == TILT_ARMED:
            if w < self.tilt_push_min:
                self.tilt_push_min = w
            if ay > self.tilt_stance_yaw:
                self.tilt_stance_yaw = ay
            if w > self.tilt_disarm_dps:
                # toes rising without a detected push-off: a missed (weak) swing; wait for
                # the next stance rather than take its heel-strike spike for a push-off --
                # or, in tilt mode after a stance without pivoting, follow it for a late onset
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                self._learn_push(-self.tilt_push_min)
                if self.mode_tilt and self.tilt_late_onset_dps > 0.0 and self.tilt_late_ok:
                    if self.tilt_stance_yaw <= self.tilt_late_stance_yaw_dps:
                        self.tilt_late = 1
                    elif self.tilt_late_pivot_deg > 0.0:
                        # the stance pivoted: a turning step or turning in place; follow the toe
                        # rise and decide by its excursion (TILT_STANCE_WAIT above)
                        self.tilt_late = 2
                        self.tilt_late_deg = w * (dt_us / 1e6)
                self.tilt_late_ok = 1
            elif w < -onset_thr and abs(self.yaw_lp) <= -w * self.tilt_max_yaw_ratio:
                # toes down faster than the foot turns about the vertical: a push-off, not a pivot
                self.tilt_timer_us += dt_us
                if self.tilt_timer_us >= self.tilt_debounce_us:
                    self.tilt_state = TILT_ONSET
                    self.tilt_timer_us = 0
                    self.tilt_swing_max = w
                    tilt_edge_onset = 1
            else:
                self.tilt_timer_us = 0
        elif ts == TILT_ONSET:
            # the timer runs from onset; a swing that never comes must not block re-arming
            self.tilt_timer_us += dt_us
            if w < self.tilt_push_min:
                self.tilt_push_min = w
            if w > self.tilt_swing_max:
                self.tilt_swing_max = w
            if w > swing_thr:
                self.tilt_state = TILT_SWING
                self._learn_push(-self.tilt_push_min)
                self.tilt_swing_max = w
            elif self.tilt_timer_us >= self.tilt_swing_wait_us:
                # no swing after the "push-off" (a heel-strike spike, a stumble): end the
                # stride now instead of stimulating through the next real push-off. Where the
                # foot is now is unknown (maybe still in the air): no late onset in the next stance
                if self.tilt_adapt_fraction > 0.0 and self.tilt_swing_max >= self.tilt_swing_min_dps:
                    # ... but the toes did rise past swing_min_dps: a swing weaker than
                    # swing_rate_dps (a slow walker, a low-reading gyro). Learned as a stride's
                    # push-off and swing peaks, so that the adapted thresholds can come down to
                    # them (else they never would: only confirmed swings were learned)
                    self._learn_push(-self.tilt_push_min)
                    self._learn_swing(self.tilt_swing_max)
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                self.tilt_late_ok = 0
                tilt_edge_strike = 1
        else:  # TILT_SWING
            self.tilt_timer_us += dt_us
            if w > self.tilt_swing_max:
                self.tilt_swing_max = w
            if w < self.tilt_strike_dps:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                tilt_edge_strike = 1
                self.tilt_late_ok = 1
                self._learn_swing(self.tilt_swing_max)
                if self.heel_same_us > 0 and (flags & FLAG_IMU_PRESENT):
                    # a whole stride seen by the IMU while the heel reading did not move
                    self.heel_frozen_strides += 1
            elif self.tilt_timer_us >= self.max_stim_us:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                self.tilt_late_ok = 0
        if heel_edge_on and not self.mode_heel and not self.mode_tilt and self.tilt_state >= TILT_ONSET:
            # heel+tilt: the heel loading ends any stride the tilt detector still follows
            self.tilt_state = TILT_STANCE_WAIT
            self.tilt_timer_us = 0
        # --- heel contact and stuck heel ---------------------------------------------------
        # Unloaded for longer than any burst: the foot is off its heel (sitting, forefoot
        # walking). A state, not a fault: the device waits for the heel to load again.
        if self.heel_loaded:
            self.heel_unloaded_us = 0
            self.heel_absent = 0
        else:
            self.heel_unloaded_us += dt_us
            if self.heel_unloaded_us >= self.heel_absent_us:
                self.heel_absent = 1
        # A reading frozen while loaded, or frozen through IMU-detected strides, is a broken
        # sensor; frozen at the unloaded level (an unloaded FSR reads a constant) is not.
        if (self.need_heel and self.detection_enabled and self.heel_same_us >= self.heel_stuck_us
                and (self.heel_loaded or self.heel_frozen_strides >= self.heel_stuck_imu_strides)):
            self._fault(F_HEEL_STUCK)
        if self.mode_heel:
            onset = heel_onset
            strike = heel_edge_on
            ready = self.heel_loaded
        elif self.mode_tilt:
            onset = tilt_edge_onset
            strike = tilt_edge_strike
            ready = 1 if self.tilt_state == TILT_ARMED else 0
        else:
            onset = 1 if (not self.heel_loaded and self.tilt_state == TILT_ONSET
                          and (heel_edge_off or tilt_edge_onset)) else 0
            strike = 1 if (heel_edge_on or tilt_edge_strike) else 0
            # ready after quiet stance of the foot; the heel need not load (stairs, forefoot contact)
            ready = 1 if self.tilt_state == TILT_ARMED else 0
        stride_onset = 0
        stride_strike = 0
        if self.detection_enabled and not self.fault:
            if self.stride == STRIDE_IDLE:
                if onset:
                    self.stride = STRIDE_ACTIVE
                    self._queue(EV_HEEL_OFF)
                    stride_onset = 1
            elif self.stride == STRIDE_ACTIVE:
                if strike:
                    self.stride = STRIDE_IDLE if ready else STRIDE_LOCKOUT
                    self._queue(EV_HEEL_STRIKE)
                    stride_strike = 1
            elif ready:
                self.stride = STRIDE_IDLE
        # --- foot pitch (adaptive stimulation): integrated from the last foot-flat ----------
        # Toe-up pitch to the ground, trapezoidal integral of the raw pitch rate, reset to 0
        # while the foot is still (drift reset every stance). From each onset to its heel
        # strike the pitch goes into swing_pitch (the event level reads it at the strike).
        if self.foot_on:
            if -self.foot_flat_dps < self.pitch_lp < self.foot_flat_dps:
                self.foot_flat_timer_us += dt_us
            else:
                self.foot_flat_timer_us = 0
            if self.foot_flat_timer_us >= self.foot_flat_us:
                self.foot_pitch_deg = 0.0
                self.foot_flat_age_us = 0
            else:
                self.foot_pitch_deg += 0.5 * (pitch + self.foot_rate_prev) * (dt_us / 1e6)
                self.foot_flat_age_us += dt_us
            self.foot_rate_prev = pitch
            if stride_onset:
                self.swing_n = 0
                self.swing_overflow = 0
                self.swing_recording = 1
            if self.swing_recording:
                if self.swing_n < self.swing_cap:
                    self.sw_buf[self.swing_n] = self.foot_pitch_deg
                    self.swing_n += 1
                else:
                    self.swing_overflow = 1
            if stride_strike:
                self.swing_recording = 0
        # --- envelope ----------------------------------------------------------------------
        if self.level == 0.0:
            self.amplitude_ma = self.pending_amplitude_ma
        ph = self.phase
        if ph == PH_OFF:
            self.level = 0.0
        elif ph == PH_RISE:
            if self.ramp_up_us == 0:
                self.level = 1.0
            else:
                self.level = _min(1.0, self.level + float(dt_us) / self.ramp_up_us)
            if self.level >= 1.0 and not self.rise_done_sent:
                self.rise_done_sent = 1
                self._queue(EV_RAMP_UP_DONE)
        elif ph == PH_HOLD:
            self.hold_us += dt_us
            if self.hold_limit_us > 0 and self.hold_us >= self.hold_limit_us:
                self.hold_limit_us = 0
                self._queue(EV_HOLD_DONE)
        else:  # FALL
            if self.ramp_down_us == 0:
                self.level = 0.0
            else:
                self.level = _max(0.0, self.level - float(dt_us) / self.ramp_down_us)
            if self.level == 0.0 and self.fall_done_pending:
                self.fall_done_pending = 0
                self._queue(EV_RAMP_DOWN_DONE)
        # --- max-stimulation cut-off and back-stop -----------------------------------------
        if self.level > 0.0:
            if self.burst_start_us < 0:
                self.burst_start_us = self.t_us
                self.max_stim_sent = 0
            on_us = self.t_us - self.burst_start_us
            cut = 0
            if on_us >= self.max_stim_us:
                self.level = 0.0
                cut = 1
            elif self.cutoff_zero:
                if on_us + dt_us >= self.max_stim_us:
                    self.level = 0.0
                    cut = 1
            elif self.phase != PH_FALL and on_us + self.level * self.ramp_down_us + dt_us >= self.max_stim_us:
                cut = 1
            if cut:
                self._cut()
        if self.level == 0.0:
            self.burst_start_us = -1
        if self.fault:
            self.level = 0.0
        self.current_ma = self.level * self.amplitude_ma
        # --- delivery decision -------------------------------------------------------------
        if self.current_ma != self.delivered_ma:
            if self.current_ma == 0.0 or self.t_us - self.last_deliver_us >= self.deliver_interval_us:
                self.deliver_due = 1
        if self.n_channels > 1:
            self._extra_channels(dt_us, stride_onset + 2 * stride_strike)
        # --- trace ---------------------------------------------------------------------------
        if self.trace_capacity:
            i = self.trace_len
            mask = 0
            for k in range(queue_before, self.queue_count):
                mask |= 1 << self.queue[(self.queue_head + k) % QUEUE_LEN]
            self.tr_t[i] = self.t_us
            self.tr_heel[i] = self.heel_lp
            self.tr_pitch[i] = self.pitch_lp
            self.tr_level[i] = self.level
            self.tr_current[i] = self.current_ma
            self.tr_phase[i] = self.phase
            self.tr_events[i] = mask
            self.tr_fault[i] = self.fault
            self.trace_len = i + 1

    def _extra_channels(self, dt_us, gait_event):
        """Channels 1.. of a multi-channel profile, after channel 0's envelope on each sample.

        A channel without timing follows channel 0's level (its own amplitude). A timed
        channel's burst is placed on the sample its gait event was queued (``gait_event`` 1
        heel-off, 2 heel strike; ignored while one runs): it waits ``onset``, rises at most
        dt/ramp_up per sample, holds, and falls early enough to reach zero ``duration`` after
        its onset; a back-stop zeroes it at max_stim. Zero on a fault. Same delivery rule as
        channel 0."""
        for i in range(1, self.n_channels):
            if self.ch_level[i] == 0.0:
                self.ch_amp_ma[i] = self.ch_pending_ma[i]
            if not self.ch_timed[i]:
                lv = self.level
            else:
                st = self.timed_state[i]
                lv = self.ch_level[i]
                if st == TIMED_IDLE and gait_event == 1 + self.ch_after_strike[i]:
                    st = TIMED_WAIT
                    self.timed_event_us[i] = self.t_us
                if st == TIMED_WAIT:
                    if self.t_us - self.timed_event_us[i] >= self.ch_onset_us[i]:
                        st = TIMED_RISE
                        self.timed_on_us[i] = self.t_us
                elif st == TIMED_RISE:
                    if self.ch_ramp_up_us[i] == 0:
                        lv = 1.0
                    else:
                        lv = _min(1.0, lv + float(dt_us) / self.ch_ramp_up_us[i])
                    if lv >= 1.0:
                        st = TIMED_HOLD
                elif st == TIMED_FALL:
                    if self.ch_ramp_down_us[i] == 0:
                        lv = 0.0
                    else:
                        lv = _max(0.0, lv - float(dt_us) / self.ch_ramp_down_us[i])
                    if lv == 0.0:
                        st = TIMED_IDLE
                if st == TIMED_RISE or st == TIMED_HOLD:
                    if (float(self.t_us - self.timed_on_us[i]) + lv * self.ch_ramp_down_us[i] + dt_us
                            >= self.ch_duration_us[i]):
                        st = TIMED_FALL
                if lv > 0.0 and self.t_us - self.timed_on_us[i] >= self.max_stim_us:
                    lv = 0.0
                    st = TIMED_IDLE
                self.timed_state[i] = st
            if self.fault:
                lv = 0.0
            self.ch_level[i] = lv
            self.ch_current_ma[i] = lv * self.ch_amp_ma[i]
            if self.ch_current_ma[i] != self.ch_delivered_ma[i]:
                if self.ch_current_ma[i] == 0.0 or self.t_us - self.last_deliver_us >= self.deliver_interval_us:
                    self.deliver_due = 1

    def _learn_push(self, peak_dps):
        """A stride's push-off peak (toe-down rate, deg/s, >= 0), detected or missed."""
        if self.tilt_push_learned == 0:
            self.tilt_push_peak = peak_dps
        else:
            self.tilt_push_peak += 0.25 * (peak_dps - self.tilt_push_peak)
        if self.tilt_push_learned < self.tilt_learn_strides:
            self.tilt_push_learned += 1

    def _learn_swing(self, peak_dps):
        """A detected swing's peak toe-up rate, deg/s."""
        if self.tilt_swing_learned == 0:
            self.tilt_swing_peak = peak_dps
        else:
            self.tilt_swing_peak += 0.25 * (peak_dps - self.tilt_swing_peak)
        if self.tilt_swing_learned < self.tilt_learn_strides:
            self.tilt_swing_learned += 1

    def _learn_stride(self):
        """At a heel strike: learn the stride time (strike to strike) and the time the heel
        was unloaded (heel-off to strike); from them the onset delay for the next strides. The
        stance peak at that heel-off is the walking stance peak (learned the same way)."""
        stride = self.heel_since_on_us
        unload = self.heel_since_off_us
        if stride >= STRIDE_MAX_US or unload >= stride:
            return
        if self.heel_walk_learned == 0:
            self.heel_walk_peak = self.heel_off_peak
        else:
            self.heel_walk_peak += 0.25 * (self.heel_off_peak - self.heel_walk_peak)
        if self.heel_walk_learned < self.heel_learn_strides:
            self.heel_walk_learned += 1
        if self.heel_strides_learned == 0:
            self.heel_stride_us = float(stride)
            self.heel_unload_us = float(unload)
        else:
            self.heel_stride_us += 0.25 * (stride - self.heel_stride_us)
            self.heel_unload_us += 0.25 * (unload - self.heel_unload_us)
        if self.heel_strides_learned < self.heel_learn_strides:
            self.heel_strides_learned += 1
        if self.heel_strides_learned >= self.heel_learn_strides:
            # heel-off leads toe-off by (unloaded time - swing time); swing ~ swing_fraction x stride
            lag = self.heel_unload_us - self.heel_swing_fraction * self.heel_stride_us
            d = lag - self.heel_onset_lead_us
            if d < 0.0:
                d = 0.0
            if d > self.heel_max_delay_us:
                d = float(self.heel_max_delay_us)
            self.heel_delay_us = _trunc(d)

    # ----- real-time reading from a file descriptor ------------------------------------------
    def run_fd(self, fd: cython.int, wake_us: cython.longlong):
        """Read and process frames from ``fd`` until something needs the event level.

        Returns Ret flags, at the latest after ``wake_us`` of wall time (TIMEOUT) so the
        caller can service the stimulator; CLOSED at end of file or a read error. No valid
        frame for stale_ms of wall time latches SENSOR_STALE, judged only by a wait that watched
        the port until its deadline: when the loop itself was not running (the caller came
        back late, or the wait overslept), queued frames are read and it looks one more sample
        period first, at most STALE_RELOOKS times (a late loop is missed deadlines, not a lost
        sensor); before the session's first valid
        frame the wait is ``startup_grace_us`` instead (limits.SENSOR_STARTUP_GRACE_MS: a unit
        that resets when its port opens; the output is zero until frames arrive). The wall-clock back-stop zeroes
        any burst that has lasted max_stim less one sample period of monotonic time,
        whatever the sensor timestamps say, and the wait for input never runs past that
        deadline, so zero goes out on time with no frame at all. Lateness of each frame as it
        is taken, against the sensor clock, is accumulated in ``lateness_hist`` (100 µs bins;
        every frame of a read counts, so frames that queued behind a late wake-up are each
        missed deadlines); the newest frame of each take is checked for drift (CLOCK_DRIFT).
        Input arriving faster than it is processed latches BUFFER_OVERRUN. Runs without the
        GIL in the compiled build.
        """
        ret: cython.int
        with cython.nogil:
            ret = self._run_fd(fd, wake_us)
        return ret

    def _run_fd(self, fd, wake_us):
        now = now_us()
        if self.last_valid_wall_us == 0:
            self.last_valid_wall_us = now
        deadline = now + wake_us
        looked = 0        # the last wait watched the port until its deadline (did not oversleep)
        relooks = 0
        while True:
            frames_before = self.frames
            before_us = now
            self.taking_from_fd = 1
            ret = self._process()
            self.taking_from_fd = 0
            now = now_us()
            if self.frames != frames_before:
                self._check_drift(now)     # on the newest frame taken: the clocks, not the queue
            ret |= self._wall_guard(before_us, now)
            if self.queue_count:       # the drift check may have latched a fault just now
                ret |= R_EVENT
            if self.deliver_due:
                ret |= R_DELIVER
            if ret:
                return ret
            stale_us = self.stale_us if self.frames else self.startup_grace_us
            stale_due = not self.fault and now - self.last_valid_wall_us > stale_us
            # Stale means the sensor was silent while this loop watched its port. When the loop
            # itself was not running (the caller came back late, or a wait overslept: the
            # process or the machine stalled), frames may be queued or about to be written,
            # so it looks for one more sample period first, at most STALE_RELOOKS times.
            if stale_due and not looked:
                relooks += 1
            if stale_due and (looked or relooks > STALE_RELOOKS):
                self._fault(F_SENSOR_STALE)
                return R_EVENT | R_DELIVER
            if now >= deadline and not stale_due:
                return R_TIMEOUT
            until = deadline
            if stale_due:
                until = now + self.period_us
            elif self.last_valid_wall_us + stale_us + 1 < until:
                until = self.last_valid_wall_us + stale_us + 1
            if self.burst_wall_start_us >= 0 and self.burst_wall_start_us + self._wall_max_stim_us() < until:
                until = self.burst_wall_start_us + self._wall_max_stim_us()
            for c in range(1, self.n_channels):
                if self.ch_wall_start_us[c] >= 0 and self.ch_wall_start_us[c] + self._wall_max_stim_us() < until:
                    until = self.ch_wall_start_us[c] + self._wall_max_stim_us()
            wait_us = until - now
            if wait_us < 0:
                wait_us = 0
            # the wait has ms resolution: round up so we never spin
            n = wait_readable(fd, (wait_us + 999) // 1000)
            now = now_us()
            looked = 1 if now - until <= self.period_us else 0    # awake until its deadline
            if n <= 0:
                continue
            if self.buf_end - self.buf_start + READ_CHUNK > BUF_BYTES:
                self.overruns += 1
                self.buf_start = 0
                self.buf_end = 0
                self._fault(F_BUFFER_OVERRUN)
                return R_EVENT
            self._compact(READ_CHUNK)
            n = read_into(fd, self.buf, self.buf_end, READ_CHUNK)
            if n < 0:
                continue
            if n == 0:
                return R_CLOSED
            self.buf_end += n

    def _wall_max_stim_us(self):
        """When the back-stop cuts, in wall time from the burst's start: one sample period
        before max_stim (that period is the margin for the zero to reach the stimulator),
        scaled down in a replay faster than real time."""
        limit = self.max_stim_us
        if self.clock_rate > 1.0:
            limit = _trunc(limit / self.clock_rate)
        limit -= self.period_us
        return limit if limit > self.period_us else self.period_us

    def _wall_guard(self, before_us, now_us):
        """Wall-clock back-stop: a burst started (at the latest) at ``before_us`` ends at
        ``_wall_max_stim_us`` of monotonic time. Returns Ret flags (EVENT | DELIVER when it cut).
        Channels 1..: a timed channel has its own burst clock; one that follows channel 0 is
        cut with it."""
        ret = self._wall_guard_timed(before_us, now_us) if self.n_channels > 1 else 0
        if self.level <= 0.0:
            self.burst_wall_start_us = -1
            return ret
        if self.burst_wall_start_us < 0:
            self.burst_wall_start_us = before_us
        if now_us - self.burst_wall_start_us < self._wall_max_stim_us():
            return ret
        self.wall_cuts += 1
        self.level = 0.0
        self.current_ma = 0.0
        for i in range(1, self.n_channels):
            if not self.ch_timed[i]:
                self.ch_level[i] = 0.0
                self.ch_current_ma[i] = 0.0
        self.burst_start_us = -1
        self.burst_wall_start_us = -1
        self._cut()
        self.deliver_due = 1
        return R_EVENT | R_DELIVER

    def _wall_guard_timed(self, before_us, now_us):
        """The wall-clock back-stop of each timed channel's own burst (Ret.DELIVER when it cut)."""
        ret = 0
        for i in range(1, self.n_channels):
            if not self.ch_timed[i]:
                continue
            if self.ch_level[i] <= 0.0:
                self.ch_wall_start_us[i] = -1
                continue
            if self.ch_wall_start_us[i] < 0:
                self.ch_wall_start_us[i] = before_us
            if now_us - self.ch_wall_start_us[i] >= self._wall_max_stim_us():
                self.wall_cuts += 1
                self.ch_level[i] = 0.0
                self.ch_current_ma[i] = 0.0
                self.timed_state[i] = TIMED_IDLE
                self.ch_wall_start_us[i] = -1
                self.deliver_due = 1
                ret = R_DELIVER
        return ret

    def _account_lateness(self, now_us):
        """One frame taken at ``now_us``: its lateness against the soonest arrival so far (the
        anchor moves to a frame that comes earlier than expected); a missed deadline when it is
        more than one sample period."""
        self.last_valid_wall_us = now_us
        expected = self.anchor_wall_us + (self.t_us - self.anchor_dev_us)
        late = now_us - expected
        if self.anchor_wall_us == 0 or late < 0:
            self.anchor_wall_us = now_us
            self.anchor_dev_us = self.t_us
            late = 0
        b = late // BIN_US
        self.hist[b if b < N_BINS - 1 else N_BINS - 1] += 1
        if late > self.max_lateness_us:
            self.max_lateness_us = late
        if late > self.period_us:
            self.missed_deadlines += 1

    def _check_drift(self, now_us):
        """CLOCK_DRIFT, checked on the newest frame of each take by ``run_fd`` unless the clock
        rate is 0 (the clocks' agreement: frames that queued behind a late wake-up do not count).

        ``offset`` = wall time − sensor time (scaled by the expected clock rate). Its
        minimum is the frame that arrived soonest; late frames only raise it. Fault when
          * offset: a frame arrives more than stale_ms later than its timestamp says,
            against the soonest arrival of this and the previous window (the sensor clock
            fell behind, or frames queue up); the short horizon keeps the ordinary
            crystal difference of two clocks (~100 ppm) from adding up over a session;
          * rate: the minimum offset of one DRIFT_WINDOW_US window of wall time moves by
            more than DRIFT_MAX_PERCENT of the window from the one before (either clock
            runs fast or slow).
        """
        if self.fault or self.clock_rate <= 0.0:
            return
        offset = now_us - _trunc(self.t_us / self.clock_rate)
        if self.drift_win_start_us == 0:
            self.drift_win_start_us = now_us
            self.drift_win_min_us = offset
        if offset < self.drift_win_min_us:
            self.drift_win_min_us = offset
        soonest = self.drift_win_min_us
        if self.drift_have_prev and self.drift_prev_min_us < soonest:
            soonest = self.drift_prev_min_us
        self.drift_late_us = offset - soonest
        if self.drift_late_us > self.stale_us:
            self._fault(F_CLOCK_DRIFT)
            return
        span = now_us - self.drift_win_start_us
        if span < DRIFT_WINDOW_US:
            return
        if self.drift_have_prev:
            self.drift_rate_us = self.drift_win_min_us - self.drift_prev_min_us
            rate = self.drift_rate_us if self.drift_rate_us >= 0 else -self.drift_rate_us
            if rate * 100 > DRIFT_MAX_PERCENT * span:
                self._fault(F_CLOCK_DRIFT)
        self.drift_prev_min_us = self.drift_win_min_us
        self.drift_have_prev = 1
        self.drift_win_start_us = now_us
        self.drift_win_min_us = offset
