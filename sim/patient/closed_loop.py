"""Closed-loop batch replay: the device's controller stimulates a simulated patient.

Frame ``i`` is built only after frame ``i-1`` went through the controller (the same
kernel, gait machine and safety supervisor as ``fes run``), because the foot's motion in
sample ``i`` depends on the current the supervisor delivered so far: detection and
control interact as on a person. The current the muscle sees is what reached the
stimulator (``SafetySupervisor.delivery_listeners``), held until the next delivery.
Deterministic: no clock, no randomness beyond the patient's parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.core.profile import Profile
from .model import FootPendulum, Muscle
from .params import GaitLimits, PatientParams
from .swing import Swing, healthy_ankle_deg, swings_of
from ..recording import PITCH_AXIS, Recording
from ..replay import ReplayResult, T0_US, build_result, check_channels, recording_stream, replay_controller

_GYRO_Y_OFFSET = 21 + 2 * PITCH_AXIS     # byte offset of the pitch gyro in a frame (docs/protocol.md)
_CRC_TABLE = sp._CRC_TABLE


def _with_pitch(frame: np.ndarray, flags: int, gyro_counts: int) -> bytes:
    """The recorded ``frame`` with its flags and pitch gyro replaced and the CRC redone (one
    frame: the vectorised ``encode_frames`` costs ~0.2 ms per call, this a few µs)."""
    b = bytearray(frame.tobytes())
    b[4] = flags
    b[_GYRO_Y_OFFSET:_GYRO_Y_OFFSET + 2] = int(gyro_counts).to_bytes(2, "little", signed=True)
    crc = 0xFFFF
    for byte in b[2:31]:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    b[31:33] = crc.to_bytes(2, "little")
    return bytes(b)


@dataclass(frozen=True)
class StrideFootPitch:
    """Foot pitch (deg, toe-up positive, to the ground) of one modelled swing."""

    toe_off_s: float
    heel_strike_s: float
    min_late_swing_deg: float     # lowest from mid-swing to heel strike
    mid_swing_deg: float
    heel_strike_deg: float
    clearance_angle_deg: float    # lowest pitch that clears the ground at the closest approach
    toe_drop_m: float             # most the toes pass below the recorded path, mid-swing on
    toe_drag: bool                # toe_drop_m above the minimum toe clearance
    peak_current_ma: float        # highest current delivered during the swing

    def to_dict(self) -> dict:
        return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v)) for k, v in self.__dict__.items()}


@dataclass
class PatientRun:
    """A patient's walk: the controller's replay, the foot in every swing and the states."""

    replay: ReplayResult
    strides: list[StrideFootPitch]
    foot_pitch_deg: np.ndarray        # per sample; NaN outside modelled swings
    current_ma: np.ndarray            # delivered current held in each sample
    activation: np.ndarray
    fitness: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def toe_drag_strides(self) -> int:
        return sum(s.toe_drag for s in self.strides)


def stride_pitch(swing: Swing, pitch_deg: np.ndarray, rate_hz: float, limits: GaitLimits,
                 peak_current_ma: float) -> StrideFootPitch:
    late = pitch_deg[swing.mid():]
    late_rec = swing.recorded_pitch_deg[swing.mid():]
    drop_m = limits.toe_length_m * (np.sin(np.radians(late_rec)) - np.sin(np.radians(late)))
    worst = int(np.argmax(drop_m))
    return StrideFootPitch(swing.start / rate_hz, swing.stop / rate_hz, float(late.min()),
                           float(pitch_deg[swing.mid()]), float(pitch_deg[-1]),
                           limits.clearance_angle_deg(float(late_rec[worst])), float(drop_m[worst]),
                           bool(drop_m[worst] > limits.min_toe_clearance_m), peak_current_ma)


class PatientSimulator:
    """The patient walking one recording: call :meth:`pitch_rate` once per sample, in order,
    with the current held during that sample; it returns the foot's toe-up pitch rate."""

    def __init__(self, rec: Recording, patient: PatientParams, pulse_width_us: float, frequency_hz: float):
        self.rec = rec
        self.rate_hz = rec.rate_hz
        self.dt_s = 1.0 / rec.rate_hz
        self.recorded_rate = -rec.gyro_dps[:, PITCH_AXIS]
        self.swings = swings_of(rec)
        self.muscle = Muscle(patient, pulse_width_us, frequency_hz, rec.rate_hz)
        self.foot = FootPendulum(patient)
        n = rec.n_samples
        self.swing_at = np.full(n, -1, dtype=np.int64)
        self.landing_at = np.full(n, -1, dtype=np.int64)
        for k, s in enumerate(self.swings):
            self.swing_at[s.start:s.stop + 1] = k
            self.landing_at[s.stop + 1:s.landing_stop] = k
        self.pitch_deg = np.full(n, np.nan)
        self.activation = np.zeros(n)
        self.fitness = np.ones(n)
        self._landing_rate = 0.0

    def pitch_rate(self, i: int, current_ma: float) -> float:
        torque = self.muscle.step(current_ma, self.dt_s)
        self.activation[i] = self.muscle.activation
        self.fitness[i] = self.muscle.fitness
        k = self.swing_at[i]
        if k >= 0:
            s = self.swings[k]
            j = i - s.start
            if j == 0:
                self.foot.reset(float(healthy_ankle_deg(0.0)))
            else:
                self.foot.step(torque, s.shank_deg[j - 1], s.shank_deg[j], s.shank_acc_dps2[j], self.dt_s)
            self.pitch_deg[i] = s.shank_deg[j] + self.foot.ankle_deg
            if j == s.n - 1:
                # landing: the foot comes flat as recorded within LANDING_S (foot slap or heel first)
                error_deg = self.pitch_deg[i] - s.recorded_pitch_deg[-1]
                self._landing_rate = -error_deg / ((s.landing_stop - s.stop - 1) * self.dt_s)
            return float(s.shank_rate_dps[j] + self.foot.ankle_rate_dps)
        if self.landing_at[i] >= 0:
            return float(self.recorded_rate[i] + self._landing_rate)
        return float(self.recorded_rate[i])


def closed_loop_replay(rec: Recording, profile: Profile, patient: PatientParams, limits: GaitLimits, *,
                       implementation: str = "auto", stimulate: bool = True) -> PatientRun:
    """Walk ``rec`` as ``patient`` with the device running ``profile``, sample by sample.

    ``stimulate=False`` keeps the whole device running but gives the muscle no current
    (the patient's unassisted gait). Burst times are seconds from the recording's first sample.
    """
    check_channels(rec, profile)
    if not rec.has_imu:
        raise ValueError(f"recording {rec.name!r} has no foot IMU: the patient model moves the foot's pitch rate")
    stim = profile.stimulation
    sim = PatientSimulator(rec, patient, stim.pulse_width_us, stim.frequency_hz)
    frames, _ = recording_stream(rec, first_timestamp_us=T0_US)
    flags, *_ = sp.counts_from_units(rec.heel_n, rec.acc_ms2, rec.gyro_dps, n=rec.n_samples)
    controller, collector = replay_controller(profile, implementation=implementation)
    held = [0.0]
    controller.supervisor.delivery_listeners.append(lambda _t_us, ma: held.__setitem__(0, float(ma)))
    controller.start()
    current = np.zeros(rec.n_samples)
    for i in range(rec.n_samples):
        current[i] = held[0] if stimulate else 0.0
        rate = sim.pitch_rate(i, current[i])
        if rate == sim.recorded_rate[i]:
            controller.feed(frames[i].tobytes())
            continue
        counts = round(-rate / sp.GYRO_DPS_PER_COUNT)      # half to even, as np.rint
        flag = int(flags[i])
        if abs(counts) > 32767:
            flag |= sp.FLAG_IMU_SATURATED
        controller.feed(_with_pitch(frames[i], flag, min(32767, max(-32768, counts))))
    controller.finish()
    result = build_result(controller, collector, t0_us=T0_US)
    strides = [stride_pitch(s, sim.pitch_deg[s.start:s.stop + 1], rec.rate_hz, limits,
                            float(current[s.start:s.stop + 1].max())) for s in sim.swings]
    meta = {"stimulated": stimulate}
    if controller.adaptive is not None:
        meta["adaptive"] = list(controller.adaptive.records)
    return PatientRun(result, strides, sim.pitch_deg, current, sim.activation, sim.fitness, meta)
