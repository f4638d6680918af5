"""Plain numbers of the per-sample kernel: sizes, clock-check limits and the profile's
parameters in kernel units (µs, N, deg/s). Both builds of ``core.py`` read these; nothing
here runs per sample.
"""
from __future__ import annotations

from fescontrol.core.limits import DRIFT_MAX_PERCENT, DRIFT_WINDOW_US  # noqa: F401 (the supervisor reads them there)
from fescontrol.core.limits import SENSOR_STARTUP_GRACE_MS
from fescontrol.core.profile import CutoffMode, Profile, TriggerMode

INPUT_BUFFER_BYTES = 65536   # sensor bytes buffered by the kernel; more is BUFFER_OVERRUN
EVENT_QUEUE_LEN = 16         # events queued between two event-level calls (more are dropped)
READ_CHUNK_BYTES = 4096      # run_fd reads at most this much per read()
LATENESS_BIN_US = 100
LATENESS_BINS = 101  # last bin: ≥ 10 ms
#: run_fd: after the loop itself was not running (it came back late, or a wait overslept) it
#: looks at the port for one more sample period before SENSOR_STALE, at most this many times
#: in a row (a machine that keeps stalling still faults, within ~3 periods of running again)
STALE_RELOOKS = 3

FLOOR_BINS = 40         # ring buffer of per-bin minima: the swing-floor window
STRIDE_MAX_US = 2_500_000   # longer heel cycles are stops, not strides (not learned from)

#: samples of foot pitch kept per swing (onset to heel strike) for the adaptive stimulation's
#: stride features: 4.096 s at 1 kHz, longer than any burst (limits.MAX_STIM_MS_MAX)
SWING_BUF_LEN = 4096

CHANNELS_MAX = 4            # channels one profile drives: index 0 is ``stimulation``, 1.. the extras
# timed-channel burst states (profile ChannelTiming)
TIMED_IDLE, TIMED_WAIT, TIMED_RISE, TIMED_HOLD, TIMED_FALL = 0, 1, 2, 3, 4

TRACE_FIELDS = ("t_us", "heel_n", "pitch_rate_dps", "level", "current_ma", "phase", "events", "fault")


class KernelParams:
    """Plain numbers taken from a profile once (µs for times, N for forces, deg/s for rates).

    Raises nothing itself: the pydantic ``Profile`` has validated every value already.
    """

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
        self.heel_floor_walk_fraction = heel.floor_walk_fraction
        self.heel_flat_n = heel.floor_flat_n
        self.heel_flat_max_fraction = max(heel.floor_flat_max_fraction, heel.floor_max_fraction)
        self.heel_flat_us = heel.floor_flat_ms * 1000
        self.heel_floor_window_us = heel.floor_window_ms * 1000
        # the cap never undercuts on_fraction, so the hysteresis on_fraction > off_fraction holds
        self.heel_on_max_fraction = max(heel.on_max_fraction, heel.on_fraction)
        self.heel_swing_fraction = heel.swing_fraction
        self.heel_onset_lead_us = heel.onset_lead_ms * 1000
        self.heel_max_delay_us = heel.max_onset_delay_ms * 1000
        self.heel_learn_strides = heel.learn_strides
        self.heel_light_n = heel.light_strike_n
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
        self.tilt_onset_raise_fraction = tilt.onset_raise_fraction
        self.tilt_onset_max_dps = tilt.onset_max_dps
        # a late onset fires once the toe-up rate passes both the disarm and the late threshold
        self.tilt_late_onset_dps = max(tilt.late_onset_dps, tilt.disarm_rate_dps) if tilt.late_onset_dps > 0 else 0.0
        self.tilt_late_stance_yaw_dps = tilt.late_stance_yaw_dps
        self.tilt_late_pivot_deg = tilt.late_pivot_deg
        self.stale_us = dev.stale_ms * 1000
        #: wall time allowed before the session's first valid frame (never less than stale_ms)
        self.startup_grace_us = max(SENSOR_STARTUP_GRACE_MS * 1000, self.stale_us)
        self.max_missing = dev.max_missing_frames
        self.deliver_interval_us = int(round(1e6 / profile.stimulation.frequency_hz))
        self.period_us = int(round(1e6 / dev.sample_rate_hz))
        self.amplitude_max_ma = profile.stimulation.amplitude_ma
        ad = profile.adaptive
        self.foot_on = 1 if ad.enabled else 0
        self.foot_flat_dps = ad.foot_flat_rate_dps
        self.foot_flat_us = ad.foot_flat_ms * 1000
        # channels: index 0 is ``stimulation`` (the gait envelope), 1.. the profile's extra_channels;
        # padded to CHANNELS_MAX so the kernel holds fixed-size arrays
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
