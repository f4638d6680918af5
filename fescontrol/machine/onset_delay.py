"""The learned onset delay of adaptive stimulation (``adaptive.onset_delay``, docs/adaptive.md).

The detector fires on the push-off, 80-200 ms before the toes leave the ground. Current in that
time only builds muscle activation while the foot is still on the ground; part of it can be
saved by holding the output at zero for a while after the onset (the gait machine's DELAY
state) before the ramp starts. How long depends on the walker: the ramp must still be on its
way when the toes leave the ground, so a walker whose push-off is short (the onset close to
toe-off) tolerates little or no delay, and a steep foot that needs the early rise drops.

The foot IMU measures the push-off on every stride: the fastest toe-down rotation of the
foot in the first half of the swing buffer (which starts at the onset) comes just before
toe-off. The delay never exceeds the median of that time over the last strides minus
``lead_ms``, nor ``max_ms``.

Per stride, at the event level (after the amplitude decision, from the same stride):
  * a frozen stride (any doubt the amplitude freezes on) holds the delay;
  * while the wind-up guard holds the current (more current no longer lifts the foot) it is 0:
    the lift a delay takes cannot be made up with current;
  * an early contact with the foot low, or a stride more than ``back_off_beyond_deg`` below
    target overall or at mid-swing, halves it at once and (when it was not 0) blocks
    lengthening for ``hold_strides`` learning strides;
  * a stride within ``lengthen_within_deg`` of target (or above it), once the walk's first
    climb is over, lengthens it by ``step_ms``, at most once per ``lengthen_every_strides``
    learning strides (the wind-up guard fits its lift per mA over strides at one delay);
  * it is then clipped to [0, min(max_ms, push-off − lead_ms)].
Cold start (a new session): 0 ms, and 0 until ``PUSH_STRIDES_MIN`` push-offs were measured.
Invariant: 0 ≤ delay_ms ≤ max_ms ≤ limits.ONSET_DELAY_MS_MAX (tests/test_onset_delay.py).
"""
from __future__ import annotations

import math
from collections import deque

from fescontrol.core import limits

#: push-off times whose median bounds the delay
PUSH_HISTORY = 5
#: the delay stays 0 until this many push-offs were measured
PUSH_STRIDES_MIN = 3


def push_off_ms(swing_pitch, n: int, period_us: int) -> float:
    """Time from the onset (buffer sample 0) to the fastest toe-down rotation in the first half
    of the ``n`` samples of the swing buffer (foot pitch, deg, toe-up +), ms; NaN when the
    buffer is too short (< 4 samples) to tell."""
    half = int(n) // 2
    if half < 2:
        return math.nan
    best, at = math.inf, 0
    prev = float(swing_pitch[0])
    for i in range(1, half + 1):
        cur = float(swing_pitch[i])
        d = cur - prev
        if d < best:
            best, at = d, i - 1
        prev = cur
    return at * period_us / 1000.0


class OnsetDelayLearner:
    """``adaptive.onset_delay`` alone (see the module docstring); ``delay_ms`` is what the
    next stride gets."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.max_ms = float(min(int(cfg.max_ms), limits.ONSET_DELAY_MS_MAX))
        self.delay_ms = 0.0
        self.push: deque[float] = deque(maxlen=PUSH_HISTORY)
        self.hold = 0
        self.last = ""          # what the last stride did: lengthen | back off | hold | ""

    def bound_ms(self) -> float:
        """The longest delay the recent push-offs allow (0 until PUSH_STRIDES_MIN are known)."""
        if len(self.push) < PUSH_STRIDES_MIN:
            return 0.0
        p = sorted(self.push)
        n = len(p)
        med = p[n // 2] if n % 2 else 0.5 * (p[n // 2 - 1] + p[n // 2])
        return max(0.0, min(self.max_ms, med - float(self.cfg.lead_ms)))

    def frozen(self) -> float:
        """A stride the learning froze on: the delay holds."""
        self.last = "hold"
        return self.delay_ms

    def saturated(self) -> float:
        """The wind-up guard holds the current (more no longer lifts the foot): no delay."""
        self.delay_ms = 0.0
        self.last = "saturated"
        return self.delay_ms

    def early_contact(self) -> float:
        """An early contact with the foot low: back off at once."""
        return self._back_off()

    def learned(self, error_deg: float, mid_shortfall_deg: float, push_ms: float, may_lengthen: bool = True) -> float:
        """A learning stride: its pitch error (target − measured at the limiting point, deg),
        its shortfall at mid-swing (target − measured, deg) and its push-off time (ms, NaN:
        not measured); ``may_lengthen`` False (the walk's first climb is not over) holds it
        where it would lengthen. Returns the next stride's delay."""
        if math.isfinite(push_ms):
            self.push.append(float(push_ms))
        cfg = self.cfg
        beyond = float(cfg.back_off_beyond_deg)
        if not math.isfinite(error_deg) or error_deg > beyond or mid_shortfall_deg > beyond:
            return self._back_off()
        self.last = "hold"
        if self.hold > 0:
            self.hold -= 1
        elif may_lengthen and error_deg <= float(cfg.lengthen_within_deg) and self.delay_ms < self.bound_ms():
            self.delay_ms += float(cfg.step_ms)
            self.hold = int(cfg.lengthen_every_strides) - 1
            self.last = "lengthen"
        self.delay_ms = min(self.delay_ms, self.bound_ms())
        return self.delay_ms

    def _back_off(self) -> float:
        if self.delay_ms > 0.0:       # at 0 the delay did not let the foot drop: nothing to wait for
            self.hold = int(self.cfg.hold_strides)
        self.delay_ms = float(int(self.delay_ms // 2))
        self.delay_ms = min(self.delay_ms, self.bound_ms())
        self.last = "back off"
        return self.delay_ms
