"""Pure-Python per-sample kernel: the reference twin of ``_kernel.pyx``.

Per sensor frame it runs, in this order: parse → sample guard (the supervisor's
per-sample checks) → filters and gait detectors → envelope → max-stimulation
cut-off → output. Both kernels implement exactly the same arithmetic in the
same order on IEEE doubles and 64-bit integers, so their outputs agree bit for
bit (tests/test_kernel_twins.py replays the same bytes through both).

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
import os
import select
import time

import numpy as np

from fescontrol.drivers import sensor_protocol as sp

from fescontrol.core.codes import Event, Fault, Phase, Ret
from fescontrol.core.profile import CutoffMode, Profile, TriggerMode

# stride (detection) states
STRIDE_IDLE, STRIDE_ACTIVE, STRIDE_LOCKOUT = 0, 1, 2
# tilt detector states
TILT_STANCE_WAIT, TILT_ARMED, TILT_ONSET, TILT_SWING = 0, 1, 2, 3

INPUT_BUFFER_BYTES = 65536
EVENT_QUEUE_LEN = 16
LATENESS_BIN_US = 100
LATENESS_BINS = 101  # last bin: ≥ 10 ms
DRIFT_WINDOW_US = 1_000_000  # the drift rate is measured over windows of this much wall time
DRIFT_MAX_PERCENT = 5        # more than this rate difference between the clocks is CLOCK_DRIFT

FLOOR_BINS = 40         # ring buffer of per-bin minima: the swing-floor window
STRIDE_MAX_US = 2_500_000   # longer heel cycles are stops, not strides (not learned from)

#: samples of foot pitch kept per swing (onset to heel strike) for the adaptive stimulation's
#: stride features: 4.096 s at 1 kHz, longer than any burst (limits.MAX_STIM_MS_MAX)
SWING_BUF_LEN = 4096
CHANNELS_MAX = 4            # channels one profile drives: index 0 is ``stimulation``, 1.. the extras
# timed-channel burst states (ChannelTiming)
TIMED_IDLE, TIMED_WAIT, TIMED_RISE, TIMED_HOLD, TIMED_FALL = 0, 1, 2, 3, 4

TRACE_FIELDS = ("t_us", "heel_n", "pitch_rate_dps", "level", "current_ma", "phase", "events", "fault")


def lowpass_alpha(dt_us: int, cutoff_hz: float) -> float:
    """Coefficient of a one-pole low-pass for one step of dt_us."""
    dt_s = dt_us / 1e6
    tau_s = 1.0 / (2.0 * math.pi * cutoff_hz)
    return dt_s / (tau_s + dt_s)


class KernelParams:
    """Plain numbers taken from a profile once; both kernels read the same ones."""

    def __init__(self, profile: Profile):
        mode = profile.trigger.mode
        self.need_heel = 1 if mode.needs_heel else 0
        self.need_imu = 1 if mode.needs_imu else 0
        self.mode_heel = 1 if mode == TriggerMode.HEEL else 0
        self.mode_tilt = 1 if mode == TriggerMode.TILT else 0
        env, heel, tilt, dev = profile.envelope, profile.trigger.heel, profile.trigger.tilt, profile.device
        self.ramp_up_us = env.ramp_up_ms * 1000
        self.ramp_down_us = env.ramp_down_ms * 1000
        self.max_stim_us = env.max_stim_ms * 1000
        self.cutoff_zero = 1 if env.cutoff == CutoffMode.ZERO else 0
        self.heel_off_fraction = heel.off_fraction
        self.heel_on_fraction = heel.on_fraction
        self.heel_off_min_n = heel.off_min_n
        self.heel_on_min_n = heel.on_min_n
        self.heel_debounce_us = heel.debounce_ms * 1000
        self.heel_peak_decay_s = heel.peak_decay_s
        self.heel_filter_hz = heel.filter_hz
        self.heel_stuck_us = heel.stuck_ms * 1000
        self.heel_floor_bin_us = heel.floor_window_ms * 1000 // FLOOR_BINS
        self.heel_floor_max_fraction = heel.floor_max_fraction
        self.heel_floor_max_n = heel.floor_max_n
        # the cap never undercuts on_fraction, so the hysteresis on_fraction > off_fraction holds
        self.heel_on_max_fraction = max(heel.on_max_fraction, heel.on_fraction)
        self.heel_swing_fraction = heel.swing_fraction
        self.heel_onset_lead_us = heel.onset_lead_ms * 1000
        self.heel_max_delay_us = heel.max_onset_delay_ms * 1000
        self.heel_learn_strides = heel.learn_strides
        self.heel_stuck_imu_strides = heel.stuck_imu_strides
        # unloaded longer than the longest burst: the foot is not on its heel (no-contact state)
        self.heel_absent_us = env.max_stim_ms * 1000
        self.tilt_onset_dps = tilt.onset_rate_dps
        self.tilt_swing_dps = tilt.swing_rate_dps
        self.tilt_strike_dps = tilt.strike_rate_dps
        self.tilt_stance_dps = tilt.stance_rate_dps
        self.tilt_disarm_dps = tilt.disarm_rate_dps
        self.tilt_max_yaw_ratio = tilt.max_yaw_ratio
        self.tilt_swing_wait_us = tilt.swing_wait_ms * 1000
        self.tilt_min_stance_us = tilt.min_stance_ms * 1000
        self.tilt_debounce_us = tilt.debounce_ms * 1000
        self.tilt_filter_hz = tilt.filter_hz
        self.tilt_adapt_fraction = tilt.adapt_fraction
        self.tilt_onset_min_dps = tilt.onset_min_dps
        self.tilt_swing_min_dps = tilt.swing_min_dps
        self.tilt_learn_strides = tilt.learn_strides
        self.stale_us = dev.stale_ms * 1000
        self.max_missing = dev.max_missing_frames
        self.deliver_interval_us = int(round(1e6 / profile.stimulation.frequency_hz))
        self.period_us = int(round(1e6 / dev.sample_rate_hz))
        self.amplitude_max_ma = profile.stimulation.amplitude_ma
        ad = profile.adaptive
        self.foot_on = 1 if ad.enabled else 0
        self.foot_flat_dps = ad.foot_flat_rate_dps
        self.foot_flat_us = ad.foot_flat_ms * 1000
        # channels: index 0 is ``stimulation`` (the gait envelope), 1.. the profile's extra_channels;
        # padded to CHANNELS_MAX so both kernels hold fixed-size arrays
        extras = profile.extra_channels
        self.n_channels = 1 + len(extras)
        pad = CHANNELS_MAX - self.n_channels
        self.ch_amp_max_ma = [profile.stimulation.amplitude_ma] + [c.amplitude_ma for c in extras] + [0.0] * pad
        self.ch_start_ma = [profile.start_amplitude_ma] + [c.patient.amplitude_max_ma for c in extras] + [0.0] * pad
        timings = [None] + [c.timing for c in extras] + [None] * pad
        self.ch_timed = [0 if t is None else 1 for t in timings]
        self.ch_after_strike = [1 if t is not None and t.after.value == "heel_strike" else 0 for t in timings]
        self.ch_onset_us = [0 if t is None else t.onset_ms * 1000 for t in timings]
        self.ch_duration_us = [0 if t is None else t.duration_ms * 1000 for t in timings]
        self.ch_ramp_up_us = [0 if t is None else t.ramp_up_ms * 1000 for t in timings]
        self.ch_ramp_down_us = [0 if t is None else t.ramp_down_ms * 1000 for t in timings]


class PyKernel:
    """Per-sample detection, envelope and sample guard, in pure Python."""

    implementation = "python"

    def __init__(self, profile: Profile, trace_capacity: int = 0):
        self.p = KernelParams(profile)
        self._parser = sp.FrameParser()
        self._events: list[int] = []
        self.trace_capacity = int(trace_capacity)
        self.trace = {name: np.zeros(self.trace_capacity, dtype=np.int64 if name in ("t_us",) else
                                     np.int8 if name in ("phase", "fault") else
                                     np.int32 if name == "events" else np.float64)
                      for name in TRACE_FIELDS}
        self.trace_len = 0
        self.amplitude_ma = profile.start_amplitude_ma
        self.pending_amplitude_ma = self.amplitude_ma
        self.n_channels = self.p.n_channels
        self.ch_amp_ma = list(self.p.ch_start_ma)         # index 0 unused: amplitude_ma
        self.ch_pending_ma = list(self.p.ch_start_ma)
        self.lateness_hist = np.zeros(LATENESS_BINS, dtype=np.int64)
        self.missed_deadlines = 0
        self.max_lateness_us = 0
        self.clock_rate = 1.0
        self.swing_pitch = np.zeros(SWING_BUF_LEN, dtype=np.float64)
        self._reset_state()

    # ----- state ---------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.fault = 0
        self.phase = int(Phase.FALL)
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
        self.floor_bins = [0.0] * FLOOR_BINS
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
        # extra channels (index 0 unused: level, current_ma, delivered_ma are channel 0's)
        self.ch_level = [0.0] * CHANNELS_MAX
        self.ch_current_ma = [0.0] * CHANNELS_MAX
        self.ch_delivered_ma = [0.0] * CHANNELS_MAX
        self.timed_state = [TIMED_IDLE] * CHANNELS_MAX
        self.timed_event_us = [0] * CHANNELS_MAX
        self.timed_on_us = [0] * CHANNELS_MAX
        self.ch_wall_start_us = [-1] * CHANNELS_MAX
        self.overruns = 0
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

    def _reset_drift(self) -> None:
        self.drift_win_start_us = 0
        self.drift_win_min_us = 0
        self.drift_prev_min_us = 0
        self.drift_have_prev = 0

    # ----- counters from the parser -------------------------------------------------------
    @property
    def crc_errors(self) -> int:
        return self._parser.counters.crc_errors

    @property
    def length_errors(self) -> int:
        return self._parser.counters.length_errors

    @property
    def garbage_bytes(self) -> int:
        return self._parser.counters.garbage_bytes

    # ----- commands from the event level (the gait machine and the supervisor) -----------
    def set_phase(self, phase: int, hold_limit_us: int = 0) -> None:
        """Set what the envelope does from the next sample on. Ignored while faulted."""
        if self.fault:
            return
        self.phase = int(phase)
        if phase == Phase.RISE:
            self.rise_done_sent = 0
        elif phase == Phase.HOLD:
            self.hold_us = 0
            self.hold_limit_us = int(hold_limit_us)
        elif phase == Phase.FALL:
            # RAMP_DOWN_DONE is owed only for a ramp that still has somewhere to go
            # (or one the cut-off already started)
            if self.level > 0.0:
                self.fall_done_pending = 1
        elif phase == Phase.OFF:
            self.level = 0.0
            self.current_ma = 0.0

    def set_envelope(self, ramp_up_us: int, ramp_down_us: int, max_stim_us: int) -> None:
        """Ramp times and burst limit from now on (walking: the profile envelope; training and
        test bursts: theirs). The caller validates them against the hard caps of its mode."""
        if min(ramp_up_us, ramp_down_us) < 0 or max_stim_us <= 0:
            raise ValueError("ramp times must be >= 0 and max_stim_us > 0")
        self.p.ramp_up_us = int(ramp_up_us)
        self.p.ramp_down_us = int(ramp_down_us)
        self.p.max_stim_us = int(max_stim_us)

    def set_clock_rate(self, rate: float) -> None:
        """Sensor µs expected per wall µs in ``run_fd``: 1 on a device; a replay at N × real
        time sets N (the wall back-stop is then max_stim / N); 0 (as fast as the reader
        takes frames) turns the drift check off and keeps the back-stop at max_stim."""
        if not (math.isfinite(rate) and rate >= 0.0):
            raise ValueError(f"clock rate {rate!r}; allowed a finite number >= 0 (1 = real time)")
        self.clock_rate = float(rate)
        self._reset_drift()

    def set_detection(self, enabled: bool) -> None:
        """Enable or disable gait events. On enabling, wait for a stance before any onset."""
        self.detection_enabled = 1 if enabled else 0
        self.swing_recording = 0
        self.stride = STRIDE_LOCKOUT
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        if not enabled:     # walking paused or stopped: timed bursts not begun are dropped, others ramp down
            for i in range(1, self.n_channels):
                if self.timed_state[i] == TIMED_WAIT:
                    self.timed_state[i] = TIMED_IDLE
                elif self.timed_state[i] in (TIMED_RISE, TIMED_HOLD):
                    self.timed_state[i] = TIMED_FALL

    def request_amplitude(self, amplitude_ma: float) -> None:
        """Plateau amplitude for the next burst; applied only while the output is zero."""
        if not (0.0 <= amplitude_ma <= self.p.amplitude_max_ma):
            raise ValueError(f"amplitude_ma {amplitude_ma:g} outside 0..{self.p.amplitude_max_ma:g}")
        self.pending_amplitude_ma = float(amplitude_ma)
        if self.level == 0.0:
            self.amplitude_ma = self.pending_amplitude_ma

    def request_channel_amplitude(self, index: int, amplitude_ma: float) -> None:
        """Plateau amplitude of channel ``index`` (0 = ``stimulation``, 1.. the extras) for its
        next burst; applied only while that channel's output is zero. ValueError outside
        0..its profile amplitude or for an index the profile does not drive."""
        if index == 0:
            self.request_amplitude(amplitude_ma)
            return
        if not 0 < index < self.n_channels:
            raise ValueError(f"channel index {index!r}; this profile drives indexes 0..{self.n_channels - 1}")
        if not (0.0 <= amplitude_ma <= self.p.ch_amp_max_ma[index]):
            raise ValueError(f"amplitude_ma {amplitude_ma:g} outside 0..{self.p.ch_amp_max_ma[index]:g}")
        self.ch_pending_ma[index] = float(amplitude_ma)
        if self.ch_level[index] == 0.0:
            self.ch_amp_ma[index] = self.ch_pending_ma[index]

    def channel_current_ma(self, index: int) -> float:
        """Present output (mA) of channel ``index`` (0 = ``stimulation``)."""
        return self.current_ma if index == 0 else self.ch_current_ma[index]

    def channel_level(self, index: int) -> float:
        """Present envelope level (0..1) of channel ``index``."""
        return self.level if index == 0 else self.ch_level[index]

    def channel_amplitude_ma(self, index: int) -> float:
        """Plateau amplitude (mA) channel ``index`` uses now (its next burst: ``channel_pending_ma``)."""
        return self.amplitude_ma if index == 0 else self.ch_amp_ma[index]

    def channel_pending_ma(self, index: int) -> float:
        return self.pending_amplitude_ma if index == 0 else self.ch_pending_ma[index]

    def latch_fault(self, code: int) -> None:
        """Force zero output now and latch ``code`` (first reason wins). Called from the
        event level, so no FAULT event is queued; the kernel's own checks use _fault()."""
        if not self.fault:
            self.fault = int(code)
        self.phase = int(Phase.OFF)
        self.level = 0.0
        self.current_ma = 0.0
        for i in range(1, self.n_channels):
            self.ch_level[i] = 0.0
            self.ch_current_ma[i] = 0.0
            self.timed_state[i] = TIMED_IDLE
        self.detection_enabled = 0
        self.deliver_due = 1

    def _fault(self, code: int) -> None:
        if not self.fault:
            self._queue(Event.FAULT)
        self.latch_fault(code)

    def clear_fault(self) -> None:
        """Leave the fault (a person asked for it). Output stays zero; continuity checks restart."""
        self.fault = 0
        self.have_frame = 0
        self.phase = int(Phase.FALL)
        self.fall_done_pending = 0
        self.burst_start_us = -1
        self.crc_recent = 0
        self.good_since_crc = 0
        self.heel_same_us = 0
        self.heel_frozen_strides = 0
        self.last_crc_total = self._parser.counters.crc_errors
        self.burst_wall_start_us = -1
        for i in range(CHANNELS_MAX):
            self.ch_wall_start_us[i] = -1
        self.anchor_wall_us = 0
        self._reset_drift()

    def mark_delivered(self) -> None:
        """The current output was sent to the stimulator."""
        self.delivered_ma = self.current_ma
        for i in range(1, self.n_channels):
            self.ch_delivered_ma[i] = self.ch_current_ma[i]
        self.last_deliver_us = self.t_us
        self.deliver_due = 0

    def pop_event(self) -> int:
        return self._events.pop(0) if self._events else 0

    def trace_clear(self) -> None:
        self.trace_len = 0

    # ----- input ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> int:
        """Buffer sensor bytes. Returns Ret flags (EVENT when an overrun latched a fault)."""
        if len(self._parser._buf) + len(data) > INPUT_BUFFER_BYTES:
            self.overruns += 1
            self._parser._buf.clear()
            self._fault(Fault.BUFFER_OVERRUN)
            return int(Ret.EVENT)
        self._parser._buf += data
        return 0

    def process(self) -> int:
        """Run buffered frames until something needs the event level. Returns Ret flags."""
        while True:
            if self.trace_capacity and self.trace_len >= self.trace_capacity:
                return int(Ret.TRACE_FULL)
            frame = self._parser.next_frame()
            self._check_link()
            if frame is not None:
                self._sample(frame)
            ret = (int(Ret.EVENT) if self._events else 0) | (int(Ret.DELIVER) if self.deliver_due else 0)
            if ret or frame is None:
                return ret

    def _check_link(self) -> None:
        total = self._parser.counters.crc_errors
        if total != self.last_crc_total:
            self.crc_recent += total - self.last_crc_total
            self.last_crc_total = total
            self.good_since_crc = 0
            if self.crc_recent > self.p.max_missing and not self.fault:
                self._fault(Fault.LINK_ERRORS)

    def _queue(self, event: int) -> None:
        if len(self._events) < EVENT_QUEUE_LEN:
            self._events.append(int(event))

    def _cut(self) -> None:
        """The burst limit was reached: ramp down (or zero, already set) and report MAX_STIM once."""
        self.phase = int(Phase.FALL)
        self.fall_done_pending = 1
        if self.stride == STRIDE_ACTIVE:
            self.stride = STRIDE_LOCKOUT
        self.tilt_state = TILT_STANCE_WAIT
        self.tilt_timer_us = 0
        if not self.max_stim_sent:
            self.max_stim_sent = 1
            self._queue(Event.MAX_STIM)

    # ----- one sample ----------------------------------------------------------------------
    def _sample(self, f: sp.SensorFrame) -> None:
        p = self.p
        events_before = len(self._events)
        self.frames += 1
        self.good_since_crc += 1
        if self.good_since_crc >= 100:
            self.crc_recent = 0
        # --- sample guard: continuity, clock, content -------------------------------------
        dt_us = p.period_us
        if self.have_frame:
            gap = (f.seq - self.last_seq - 1) & 0xFFFF
            dt_us = (f.timestamp_us - self.last_ts) & 0xFFFFFFFF
            if gap:
                self.seq_gaps += 1
                self.frames_lost += gap
            if gap > p.max_missing:
                self._fault(Fault.SEQUENCE_GAP)
            elif dt_us == 0 or dt_us > p.stale_us:
                # signed step for the fault detail; the sample itself advances by one period so
                # that sensor time, filters and timers do not take a bogus (e.g. 2^32-1 µs) step
                self.clock_step_us = dt_us - 0x100000000 if dt_us >= 0x80000000 else dt_us
                dt_us = p.period_us
                self._fault(Fault.CLOCK_JUMP)
        if self.frames == 1:
            self.t_us = f.timestamp_us
        else:
            self.t_us += dt_us
        self.have_frame = 1
        self.last_seq = f.seq
        self.last_ts = f.timestamp_us
        if f.version != sp.VERSION:
            self._fault(Fault.PARSE_ERROR)
        flags = f.flags
        if p.need_heel and not (flags & sp.FLAG_HEEL_PRESENT):
            self._fault(Fault.CHANNEL_MISSING)
        if p.need_imu and not (flags & sp.FLAG_IMU_PRESENT):
            self._fault(Fault.CHANNEL_MISSING)
        if p.need_heel and (flags & sp.FLAG_HEEL_FAULT):
            self._fault(Fault.HEEL_SENSOR_FAULT)
        if p.need_imu and (flags & sp.FLAG_IMU_SATURATED):
            self._fault(Fault.IMU_SATURATED)
        # --- filters ---------------------------------------------------------------------
        heel = f.heel_force * sp.HEEL_N_PER_COUNT
        pitch = -(f.gyro[1] * sp.GYRO_DPS_PER_COUNT)
        yaw = f.gyro[2] * sp.GYRO_DPS_PER_COUNT
        if self.frames == 1:
            self.heel_lp = heel
            self.pitch_lp = pitch
            self.yaw_lp = yaw
        else:
            self.heel_lp += lowpass_alpha(dt_us, p.heel_filter_hz) * (heel - self.heel_lp)
            self.pitch_lp += lowpass_alpha(dt_us, p.tilt_filter_hz) * (pitch - self.pitch_lp)
            self.yaw_lp += lowpass_alpha(dt_us, p.tilt_filter_hz) * (yaw - self.yaw_lp)
        self.heel_n = heel
        decayed = self.heel_peak - self.heel_peak * (dt_us / 1e6) / p.heel_peak_decay_s
        self.heel_peak = self.heel_lp if self.heel_lp > decayed else decayed
        if f.heel_force == self.heel_last_raw:
            self.heel_same_us += dt_us
        else:
            self.heel_same_us = 0
            self.heel_last_raw = f.heel_force
            self.heel_frozen_strides = 0
        # --- detectors ---------------------------------------------------------------------
        heel_edge_off = heel_edge_on = 0
        # swing-phase floor: the lowest filtered force of the last floor_window_ms, taken as
        # the unloaded level only when it lies well under the loaded peak (else: standing,
        # the heel did not unload; the floor holds)
        if self.frames == 1:
            self.floor_bin_min = self.heel_lp
        elif self.heel_lp < self.floor_bin_min:
            self.floor_bin_min = self.heel_lp
        self.floor_bin_us += dt_us
        if self.floor_bin_us >= p.heel_floor_bin_us:
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
        if cand <= p.heel_floor_max_fraction * self.heel_peak and cand <= p.heel_floor_max_n:
            self.heel_floor = cand
        span = self.heel_peak - self.heel_floor
        if span < 0.0:
            span = 0.0
        thr_off = self.heel_floor + max(p.heel_off_min_n, p.heel_off_fraction * span)
        thr_on = self.heel_floor + max(2.0 * p.heel_off_min_n,
                                       min(max(p.heel_on_min_n, p.heel_on_fraction * span),
                                           p.heel_on_max_fraction * span))
        if self.heel_loaded:
            if self.heel_lp < thr_off:
                self.heel_timer_us += dt_us
                if self.heel_timer_us >= p.heel_debounce_us:
                    self.heel_loaded = 0
                    self.heel_timer_us = 0
                    heel_edge_off = 1
                    self.heel_since_off_us = 0
            else:
                self.heel_timer_us = 0
        else:
            if self.heel_lp > thr_on:
                self.heel_timer_us += dt_us
                if self.heel_timer_us >= p.heel_debounce_us:
                    self.heel_loaded = 1
                    self.heel_timer_us = 0
                    heel_edge_on = 1
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
        tilt_edge_onset = tilt_edge_strike = 0
        w = self.pitch_lp
        # thresholds relative to this walker's recent push-off and swing peaks: they only
        # ever go below the profile's (weak push-offs), never under the *_min_dps bounds
        onset_thr = p.tilt_onset_dps
        swing_thr = p.tilt_swing_dps
        if p.tilt_adapt_fraction > 0.0:
            if self.tilt_push_learned >= p.tilt_learn_strides:
                onset_thr = min(p.tilt_onset_dps, max(p.tilt_onset_min_dps,
                                                      p.tilt_adapt_fraction * self.tilt_push_peak))
            if self.tilt_swing_learned >= p.tilt_learn_strides:
                swing_thr = min(p.tilt_swing_dps, max(p.tilt_swing_min_dps,
                                                      p.tilt_adapt_fraction * self.tilt_swing_peak))
        ts = self.tilt_state
        if ts == TILT_STANCE_WAIT:
            if -p.tilt_stance_dps < w < p.tilt_stance_dps:
                self.tilt_timer_us += dt_us
                if self.tilt_timer_us >= p.tilt_min_stance_us:
                    self.tilt_state = TILT_ARMED
                    self.tilt_timer_us = 0
                    self.tilt_push_min = 0.0
            else:
                self.tilt_timer_us = 0
        elif ts == TILT_ARMED:
            if w < self.tilt_push_min:
                self.tilt_push_min = w
            if w > p.tilt_disarm_dps:
                # toes rising without a detected push-off: a missed (weak) swing; wait for
                # the next stance rather than take its heel-strike spike for a push-off
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                self._learn_push(-self.tilt_push_min)
            elif w < -onset_thr and abs(self.yaw_lp) <= -w * p.tilt_max_yaw_ratio:
                # toes down faster than the foot turns about the vertical: a push-off, not a pivot
                self.tilt_timer_us += dt_us
                if self.tilt_timer_us >= p.tilt_debounce_us:
                    self.tilt_state = TILT_ONSET
                    self.tilt_timer_us = 0
                    tilt_edge_onset = 1
            else:
                self.tilt_timer_us = 0
        elif ts == TILT_ONSET:
            # the timer runs from onset; a swing that never comes must not block re-arming
            self.tilt_timer_us += dt_us
            if w < self.tilt_push_min:
                self.tilt_push_min = w
            if w > swing_thr:
                self.tilt_state = TILT_SWING
                self._learn_push(-self.tilt_push_min)
                self.tilt_swing_max = w
            elif self.tilt_timer_us >= p.tilt_swing_wait_us:
                # no swing after the "push-off" (a heel-strike spike, a stumble): end the
                # stride now instead of stimulating through the next real push-off
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                tilt_edge_strike = 1
        else:  # TILT_SWING
            self.tilt_timer_us += dt_us
            if w > self.tilt_swing_max:
                self.tilt_swing_max = w
            if w < p.tilt_strike_dps:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
                tilt_edge_strike = 1
                self._learn_swing(self.tilt_swing_max)
                if self.heel_same_us > 0 and (flags & sp.FLAG_IMU_PRESENT):
                    # a whole stride seen by the IMU while the heel reading did not move
                    self.heel_frozen_strides += 1
            elif self.tilt_timer_us >= p.max_stim_us:
                self.tilt_state = TILT_STANCE_WAIT
                self.tilt_timer_us = 0
        if heel_edge_on and not p.mode_heel and not p.mode_tilt and self.tilt_state >= TILT_ONSET:
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
            if self.heel_unloaded_us >= p.heel_absent_us:
                self.heel_absent = 1
        # A reading frozen while loaded, or frozen through IMU-detected strides, is a broken
        # sensor; frozen at the unloaded level (an unloaded FSR reads a constant) is not.
        if (p.need_heel and self.detection_enabled and self.heel_same_us >= p.heel_stuck_us
                and (self.heel_loaded or self.heel_frozen_strides >= p.heel_stuck_imu_strides)):
            self._fault(Fault.HEEL_STUCK)
        if p.mode_heel:
            onset, strike, ready = heel_onset, heel_edge_on, self.heel_loaded
        elif p.mode_tilt:
            onset, strike, ready = tilt_edge_onset, tilt_edge_strike, self.tilt_state == TILT_ARMED
        else:
            onset = 1 if (not self.heel_loaded and self.tilt_state == TILT_ONSET
                          and (heel_edge_off or tilt_edge_onset)) else 0
            strike = 1 if (heel_edge_on or tilt_edge_strike) else 0
            # ready after quiet stance of the foot; the heel need not load (stairs, forefoot contact)
            ready = self.tilt_state == TILT_ARMED
        stride_onset = stride_strike = 0
        if self.detection_enabled and not self.fault:
            if self.stride == STRIDE_IDLE:
                if onset:
                    self.stride = STRIDE_ACTIVE
                    self._queue(Event.HEEL_OFF)
                    stride_onset = 1
            elif self.stride == STRIDE_ACTIVE:
                if strike:
                    self.stride = STRIDE_IDLE if ready else STRIDE_LOCKOUT
                    self._queue(Event.HEEL_STRIKE)
                    stride_strike = 1
            elif ready:
                self.stride = STRIDE_IDLE
        # --- foot pitch (adaptive stimulation): integrated from the last foot-flat ----------
        # Toe-up pitch to the ground, trapezoidal integral of the raw pitch rate, reset to 0
        # while the foot is still (drift reset every stance). From each onset to its heel
        # strike the pitch goes into swing_pitch (the event level reads it at the strike).
        if p.foot_on:
            if -p.foot_flat_dps < self.pitch_lp < p.foot_flat_dps:
                self.foot_flat_timer_us += dt_us
            else:
                self.foot_flat_timer_us = 0
            if self.foot_flat_timer_us >= p.foot_flat_us:
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
                if self.swing_n < SWING_BUF_LEN:
                    self.swing_pitch[self.swing_n] = self.foot_pitch_deg
                    self.swing_n += 1
                else:
                    self.swing_overflow = 1
            if stride_strike:
                self.swing_recording = 0
        # --- envelope ----------------------------------------------------------------------
        if self.level == 0.0:
            self.amplitude_ma = self.pending_amplitude_ma
        ph = self.phase
        if ph == Phase.OFF:
            self.level = 0.0
        elif ph == Phase.RISE:
            if p.ramp_up_us == 0:
                self.level = 1.0
            else:
                self.level = min(1.0, self.level + dt_us / p.ramp_up_us)
            if self.level >= 1.0 and not self.rise_done_sent:
                self.rise_done_sent = 1
                self._queue(Event.RAMP_UP_DONE)
        elif ph == Phase.HOLD:
            self.hold_us += dt_us
            if self.hold_limit_us > 0 and self.hold_us >= self.hold_limit_us:
                self.hold_limit_us = 0
                self._queue(Event.HOLD_DONE)
        else:  # FALL
            if p.ramp_down_us == 0:
                self.level = 0.0
            else:
                self.level = max(0.0, self.level - dt_us / p.ramp_down_us)
            if self.level == 0.0 and self.fall_done_pending:
                self.fall_done_pending = 0
                self._queue(Event.RAMP_DOWN_DONE)
        # --- max-stimulation cut-off and back-stop -----------------------------------------
        if self.level > 0.0:
            if self.burst_start_us < 0:
                self.burst_start_us = self.t_us
                self.max_stim_sent = 0
            on_us = self.t_us - self.burst_start_us
            cut = 0
            if on_us >= p.max_stim_us:
                self.level = 0.0
                cut = 1
            elif p.cutoff_zero:
                if on_us + dt_us >= p.max_stim_us:
                    self.level = 0.0
                    cut = 1
            elif self.phase != Phase.FALL and on_us + self.level * p.ramp_down_us + dt_us >= p.max_stim_us:
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
            if self.current_ma == 0.0 or self.t_us - self.last_deliver_us >= p.deliver_interval_us:
                self.deliver_due = 1
        if self.n_channels > 1:
            self._extra_channels(dt_us, stride_onset + 2 * stride_strike)
        # --- trace ---------------------------------------------------------------------------
        if self.trace_capacity:
            i = self.trace_len
            tr = self.trace
            mask = 0
            for e in self._events[events_before:]:
                mask |= 1 << e
            tr["t_us"][i] = self.t_us
            tr["heel_n"][i] = self.heel_lp
            tr["pitch_rate_dps"][i] = self.pitch_lp
            tr["level"][i] = self.level
            tr["current_ma"][i] = self.current_ma
            tr["phase"][i] = self.phase
            tr["events"][i] = mask
            tr["fault"][i] = self.fault
            self.trace_len = i + 1

    def _extra_channels(self, dt_us: int, gait_event: int) -> None:
        """Channels 1.. of a multi-channel profile, after channel 0's envelope on each sample.

        A channel without timing follows channel 0's level (its own amplitude). A timed
        channel's burst is placed on the sample its gait event was queued (heel-off or heel
        strike; ignored while one runs): it waits ``onset``, rises at most dt/ramp_up per
        sample, holds, and falls early enough to reach zero ``duration`` after its onset; a
        back-stop zeroes it at max_stim. Zero on a fault. Same delivery rule as channel 0."""
        p = self.p
        for i in range(1, self.n_channels):
            if self.ch_level[i] == 0.0:
                self.ch_amp_ma[i] = self.ch_pending_ma[i]
            if not p.ch_timed[i]:
                lv = self.level
            else:
                st = self.timed_state[i]
                lv = self.ch_level[i]
                if st == TIMED_IDLE and gait_event == 1 + p.ch_after_strike[i]:
                    st = TIMED_WAIT
                    self.timed_event_us[i] = self.t_us
                if st == TIMED_WAIT:
                    if self.t_us - self.timed_event_us[i] >= p.ch_onset_us[i]:
                        st = TIMED_RISE
                        self.timed_on_us[i] = self.t_us
                elif st == TIMED_RISE:
                    if p.ch_ramp_up_us[i] == 0:
                        lv = 1.0
                    else:
                        lv = min(1.0, lv + dt_us / p.ch_ramp_up_us[i])
                    if lv >= 1.0:
                        st = TIMED_HOLD
                elif st == TIMED_FALL:
                    if p.ch_ramp_down_us[i] == 0:
                        lv = 0.0
                    else:
                        lv = max(0.0, lv - dt_us / p.ch_ramp_down_us[i])
                    if lv == 0.0:
                        st = TIMED_IDLE
                if st == TIMED_RISE or st == TIMED_HOLD:
                    if (self.t_us - self.timed_on_us[i]) + lv * p.ch_ramp_down_us[i] + dt_us >= p.ch_duration_us[i]:
                        st = TIMED_FALL
                if lv > 0.0 and self.t_us - self.timed_on_us[i] >= p.max_stim_us:
                    lv = 0.0
                    st = TIMED_IDLE
                self.timed_state[i] = st
            if self.fault:
                lv = 0.0
            self.ch_level[i] = lv
            self.ch_current_ma[i] = lv * self.ch_amp_ma[i]
            if self.ch_current_ma[i] != self.ch_delivered_ma[i]:
                if self.ch_current_ma[i] == 0.0 or self.t_us - self.last_deliver_us >= p.deliver_interval_us:
                    self.deliver_due = 1

    def _learn_push(self, peak_dps: float) -> None:
        """A stride's push-off peak (toe-down rate, deg/s, >= 0), detected or missed."""
        if self.tilt_push_learned == 0:
            self.tilt_push_peak = peak_dps
        else:
            self.tilt_push_peak += 0.25 * (peak_dps - self.tilt_push_peak)
        if self.tilt_push_learned < self.p.tilt_learn_strides:
            self.tilt_push_learned += 1

    def _learn_swing(self, peak_dps: float) -> None:
        """A detected swing's peak toe-up rate, deg/s."""
        if self.tilt_swing_learned == 0:
            self.tilt_swing_peak = peak_dps
        else:
            self.tilt_swing_peak += 0.25 * (peak_dps - self.tilt_swing_peak)
        if self.tilt_swing_learned < self.p.tilt_learn_strides:
            self.tilt_swing_learned += 1

    def _learn_stride(self) -> None:
        """At a heel strike: learn the stride time (strike to strike) and the time the heel
        was unloaded (heel-off to strike); from them the onset delay for the next strides."""
        p = self.p
        stride = self.heel_since_on_us
        unload = self.heel_since_off_us
        if stride >= STRIDE_MAX_US or unload >= stride:
            return
        if self.heel_strides_learned == 0:
            self.heel_stride_us = float(stride)
            self.heel_unload_us = float(unload)
        else:
            self.heel_stride_us += 0.25 * (stride - self.heel_stride_us)
            self.heel_unload_us += 0.25 * (unload - self.heel_unload_us)
        if self.heel_strides_learned < p.heel_learn_strides:
            self.heel_strides_learned += 1
        if self.heel_strides_learned >= p.heel_learn_strides:
            # heel-off leads toe-off by (unloaded time - swing time); swing ~ swing_fraction x stride
            lag = self.heel_unload_us - p.heel_swing_fraction * self.heel_stride_us
            d = lag - p.heel_onset_lead_us
            if d < 0.0:
                d = 0.0
            if d > p.heel_max_delay_us:
                d = float(p.heel_max_delay_us)
            self.heel_delay_us = int(d)

    # ----- real-time reading from a file descriptor ------------------------------------------
    def run_fd(self, fd: int, wake_us: int) -> int:
        """Read and process frames from ``fd`` until something needs the event level.

        Returns at the latest after ``wake_us`` of wall time (Ret.TIMEOUT) so the
        caller can service the stimulator. No valid frame for stale_ms of wall time
        latches SENSOR_STALE. The wall-clock back-stop zeroes any burst that has lasted
        max_stim less one sample period of monotonic time, whatever the sensor timestamps say, and the wait for
        input never runs past that deadline, so zero goes out on time with no frame at
        all. Lateness of each frame against the sensor clock is accumulated in
        ``lateness_hist`` (100 µs bins) and checked for drift (CLOCK_DRIFT).
        """
        now = time.monotonic_ns() // 1000
        if self.last_valid_wall_us == 0:
            self.last_valid_wall_us = now
        deadline = now + wake_us
        while True:
            frames_before = self.frames
            before_us = now
            ret = self.process()
            now = time.monotonic_ns() // 1000
            if self.frames != frames_before:
                self._account_lateness(now)
            ret |= self._wall_guard(before_us, now)
            if self._events:       # the drift check may have latched a fault just now
                ret |= int(Ret.EVENT)
            if self.deliver_due:
                ret |= int(Ret.DELIVER)
            if ret:
                return ret
            if not self.fault and now - self.last_valid_wall_us > self.p.stale_us:
                self._fault(Fault.SENSOR_STALE)
                return int(Ret.EVENT | Ret.DELIVER)
            if now >= deadline:
                return int(Ret.TIMEOUT)
            until = min(deadline, self.last_valid_wall_us + self.p.stale_us + 1)
            if self.burst_wall_start_us >= 0:
                until = min(until, self.burst_wall_start_us + self._wall_max_stim_us())
            for i in range(1, self.n_channels):
                if self.ch_wall_start_us[i] >= 0:
                    until = min(until, self.ch_wall_start_us[i] + self._wall_max_stim_us())
            wait_us = until - now
            # poll() has ms resolution (the compiled twin): round up so we never spin
            readable, _, _ = select.select([fd], [], [], ((max(wait_us, 0) + 999) // 1000) / 1e3)
            now = time.monotonic_ns() // 1000
            if not readable:
                continue
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                return int(Ret.CLOSED)
            ret = self.feed(data)
            if ret:
                return ret

    def _wall_max_stim_us(self) -> int:
        """When the back-stop cuts, in wall time from the burst's start: one sample period
        before max_stim (that period is the margin for the zero to reach the stimulator),
        scaled down in a replay faster than real time."""
        limit = self.p.max_stim_us
        if self.clock_rate > 1.0:
            limit = int(limit / self.clock_rate)
        limit -= self.p.period_us
        return limit if limit > self.p.period_us else self.p.period_us

    def _wall_guard(self, before_us: int, now_us: int) -> int:
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
            if not self.p.ch_timed[i]:
                self.ch_level[i] = 0.0
                self.ch_current_ma[i] = 0.0
        self.burst_start_us = -1
        self.burst_wall_start_us = -1
        self._cut()
        self.deliver_due = 1
        return int(Ret.EVENT | Ret.DELIVER)

    def _wall_guard_timed(self, before_us: int, now_us: int) -> int:
        """The wall-clock back-stop of each timed channel's own burst (Ret.DELIVER when it cut)."""
        ret = 0
        for i in range(1, self.n_channels):
            if not self.p.ch_timed[i]:
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
                ret = int(Ret.DELIVER)
        return ret

    def _account_lateness(self, now_us: int) -> None:
        self.last_valid_wall_us = now_us
        expected = self.anchor_wall_us + (self.t_us - self.anchor_dev_us)
        late = now_us - expected
        if self.anchor_wall_us == 0 or late < 0:
            self.anchor_wall_us = now_us
            self.anchor_dev_us = self.t_us
            late = 0
        b = late // LATENESS_BIN_US
        self.lateness_hist[b if b < LATENESS_BINS - 1 else LATENESS_BINS - 1] += 1
        if late > self.max_lateness_us:
            self.max_lateness_us = late
        if late > self.p.period_us:
            self.missed_deadlines += 1
        self._check_drift(now_us)

    def _check_drift(self, now_us: int) -> None:
        """CLOCK_DRIFT, checked on every frame ``run_fd`` reads unless the clock rate is 0.

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
        offset = now_us - int(self.t_us / self.clock_rate)
        if self.drift_win_start_us == 0:
            self.drift_win_start_us = now_us
            self.drift_win_min_us = offset
        if offset < self.drift_win_min_us:
            self.drift_win_min_us = offset
        soonest = self.drift_win_min_us
        if self.drift_have_prev and self.drift_prev_min_us < soonest:
            soonest = self.drift_prev_min_us
        self.drift_late_us = offset - soonest
        if self.drift_late_us > self.p.stale_us:
            self._fault(Fault.CLOCK_DRIFT)
            return
        span = now_us - self.drift_win_start_us
        if span < DRIFT_WINDOW_US:
            return
        if self.drift_have_prev:
            self.drift_rate_us = self.drift_win_min_us - self.drift_prev_min_us
            if abs(self.drift_rate_us) * 100 > DRIFT_MAX_PERCENT * span:
                self._fault(Fault.CLOCK_DRIFT)
        self.drift_prev_min_us = self.drift_win_min_us
        self.drift_have_prev = 1
        self.drift_win_start_us = now_us
        self.drift_win_min_us = offset
