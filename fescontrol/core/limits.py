"""Hard limits that live in code.

No profile, command-line flag or live change can raise these values: a profile
can only narrow them. The validator in :mod:`fescontrol.core.profile` refuses any
value outside them, and the safety supervisor checks every output against them
again before it reaches a stimulator.

Units are in the names. Values follow the conservative end of what surface
peroneal stimulators deliver (Odstock Pace: up to 100 mA, 3–350 µs; WalkAide:
up to 200 mA into 1 kΩ at 25–300 µs) and the RehaStim2 device range
(0–126 mA, 20–500 µs).
"""
from __future__ import annotations

AMPLITUDE_MAX_MA = 100.0
"""Highest current any channel may carry (mA)."""

PULSE_WIDTH_MIN_US = 20
PULSE_WIDTH_MAX_US = 500
"""Pulse width range (µs) for one phase of a biphasic pulse."""

FREQUENCY_MIN_HZ = 10.0
FREQUENCY_MAX_HZ = 100.0
"""Pulse repetition frequency range (Hz)."""

CHARGE_PER_PHASE_MAX_UC = 30.0
"""Charge in one phase (µC = mA × µs / 1000). 100 mA × 300 µs is the most allowed."""

MAX_STIM_MS_MAX = 3000
"""No burst may last longer than this (ms), whatever the profile says."""

ONSET_DELAY_MS_MAX = 150
"""The adaptive onset delay (zero output after the detected push-off) never exceeds this (ms):
the push-off the detector fires on leads the toe-off by 80-200 ms, and the foot must be lifted
as the toes leave the ground."""

RAMP_MS_MAX = 2000
"""Longest ramp up or down (ms)."""

EXTENSION_MS_MAX = 1000
"""Longest stimulation extension after heel strike (ms)."""

STALE_MS_MAX = 200
"""Sensor data older than this (ms) is always a fault; a profile may set less."""

SENSOR_STARTUP_GRACE_MS = 2500
"""Longest wait (ms, wall time) for a session's first valid sensor frame before it is
SENSOR_STALE; after that frame ``device.stale_ms`` applies. Opening the port resets an
Arduino Uno or Nano (DTR auto-reset): its bootloader keeps the unit silent for ~1–2 s.
Nothing stimulates before the first frame (the output is zero until samples drive it) and the
stimulator keep-alive still goes out from the loop meanwhile (the P24's watchdog is 2 s)."""

MAX_MISSING_FRAMES_MAX = 20
"""Most consecutive sensor frames that may be lost before it is a fault."""

CHANNEL_MAX = 8
"""Channels are numbered 1..CHANNEL_MAX (RehaStim2 and P24 have 8)."""

PROFILE_CHANNELS_MAX = 4
"""Most channels one profile may drive (``stimulation`` plus up to three ``extra_channels``)."""

TOTAL_CHARGE_RATE_MAX_UC_PER_S = 3000.0
"""Charge per second summed over every channel (µC/s = Σ mA × µs × Hz / 1000, one phase of
each pulse): the most one channel at its own caps (30 µC per phase × 100 Hz) may deliver, so
several channels together never exceed what a single channel is allowed. A single-channel
profile within the other caps always passes it."""

TIMED_ONSET_MS_MAX = 1000
"""Latest onset of a timed channel after its gait event (ms)."""

TRAINING_SESSION_MIN_MAX = 60
"""Longest training (exercise) session, minutes."""

TEST_BURST_MS_MAX = 3000
"""Longest single test burst (ms)."""

TRAINING_ON_S_MAX = 30.0
"""Longest single training contraction (s), ramps included. It is the burst limit
(``max_stim``) the kernel enforces while the training mode runs."""

TRAINING_OFF_S_MIN = 1.0
"""Shortest rest between two training contractions (s)."""


# Sensor clock vs wall clock in the real-time loop (the kernel's CLOCK_DRIFT check; the
# supervisor's fault text): the drift rate is measured over windows of DRIFT_WINDOW_US of wall
# time; a rate difference of more than DRIFT_MAX_PERCENT between the clocks is CLOCK_DRIFT.
DRIFT_WINDOW_US = 1_000_000
DRIFT_MAX_PERCENT = 5


def charge_per_phase_uc(amplitude_ma: float, pulse_width_us: float) -> float:
    """Charge delivered in one phase of a pulse, in microcoulombs."""
    return amplitude_ma * pulse_width_us / 1000.0


def charge_rate_uc_per_s(amplitude_ma: float, pulse_width_us: float, frequency_hz: float) -> float:
    """Charge one channel delivers per second in one phase of its pulses, µC/s."""
    return charge_per_phase_uc(amplitude_ma, pulse_width_us) * frequency_hz
