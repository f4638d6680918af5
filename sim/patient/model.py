"""Muscle and foot physics of a drop-foot patient (equations and sources: docs/patient-model.md).

:class:`Muscle` turns the delivered stimulation current into tibialis anterior torque:
recruitment from the charge per pulse (Veltink et al. 1992), a force-frequency factor, an
electromechanical delay, first-order activation dynamics and a Riener-type fatigue state.
:class:`FootPendulum` is the foot as a rigid body rotating about the ankle of a moving shank
(Benoussaad et al. 2013): inertia, gravity, passive elastic and viscous ankle torque, the
end-range stops of the joint and the muscle torque.

Invariants (checked by tests/test_patient_model.py for any parameters and current trace):
activation and recruitment stay in [0, 1], fitness in [min_fitness, 1], the ankle angle
finite. Exact exponential updates keep the first two bounded for any step size.
"""
from __future__ import annotations

import math
from collections import deque

from .params import PatientParams

GRAVITY_MS2 = 9.80665
DEG = math.pi / 180.0

#: Anatomical range of the ankle in swing (deg, dorsiflexion positive) and the stiffness of
#: the ligament/bony stop beyond it: the foot cannot fold through the shin.
ANKLE_MIN_DEG = -45.0
ANKLE_MAX_DEG = 30.0
END_STOP_STIFFNESS_NM_PER_RAD = 40.0
#: Largest integration sub-step of the pendulum (s): well below the stiffest period
#: (2π·sqrt(J/K_stop) ≈ 0.1 s) for any bundled foot.
MAX_SUBSTEP_S = 0.0005


def recruitment(current_ma: float, pulse_width_us: float, p: PatientParams) -> float:
    """Fraction of the muscle recruited, in [0, 1]: piecewise linear in the charge per pulse
    (mA × µs = nC) between ``threshold_charge_nc`` (0) and ``saturation_charge_nc`` (1)."""
    charge_nc = current_ma * pulse_width_us
    r = (charge_nc - p.threshold_charge_nc) / (p.saturation_charge_nc - p.threshold_charge_nc)
    return 0.0 if not r > 0.0 else (1.0 if r > 1.0 else r)


def frequency_factor(frequency_hz: float, p: PatientParams) -> float:
    """Twitch summation at ``frequency_hz``: x²/(1+x²) with x = f / fusion_frequency_hz, in [0, 1)."""
    x2 = (frequency_hz / p.fusion_frequency_hz) ** 2
    return x2 / (1.0 + x2)


class Muscle:
    """Tibialis anterior under surface stimulation, stepped once per sensor sample.

    ``step(current_ma, dt_s)`` takes the current the stimulator held during the step and
    returns the dorsiflexion torque (N·m, >= 0). The stimulation pulse width and frequency
    are those of the profile (fixed per session)."""

    def __init__(self, p: PatientParams, pulse_width_us: float, frequency_hz: float, rate_hz: float):
        self.p = p
        self.pulse_width_us = float(pulse_width_us)
        self.freq = frequency_factor(frequency_hz, p)
        self.delay_samples = int(round(p.electromechanical_delay_ms / 1000.0 * rate_hz))
        self._delay = deque([0.0] * self.delay_samples)
        self.activation = 0.0
        self.fitness = 1.0

    def drive(self, current_ma: float) -> float:
        """Neural-equivalent drive of a current, in [0, 1] (recruitment × frequency factor)."""
        return recruitment(current_ma, self.pulse_width_us, self.p) * self.freq

    def step(self, current_ma: float, dt_s: float) -> float:
        p = self.p
        u = self.drive(current_ma)
        if self.delay_samples:
            self._delay.append(u)
            u = self._delay.popleft()
        tau_s = (p.activation_time_constant_ms if u > self.activation else p.deactivation_time_constant_ms) / 1000.0
        self.activation += (u - self.activation) * (1.0 - math.exp(-dt_s / tau_s))
        a = self.activation
        # Riener-type fitness: decays toward min_fitness in proportion to activation,
        # recovers toward 1 at rest; a linear ODE over the step, solved exactly.
        k_fat = a / p.fatigue_time_constant_s
        k_rec = (1.0 - a) / p.recovery_time_constant_s
        k = k_fat + k_rec
        f_inf = (p.min_fitness * k_fat + k_rec) / k
        self.fitness = f_inf + (self.fitness - f_inf) * math.exp(-k * dt_s)
        return self.torque_nm

    @property
    def torque_nm(self) -> float:
        return self.p.max_torque_nm * self.activation * self.fitness


class FootPendulum:
    """The foot about the ankle during swing; angles in rad inside, deg at the interface.

    ``ankle`` is the ankle angle (dorsiflexion positive), the foot's pitch to the ground is
    shank + ankle (toe-up positive). The shank's motion is given (from the recording); the
    equation in the inertial frame is
    J·(ankle'' + shank'') = τ_TA − m·g·d·cos(shank + ankle) − K·(ankle − rest) − B·ankle' + τ_stop.
    """

    def __init__(self, p: PatientParams):
        self.p = p
        self.ankle = 0.0
        self.ankle_rate = 0.0
        self._mgd = p.foot_mass_kg * GRAVITY_MS2 * p.foot_com_distance_m
        self._rest = p.passive_rest_angle_deg * DEG

    def reset(self, ankle_deg: float, ankle_rate_dps: float = 0.0) -> None:
        self.ankle = ankle_deg * DEG
        self.ankle_rate = ankle_rate_dps * DEG

    def passive_torque_nm(self, ankle: float, ankle_rate: float) -> float:
        p = self.p
        tau = -p.passive_stiffness_nm_per_rad * (ankle - self._rest) - p.passive_damping_nms_per_rad * ankle_rate
        lo, hi = ANKLE_MIN_DEG * DEG, ANKLE_MAX_DEG * DEG
        if ankle < lo:
            tau += END_STOP_STIFFNESS_NM_PER_RAD * (lo - ankle) - 2.0 * math.sqrt(
                END_STOP_STIFFNESS_NM_PER_RAD * p.foot_inertia_kgm2) * min(ankle_rate, 0.0)
        elif ankle > hi:
            tau -= END_STOP_STIFFNESS_NM_PER_RAD * (ankle - hi) + 2.0 * math.sqrt(
                END_STOP_STIFFNESS_NM_PER_RAD * p.foot_inertia_kgm2) * max(ankle_rate, 0.0)
        return tau

    def step(self, muscle_torque_nm: float, shank0_deg: float, shank1_deg: float,
             shank_acc_dps2: float, dt_s: float) -> None:
        """Advance ``dt_s`` with the shank moving linearly from shank0 to shank1 (deg) at a
        constant angular acceleration ``shank_acc_dps2`` (semi-implicit Euler sub-steps)."""
        n = max(1, int(math.ceil(dt_s / MAX_SUBSTEP_S)))
        h = dt_s / n
        j = self.p.foot_inertia_kgm2
        acc = shank_acc_dps2 * DEG
        for i in range(n):
            shank = (shank0_deg + (shank1_deg - shank0_deg) * (i + 0.5) / n) * DEG
            tau = (muscle_torque_nm - self._mgd * math.cos(shank + self.ankle)
                   + self.passive_torque_nm(self.ankle, self.ankle_rate))
            self.ankle_rate += (tau / j - acc) * h
            self.ankle += self.ankle_rate * h

    @property
    def ankle_deg(self) -> float:
        return self.ankle / DEG

    @property
    def ankle_rate_dps(self) -> float:
        return self.ankle_rate / DEG
