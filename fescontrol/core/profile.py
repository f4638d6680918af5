"""Stimulation profiles: what the orthotist configures, validated.

Over 400 lines: one pydantic schema (every section with its bounds and messages) and its loader;
the cross-field rules need all sections in view.

A profile is a YAML file (see ``configs/``) loaded into the pydantic model
:class:`Profile`. Every numeric field carries its unit in its name and is
bounded by the hard caps of :mod:`fescontrol.core.limits`; cross-field rules
(ramps fit in the maximum burst, the patient's range lies inside the
orthotist's amplitude, hysteresis is positive, …) are checked after the
fields. A profile that fails any rule is refused whole, with one message per
problem naming the file, the field path, the value and the allowed range.
"""
from __future__ import annotations

import atexit
import contextlib
import enum
import re
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
import yaml
from pydantic import (AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictBool, ValidationError,
                      field_validator, model_validator)

from fescontrol.core import limits
from fescontrol.core.profile_yaml import YamlRefused, parse_profile_text, read_profile_file

PROFILE_SCHEMA_VERSION = 1


class ProfileError(ValueError):
    """A profile was refused. ``problems`` holds one readable line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


Int = Annotated[int, Strict()]
"""A whole number written as one: not ``true``, ``'30'``, ``30.0`` or ``0x1e``."""
Real = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite number (a whole number is fine): not ``true``, ``'30'`` or ``.nan``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Waveform(str, enum.Enum):
    """Pulse shapes the stimulator can deliver. ScienceMode2 sets channel, pulse width and
    current only; the RehaStim2 always makes a symmetric biphasic pulse, so that is the
    only shape (``asymmetric_biphasic`` is refused with that reason)."""

    SYMMETRIC_BIPHASIC = "symmetric_biphasic"


class TriggerMode(str, enum.Enum):
    HEEL = "heel"
    TILT = "tilt"
    HEEL_AND_TILT = "heel+tilt"

    @property
    def needs_heel(self) -> bool:
        return self in (TriggerMode.HEEL, TriggerMode.HEEL_AND_TILT)

    @property
    def needs_imu(self) -> bool:
        return self in (TriggerMode.TILT, TriggerMode.HEEL_AND_TILT)


class CutoffMode(str, enum.Enum):
    RAMP_DOWN = "ramp_down"
    ZERO = "zero"


class StimulationChannel(_Model):
    """One stimulation channel: the pulse train delivered at full envelope."""

    channel: Int = Field(1, ge=1, le=limits.CHANNEL_MAX, description="stimulator channel, 1-based")
    amplitude_ma: Real = Field(..., gt=0, le=limits.AMPLITUDE_MAX_MA,
                                description="current at the envelope plateau, mA")
    pulse_width_us: Int = Field(300, ge=limits.PULSE_WIDTH_MIN_US, le=limits.PULSE_WIDTH_MAX_US,
                                description="width of one phase, µs")
    frequency_hz: Real = Field(40.0, ge=limits.FREQUENCY_MIN_HZ, le=limits.FREQUENCY_MAX_HZ,
                                description="pulse repetition frequency, Hz")
    waveform: Waveform = Waveform.SYMMETRIC_BIPHASIC

    @field_validator("waveform", mode="before")
    @classmethod
    def _waveform_the_device_can_make(cls, value: Any) -> Any:
        if value == "asymmetric_biphasic":
            raise ValueError("not supported: the RehaStim2 (ScienceMode2) has no pulse-shape setting "
                             "and always delivers symmetric biphasic pulses; use symmetric_biphasic")
        return value

    @model_validator(mode="after")
    def _charge(self) -> "StimulationChannel":
        charge = limits.charge_per_phase_uc(self.amplitude_ma, self.pulse_width_us)
        if charge > limits.CHARGE_PER_PHASE_MAX_UC:
            raise ValueError(
                f"amplitude_ma × pulse_width_us = {charge:g} µC per phase; "
                f"allowed ≤ {limits.CHARGE_PER_PHASE_MAX_UC:g} µC")
        return self


class Envelope(_Model):
    """Shape of one burst: ramp up, plateau, extension after heel strike, ramp down.

    The four times have no default: they shape every burst, so a profile states them
    (a missing one is refused with what to add)."""

    ramp_up_ms: Int = Field(..., ge=0, le=limits.RAMP_MS_MAX)
    ramp_down_ms: Int = Field(..., ge=0, le=limits.RAMP_MS_MAX)
    extension_ms: Int = Field(..., ge=0, le=limits.EXTENSION_MS_MAX,
                              description="plateau kept after heel strike, ms")
    max_stim_ms: Int = Field(..., ge=100, le=limits.MAX_STIM_MS_MAX,
                             description="no burst lasts longer, ms (ramps included)")
    cutoff: CutoffMode = Field(CutoffMode.RAMP_DOWN,
                               description="at max_stim_ms: ramp down in time, or drop to zero")

    @model_validator(mode="after")
    def _ramps_fit(self) -> "Envelope":
        if self.ramp_up_ms + self.ramp_down_ms > self.max_stim_ms:
            raise ValueError(
                f"ramp_up_ms + ramp_down_ms = {self.ramp_up_ms + self.ramp_down_ms} ms; "
                f"allowed ≤ max_stim_ms ({self.max_stim_ms} ms)")
        return self


class HeelTrigger(_Model):
    """Heel (force sensor) detector. Thresholds follow a slowly decaying peak of
    the stance heel force, so they adapt to body weight and sensor placement.

    heel-off: force < max(off_min_n, off_fraction × peak) for debounce_ms.
    heel strike: force > max(on_min_n, on_fraction × peak) for debounce_ms.
    """

    off_fraction: Real = Field(0.04, ge=0.0, le=0.9)   # chosen by CV by subject (docs/detection.md)
    on_fraction: Real = Field(0.10, ge=0.05, le=0.95)  # chosen by CV by subject (docs/detection.md)
    off_min_n: Real = Field(3.0, ge=0.0, le=500.0)
    on_min_n: Real = Field(18.0, ge=1.0, le=800.0)     # a light heel contact (docs/detection.md)
    debounce_ms: Int = Field(30, ge=0, le=100)
    peak_decay_s: Real = Field(2.0, ge=1.0, le=60.0,
                                description="time constant of the stance peak tracker, s")
    filter_hz: Real = Field(20.0, ge=2.0, le=100.0, description="low-pass cut-off, Hz")
    stuck_ms: Int = Field(5000, ge=1000, le=60000,
                          description="a heel reading unchanged this long while loaded (or through "
                                      "stuck_imu_strides IMU strides) is a stuck sensor, ms")
    stuck_imu_strides: Int = Field(3, ge=1, le=20,
                                   description="strides the IMU sees while the heel reading stays frozen "
                                               "at its unloaded level that make it a stuck sensor")
    floor_window_ms: Int = Field(3000, ge=1000, le=4000,
                                 description="the unloaded (swing) level is the lowest heel force of this "
                                             "window: at least one stride of slow walking, ms")
    floor_max_fraction: Real = Field(0.10, ge=0.0, le=0.5,
                                     description="that minimum counts as the unloaded level only below this "
                                                 "fraction of the loaded peak (else the heel did not unload)")
    floor_max_n: Real = Field(20.0, ge=0.0, le=200.0,
                              description="nor above this force, unless a flat plateau (floor_flat_n) confirms "
                                          "it as the sensor's preload, N")
    floor_walk_fraction: Real = Field(0.05, ge=0.0, le=0.2,
                                      description="once learn_strides strides are learned, that minimum also stays "
                                                  "under this fraction of the walking stance peak (the swing residual "
                                                  "scales with the sensor and the walker; 0: off)")
    floor_flat_n: Real = Field(4.0, ge=0.0, le=20.0,
                               description="a heel force held within this band for floor_flat_ms (at most "
                                           "max_stim_ms), below floor_flat_max_fraction of the peak, then loaded "
                                           "again, is a swing: its level (the sensor's preload) may be the floor "
                                           "above floor_max_n (0: never), N")
    floor_flat_ms: Int = Field(200, ge=50, le=1000,
                               description="how long that plateau must hold (a swing holds 300 ms or more), ms")
    floor_flat_max_fraction: Real = Field(0.30, ge=0.0, le=0.5,
                                          description="a plateau-confirmed floor stays below this fraction of the "
                                                      "loaded peak (never below floor_max_fraction)")
    on_max_fraction: Real = Field(0.5, ge=0.1, le=0.95,
                                  description="the heel-strike threshold never exceeds this fraction (or on_fraction, "
                                              "if larger) of the peak above the floor (weak heels load past it)")
    swing_fraction: Real = Field(0.38, ge=0.15, le=0.5,
                                 description="swing time as a fraction of the stride, used to place toe-off "
                                             "inside the learned heel-unloaded time")
    onset_lead_ms: Int = Field(140, ge=0, le=300,
                               description="the onset is placed this long before the predicted toe-off, ms")
    max_onset_delay_ms: Int = Field(200, ge=0, le=400,
                                    description="the learned onset delay after heel-off never exceeds this "
                                                "(0: no delay, onset at heel-off), ms")
    learn_strides: Int = Field(3, ge=1, le=20,
                               description="strides learned before the onset delay applies (cold start: none)")
    light_strike_n: Real = Field(6.0, ge=0.0, le=50.0,
                                 description="heel mode: once a burst's heel has been unloaded as long as the "
                                             "walker's learned heel-unloaded time, a rise this far above its lowest "
                                             "level since the heel-off is a (light) heel strike; the next heel-off "
                                             "is below half that rise (0: off), N")

    @model_validator(mode="after")
    def _hysteresis(self) -> "HeelTrigger":
        if self.on_fraction <= self.off_fraction:
            raise ValueError(f"on_fraction ({self.on_fraction:g}) must be above off_fraction "
                             f"({self.off_fraction:g}) so the detector has hysteresis")
        if self.on_min_n <= self.off_min_n:
            raise ValueError(f"on_min_n ({self.on_min_n:g} N) must be above off_min_n "
                             f"({self.off_min_n:g} N) so the detector has hysteresis")
        return self


class TiltTrigger(_Model):
    """Tilt (inertial) detector on the sagittal toe-up rotation rate.

    Onset: after at least min_stance_ms of quiet stance, the rotation rate falls
    below -onset_rate_dps (the push-off between heel-off and toe-off) for
    debounce_ms. Swing is confirmed when it rises above swing_rate_dps; heel strike
    is the first fall below strike_rate_dps after that.
    """

    mounting: Literal["foot"] = Field("foot", description="where the IMU is worn; only the foot is supported")

    @field_validator("mounting", mode="before")
    @classmethod
    def _foot_only(cls, value: Any) -> Any:
        if value == "shank":
            raise ValueError("not supported: the tilt detector's rules and thresholds are for an IMU on "
                             "the foot (docs/detection.md); mount it on the foot and write mounting: foot")
        return value
    onset_rate_dps: Real = Field(60.0, ge=10.0, le=500.0)
    swing_rate_dps: Real = Field(100.0, ge=20.0, le=1000.0)
    strike_rate_dps: Real = Field(0.0, ge=-300.0, le=100.0)
    stance_rate_dps: Real = Field(40.0, ge=5.0, le=300.0,
                                   description="|rate| below this counts as quiet stance, deg/s")
    disarm_rate_dps: Real = Field(40.0, ge=5.0, le=1000.0,
                                   description="toe-up rate that, while armed, means a swing began without "
                                               "a detected push-off: wait for the next stance, deg/s")
    swing_wait_ms: Int = Field(400, ge=100, le=1000,
                               description="after an onset, the swing must show within this time, "
                                           "else the stride ends (ms)")
    max_yaw_ratio: Real = Field(2.0, ge=0.1, le=100.0,
                                 description="an onset needs |yaw rate| ≤ this × |toe-down rate|: a foot "
                                             "pivoting in a turn is not a push-off")
    min_stance_ms: Int = Field(100, ge=0, le=2000)
    debounce_ms: Int = Field(10, ge=0, le=100)
    filter_hz: Real = Field(15.0, ge=2.0, le=100.0, description="low-pass cut-off, Hz")

    adapt_fraction: Real = Field(0.5, ge=0.0, le=1.0,
                                 description="onset (swing) threshold = this fraction of the walker's recent "
                                             "push-off (swing) peak when that is below the fixed one; 0: fixed")
    onset_min_dps: Real = Field(30.0, ge=10.0, le=500.0,
                                description="the adapted onset threshold never goes below this, deg/s")
    swing_min_dps: Real = Field(50.0, ge=20.0, le=1000.0,
                                description="the adapted swing threshold never goes below this, deg/s")
    learn_strides: Int = Field(3, ge=1, le=20,
                               description="strides learned before the thresholds adapt (cold start: fixed)")
    onset_raise_fraction: Real = Field(0.25, ge=0.0, le=1.0,
                                       description="the onset threshold rises to this fraction of the walker's "
                                                   "recent push-off peak (never above onset_max_dps): a heel-strike "
                                                   "slap is not a push-off of a strong walker; 0: off")
    onset_max_dps: Real = Field(80.0, ge=10.0, le=500.0,
                                description="the raised onset threshold never goes above this, deg/s")
    late_onset_dps: Real = Field(50.0, ge=0.0, le=500.0,
                                 description="tilt mode: a toe-up rate above this (and above disarm_rate_dps) "
                                             "with no push-off seen is a weak step's swing: onset then, if the "
                                             "stance before it did not pivot; 0: off (deg/s)")
    late_stance_yaw_dps: Real = Field(100.0, ge=5.0, le=1000.0,
                                      description="a late onset needs |yaw rate| below this throughout the quiet "
                                                  "stance before it: a foot pivoting in a turn is not stepping (deg/s)")
    late_pivot_deg: Real = Field(0.0, ge=0.0, le=90.0,
                                 description="tilt mode: after a stance that pivoted (above late_stance_yaw_dps), "
                                             "a late onset once the toes have rotated up by this much since they "
                                             "began to rise: a turning step's swing, not a pivot's toe rise; "
                                             "0: none after a pivot (deg)")

    @model_validator(mode="after")
    def _order(self) -> "TiltTrigger":
        if self.strike_rate_dps >= self.swing_rate_dps:
            raise ValueError(f"strike_rate_dps ({self.strike_rate_dps:g}) must be below "
                             f"swing_rate_dps ({self.swing_rate_dps:g}) so the detector has hysteresis")
        if self.strike_rate_dps >= self.swing_min_dps:
            raise ValueError(f"strike_rate_dps ({self.strike_rate_dps:g}) must be below "
                             f"swing_min_dps ({self.swing_min_dps:g}) so the adapted detector keeps hysteresis")
        return self


class Trigger(_Model):
    mode: TriggerMode = TriggerMode.HEEL
    heel: HeelTrigger = HeelTrigger()
    tilt: TiltTrigger = TiltTrigger()


class PatientBounds(_Model):
    """What the patient may change: amplitude within [amplitude_min_ma, amplitude_max_ma]."""

    amplitude_min_ma: Real = Field(..., ge=0, le=limits.AMPLITUDE_MAX_MA)
    amplitude_max_ma: Real = Field(..., gt=0, le=limits.AMPLITUDE_MAX_MA)
    step_ma: Real = Field(1.0, ge=0.5, le=10.0)
    min_step_interval_ms: Int = Field(300, ge=0, le=5000,
                                      description="rate limit between two intensity steps, ms")
    adjust: Literal["together", "per_channel"] | None = Field(
        None, description="with extra_channels: +/- steps every channel at once (together) or the one "
                          "channel chosen (per_channel); required then, not used with one channel")

    @model_validator(mode="after")
    def _range(self) -> "PatientBounds":
        if self.amplitude_min_ma > self.amplitude_max_ma:
            raise ValueError(f"amplitude_min_ma ({self.amplitude_min_ma:g}) must not exceed "
                             f"amplitude_max_ma ({self.amplitude_max_ma:g})")
        return self


class GaitEvent(str, enum.Enum):
    """The gait event a timed channel's burst is placed after."""

    HEEL_OFF = "heel_off"
    HEEL_STRIKE = "heel_strike"


class ChannelTiming(_Model):
    """When a timed channel stimulates: ``onset_ms`` after the gait event ``after``, for
    ``duration_ms`` in all (its own ramps included), e.g. a second muscle of a two-channel
    set-up (Odstock Pace XL, MyGait) with its own offset from heel-off or heel strike.

    A burst is placed on the event's sample and ends by itself; a new event while it runs is
    ignored (no burst is restarted). Pausing or stopping walking ramps it down at once."""

    after: GaitEvent = Field(..., description="gait event the burst is placed after")
    onset_ms: Int = Field(..., ge=0, le=limits.TIMED_ONSET_MS_MAX, description="delay after that event, ms")
    duration_ms: Int = Field(..., ge=100, le=limits.MAX_STIM_MS_MAX,
                             description="burst length from its onset, ramps included, ms")
    ramp_up_ms: Int = Field(..., ge=0, le=limits.RAMP_MS_MAX)
    ramp_down_ms: Int = Field(..., ge=0, le=limits.RAMP_MS_MAX)

    @model_validator(mode="after")
    def _ramps_fit(self) -> "ChannelTiming":
        if self.ramp_up_ms + self.ramp_down_ms > self.duration_ms:
            raise ValueError(f"ramp_up_ms + ramp_down_ms = {self.ramp_up_ms + self.ramp_down_ms} ms; "
                             f"allowed ≤ duration_ms ({self.duration_ms} ms)")
        return self


class ExtraChannel(_Model):
    """A further stimulation channel: its own amplitude, pulse width and patient bounds, at the
    device's one frequency (``stimulation.frequency_hz``). Without ``timing`` it follows the
    gait envelope of ``stimulation`` (heel-off ramp up … ramp down after the extension); with
    ``timing`` it makes its own burst relative to a gait event."""

    channel: Int = Field(..., ge=1, le=limits.CHANNEL_MAX, description="stimulator channel, 1-based")
    muscle: str = Field("", max_length=80, description="what it stimulates, for people reading the profile")
    amplitude_ma: Real = Field(..., gt=0, le=limits.AMPLITUDE_MAX_MA,
                                description="current at the channel's plateau, mA")
    pulse_width_us: Int = Field(..., ge=limits.PULSE_WIDTH_MIN_US, le=limits.PULSE_WIDTH_MAX_US,
                                description="width of one phase, µs")
    patient: PatientBounds = Field(..., description="what the patient may change on this channel")
    timing: ChannelTiming | None = Field(None, description="own burst timing; absent: follows the gait envelope")

    @model_validator(mode="after")
    def _checks(self) -> "ExtraChannel":
        charge = limits.charge_per_phase_uc(self.amplitude_ma, self.pulse_width_us)
        if charge > limits.CHARGE_PER_PHASE_MAX_UC:
            raise ValueError(f"amplitude_ma × pulse_width_us = {charge:g} µC per phase; "
                             f"allowed ≤ {limits.CHARGE_PER_PHASE_MAX_UC:g} µC")
        if self.patient.adjust is not None:
            raise ValueError("patient.adjust belongs in the top-level patient section, not in a channel's")
        if self.patient.amplitude_max_ma > self.amplitude_ma:
            raise ValueError(f"patient.amplitude_max_ma ({self.patient.amplitude_max_ma:g} mA) must not exceed "
                             f"amplitude_ma ({self.amplitude_ma:g} mA)")
        return self


class Training(_Model):
    """Cyclic exercise stimulation while seated."""

    on_s: Real = Field(5.0, ge=1.0, le=30.0)
    off_s: Real = Field(10.0, ge=1.0, le=120.0)
    ramp_up_ms: Int = Field(1000, ge=0, le=limits.RAMP_MS_MAX)
    ramp_down_ms: Int = Field(1000, ge=0, le=limits.RAMP_MS_MAX)
    session_min: Real = Field(15.0, gt=0, le=limits.TRAINING_SESSION_MIN_MAX)

    @model_validator(mode="after")
    def _ramps_fit(self) -> "Training":
        if (self.ramp_up_ms + self.ramp_down_ms) / 1000.0 > self.on_s:
            raise ValueError(f"ramp_up_ms + ramp_down_ms = {self.ramp_up_ms + self.ramp_down_ms} ms; "
                             f"allowed ≤ on_s ({self.on_s:g} s)")
        return self


class Realtime(_Model):
    """Real-time hardening of ``fes run`` on a dedicated device (docs/realtime.md).

    Applied when ``enabled`` or with ``fes run --rt``; each setting is reported as granted
    or not. ``required`` refuses to start when any is not granted (a dedicated device).
    """

    enabled: StrictBool = Field(False, description="apply on every `fes run` (else only with --rt)")
    required: StrictBool = Field(False, description="refuse to run when a setting is not granted")
    lock_memory: StrictBool = Field(True, description="mlockall(MCL_CURRENT|MCL_FUTURE): no page faults")
    fifo_priority: Int = Field(50, ge=0, le=99, description="SCHED_FIFO priority of the loop, 1..99; 0 = off")
    cpus: list[Annotated[int, Strict(), Field(ge=0, le=1023)]] = Field(
        [], description="CPUs the loop runs on (sched_setaffinity); empty = any")
    freeze_gc: StrictBool = Field(True, description="gc.freeze() + gc.disable() while the loop runs")

    @model_validator(mode="after")
    def _unique_cpus(self) -> "Realtime":
        if len(set(self.cpus)) != len(self.cpus):
            raise ValueError(f"cpus {list(self.cpus)} lists a CPU twice")
        return self


class AdaptiveTarget(_Model):
    """The foot pitch a swing should reach (deg to the ground, toe-up positive, 0 at the
    foot-flat before the swing), as the device measures it (docs/adaptive.md): at
    mid-swing (``adaptive.mid_swing_fraction`` of the time from the onset to the heel
    strike) and at the heel strike. Set per walker from a reference walk: the
    normal mid-swing pitch differs by more than 10° between walkers. With ``curve_deg`` also
    along a path of evenly spaced points from ``curve_from_fraction`` to the heel strike."""

    mid_swing_deg: Real = Field(..., ge=-60.0, le=60.0)
    heel_strike_deg: Real = Field(..., ge=-60.0, le=80.0)
    late_swing_deg: Real | None = Field(None, ge=-60.0, le=80.0,
                                        description="optional third point, at adaptive.late_swing_fraction: "
                                                    "a foot that rises late drags its toes there")
    curve_deg: list[Annotated[float, Strict(), AllowInfNan(False), Field(ge=-60.0, le=80.0)]] | None = Field(
        None, min_length=2, max_length=21,
        description="optional target path: the pitch at len(curve_deg) evenly spaced fractions from "
                    "curve_from_fraction to 1 (the heel strike), same time base; the toes catch "
                    "wherever the foot is low in swing, not only at the points above")
    curve_from_fraction: Real = Field(0.65, ge=0.3, le=0.95,
                                      description="first fraction of the time from onset to heel strike "
                                                  "where curve_deg is read")

    def curve_fractions(self) -> list[float]:
        """Where ``curve_deg`` is read (fractions of the time from onset to heel strike,
        evenly spaced, the last 1.0); [] without a curve."""
        if self.curve_deg is None:
            return []
        n, a = len(self.curve_deg), float(self.curve_from_fraction)
        return [a + (1.0 - a) * i / (n - 1) for i in range(n)]


class AdaptiveSwing(_Model):
    """The swing lengths the learning trusts; a swing outside them freezes the learning
    (a short one with the foot below target is an early toe contact: more current)."""

    min_ms: Int = Field(..., ge=100, le=2000)
    max_ms: Int = Field(..., ge=150, le=limits.MAX_STIM_MS_MAX)
    max_change_fraction: Real = Field(0.35, ge=0.05, le=1.0,
                                      description="and within this fraction of the median of the last "
                                                  "accepted swings")

    @model_validator(mode="after")
    def _ordered(self) -> "AdaptiveSwing":
        if self.min_ms >= self.max_ms:
            raise ValueError(f"min_ms ({self.min_ms}) must be below max_ms ({self.max_ms})")
        return self


class AdaptiveSaturation(_Model):
    """The wind-up guard: when the amplitudes of the last ``window_strides`` learning strides
    spanned at least ``min_span_ma`` and the foot rose less than ``min_lift_deg_per_ma`` per
    mA over them (least squares of the pitch error on the amplitude), more current no longer
    lifts the foot (recruitment saturated, or a fatigued muscle at its floor): the learning
    stops climbing, and the limit comes down ``descend_ma`` per stride from the lowest
    amplitude of that window until the foot loses more than ``knee_tol_deg`` of the lift it
    had, then holds there (just below that knee at worst). Fatigue alone moves the amplitude far less than
    ``min_span_ma`` in a window. Every ``probe_strides`` strides it allows one ``max_step_ma``
    more; a foot that answers again ends the hold."""

    window_strides: Int = Field(10, ge=3, le=50)
    min_span_ma: Real = Field(3.0, gt=0.0, le=20.0)
    min_lift_deg_per_ma: Real = Field(0.5, ge=0.0, le=20.0)
    probe_strides: Int = Field(60, ge=5, le=100_000)
    descend_ma: Real = Field(0.25, gt=0.0, le=5.0, description="limit lowered per stride toward the knee, mA")
    knee_tol_deg: Real = Field(1.0, gt=0.0, le=20.0,
                               description="mean error rise over 4 strides that marks the knee, deg")
    creep_window_strides: Int | None = Field(None, ge=10, le=400,
                                             description="also test this many last learning strides "
                                                         "(None: no): a climb too slow to span "
                                                         "min_span_ma in window_strides")


class AdaptiveBand(_Model):
    """The band near target (docs/adaptive.md, "The band"). A stride whose foot is more than
    ``proportional_beyond_deg`` below target moves the amplitude by the proportional law at
    once (the climb from the conservative start, a lost lift). Within the band only the
    median error of the last ``adaptive.error_median_strides`` learning strides moves it, at
    ``gain_ma_per_deg``, up and down alike: the amplitude settles where half the strides are
    above target, and the strides of a walk that no current lifts to target (a few in every
    cycle of a walker's strides) no longer ratchet it up."""

    gain_ma_per_deg: Real = Field(..., gt=0.0, le=5.0, description="mA per degree of median error in the band")
    proportional_beyond_deg: Real = Field(..., ge=1.0, le=40.0,
                                          description="a stride this far below target: the proportional "
                                                      "law, deg")


class AdaptiveFloor(_Model):
    """Memory of a current found too low (docs/adaptive.md, "The floor"). After the walk first
    reached its target, a stride whose foot fell more than ``beyond_deg`` below target shows
    that the amplitude it was stimulated with is too low for some of the walker's strides
    (a walker's hardest strides come back every few dozen strides). For the next ``strides``
    learning strides the current does not come down below that amplitude plus ``fraction`` of
    the step the law took after it; a new such stride renews it. The floor only holds a
    decrease back (never raises, never leaves the bounds, never steps more than the law did)."""

    beyond_deg: Real = Field(6.0, ge=1.0, le=40.0, description="a stride this far below target sets the floor, deg")
    fraction: Real = Field(0.5, ge=0.0, le=1.0,
                           description="floor = used amplitude + this share of the step up taken after it")
    strides: Int = Field(100, ge=1, le=100_000, description="learning strides the floor lasts")


class AdaptiveApproach(_Model):
    """The first climb of a walk from its conservative start, until a stride reaches its
    target (error within the deadband, or the foot above target). Seel et al. 2016 reach the
    target in one or two strides. While approaching, the proportional law acts also inside
    the band (the band's median step would slow the climb's last degrees to tenths of a mA
    per stride). On the stride that first reaches target with the foot more than
    ``secant_overshoot_deg`` above it, the next amplitude goes ``secant_fraction`` of the way
    down to where the line (secant) through that stride and the last one below target crosses
    the target, at most ``max_step_ma`` lower. With ``newton_min_lift_deg_per_ma`` a stride
    still below target steps by its error over the lift per mA measured between it and the
    last learning stride (the recruitment slope of this foot, not a fixed gain), at most
    ``max_step_ma``."""

    secant_overshoot_deg: Real = Field(2.0, ge=0.0, le=40.0,
                                       description="overshoot past target on the first stride that "
                                                   "reaches it that is corrected by the secant, deg")
    secant_fraction: Real = Field(0.5, gt=0.0, le=1.0,
                                  description="share of the way down to the secant's crossing taken: "
                                              "a steep foot's lift is convex in the current, so the "
                                              "full secant step lands below target")
    settle_within_deg: Real | None = Field(None, ge=0.0, le=20.0,
                                           description="the approach (proportional law in the band, both "
                                                       "ways) lasts until a stride is within this of "
                                                       "target (None: until the first stride reaches it), deg")
    newton_min_lift_deg_per_ma: Real | None = Field(
        None, gt=0.0, le=100.0,
        description="a foot below target climbs by its error over the lift per mA the last two learning "
                    "strides measured (a Newton step), when that lift is at least this; else (or None) "
                    "by gain_ma_per_deg, deg/mA")
    newton_min_span_ma: Real = Field(0.5, gt=0.0, le=20.0,
                                     description="the two strides' amplitudes differ at least this for "
                                                 "the Newton step, mA")


class AdaptiveOnsetDelay(_Model):
    """The learned onset delay (docs/adaptive.md, "The onset delay"): after the detected push-off
    the output stays zero this long before the ramp starts. Physical reason: the push-off the
    detector fires on starts 80-200 ms before the toes leave the ground; current in that time
    only builds activation the foot, still on the ground, does not need, and costs charge.
    The delay may only lower the output (no burst is longer or stronger for it).

    Per stride (event level): it lengthens by ``step_ms`` while the stride's pitch error stays
    within ``lengthen_within_deg`` of target; it halves at once on a stride more than
    ``back_off_beyond_deg`` below target (overall or at mid-swing) or an early contact with the
    foot low; it never exceeds ``max_ms`` nor ``push_off`` − ``lead_ms``, where ``push_off`` is
    the median time from the onset to the fastest toe-down rotation of the push-off (measured by
    the foot IMU, just before toe-off) over the last strides: the ramp must start that long
    before the toes leave the ground. Cold start 0 ms; frozen strides hold it; it lengthens only
    after the walk's first climb, at most once per ``lengthen_every_strides``, and is 0 while
    the wind-up guard holds the current."""

    max_ms: Int = Field(..., ge=0, le=limits.ONSET_DELAY_MS_MAX,
                        description="the learned delay never exceeds this, ms")
    step_ms: Int = Field(10, ge=1, le=50, description="lengthened by this per stride, ms")
    lead_ms: Int = Field(80, ge=0, le=300,
                         description="the ramp starts at least this long before the push-off's fastest "
                                     "toe-down rotation (the toes leave the ground just after), ms")
    lengthen_within_deg: Real = Field(2.0, ge=0.0, le=20.0,
                                      description="lengthen only after a stride this close to (or above) "
                                                  "target, deg")
    back_off_beyond_deg: Real = Field(6.0, ge=0.5, le=40.0,
                                      description="a stride this far below target, overall or at mid-swing, "
                                                  "halves the delay at once, deg")
    lengthen_every_strides: Int = Field(10, ge=1, le=1000,
                                        description="lengthened at most once per this many learning strides "
                                                    "(the wind-up guard fits its lift per mA at one delay)")
    hold_strides: Int = Field(20, ge=0, le=10_000,
                              description="after a back-off the delay does not lengthen for this many "
                                          "learning strides")


class Adaptive(_Model):
    """Stride-to-stride learning of the plateau amplitude from the foot's own pitch in swing
    (run-to-run learning, Seel et al. 2016; docs/adaptive.md). Off unless ``enabled``; when
    enabled, the target, gain, step limit and swing range must all be written (no default
    for what sets the current). The amplitude never leaves [patient.amplitude_min_ma,
    patient.amplitude_max_ma]; each walk starts at amplitude_min_ma."""

    enabled: StrictBool = Field(False, description="learn the amplitude each stride (needs a foot IMU)")
    target: AdaptiveTarget | None = None
    gain_ma_per_deg: Real | None = Field(None, gt=0.0, le=5.0,
                                         description="amplitude change per degree of pitch error, mA/deg")
    max_step_ma: Real | None = Field(None, gt=0.0, le=10.0,
                                     description="largest amplitude change from one stride to the next, mA")
    decrease_fraction: Real = Field(0.25, gt=0.0, le=1.0,
                                    description="a foot above target lowers the current at this fraction "
                                                "of the gain: a stride's own variation must not take away "
                                                "the lift the next stride needs")
    deadband_deg: Real = Field(0.5, ge=0.0, le=5.0, description="errors this small change nothing, deg")
    error_median_strides: Int = Field(1, ge=1, le=9,
                                      description="the median error of this many last learning strides "
                                                  "sets the change (1: the stride's own): one stride the "
                                                  "walker happened to lift high or low moves nothing")
    swing: AdaptiveSwing | None = None
    approach: AdaptiveApproach | None = Field(None, description="the first climb of a walk (None: the "
                                              "same law as later strides)")
    band: AdaptiveBand | None = Field(None, description="near target, step toward a share of strides below "
                                      "target instead of the proportional law (None: proportional throughout)")
    floor: AdaptiveFloor | None = Field(None, description="after a stride fell far below target, hold the "
                                        "current above the amplitude that let it fall for a while (None: no)")
    saturation: AdaptiveSaturation | None = Field(None, description="wind-up guard (None: none): stop "
                                                  "climbing when more current no longer lifts the foot")
    onset_delay: AdaptiveOnsetDelay | None = Field(None, description="learn a zero-output delay between "
                                                   "the detected push-off and the ramp (None: none, the "
                                                   "ramp starts at the push-off)")
    mid_swing_fraction: Real = Field(0.65, ge=0.3, le=0.9,
                                     description="mid-swing as a fraction of the time from the onset "
                                                 "(push-off) to the heel strike")
    late_swing_fraction: Real = Field(0.85, ge=0.5, le=0.98,
                                      description="where target.late_swing_deg is read, same time base")
    foot_flat_rate_dps: Real = Field(30.0, ge=5.0, le=200.0,
                                     description="|toe-up rate| below this counts as a still foot, deg/s")
    foot_flat_ms: Int = Field(80, ge=20, le=1000,
                              description="still this long: a foot-flat, where the pitch is reset to 0, ms")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> "Adaptive":
        if self.enabled:
            missing = [name for name in ("target", "gain_ma_per_deg", "max_step_ma", "swing")
                       if getattr(self, name) is None]
            if missing:
                raise ValueError("enabled: true needs " + ", ".join(missing)
                                 + " (see configs/adaptive.yaml)")
        return self


class Device(_Model):
    """Device links and the watchdogs on them. Limits here can only be narrowed."""

    stimulator: str = Field("rehastim2", description="stimulator backend name")
    sample_rate_hz: Real = Field(100.0, ge=50.0, le=1000.0, description="expected sensor rate")
    stale_ms: Int = Field(100, ge=10, le=limits.STALE_MS_MAX,
                          description="sensor data older than this is a fault, ms")
    max_missing_frames: Int = Field(5, ge=0, le=limits.MAX_MISSING_FRAMES_MAX)
    ack_timeout_ms: Int = Field(100, ge=20, le=500)
    keepalive_ms: Int = Field(300, ge=50, le=500)
    realtime: Realtime = Realtime()


class Profile(_Model):
    """A patient's complete stimulation profile."""

    schema_version: Literal[1] = 1
    name: str = Field("default", min_length=1, max_length=80)
    patient_id: str | None = Field(None, max_length=80)
    side: Literal["left", "right"] = "left"
    stimulation: StimulationChannel
    envelope: Envelope
    trigger: Trigger = Trigger()
    patient: PatientBounds
    extra_channels: list[ExtraChannel] = Field(
        [], max_length=limits.PROFILE_CHANNELS_MAX - 1,
        description="further channels (up to 3), each with its own amplitude, pulse width, patient "
                    "bounds and timing; one frequency for all (stimulation.frequency_hz)")
    training: Training = Training()
    device: Device = Device()
    adaptive: Adaptive = Adaptive()

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_a_number(cls, value: Any) -> Any:
        if type(value) is not int:        # True and 1.0 equal 1 and would pass the Literal
            raise ValueError(f"schema version 1 (a whole number) is needed, not {value!r}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> "Profile":
        problems = []
        if self.patient.amplitude_max_ma > self.stimulation.amplitude_ma:
            problems.append(
                f"patient.amplitude_max_ma ({self.patient.amplitude_max_ma:g} mA) must not exceed "
                f"stimulation.amplitude_ma ({self.stimulation.amplitude_ma:g} mA)")
        problems += self._channel_checks()
        period_ms = 1000.0 / self.device.sample_rate_hz
        if self.device.stale_ms < 2 * period_ms:
            problems.append(f"device.stale_ms ({self.device.stale_ms} ms) must be at least two "
                            f"sample periods ({2 * period_ms:g} ms at {self.device.sample_rate_hz:g} Hz)")
        if self.adaptive.enabled and not self.trigger.mode.needs_imu:
            problems.append(f"adaptive.enabled needs a foot IMU: trigger.mode {self.trigger.mode.value!r} "
                            "reads none; use tilt or heel+tilt")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _channel_checks(self) -> list[str]:
        problems = []
        numbers = [self.stimulation.channel] + [c.channel for c in self.extra_channels]
        for i, extra in enumerate(self.extra_channels):
            if extra.channel in numbers[:i + 1]:
                problems.append(f"extra_channels[{i}].channel = {extra.channel}: channel {extra.channel} is "
                                f"already used; each channel once")
            if extra.timing is not None and extra.timing.duration_ms > self.envelope.max_stim_ms:
                problems.append(f"extra_channels[{i}].timing.duration_ms ({extra.timing.duration_ms} ms) must not "
                                f"exceed envelope.max_stim_ms ({self.envelope.max_stim_ms} ms)")
        rate = self.total_charge_rate_uc_per_s
        if rate > limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S:
            problems.append(f"all channels at their plateau deliver {rate:g} µC/s (Σ amplitude_ma × "
                            f"pulse_width_us × frequency_hz / 1000); allowed ≤ "
                            f"{limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S:g} µC/s")
        if self.extra_channels and self.patient.adjust is None:
            problems.append("patient.adjust: missing (required with extra_channels): together (+/- steps every "
                            "channel) or per_channel (+/- steps the channel chosen)")
        return problems

    @property
    def channel_numbers(self) -> tuple[int, ...]:
        """Stimulator channels this profile drives: ``stimulation.channel`` first, then the extras."""
        return (self.stimulation.channel, *(c.channel for c in self.extra_channels))

    @property
    def total_charge_rate_uc_per_s(self) -> float:
        """Charge per second of every channel at its plateau, one phase per pulse (µC/s)."""
        f = self.stimulation.frequency_hz
        return limits.charge_rate_uc_per_s(self.stimulation.amplitude_ma, self.stimulation.pulse_width_us, f) + sum(
            limits.charge_rate_uc_per_s(c.amplitude_ma, c.pulse_width_us, f) for c in self.extra_channels)

    @property
    def start_amplitude_ma(self) -> float:
        """Amplitude a fresh session starts at: the top of the patient's range, or with
        adaptive stimulation its bottom (the conservative start the learning rises from)."""
        return self.patient.amplitude_min_ma if self.adaptive.enabled else self.patient.amplitude_max_ma


# --- loading and error messages ---------------------------------------------------------------

def _field_info(model: type[BaseModel], loc: tuple) -> Any:
    """The FieldInfo at ``loc`` inside ``model``, or None."""
    info = None
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = info.annotation
        args = typing.get_args(current)      # list[ExtraChannel], ChannelTiming | None
        if args:
            current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), current)
    return info


def field_bounds(info: Any) -> tuple[Any, bool, Any, bool]:
    """``(lo, lo_open, hi, hi_open)`` of a field from its constraints; None where unbounded
    (also for ``info`` None). ``*_open`` is True for a strict bound (gt/lt)."""
    lo = hi = None
    lo_open = hi_open = False
    for m in getattr(info, "metadata", ()):
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_open = m.lt, True
    return lo, lo_open, hi, hi_open


def _allowed(info: Any) -> str:
    """Human text for a field's allowed range, from its constraints."""
    if info is None:
        return ""
    lo, lo_open, hi, hi_open = field_bounds(info)
    if lo is None and hi is None:
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, enum.Enum):
            return "allowed: " + ", ".join(repr(e.value) for e in ann)
        return ""
    left = "" if lo is None else f"{lo:g} {'<' if lo_open else '≤'} "
    right = "" if hi is None else f" {'<' if hi_open else '≤'} {hi:g}"
    return f"allowed {left}x{right}"


_MISSING_SECTION_HINT = {
    "envelope": "add the burst shape, e.g. `envelope: {ramp_up_ms: 100, ramp_down_ms: 150, "
                "extension_ms: 150, max_stim_ms: 1500}` (the values of configs/default.yaml)",
}
_MISSING_FIELD_HINT = {
    ("envelope", "ramp_up_ms"): "e.g. ramp_up_ms: 100 as in configs/default.yaml",
    ("envelope", "ramp_down_ms"): "e.g. ramp_down_ms: 150 as in configs/default.yaml",
    ("envelope", "extension_ms"): "e.g. extension_ms: 150 as in configs/default.yaml",
    ("envelope", "max_stim_ms"): "e.g. max_stim_ms: 1500 as in configs/default.yaml",
}
_NUMBER_LIKE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
_SHOWN_MAX = 60


def _shown(value: Any) -> str:
    """``repr`` of a value, cut short so an error line stays one readable line."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX - 5] + " …" + text[-3:]


def _type_problem(value: Any, whole: bool) -> str:
    """Why ``value`` is not a number here, and how to write one."""
    want = "a whole number" if whole else "a number"
    if isinstance(value, bool):
        return f"{want} is needed, not a true/false value"
    if isinstance(value, str):
        if _NUMBER_LIKE.match(value):
            return f"{want} is needed, not the text {value!r}: write it without quotes"
        if re.match(r"^[-+]?0[xXoObB]", value):
            return f"{want} is needed: write it in decimal, not {value!r}"
        if re.match(r"^[-+]?\d+(:\d+)+", value):
            return f"{want} is needed, not {value!r} (no base-60 times: write the plain number)"
        return f"{want} is needed, not the text {value!r}"
    if whole and isinstance(value, float):
        return f"{want} is needed, not {value!r}"
    return f"{want} is needed, not {type(value).__name__}"


def format_validation_error(err: ValidationError, model: type[BaseModel] = Profile) -> list[str]:
    """One line per problem: field path, value, what is wrong, the allowed range."""
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if isinstance(p, str))
        # an index into a list of sections names the section (extra_channels[1].timing); one at
        # the end (a list of numbers) is left out, the value shown names the item
        scalar_item = e["loc"] and isinstance(e["loc"][-1], int) and not isinstance(e.get("input"), dict)
        parts = e["loc"][:-1] if scalar_item else e["loc"]
        path = "".join(f"[{p}]" if isinstance(p, int) else ("." if i else "") + str(p)
                       for i, p in enumerate(parts)) or "(profile)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            if len(loc) == 1 and loc[0] in _MISSING_SECTION_HINT:
                lines.append(f"{path}: missing (required section): {_MISSING_SECTION_HINT[loc[0]]}")
            elif loc in _MISSING_FIELD_HINT:
                lines.append(f"{path}: missing (required field): {_MISSING_FIELD_HINT[loc]}")
            else:
                lines.append(f"{path}: missing (required field)")
            continue
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {_shown(value)}"
        if e["type"] in ("value_error", "assertion_error") and isinstance(value, dict):
            lines.append(f"{path}: {msg}")
            continue
        if e["type"] in ("int_type", "float_type", "finite_number"):
            msg = ("a finite number is needed" if e["type"] == "finite_number"
                   else _type_problem(value, whole=e["type"] == "int_type"))
        allowed = _allowed(_field_info(model, loc))
        lines.append(f"{path}{shown}: {msg}" + (f" ({allowed})" if allowed and allowed not in msg else ""))
    return lines


def profile_from_dict(data: Any, source: str = "<profile>") -> Profile:
    """Validate ``data`` (parsed YAML or JSON) into a :class:`Profile` or raise :class:`ProfileError`.

    Numbers must be numbers: ``True``, ``"30"`` and ``30.5`` in an integer field are refused.
    """
    if not isinstance(data, dict):
        raise ProfileError(source, [f"expected a mapping of profile sections, got {type(data).__name__}"])
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        raise ProfileError(source, format_validation_error(err)) from None


def parse_profile_yaml(text: str, source: str = "<profile>") -> Any:
    """Parse profile YAML strictly (:mod:`fescontrol.core.profile_yaml`): the data, not yet validated.

    Raises :class:`ProfileError` (one line with the line number) for duplicate keys, anchors,
    aliases, tags, too deep or too large input and text that is not YAML.
    """
    try:
        return parse_profile_text(text)
    except YamlRefused as err:
        raise ProfileError(source, [str(err)]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        raise ProfileError(source, [f"not valid YAML{where}: {what}"
                                    + (f" ({context})" if context else "")]) from None
    except RecursionError:
        raise ProfileError(source, ["nested too deeply: not a profile"]) from None


def read_profile_data(path: str | Path) -> Any:
    """Read a profile file (size-checked, UTF-8) and parse it strictly; not yet validated.

    Raises :class:`ProfileError` naming the file on any problem.
    """
    path = Path(path)
    try:
        text = read_profile_file(path)
    except YamlRefused as err:
        raise ProfileError(str(path), [str(err)]) from None
    except OSError as err:
        raise ProfileError(str(path), [f"cannot read: {err.strerror or err}"]) from None
    return parse_profile_yaml(text, str(path))


def load_profile(path: str | Path) -> Profile:
    """Read and validate a YAML profile; raise :class:`ProfileError` on any problem."""
    return profile_from_dict(read_profile_data(path), str(Path(path)))


def profile_to_yaml(profile: Profile) -> str:
    """The profile as YAML text (enum values as plain strings)."""
    return yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def bundled_profile_path(name: str = "default") -> Path:
    """Path of a profile shipped in ``fescontrol.configs`` (``default``, ``pace_heel``, …).

    Read through :func:`importlib.resources.files`, so it holds for an editable install (the
    repo's ``configs/``) and a wheel alike; a package that is not on the file system (a zip)
    is extracted once per process. Raises :class:`ProfileError` for an unknown name.
    """
    root = resources.files("fescontrol.configs")
    entry = root / f"{name}.yaml"
    if not entry.is_file():
        known = sorted(e.name[:-5] for e in root.iterdir() if e.name.endswith(".yaml"))
        raise ProfileError(name, [f"no bundled profile {name!r}; known: " + ", ".join(known)])
    if isinstance(entry, Path):
        return entry
    return _BUNDLED_FILES.enter_context(resources.as_file(entry))


_BUNDLED_FILES = contextlib.ExitStack()  # extracted bundled profiles live until the process ends
atexit.register(_BUNDLED_FILES.close)


def default_profile_for(has_heel: bool, has_imu: bool) -> Path:
    """The bundled profile whose trigger mode matches the channels a sensor has."""
    if has_heel and has_imu:
        return bundled_profile_path("combined")
    if has_imu:
        return bundled_profile_path("walkaide_tilt")
    return bundled_profile_path("default")
