# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-sample kernel: the real-time twin of ``_kernel_py.PyKernel``.

Same algorithm, same arithmetic order, same integer codes (``codes.py``); the
hot path (``process``/``run_fd``: read, parse, guard, filter, detect, envelope,
trace) runs in C without the GIL and creates no Python object per sample. It
returns to Python only when the event level is needed: a gait event, an output
to deliver, a fault, a full trace or the wake-up interval.
Read ``_kernel_py.py`` for the commented reference of every step.
"""
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, int16_t, int8_t, int32_t
from libc.string cimport memmove, memcpy
from libc.math cimport M_PI, fabs
from posix.unistd cimport read
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from libc.errno cimport errno, EAGAIN, EINTR

import numpy as np

from fescontrol.drivers import sensor_protocol as _sp
from fescontrol.core.codes import Event, Fault, Phase, Ret
from fescontrol._kernel_py import KernelParams, TRACE_FIELDS, INPUT_BUFFER_BYTES, EVENT_QUEUE_LEN, \
    LATENESS_BIN_US, LATENESS_BINS, STRIDE_MAX_US as _STRIDE_MAX_US, SWING_BUF_LEN as _SWING_BUF_LEN, \
    CHANNELS_MAX as _CHANNELS_MAX

cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN
    short POLLHUP
    short POLLERR

# --- codes (must equal codes.py; tests/test_kernel_twins.py checks) ---
cdef enum:
    PH_FALL = 0
    PH_RISE = 1
    PH_HOLD = 2
    PH_OFF = 3
    EV_HEEL_OFF = 1
    EV_HEEL_STRIKE = 2
    EV_RAMP_UP_DONE = 3
    EV_HOLD_DONE = 4
    EV_RAMP_DOWN_DONE = 5
    EV_MAX_STIM = 6
    EV_FAULT = 7
    F_SENSOR_STALE = 1
    F_SEQUENCE_GAP = 2
    F_CLOCK_JUMP = 3
    F_PARSE_ERROR = 4
    F_CHANNEL_MISSING = 5
    F_HEEL_SENSOR_FAULT = 6
    F_IMU_SATURATED = 7
    F_HEEL_STUCK = 8
    F_BUFFER_OVERRUN = 10
    F_LINK_ERRORS = 14
    F_CLOCK_DRIFT = 15
    R_EVENT = 1
    R_DELIVER = 2
    R_TIMEOUT = 4
    R_TRACE_FULL = 8
    R_CLOSED = 16
    STRIDE_IDLE = 0
    STRIDE_ACTIVE = 1
    STRIDE_LOCKOUT = 2
    TILT_STANCE_WAIT = 0
    TILT_ARMED = 1
    TILT_ONSET = 2
    TILT_SWING = 3
    BUF_BYTES = 65536
    FLOOR_BINS = 40
    QUEUE_LEN = 16
    PAYLOAD_LEN = 28
    FRAME_LEN = 33
    VERSION = 1
    FLAG_HEEL_PRESENT = 0x01
    FLAG_IMU_PRESENT = 0x02
    FLAG_IMU_SATURATED = 0x08
    FLAG_HEEL_FAULT = 0x10
    N_BINS = 101
    BIN_US = 100
    DRIFT_WINDOW_US = 1000000
    DRIFT_MAX_PERCENT = 5
    N_CH = 4
    TIMED_IDLE = 0
    TIMED_WAIT = 1
    TIMED_RISE = 2
    TIMED_HOLD = 3
    TIMED_FALL = 4

CODE_TABLE = {
    "Phase": {"FALL": PH_FALL, "RISE": PH_RISE, "HOLD": PH_HOLD, "OFF": PH_OFF},
    "Event": {"HEEL_OFF": EV_HEEL_OFF, "HEEL_STRIKE": EV_HEEL_STRIKE, "RAMP_UP_DONE": EV_RAMP_UP_DONE,
              "HOLD_DONE": EV_HOLD_DONE, "RAMP_DOWN_DONE": EV_RAMP_DOWN_DONE, "MAX_STIM": EV_MAX_STIM,
              "FAULT": EV_FAULT},
    "Fault": {"SENSOR_STALE": F_SENSOR_STALE, "SEQUENCE_GAP": F_SEQUENCE_GAP, "CLOCK_JUMP": F_CLOCK_JUMP,
              "PARSE_ERROR": F_PARSE_ERROR, "CHANNEL_MISSING": F_CHANNEL_MISSING,
              "HEEL_SENSOR_FAULT": F_HEEL_SENSOR_FAULT, "IMU_SATURATED": F_IMU_SATURATED,
              "HEEL_STUCK": F_HEEL_STUCK, "BUFFER_OVERRUN": F_BUFFER_OVERRUN, "LINK_ERRORS": F_LINK_ERRORS,
              "CLOCK_DRIFT": F_CLOCK_DRIFT},
    "Ret": {"EVENT": R_EVENT, "DELIVER": R_DELIVER, "TIMEOUT": R_TIMEOUT, "TRACE_FULL": R_TRACE_FULL,
            "CLOSED": R_CLOSED},
    "constants": {"BUF_BYTES": BUF_BYTES, "QUEUE_LEN": QUEUE_LEN, "PAYLOAD_LEN": PAYLOAD_LEN,
                  "FRAME_LEN": FRAME_LEN, "N_BINS": N_BINS, "BIN_US": BIN_US,
                  "FLAG_HEEL_PRESENT": FLAG_HEEL_PRESENT, "FLAG_IMU_PRESENT": FLAG_IMU_PRESENT,
                  "FLAG_IMU_SATURATED": FLAG_IMU_SATURATED, "FLAG_HEEL_FAULT": FLAG_HEEL_FAULT,
                  "DRIFT_WINDOW_US": DRIFT_WINDOW_US, "DRIFT_MAX_PERCENT": DRIFT_MAX_PERCENT,
                  "CHANNELS_MAX": N_CH, "TIMED": (TIMED_IDLE, TIMED_WAIT, TIMED_RISE, TIMED_HOLD, TIMED_FALL)},
}


cdef inline int64_t _now_us() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef inline uint16_t _crc16(const uint8_t *data, int n) noexcept nogil:
    cdef uint32_t crc = 0xFFFF
    cdef int i, b
    for i in range(n):
        crc ^= (<uint32_t>data[i]) << 8
        for b in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return <uint16_t>crc


cdef inline double _alpha(int64_t dt_us, double cutoff_hz) noexcept nogil:
    cdef double dt_s = dt_us / 1e6
    cdef double tau_s = 1.0 / (2.0 * M_PI * cutoff_hz)
    return dt_s / (tau_s + dt_s)


cdef inline double _max(double a, double b) noexcept nogil:
    return a if a > b else b


cdef inline double _min(double a, double b) noexcept nogil:
    return a if a < b else b


cdef inline uint16_t _u16(const uint8_t *b) noexcept nogil:
    return <uint16_t>(b[0] | (b[1] << 8))


cdef inline int16_t _i16(const uint8_t *b) noexcept nogil:
    return <int16_t>(b[0] | (b[1] << 8))


cdef class CyKernel:
    """Per-sample detection, envelope and sample guard, compiled. See ``PyKernel``."""

    # parameters
    cdef int need_heel, need_imu, mode_heel, mode_tilt, cutoff_zero
    cdef int64_t ramp_up_us, ramp_down_us, max_stim_us, heel_debounce_us, heel_stuck_us, heel_absent_us
    cdef int heel_stuck_imu_strides, heel_learn_strides
    cdef int64_t heel_floor_bin_us, heel_onset_lead_us, heel_max_delay_us, stride_max_us
    cdef double heel_floor_max_fraction, heel_floor_max_n, heel_on_max_fraction, heel_swing_fraction
    cdef int64_t tilt_min_stance_us, tilt_debounce_us, tilt_swing_wait_us, stale_us, deliver_interval_us, period_us
    cdef int max_missing
    cdef double heel_off_fraction, heel_on_fraction, heel_off_min_n, heel_on_min_n
    cdef double heel_peak_decay_s, heel_filter_hz
    cdef double tilt_onset_dps, tilt_swing_dps, tilt_strike_dps, tilt_stance_dps, tilt_filter_hz
    cdef double tilt_disarm_dps, tilt_max_yaw_ratio, tilt_adapt_fraction, tilt_onset_min_dps, tilt_swing_min_dps
    cdef int tilt_learn_strides
    cdef int foot_on
    cdef double foot_flat_dps
    cdef int64_t foot_flat_us
    # foot pitch through swing (adaptive stimulation; see _kernel_py.py)
    cdef readonly double foot_pitch_deg
    cdef double foot_rate_prev
    cdef readonly int64_t foot_flat_timer_us, foot_flat_age_us
    cdef readonly int swing_n, swing_overflow, swing_recording
    cdef int swing_cap
    cdef readonly object swing_pitch
    cdef double[:] sw_buf
    cdef readonly double amplitude_max_ma
    cdef readonly object p
    # input buffer and parser counters
    cdef uint8_t buf[BUF_BYTES]
    cdef int buf_start, buf_end
    cdef readonly int64_t crc_errors, length_errors, garbage_bytes
    # event queue
    cdef int queue[QUEUE_LEN]
    cdef int queue_head, queue_count
    # state (same names as PyKernel)
    cdef public int fault, phase, detection_enabled
    cdef readonly double level, current_ma, amplitude_ma, pending_amplitude_ma
    cdef readonly int64_t hold_limit_us, hold_us
    cdef int rise_done_sent, fall_done_pending, max_stim_sent
    cdef readonly int64_t burst_start_us
    cdef int have_frame
    cdef readonly int64_t last_seq, last_ts, t_us, frames, seq_gaps, frames_lost
    cdef int64_t crc_recent, good_since_crc, last_crc_total
    cdef readonly double heel_n, heel_lp, heel_peak, pitch_lp, yaw_lp
    cdef readonly int heel_loaded, tilt_state, stride, heel_absent, heel_frozen_strides
    cdef int64_t heel_timer_us, heel_last_raw, heel_same_us, tilt_timer_us
    cdef readonly int64_t heel_unloaded_us
    # adaptive heel detector (see PyKernel): swing floor ring buffer, learned stride timing
    cdef readonly double heel_floor, heel_stride_us, heel_unload_us
    cdef double floor_bins[FLOOR_BINS]
    cdef int floor_idx, floor_filled
    cdef double floor_bin_min, floor_win_min
    cdef int64_t floor_bin_us, heel_since_on_us, heel_since_off_us, heel_pending_us
    cdef readonly int64_t heel_delay_us
    cdef readonly int heel_strides_learned, heel_pending
    cdef readonly double tilt_push_min, tilt_swing_max, tilt_push_peak, tilt_swing_peak
    cdef readonly int tilt_push_learned, tilt_swing_learned
    cdef readonly double delivered_ma
    cdef readonly int64_t last_deliver_us
    cdef public int deliver_due
    cdef readonly int64_t overruns, missed_deadlines, max_lateness_us
    cdef int64_t anchor_wall_us, anchor_dev_us, last_valid_wall_us
    # wall clock: back-stop and drift (run_fd only)
    cdef readonly double clock_rate
    cdef readonly int64_t burst_wall_start_us, wall_cuts, clock_step_us, drift_late_us, drift_rate_us
    cdef int64_t drift_win_start_us, drift_win_min_us, drift_prev_min_us
    cdef int drift_have_prev
    cdef int64_t[:] hist
    # channels 1.. of a multi-channel profile (index 0 unused: level, current_ma, ... are channel 0's)
    cdef readonly int n_channels
    cdef int ch_timed[N_CH]
    cdef int ch_after_strike[N_CH]
    cdef int64_t ch_onset_us[N_CH]
    cdef int64_t ch_duration_us[N_CH]
    cdef int64_t ch_ramp_up_us[N_CH]
    cdef int64_t ch_ramp_down_us[N_CH]
    cdef double ch_amp_max_ma[N_CH]
    cdef double ch_amp_ma[N_CH]
    cdef double ch_pending_ma[N_CH]
    cdef double ch_level[N_CH]
    cdef double ch_current_ma[N_CH]
    cdef double ch_delivered_ma[N_CH]
    cdef int timed_state[N_CH]
    cdef int64_t timed_event_us[N_CH]
    cdef int64_t timed_on_us[N_CH]
    cdef int64_t ch_wall_start_us[N_CH]
    # trace
    cdef readonly int trace_capacity
    cdef public int trace_len
    cdef readonly dict trace
    cdef int64_t[:] tr_t
    cdef double[:] tr_heel, tr_pitch, tr_level, tr_current
    cdef int8_t[:] tr_phase, tr_fault
    cdef int32_t[:] tr_events
    # fields of the frame just parsed (valid after _next_frame returned 1)
    cdef int f_version, f_flags
    cdef int64_t f_seq, f_ts, f_heel, f_gyro_y, f_gyro_z

    implementation = "cython"

    def __init__(self, profile, int trace_capacity=0):
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
        self.heel_on_max_fraction = p.heel_on_max_fraction
        self.heel_swing_fraction = p.heel_swing_fraction
        self.heel_onset_lead_us = p.heel_onset_lead_us
        self.heel_max_delay_us = p.heel_max_delay_us
        self.heel_learn_strides = p.heel_learn_strides
        self.stride_max_us = _STRIDE_MAX_US
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
        self.stale_us = p.stale_us
        self.max_missing = p.max_missing
        self.deliver_interval_us = p.deliver_interval_us
        self.period_us = p.period_us
        self.amplitude_max_ma = p.amplitude_max_ma
        self.foot_on = p.foot_on
        self.foot_flat_dps = p.foot_flat_dps
        self.foot_flat_us = p.foot_flat_us
        self.swing_pitch = np.zeros(_SWING_BUF_LEN, dtype=np.float64)
        self.sw_buf = self.swing_pitch
        self.swing_cap = _SWING_BUF_LEN
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
        self.amplitude_ma = profile.start_amplitude_ma
        self.pending_amplitude_ma = self.amplitude_ma
        if _CHANNELS_MAX != N_CH:
            raise RuntimeError("CHANNELS_MAX differs between the kernels")
        self.n_channels = p.n_channels
        for k in range(N_CH):
            self.ch_timed[k] = p.ch_timed[k]
            self.ch_after_strike[k] = p.ch_after_strike[k]
            self.ch_onset_us[k] = p.ch_onset_us[k]
            self.ch_duration_us[k] = p.ch_duration_us[k]
            self.ch_ramp_up_us[k] = p.ch_ramp_up_us[k]
            self.ch_ramp_down_us[k] = p.ch_ramp_down_us[k]
            self.ch_amp_max_ma[k] = p.ch_amp_max_ma[k]
            self.ch_amp_ma[k] = p.ch_start_ma[k]
            self.ch_pending_ma[k] = p.ch_start_ma[k]
        self.buf_start = 0
        self.buf_end = 0
        self.crc_errors = 0
        self.length_errors = 0
        self.garbage_bytes = 0
        self.queue_head = 0
        self.queue_count = 0
        self.overruns = 0
        self.missed_deadlines = 0
        self.max_lateness_us = 0
        self.clock_rate = 1.0
        self._reset_state()

    cdef void _reset_state(self) noexcept:
        cdef int k
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
        self.heel_since_on_us = 0
        self.heel_since_off_us = 0
        self.heel_stride_us = 0.0
        self.heel_unload_us = 0.0
        self.heel_strides_learned = 0
        self.heel_delay_us = 0
        self.heel_pending = 0
        self.heel_pending_us = 0
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
        self.stride = STRIDE_LOCKOUT
        self.delivered_ma = 0.0
        self.last_deliver_us = 0
        self.deliver_due = 0
        for k in range(N_CH):
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

    cdef void _reset_drift(self) noexcept nogil:
        self.drift_win_start_us = 0
        self.drift_win_min_us = 0
        self.drift_prev_min_us = 0
        self.drift_have_prev = 0

    # ----- Python-visible extras ----------------------------------------------------------
    @property
    def lateness_hist(self):
        return np.asarray(self.hist)

    # ----- commands from the event level ---------------------------------------------------
    def set_phase(self, int phase, int64_t hold_limit_us=0):
        if self.fault:
            return
        self.phase = phase
        if phase == PH_RISE:
            self.rise_done_sent = 0
        elif phase == PH_HOLD:
            self.hold_us = 0
            self.hold_limit_us = hold_limit_us
        elif phase == PH_FALL:
            if self.level > 0.0:
                self.fall_done_pending = 1
        elif phase == PH_OFF:
            self.level = 0.0
            self.current_ma = 0.0

    def set_envelope(self, int64_t ramp_up_us, int64_t ramp_down_us, int64_t max_stim_us):
        if min(ramp_up_us, ramp_down_us) < 0 or max_stim_us <= 0:
            raise ValueError("ramp times must be >= 0 and max_stim_us > 0")
        self.ramp_up_us = ramp_up_us
        self.ramp_down_us = ramp_down_us
        self.max_stim_us = max_stim_us

    def set_clock_rate(self, double rate):
        if not (rate == rate and rate >= 0.0 and rate != float("inf")):
            raise ValueError(f"clock rate {rate!r}; allowed a finite number >= 0 (1 = real time)")
        self.clock_rate = rate
        self._reset_drift()

    def set_detection(self, enabled):
        cdef int i
        self.detection_enabled = 1 if enabled else 0
        self.swing_recording = 0
        self.stride = STRIDE_LOCKOUT
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        if not enabled:
            for i in range(1, self.n_channels):
                if self.timed_state[i] == TIMED_WAIT:
                    self.timed_state[i] = TIMED_IDLE
                elif self.timed_state[i] == TIMED_RISE or self.timed_state[i] == TIMED_HOLD:
                    self.timed_state[i] = TIMED_FALL

    def request_amplitude(self, double amplitude_ma):
        if not (0.0 <= amplitude_ma <= self.amplitude_max_ma):
            raise ValueError(f"amplitude_ma {amplitude_ma:g} outside 0..{self.amplitude_max_ma:g}")
        self.pending_amplitude_ma = amplitude_ma
        if self.level == 0.0:
            self.amplitude_ma = self.pending_amplitude_ma

    def request_channel_amplitude(self, int index, double amplitude_ma):
        if index == 0:
            self.request_amplitude(amplitude_ma)
            return
        if not 0 < index < self.n_channels:
            raise ValueError(f"channel index {index!r}; this profile drives indexes 0..{self.n_channels - 1}")
        if not (0.0 <= amplitude_ma <= self.ch_amp_max_ma[index]):
            raise ValueError(f"amplitude_ma {amplitude_ma:g} outside 0..{self.ch_amp_max_ma[index]:g}")
        self.ch_pending_ma[index] = amplitude_ma
        if self.ch_level[index] == 0.0:
            self.ch_amp_ma[index] = self.ch_pending_ma[index]

    def _index(self, int index):
        if not 0 <= index < self.n_channels:
            raise ValueError(f"channel index {index!r}; this profile drives indexes 0..{self.n_channels - 1}")
        return index

    def channel_current_ma(self, int index):
        return self.current_ma if self._index(index) == 0 else self.ch_current_ma[index]

    def channel_level(self, int index):
        return self.level if self._index(index) == 0 else self.ch_level[index]

    def channel_amplitude_ma(self, int index):
        return self.amplitude_ma if self._index(index) == 0 else self.ch_amp_ma[index]

    def channel_pending_ma(self, int index):
        return self.pending_amplitude_ma if self._index(index) == 0 else self.ch_pending_ma[index]

    def latch_fault(self, int code):
        self._latch(code)

    cdef void _latch(self, int code) noexcept nogil:
        cdef int i
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

    cdef void _fault(self, int code) noexcept nogil:
        if not self.fault:
            self._queue(EV_FAULT)
        self._latch(code)

    def clear_fault(self):
        cdef int i
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
        for i in range(N_CH):
            self.ch_wall_start_us[i] = -1
        self.anchor_wall_us = 0
        self._reset_drift()

    def mark_delivered(self):
        cdef int i
        self.delivered_ma = self.current_ma
        for i in range(1, self.n_channels):
            self.ch_delivered_ma[i] = self.ch_current_ma[i]
        self.last_deliver_us = self.t_us
        self.deliver_due = 0

    def pop_event(self):
        cdef int e
        if self.queue_count == 0:
            return 0
        e = self.queue[self.queue_head]
        self.queue_head = (self.queue_head + 1) % QUEUE_LEN
        self.queue_count -= 1
        return e

    def trace_clear(self):
        self.trace_len = 0

    cdef inline void _queue(self, int event) noexcept nogil:
        if self.queue_count < QUEUE_LEN:
            self.queue[(self.queue_head + self.queue_count) % QUEUE_LEN] = event
            self.queue_count += 1

    # ----- input ---------------------------------------------------------------------------
    def feed(self, const uint8_t[:] data):
        cdef int n = data.shape[0]
        if (self.buf_end - self.buf_start) + n > BUF_BYTES:
            self.overruns += 1
            self.buf_start = 0
            self.buf_end = 0
            self._fault(F_BUFFER_OVERRUN)
            return R_EVENT
        self._compact(n)
        if n:
            memcpy(&self.buf[self.buf_end], &data[0], n)
        self.buf_end += n
        return 0

    cdef void _compact(self, int need) noexcept nogil:
        if self.buf_end + need > BUF_BYTES:
            memmove(&self.buf[0], &self.buf[self.buf_start], self.buf_end - self.buf_start)
            self.buf_end -= self.buf_start
            self.buf_start = 0

    def process(self):
        cdef int ret
        with nogil:
            ret = self._process()
        return ret

    cdef int _process(self) noexcept nogil:
        cdef int got, ret
        while True:
            if self.trace_capacity and self.trace_len >= self.trace_capacity:
                return R_TRACE_FULL
            got = self._next_frame()
            self._check_link()
            if got:
                self._sample()
            ret = 0
            if self.queue_count:
                ret |= R_EVENT
            if self.deliver_due:
                ret |= R_DELIVER
            if ret or not got:
                return ret

    cdef int _next_frame(self) noexcept nogil:
        cdef int i = self.buf_start
        cdef int end
        cdef const uint8_t *b
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
            if _crc16(&self.buf[i + 2], PAYLOAD_LEN + 1) != (self.buf[end] | (self.buf[end + 1] << 8)):
                self.crc_errors += 1
                self.garbage_bytes += 1
                i += 1
                continue
            b = &self.buf[i + 3]
            self.f_version = b[0]
            self.f_flags = b[1]
            self.f_seq = _u16(b + 2)
            self.f_ts = <int64_t>(<uint32_t>b[4] | (<uint32_t>b[5] << 8) | (<uint32_t>b[6] << 16)
                                  | (<uint32_t>b[7] << 24))
            self.f_heel = _u16(b + 8)
            self.f_gyro_y = _i16(b + 20)
            self.f_gyro_z = _i16(b + 22)
            self.buf_start = i + FRAME_LEN
            return 1
        self.buf_start = i
        return 0

    cdef void _check_link(self) noexcept nogil:
        if self.crc_errors != self.last_crc_total:
            self.crc_recent += self.crc_errors - self.last_crc_total
            self.last_crc_total = self.crc_errors
            self.good_since_crc = 0
            if self.crc_recent > self.max_missing and not self.fault:
                self._fault(F_LINK_ERRORS)

    cdef void _cut(self) noexcept nogil:
        self.phase = PH_FALL
        self.fall_done_pending = 1
        if self.stride == STRIDE_ACTIVE:
            self.stride = STRIDE_LOCKOUT
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        if not self.max_stim_sent:
            self.max_stim_sent = 1
            self._queue(EV_MAX_STIM)

    cdef void _sample(self) noexcept nogil:
        cdef int64_t dt_us = self.period_us
        cdef int64_t gap, on_us
        cdef int flags = self.f_flags
        cdef int queue_before = self.queue_count
        cdef double heel, pitch, yaw, decayed, thr_off, thr_on, w, m, cand, span, onset_thr, swing_thr
        cdef int heel_edge_off = 0, heel_edge_on = 0, tilt_edge_onset = 0, tilt_edge_strike = 0
        cdef int heel_onset = 0
        cdef int onset, strike, ready, cut, ph, i, mask, k
        cdef int stride_onset = 0, stride_strike = 0
        self.frames += 1
        self.good_since_crc += 1
        if self.good_since_crc >= 100:
            self.crc_recent = 0
        # --- sample guard ---
        if self.have_frame:
            gap = (self.f_seq - self.last_seq - 1) & 0xFFFF
            dt_us = (self.f_ts - self.last_ts) & <int64_t>0xFFFFFFFF
            if gap:
                self.seq_gaps += 1
                self.frames_lost += gap
            if gap > self.max_missing:
                self._fault(F_SEQUENCE_GAP)
            elif dt_us == 0 or dt_us > self.stale_us:
                self.clock_step_us = dt_us - <int64_t>0x100000000 if dt_us >= <int64_t>0x80000000 else dt_us
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
        # --- filters ---
        heel = self.f_heel * 0.1
        pitch = -(self.f_gyro_y * 0.1)
        yaw = self.f_gyro_z * 0.1
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
        # --- detectors ---
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
        if cand <= self.heel_floor_max_fraction * self.heel_peak and cand <= self.heel_floor_max_n:
            self.heel_floor = cand
        span = self.heel_peak - self.heel_floor
        if span < 0.0:
            span = 0.0
        thr_off = self.heel_floor + _max(self.heel_off_min_n, self.heel_off_fraction * span)
        thr_on = self.heel_floor + _max(2.0 * self.heel_off_min_n,
                                        _min(_max(self.heel_on_min_n, self.heel_on_fraction * span),
                                             self.heel_on_max_fraction * span))
        if self.heel_loaded:
            if self.heel_lp < thr_off:
                self.heel_timer_us += dt_us
                if self.heel_timer_us >= self.heel_debounce_us:
                    self.heel_loaded = 0
                    self.heel_timer_us = 0
                    heel_edge_off = 1
                    self.heel_since_off_us = 0
            else:
                self.heel_timer_us = 0
        else:
            if self.heel_lp > thr_on:
                self.heel_timer_us += dt_us
                if self.heel_timer_us >= self.heel_debounce_us:
                    self.heel_loaded = 1
                    self.heel_timer_us = 0
                    heel_edge_on = 1
                    self._learn_stride()
                    self.heel_since_on_us = 0
            else:
                self.heel_timer_us = 0
        self.heel_since_on_us += dt_us
        self.heel_since_off_us += dt_us
        if heel_edge_off:
            if self.heel_delay_us > 0:
                self.heel_pending = 1
                self.heel_pending_us = 0
            else:
                heel_onset = 1
        elif self.heel_pending:
            if self.heel_loaded:
                self.heel_pending = 0
            else:
                self.heel_pending_us += dt_us
                if self.heel_pending_us >= self.heel_delay_us:
                    self.heel_pending = 0
                    heel_onset = 1
        w = self.pitch_lp
        onset_thr = self.tilt_onset_dps
        swing_thr = self.tilt_swing_dps
        if self.tilt_adapt_fraction > 0.0:
            if self.tilt_push_learned >= self.tilt_learn_strides:
                onset_thr = _min(self.tilt_onset_dps, _max(self.tilt_onset_min_dps,
                                                           self.tilt_adapt_fraction * self.tilt_push_peak))
            if self.tilt_swing_learned >= self.tilt_learn_strides:
                swing_thr = _min(self.tilt_swing_dps, _max(self.tilt_swing_min_dps,
                                                           self.tilt_adapt_fraction * self.tilt_swing_peak))
        ph = self.tilt_state
        if ph == TILT_STANCE_WAIT:
            if -self.tilt_stance_dps < w < self.tilt_stance_dps:
                self.tilt_timer_us += dt_us
                if self.tilt_timer_us >= self.tilt_min_stance_us:
                    self.tilt_state = TILT_ARMED
                    self.tilt_timer_us = 0
                    self.tilt_push_min = 0.0
            else:
                self.tilt_timer_us = 0
        elif ph == TILT_ARMED:
            if w < self.tilt_push_min:
                self.tilt_push_min = w
            if w > self.tilt_disarm_dps:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                self._learn_push(-self.tilt_push_min)
            elif w < -onset_thr and fabs(self.yaw_lp) <= -w * self.tilt_max_yaw_ratio:
                self.tilt_timer_us += dt_us
                if self.tilt_timer_us >= self.tilt_debounce_us:
                    self.tilt_state = TILT_ONSET
                    self.tilt_timer_us = 0
                    tilt_edge_onset = 1
            else:
                self.tilt_timer_us = 0
        elif ph == TILT_ONSET:
            self.tilt_timer_us += dt_us
            if w < self.tilt_push_min:
                self.tilt_push_min = w
            if w > swing_thr:
                self.tilt_state = TILT_SWING
                self._learn_push(-self.tilt_push_min)
                self.tilt_swing_max = w
            elif self.tilt_timer_us >= self.tilt_swing_wait_us:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                tilt_edge_strike = 1
        else:
            self.tilt_timer_us += dt_us
            if w > self.tilt_swing_max:
                self.tilt_swing_max = w
            if w < self.tilt_strike_dps:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                tilt_edge_strike = 1
                self._learn_swing(self.tilt_swing_max)
                if self.heel_same_us > 0 and (flags & FLAG_IMU_PRESENT):
                    self.heel_frozen_strides += 1
            elif self.tilt_timer_us >= self.max_stim_us:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
        if heel_edge_on and not self.mode_heel and not self.mode_tilt and self.tilt_state >= TILT_ONSET:
            self.tilt_state = TILT_STANCE_WAIT
            self.tilt_timer_us = 0
        # --- heel contact and stuck heel ---
        if self.heel_loaded:
            self.heel_unloaded_us = 0
            self.heel_absent = 0
        else:
            self.heel_unloaded_us += dt_us
            if self.heel_unloaded_us >= self.heel_absent_us:
                self.heel_absent = 1
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
            ready = self.tilt_state == TILT_ARMED
        else:
            onset = 1 if (not self.heel_loaded and self.tilt_state == TILT_ONSET
                          and (heel_edge_off or tilt_edge_onset)) else 0
            strike = 1 if (heel_edge_on or tilt_edge_strike) else 0
            ready = self.tilt_state == TILT_ARMED
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
        # --- foot pitch (adaptive stimulation) ---
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
        # --- envelope ---
        if self.level == 0.0:
            self.amplitude_ma = self.pending_amplitude_ma
        ph = self.phase
        if ph == PH_OFF:
            self.level = 0.0
        elif ph == PH_RISE:
            if self.ramp_up_us == 0:
                self.level = 1.0
            else:
                self.level = _min(1.0, self.level + (<double>dt_us) / (<double>self.ramp_up_us))
            if self.level >= 1.0 and not self.rise_done_sent:
                self.rise_done_sent = 1
                self._queue(EV_RAMP_UP_DONE)
        elif ph == PH_HOLD:
            self.hold_us += dt_us
            if self.hold_limit_us > 0 and self.hold_us >= self.hold_limit_us:
                self.hold_limit_us = 0
                self._queue(EV_HOLD_DONE)
        else:
            if self.ramp_down_us == 0:
                self.level = 0.0
            else:
                self.level = _max(0.0, self.level - (<double>dt_us) / (<double>self.ramp_down_us))
            if self.level == 0.0 and self.fall_done_pending:
                self.fall_done_pending = 0
                self._queue(EV_RAMP_DOWN_DONE)
        # --- max-stimulation cut-off and back-stop ---
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
        # --- delivery decision ---
        if self.current_ma != self.delivered_ma:
            if self.current_ma == 0.0 or self.t_us - self.last_deliver_us >= self.deliver_interval_us:
                self.deliver_due = 1
        if self.n_channels > 1:
            self._extra_channels(dt_us, stride_onset + 2 * stride_strike)
        # --- trace ---
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

    cdef void _extra_channels(self, int64_t dt_us, int gait_event) noexcept nogil:
        # see PyKernel._extra_channels
        cdef int i, st
        cdef double lv
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
                        lv = _min(1.0, lv + (<double>dt_us) / (<double>self.ch_ramp_up_us[i]))
                    if lv >= 1.0:
                        st = TIMED_HOLD
                elif st == TIMED_FALL:
                    if self.ch_ramp_down_us[i] == 0:
                        lv = 0.0
                    else:
                        lv = _max(0.0, lv - (<double>dt_us) / (<double>self.ch_ramp_down_us[i]))
                    if lv == 0.0:
                        st = TIMED_IDLE
                if st == TIMED_RISE or st == TIMED_HOLD:
                    if ((<double>(self.t_us - self.timed_on_us[i])) + lv * self.ch_ramp_down_us[i] + dt_us
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

    cdef void _learn_push(self, double peak_dps) noexcept nogil:
        if self.tilt_push_learned == 0:
            self.tilt_push_peak = peak_dps
        else:
            self.tilt_push_peak += 0.25 * (peak_dps - self.tilt_push_peak)
        if self.tilt_push_learned < self.tilt_learn_strides:
            self.tilt_push_learned += 1

    cdef void _learn_swing(self, double peak_dps) noexcept nogil:
        if self.tilt_swing_learned == 0:
            self.tilt_swing_peak = peak_dps
        else:
            self.tilt_swing_peak += 0.25 * (peak_dps - self.tilt_swing_peak)
        if self.tilt_swing_learned < self.tilt_learn_strides:
            self.tilt_swing_learned += 1

    cdef void _learn_stride(self) noexcept nogil:
        cdef int64_t stride = self.heel_since_on_us
        cdef int64_t unload = self.heel_since_off_us
        cdef double lag, d
        if stride >= self.stride_max_us or unload >= stride:
            return
        if self.heel_strides_learned == 0:
            self.heel_stride_us = <double>stride
            self.heel_unload_us = <double>unload
        else:
            self.heel_stride_us += 0.25 * (<double>stride - self.heel_stride_us)
            self.heel_unload_us += 0.25 * (<double>unload - self.heel_unload_us)
        if self.heel_strides_learned < self.heel_learn_strides:
            self.heel_strides_learned += 1
        if self.heel_strides_learned >= self.heel_learn_strides:
            lag = self.heel_unload_us - self.heel_swing_fraction * self.heel_stride_us
            d = lag - <double>self.heel_onset_lead_us
            if d < 0.0:
                d = 0.0
            if d > <double>self.heel_max_delay_us:
                d = <double>self.heel_max_delay_us
            self.heel_delay_us = <int64_t>d

    # ----- real-time reading from a file descriptor ----------------------------------------
    def run_fd(self, int fd, int64_t wake_us):
        cdef int ret
        with nogil:
            ret = self._run_fd(fd, wake_us)
        return ret

    cdef int _run_fd(self, int fd, int64_t wake_us) noexcept nogil:
        cdef int64_t now = _now_us()
        cdef int64_t deadline, wait_us, frames_before, before_us, until
        cdef int ret, n
        cdef pollfd pfd
        if self.last_valid_wall_us == 0:
            self.last_valid_wall_us = now
        deadline = now + wake_us
        while True:
            frames_before = self.frames
            before_us = now
            ret = self._process()
            now = _now_us()
            if self.frames != frames_before:
                self._account_lateness(now)
            ret |= self._wall_guard(before_us, now)
            if self.queue_count:
                ret |= R_EVENT
            if self.deliver_due:
                ret |= R_DELIVER
            if ret:
                return ret
            if not self.fault and now - self.last_valid_wall_us > self.stale_us:
                self._fault(F_SENSOR_STALE)
                return R_EVENT | R_DELIVER
            if now >= deadline:
                return R_TIMEOUT
            until = deadline if deadline < self.last_valid_wall_us + self.stale_us + 1 \
                else self.last_valid_wall_us + self.stale_us + 1
            if self.burst_wall_start_us >= 0 and self.burst_wall_start_us + self._wall_max_stim_us() < until:
                until = self.burst_wall_start_us + self._wall_max_stim_us()
            for n in range(1, self.n_channels):
                if self.ch_wall_start_us[n] >= 0 and self.ch_wall_start_us[n] + self._wall_max_stim_us() < until:
                    until = self.ch_wall_start_us[n] + self._wall_max_stim_us()
            wait_us = until - now
            if wait_us < 0:
                wait_us = 0
            pfd.fd = fd
            pfd.events = POLLIN
            pfd.revents = 0
            # poll() takes ms; round up so we never spin
            n = poll(&pfd, 1, <int>((wait_us + 999) // 1000))
            now = _now_us()
            if n <= 0:
                continue
            if self.buf_end - self.buf_start + 4096 > BUF_BYTES:
                self.overruns += 1
                self.buf_start = 0
                self.buf_end = 0
                self._fault(F_BUFFER_OVERRUN)
                return R_EVENT
            self._compact(4096)
            n = read(fd, &self.buf[self.buf_end], 4096)
            if n < 0:
                if errno == EAGAIN or errno == EINTR:
                    continue
                return R_CLOSED
            if n == 0:
                return R_CLOSED
            self.buf_end += n

    cdef int64_t _wall_max_stim_us(self) noexcept nogil:
        cdef int64_t limit = self.max_stim_us
        if self.clock_rate > 1.0:
            limit = <int64_t>(limit / self.clock_rate)
        limit -= self.period_us
        return limit if limit > self.period_us else self.period_us

    cdef int _wall_guard(self, int64_t before_us, int64_t now_us) noexcept nogil:
        cdef int i
        cdef int ret = self._wall_guard_timed(before_us, now_us) if self.n_channels > 1 else 0
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

    cdef int _wall_guard_timed(self, int64_t before_us, int64_t now_us) noexcept nogil:
        cdef int i
        cdef int ret = 0
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

    cdef void _account_lateness(self, int64_t now_us) noexcept nogil:
        cdef int64_t expected, late, b
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
        self._check_drift(now_us)

    cdef void _check_drift(self, int64_t now_us) noexcept nogil:
        cdef int64_t offset, soonest, span, rate
        if self.fault or self.clock_rate <= 0.0:
            return
        offset = now_us - <int64_t>(self.t_us / self.clock_rate)
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
