# cython: language_level=3
# Augmenting declarations: the static types of ``core.py`` in the compiled build.
# Nothing here is an algorithm; every value comes from core.py (and so from codes.py,
# drivers/sensor_protocol.py and params.py). A method declared ``nogil`` here may use only
# what is typed here. Change a layout here and in core.py together; the twins test checks
# both builds.
cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t, int8_t, int32_t

from fescontrol.kernel._fdio cimport now_us, read_into, wait_readable

# codes (codes.py), frame constants (sensor_protocol), sizes (params.py): C globals set at import
cdef int PH_FALL, PH_RISE, PH_HOLD, PH_OFF
cdef int EV_HEEL_OFF, EV_HEEL_STRIKE, EV_RAMP_UP_DONE, EV_HOLD_DONE, EV_RAMP_DOWN_DONE, EV_MAX_STIM, EV_FAULT
cdef int F_SENSOR_STALE, F_SEQUENCE_GAP, F_CLOCK_JUMP, F_PARSE_ERROR, F_CHANNEL_MISSING
cdef int F_HEEL_SENSOR_FAULT, F_IMU_SATURATED, F_HEEL_STUCK, F_BUFFER_OVERRUN, F_LINK_ERRORS, F_CLOCK_DRIFT
cdef int R_EVENT, R_DELIVER, R_TIMEOUT, R_TRACE_FULL, R_CLOSED
cdef int PAYLOAD_LEN, FRAME_LEN, VERSION
cdef int FLAG_HEEL_PRESENT, FLAG_IMU_PRESENT, FLAG_IMU_SATURATED, FLAG_HEEL_FAULT
cdef double HEEL_N_PER_COUNT, GYRO_DPS_PER_COUNT, PI
cdef int BUF_BYTES, QUEUE_LEN, READ_CHUNK, N_BINS, FLOOR_BINS, STALE_RELOOKS
cdef int SWING_BUF_LEN
cdef int CHANNELS_MAX, TIMED_IDLE, TIMED_WAIT, TIMED_RISE, TIMED_HOLD, TIMED_FALL
cdef int64_t BIN_US, DRIFT_WINDOW_US, DRIFT_MAX_PERCENT, STRIDE_MAX_US, U32_MASK, U32_WRAP, U32_HALF
cdef int STRIDE_IDLE, STRIDE_ACTIVE, STRIDE_LOCKOUT
cdef int TILT_STANCE_WAIT, TILT_ARMED, TILT_ONSET, TILT_SWING

cdef double _min(double a, double b) noexcept nogil
cdef double _max(double a, double b) noexcept nogil
cdef int64_t _trunc(double x) noexcept nogil

@cython.locals(dt_s=double, tau_s=double)
cdef double _alpha(int64_t dt_us, double cutoff_hz) noexcept nogil


cdef class Kernel:
    # parameters (from KernelParams; the envelope three change with set_envelope)
    cdef int need_heel, need_imu, mode_heel, mode_tilt, cutoff_zero
    cdef int64_t ramp_up_us, ramp_down_us, max_stim_us, heel_debounce_us, heel_stuck_us, heel_absent_us
    cdef int heel_stuck_imu_strides, heel_learn_strides
    cdef int64_t heel_floor_bin_us, heel_onset_lead_us, heel_max_delay_us
    cdef double heel_floor_max_fraction, heel_floor_max_n, heel_on_max_fraction, heel_swing_fraction
    cdef double heel_floor_walk_fraction
    cdef double heel_flat_n, heel_flat_max_fraction, heel_light_n
    cdef int64_t heel_flat_us, heel_floor_window_us
    cdef int64_t tilt_min_stance_us, tilt_debounce_us, tilt_swing_wait_us, stale_us, deliver_interval_us, period_us
    cdef int64_t startup_grace_us
    cdef int max_missing
    cdef double heel_off_fraction, heel_on_fraction, heel_off_min_n, heel_on_min_n
    cdef double heel_peak_decay_s, heel_filter_hz
    cdef double tilt_onset_dps, tilt_swing_dps, tilt_strike_dps, tilt_stance_dps, tilt_filter_hz
    cdef double tilt_disarm_dps, tilt_max_yaw_ratio, tilt_adapt_fraction, tilt_onset_min_dps, tilt_swing_min_dps
    cdef int tilt_learn_strides
    cdef double tilt_onset_raise_fraction, tilt_onset_max_dps, tilt_late_onset_dps, tilt_late_stance_yaw_dps
    cdef double tilt_late_pivot_deg
    cdef int foot_on
    cdef double foot_flat_dps
    cdef int64_t foot_flat_us
    # foot pitch through swing (adaptive stimulation): swing_pitch is a numpy array, sw_buf its view
    cdef readonly double foot_pitch_deg
    cdef double foot_rate_prev
    cdef readonly int64_t foot_flat_timer_us, foot_flat_age_us
    cdef readonly int swing_n, swing_overflow, swing_recording
    cdef int swing_cap
    cdef readonly object swing_pitch
    cdef double[::1] sw_buf
    cdef readonly double amplitude_max_ma
    cdef readonly object p
    # input buffer (a bytearray) and parser counters
    cdef uint8_t[::1] buf
    cdef int[::1] crc_table, crc_table2, crc_table3, crc_table4
    cdef int buf_start, buf_end
    cdef readonly int64_t crc_errors, length_errors, garbage_bytes
    # event queue (an array.array("i") ring)
    cdef int[::1] queue
    cdef int queue_head, queue_count
    # state
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
    # adaptive heel detector: swing floor ring (an array.array("d")), learned stride timing
    cdef readonly double heel_floor, heel_stride_us, heel_unload_us, heel_walk_peak, heel_off_peak
    cdef readonly int heel_walk_learned
    cdef double[::1] floor_bins
    cdef int floor_idx, floor_filled
    cdef double floor_bin_min, floor_win_min
    cdef int64_t floor_bin_us, heel_since_on_us, heel_since_off_us, heel_pending_us
    # flat unloaded plateau (a foot in the air shows the sensor's constant preload)
    cdef readonly double flat_lo, flat_hi
    cdef readonly int64_t flat_us, flat_seen_us, flat_cand_us
    cdef readonly double flat_cand_n
    cdef readonly int64_t heel_delay_us
    cdef readonly int heel_strides_learned, heel_pending
    # light contact: lowest heel force since the heel-off, the contact's base and (a light one only) its peak
    cdef readonly double heel_unloaded_min, heel_contact_base, heel_contact_peak
    cdef readonly int heel_light
    cdef readonly double tilt_push_min, tilt_swing_max, tilt_push_peak, tilt_swing_peak
    cdef readonly int tilt_push_learned, tilt_swing_learned
    # late onset of a weak push-off: the stance's largest |yaw rate| since it became quiet, a disarm to follow
    cdef readonly double tilt_stance_yaw, tilt_late_deg
    cdef readonly int tilt_late, tilt_late_ok, late_onsets
    cdef readonly double delivered_ma
    cdef readonly int64_t last_deliver_us
    cdef public int deliver_due
    # deliveries taken by process() under the supervisor's ceiling (batch replays only)
    cdef readonly double batch_ceiling_ma, batched_min_ma, batched_max_ma
    cdef readonly int64_t batched_deliveries
    cdef readonly int64_t overruns, missed_deadlines, max_lateness_us
    cdef int taking_from_fd
    cdef int64_t anchor_wall_us, anchor_dev_us, last_valid_wall_us
    # wall clock: back-stop and drift (run_fd only)
    cdef readonly double clock_rate
    cdef readonly int64_t burst_wall_start_us, wall_cuts, clock_step_us, drift_late_us, drift_rate_us
    cdef int64_t drift_win_start_us, drift_win_min_us, drift_prev_min_us
    cdef int drift_have_prev
    cdef int64_t[::1] hist
    # channels 1.. of a multi-channel profile (index 0 unused: level, current_ma, ... are channel 0's)
    cdef readonly int n_channels
    cdef int[::1] ch_timed, ch_after_strike, timed_state
    cdef int64_t[::1] ch_onset_us, ch_duration_us, ch_ramp_up_us, ch_ramp_down_us
    cdef int64_t[::1] timed_event_us, timed_on_us, ch_wall_start_us
    cdef double[::1] ch_amp_max_ma, ch_amp_ma, ch_pending_ma, ch_level, ch_current_ma, ch_delivered_ma
    # trace (numpy arrays in ``trace``)
    cdef readonly int trace_capacity
    cdef public int trace_len
    cdef readonly dict trace
    cdef int64_t[::1] tr_t
    cdef double[::1] tr_heel, tr_pitch, tr_level, tr_current
    cdef int8_t[::1] tr_phase, tr_fault
    cdef int32_t[::1] tr_events
    # fields of the frame just parsed (valid after _next_frame returned 1)
    cdef int f_version, f_flags
    cdef int64_t f_seq, f_ts, f_heel, f_gyro_y, f_gyro_z

    @cython.locals(k=int)
    cdef void _reset_state(self) noexcept
    cdef void _reset_drift(self) noexcept nogil
    @cython.locals(i=int)
    cdef void _latch(self, int code) noexcept nogil
    cdef void _fault(self, int code) noexcept nogil
    cdef void _queue(self, int event) noexcept nogil
    cdef void _compact(self, int need) noexcept nogil
    @cython.locals(got=int, ret=int, frames_before=int64_t)
    cdef int _process(self) noexcept nogil
    cdef int _deliver_batched(self) noexcept nogil
    @cython.locals(crc=uint32_t, i=int, end=int)
    cdef int _crc16(self, int start, int n) noexcept nogil
    @cython.locals(i=int, end=int, b=int, v=int64_t)
    cdef int _next_frame(self) noexcept nogil
    cdef void _check_link(self) noexcept nogil
    cdef void _cut(self) noexcept nogil
    @cython.locals(dt_us=int64_t, gap=int64_t, on_us=int64_t, flags=int, queue_before=int,
                   heel=double, pitch=double, yaw=double, decayed=double, thr_off=double, thr_on=double,
                   w=double, m=double, cand=double, span=double, onset_thr=double, swing_thr=double, ay=double,
                   heel_edge_off=int, heel_edge_on=int, tilt_edge_onset=int, tilt_edge_strike=int,
                   heel_onset=int, onset=int, strike=int, ready=int, cut=int, ph=int, ts=int, i=int,
                   mask=int, k=int, stride_onset=int, stride_strike=int, light=int)
    cdef void _sample(self) noexcept nogil
    @cython.locals(i=int, st=int, lv=double)
    cdef void _extra_channels(self, int64_t dt_us, int gait_event) noexcept nogil
    cdef void _learn_push(self, double peak_dps) noexcept nogil
    cdef void _learn_swing(self, double peak_dps) noexcept nogil
    @cython.locals(stride=int64_t, unload=int64_t, lag=double, d=double)
    cdef void _learn_stride(self) noexcept nogil
    @cython.locals(now=int64_t, deadline=int64_t, wait_us=int64_t, frames_before=int64_t, before_us=int64_t,
                   until=int64_t, ret=int, n=int64_t, c=int, stale_us=int64_t,
                   looked=int, stale_due=int, relooks=int)
    cdef int _run_fd(self, int fd, int64_t wake_us) noexcept nogil
    @cython.locals(limit=int64_t)
    cdef int64_t _wall_max_stim_us(self) noexcept nogil
    @cython.locals(i=int, ret=int)
    cdef int _wall_guard(self, int64_t before_us, int64_t now_us) noexcept nogil
    @cython.locals(i=int, ret=int)
    cdef int _wall_guard_timed(self, int64_t before_us, int64_t now_us) noexcept nogil
    @cython.locals(expected=int64_t, late=int64_t, b=int64_t)
    cdef void _account_lateness(self, int64_t now_us) noexcept nogil
    @cython.locals(offset=int64_t, soonest=int64_t, span=int64_t, rate=int64_t)
    cdef void _check_drift(self, int64_t now_us) noexcept nogil
