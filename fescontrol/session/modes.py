"""Patient modes on one controller: walk, training (seated exercise), test burst, intensity.

Over 400 lines: the programs and envelopes, intensity and PatientModes, plus the replay of a
logged session (replay_session, compare_outputs, replay_from_log), which goes with the one-
replay-path work.

Everything here runs at the event level (a few calls per second) on the sensor clock
(``kernel.t_us``), in the thread of the control loop. It never touches the stimulator:
stimulation still goes only through the kernel envelope and the safety supervisor.

* **Walk**: the gait-triggered stimulation of the profile (the machine's walking states),
  with pause/resume/stop; pause and stop ramp the output down with the profile's ramp.
* **Training**: cyclic contractions while seated. :class:`TrainingProgram` turns
  ``profile.training`` (``on_s`` ramps included, ``off_s``, ramps, ``session_min``) into the
  machine's training states: ramp up → on → ramp down → rest → … The kernel envelope is set
  to the training ramps with the burst limit ``max_stim = on_s`` (capped by
  :data:`fescontrol.core.limits.TRAINING_ON_S_MAX`), detection is off, the rest is a kernel
  hold at zero output, and the session ends by itself when its time is used up. The
  walking envelope is restored when the output is back at zero after the mode.
* **Test burst**: one burst of the profile's envelope limited to ``duration_ms``
  (≤ :data:`fescontrol.core.limits.TEST_BURST_MS_MAX`) to check electrode placement.
* **Intensity**: :class:`IntensityControl` steps the plateau amplitude by ``step_ma``
  within the profile's patient bounds, at most once per ``min_step_interval_ms``; the
  kernel applies a new amplitude only while the output is zero (at the next stimulation).

:class:`PatientModes` keeps a log of what happened as small records (commands with the
frame count at which they took effect, mode changes, intensity changes, bursts, faults),
handed to ``recorders``; :func:`replay_session` re-runs logged sensor bytes and commands
through a fresh controller and reproduces the outputs bit for bit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from transitions import MachineError

from fescontrol.drivers import sensor_protocol as sp

from fescontrol.core import limits
from fescontrol.core.codes import Fault
from fescontrol.machine.gait import GaitState
from fescontrol.session.records import (BurstRecord, CommandRecord, FaultCleared, FaultEntry, IntensityChange,
                                       Mode, ModeChange, Note)
from fescontrol.core.profile import PatientBounds, Profile, Training

S = GaitState


_MODE_OF_STATE = {
    S.STANDBY: Mode.STANDBY, S.STANCE: Mode.WALK, S.DELAY: Mode.WALK, S.RAMP_UP: Mode.WALK, S.SWING: Mode.WALK,
    S.EXTENSION: Mode.WALK, S.RAMP_DOWN: Mode.WALK, S.PAUSED: Mode.PAUSED, S.FAULT: Mode.FAULT,
    S.TRAINING_RAMP_UP: Mode.TRAINING, S.TRAINING_ON: Mode.TRAINING, S.TRAINING_RAMP_DOWN: Mode.TRAINING,
    S.TRAINING_REST: Mode.TRAINING, S.TEST_RAMP_UP: Mode.TEST, S.TEST_ON: Mode.TEST,
    S.TEST_RAMP_DOWN: Mode.TEST,
}
_RISING = {S.RAMP_UP: "step", S.TRAINING_RAMP_UP: "training", S.TEST_RAMP_UP: "test"}

#: faults that the sensor bytes alone do not reproduce (wall clock, devices, people):
#: a replay latches them again at the frame where they happened
EXTERNAL_FAULTS = frozenset({Fault.SENSOR_STALE, Fault.BUFFER_OVERRUN, Fault.STIMULATOR,
                             Fault.EXCEPTION, Fault.USER_STOP, Fault.CLOCK_DRIFT})

DEFAULT_TEST_BURST_MS = 1000
PLATEAU_MARGIN_PERIODS = 3
"""The plateau of a programmed burst ends this many sample periods early so that the
ramp down is complete inside the burst limit (the kernel's cut-off stays a back-stop)."""


def mode_of(state: GaitState) -> Mode:
    return _MODE_OF_STATE[GaitState(state)]


class ModeError(Exception):
    """A command that does not apply now. The message is for the patient; nothing changed."""


# ----- envelopes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvelopeUs:
    """Kernel envelope: ramps and the burst limit, µs."""

    ramp_up_us: int
    ramp_down_us: int
    max_stim_us: int
    name: str

    def apply(self, kernel) -> None:
        kernel.set_envelope(self.ramp_up_us, self.ramp_down_us, self.max_stim_us)


def walking_envelope(profile: Profile) -> EnvelopeUs:
    e = profile.envelope
    return EnvelopeUs(e.ramp_up_ms * 1000, e.ramp_down_ms * 1000, e.max_stim_ms * 1000, "walking")


def training_envelope(training: Training) -> EnvelopeUs:
    """The training ramps, with the burst limit ``on_s``; refuses anything above the caps."""
    if not (0 < training.on_s <= limits.TRAINING_ON_S_MAX):
        raise ModeError(f"training.on_s = {training.on_s:g} s; allowed 0 < on_s ≤ "
                        f"{limits.TRAINING_ON_S_MAX:g} s (limits.TRAINING_ON_S_MAX)")
    if training.off_s < limits.TRAINING_OFF_S_MIN:
        raise ModeError(f"training.off_s = {training.off_s:g} s; allowed ≥ {limits.TRAINING_OFF_S_MIN:g} s")
    for name in ("ramp_up_ms", "ramp_down_ms"):
        if getattr(training, name) > limits.RAMP_MS_MAX:
            raise ModeError(f"training.{name} = {getattr(training, name)} ms; allowed ≤ {limits.RAMP_MS_MAX} ms")
    if training.session_min > limits.TRAINING_SESSION_MIN_MAX:
        raise ModeError(f"training.session_min = {training.session_min:g}; allowed ≤ "
                        f"{limits.TRAINING_SESSION_MIN_MAX} min")
    return EnvelopeUs(training.ramp_up_ms * 1000, training.ramp_down_ms * 1000,
                      int(round(training.on_s * 1e6)), "training")


def test_burst_envelope(profile: Profile, duration_ms: int, period_us: int) -> EnvelopeUs:
    """The profile's ramps with the burst limit ``duration_ms``; refuses a duration outside
    [ramps + margin, TEST_BURST_MS_MAX]."""
    e = profile.envelope
    shortest_ms = e.ramp_up_ms + e.ramp_down_ms + math.ceil((PLATEAU_MARGIN_PERIODS + 1) * period_us / 1000)
    if not (isinstance(duration_ms, (int, float)) and shortest_ms <= duration_ms <= limits.TEST_BURST_MS_MAX):
        raise ModeError(f"test burst duration {duration_ms} ms; allowed {shortest_ms}..{limits.TEST_BURST_MS_MAX} ms "
                        f"(the profile's ramps take {e.ramp_up_ms + e.ramp_down_ms} ms)")
    return EnvelopeUs(e.ramp_up_ms * 1000, e.ramp_down_ms * 1000, int(duration_ms) * 1000, "test")


# ----- programs for the machine (BurstProgram) ---------------------------------------------------

class TrainingProgram:
    """The schedule of one training session on the sensor clock (µs).

    A contraction lasts ``on_s`` (ramps included) and is followed by a rest of ``off_s``;
    a contraction starts only when it fits before the session ends; the last rest lasts
    until the end, then the machine returns to standby by itself.
    """

    def __init__(self, training: Training, start_us: int, period_us: int):
        self.envelope = training_envelope(training)
        self.on_us = self.envelope.max_stim_us
        self.off_us = int(round(training.off_s * 1e6))
        self.session_us = int(round(training.session_min * 60e6))
        self.start_us = int(start_us)
        self.end_us = self.start_us + self.session_us
        self.period_us = int(period_us)
        self.bursts_started = 1  # start_training starts the first contraction

    def plateau_hold_us(self) -> int:
        e = self.envelope
        return max(1, self.on_us - e.ramp_up_us - e.ramp_down_us - PLATEAU_MARGIN_PERIODS * self.period_us)

    def rest_us(self, now_us: int) -> int:
        """``off_s``; or, when no contraction would fit after it, the rest of the session."""
        after_rest_us = now_us + self.off_us + self.period_us + self.on_us
        rest = self.end_us - now_us if after_rest_us > self.end_us else self.off_us
        return max(1, min(rest, self.end_us - now_us))

    def time_left(self, now_us: int) -> bool:
        return self.end_us - now_us >= self.period_us

    def burst_fits(self, now_us: int) -> bool:
        fits = now_us + self.period_us + self.on_us <= self.end_us
        if fits:
            self.bursts_started += 1
        return fits

    def remaining_us(self, now_us: int) -> int:
        return max(0, self.end_us - now_us)


class TestBurstProgram:
    """The one test-burst program (patient ``fes test-burst`` and the live view's test burst):
    one burst of ``envelope.max_stim_us`` (ramps included) whose plateau ends
    :data:`PLATEAU_MARGIN_PERIODS` sample periods before the kernel's cut-off, so the ramp down
    completes inside the burst limit; no rest, no second burst. ``envelope`` comes from
    :func:`test_burst_envelope`, which refuses a duration too short for that."""

    def __init__(self, envelope: EnvelopeUs, period_us: int):
        self.envelope = envelope
        self.period_us = int(period_us)

    def plateau_hold_us(self) -> int:
        e = self.envelope
        return max(1, e.max_stim_us - e.ramp_up_us - e.ramp_down_us - PLATEAU_MARGIN_PERIODS * self.period_us)

    def rest_us(self, now_us: int) -> int:  # never asked: no rest state for a test burst
        return 1

    def time_left(self, now_us: int) -> bool:
        return False

    def burst_fits(self, now_us: int) -> bool:
        return False


# ----- intensity ------------------------------------------------------------------------------

class IntensityRefused(ModeError):
    """An intensity step that is not allowed now (at a bound, or too soon after the last)."""


class IntensityControl:
    """The patient's plateau amplitude: ``step_ma`` steps inside [amplitude_min_ma,
    amplitude_max_ma], at most one accepted step per ``min_step_interval_ms`` (monotonic clock).
    A step that would pass a bound stops at the bound; a step at the bound is refused."""

    def __init__(self, bounds: PatientBounds, level_ma: float, clock: Callable[[], float] = time.monotonic):
        if not (bounds.amplitude_min_ma <= level_ma <= bounds.amplitude_max_ma):
            raise ValueError(f"intensity {level_ma:g} mA outside the patient range "
                             f"{bounds.amplitude_min_ma:g}..{bounds.amplitude_max_ma:g} mA")
        self.bounds = bounds
        self.level_ma = float(level_ma)
        self.clock = clock
        self._last_step_s: float | None = None

    def step(self, direction: int) -> float:
        """One step up (+1) or down (-1); returns the new level or raises IntensityRefused."""
        if direction not in (1, -1):
            raise ValueError("direction must be +1 or -1")
        b = self.bounds
        now = self.clock()
        if self._last_step_s is not None:
            waited_ms = (now - self._last_step_s) * 1000.0
            if waited_ms < b.min_step_interval_ms:
                raise IntensityRefused(f"too quick: one step per {b.min_step_interval_ms} ms "
                                       f"(wait {b.min_step_interval_ms - waited_ms:.0f} ms)")
        if direction > 0 and self.level_ma >= b.amplitude_max_ma - 1e-9:
            raise IntensityRefused(f"already at your highest level ({b.amplitude_max_ma:g} mA)")
        if direction < 0 and self.level_ma <= b.amplitude_min_ma + 1e-9:
            raise IntensityRefused(f"already at your lowest level ({b.amplitude_min_ma:g} mA)")
        new = round(self.level_ma + direction * b.step_ma, 6)
        new = min(new, b.amplitude_max_ma) if direction > 0 else max(new, b.amplitude_min_ma)
        self.level_ma = new
        self._last_step_s = now
        return new


def restore_intensity(profile: Profile, remembered_ma: float | None) -> tuple[float, str]:
    """The level a session starts at, and a note for the patient. A remembered level outside
    this profile's patient range starts at the nearest end of the range (and says so)."""
    b = profile.patient
    if remembered_ma is None:
        return profile.start_amplitude_ma, f"starting at {profile.start_amplitude_ma:g} mA (profile)"
    if remembered_ma > b.amplitude_max_ma:
        return b.amplitude_max_ma, (f"your last level {remembered_ma:g} mA is above this profile's "
                                    f"{b.amplitude_max_ma:g} mA: starting at {b.amplitude_max_ma:g} mA")
    if remembered_ma < b.amplitude_min_ma:
        return b.amplitude_min_ma, (f"your last level {remembered_ma:g} mA is below this profile's "
                                    f"{b.amplitude_min_ma:g} mA: starting at {b.amplitude_min_ma:g} mA")
    return float(remembered_ma), f"restored your last level, {remembered_ma:g} mA"


@dataclass
class _OpenBurst:
    kind: str
    onset_us: int
    peak_ma: float
    events: list[str] = field(default_factory=list)
    heel_off_us: int | None = None
    heel_strike_us: int | None = None
    cut_off: bool = False


# ----- the patient's modes on one controller ----------------------------------------------------

class PatientModes:
    """Walk / training / test burst / intensity on one :class:`fescontrol.loop.controller.Controller`.

    Call the command methods from the control loop's thread only (the live session queues
    them there). ``recorders`` receive every record (see the dataclasses above). ``poll()``
    after each loop iteration notices faults latched outside the kernel events.
    """

    def __init__(self, controller, *, start_intensity_ma: float | None = None, intensity_cause: str = "set",
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 recorders: Sequence[Callable[[Any], None]] = ()):
        self.c = controller
        self.profile: Profile = controller.profile
        self.kernel = controller.kernel
        self.machine = controller.machine
        self.supervisor = controller.supervisor
        self.wall = wall
        self.recorders: list[Callable[[Any], None]] = list(recorders)
        self.period_us = int(self.kernel.p.period_us)
        self.envelope = walking_envelope(self.profile)
        self.program: TrainingProgram | TestBurstProgram | None = None
        self.training_program: TrainingProgram | None = None
        self.last_training_done = False
        level = self.profile.start_amplitude_ma if start_intensity_ma is None else start_intensity_ma
        self.intensity = IntensityControl(self.profile.patient, level, clock)
        #: the extra channels' own levels (kernel channel index 1..), each in its own bounds
        self.channel_intensity = [IntensityControl(c.patient, c.patient.amplitude_max_ma, clock)
                                  for c in self.profile.extra_channels]
        #: per_channel +/-: the kernel channel index the patient chose (0 = ``stimulation``)
        self.selected_channel = 0
        self._mode = mode_of(self.machine.state)
        self._faults_seen = len(self.supervisor.faults)
        self._burst: _OpenBurst | None = None
        self._burst_state: GaitState | None = None
        self.counts = {"step": 0, "training": 0, "test": 0}
        self.last_fault: FaultEntry | None = None
        controller.event_listeners.append(self._on_event)
        self.supervisor.delivery_listeners.append(self._on_delivery)
        self.adaptive = controller.adaptive
        if self.adaptive is not None:
            self.adaptive.listeners.append(self._on_adaptive_stride)
        if start_intensity_ma is not None:
            self._apply_intensity(level, self.kernel.amplitude_ma, intensity_cause)

    # ----- state for displays --------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def steps(self) -> int:
        return self.counts["step"]

    def training_remaining_s(self) -> float | None:
        """Seconds left in the running training session (None when not training)."""
        if self._mode != Mode.TRAINING or self.training_program is None:
            return None
        return self.training_program.remaining_us(self.kernel.t_us) / 1e6

    # ----- commands ------------------------------------------------------------------------
    def walk(self) -> None:
        """Start walking (gait-triggered stimulation) from standby."""
        self._need_standby_and_zero("walking")
        self._need_sensor("walking")
        self._command("walk")
        self._set_envelope(walking_envelope(self.profile))
        self.program = None
        self.c.begin_walk()
        if self.adaptive is not None:
            self.intensity.level_ma = self.adaptive.amplitude_ma
        self._trigger("start")

    def pause(self) -> None:
        if self._mode != Mode.WALK:
            raise ModeError("pause works while walking")
        self._command("pause")
        self._trigger("pause")

    def resume(self) -> None:
        if self._mode != Mode.PAUSED:
            raise ModeError("resume works while walking is paused")
        self._command("resume")
        self._trigger("resume")

    def stop(self, detail: str = "") -> None:
        """Stop walking, training or a test burst; the output ramps down."""
        if self._mode in (Mode.STANDBY, Mode.FAULT):
            raise ModeError("nothing to stop")
        self._command("stop", detail=detail)
        self._trigger("stop")

    def train(self) -> None:
        """Start a training session (profile.training) from standby."""
        self._need_standby_and_zero("training")
        self._need_sensor("training")
        program = TrainingProgram(self.profile.training, self.kernel.t_us, self.period_us)
        self._command("train", value=self.profile.training.session_min)
        self._set_envelope(program.envelope)
        self.program = self.training_program = program
        self.last_training_done = False
        self._trigger("start_training", program)

    def test_burst(self, duration_ms: int = DEFAULT_TEST_BURST_MS) -> None:
        """One burst of the profile's envelope lasting ``duration_ms`` (ramps included)."""
        envelope = test_burst_envelope(self.profile, duration_ms, self.period_us)
        self._need_standby_and_zero("a test burst")
        self._need_sensor("a test burst")
        program = TestBurstProgram(envelope, self.period_us)
        self._command("test", value=float(duration_ms))
        self._set_envelope(envelope)
        self.program = program
        self._trigger("start_test", program)

    def intensity_step(self, direction: int) -> float:
        """The patient's +/-: returns the new level of channel 1, or with ``patient.adjust:
        per_channel`` of the selected channel (applies from the next stimulation). With
        ``together`` every channel steps by its own ``step_ma`` within its own bounds; a channel
        at a bound stays there, and the step is refused only when no channel can move."""
        cause = "up" if direction > 0 else "down"
        if self.profile.patient.adjust == "per_channel" and self.selected_channel:
            return self._channel_step(self.selected_channel, direction, cause)
        if self.profile.patient.adjust != "together":
            before = self.intensity.level_ma
            level = self.intensity.step(direction)
            self._apply_intensity(level, before, cause)
            return level
        refusals: list[IntensityRefused] = []
        moved = False
        for index in range(len(self.channel_intensity) + 1):
            try:
                if index == 0:
                    before = self.intensity.level_ma
                    self._apply_intensity(self.intensity.step(direction), before, cause)
                else:
                    self._channel_step(index, direction, cause)
                moved = True
            except IntensityRefused as err:
                refusals.append(err)
        if not moved:
            raise refusals[0]
        return self.intensity.level_ma

    def select_channel(self, index: int) -> int:
        """per_channel +/-: choose which channel the next steps change (kernel index, 0 =
        ``stimulation``); returns its stimulator channel number."""
        if not 0 <= index <= len(self.channel_intensity):
            raise ModeError(f"channel index {index}; this profile has channels 0..{len(self.channel_intensity)}")
        self.selected_channel = index
        return self.profile.channel_numbers[index]

    def _channel_step(self, index: int, direction: int, cause: str) -> float:
        ctl = self.channel_intensity[index - 1]
        level = ctl.step(direction)
        self._apply_channel_intensity(index, level, cause)
        return level

    def set_channel_intensity(self, index: int, level_ma: float, cause: str = "set") -> None:
        """Set an extra channel's level directly (replay); must lie in its patient range."""
        if not 1 <= index <= len(self.channel_intensity):
            raise ModeError(f"channel index {index}; this profile's extra channels are "
                            f"1..{len(self.channel_intensity)}")
        b = self.channel_intensity[index - 1].bounds
        if not (b.amplitude_min_ma <= level_ma <= b.amplitude_max_ma):
            raise ModeError(f"intensity {level_ma:g} mA outside {b.amplitude_min_ma:g}..{b.amplitude_max_ma:g} mA")
        self.channel_intensity[index - 1].level_ma = float(level_ma)
        self._apply_channel_intensity(index, float(level_ma), cause)

    def _apply_channel_intensity(self, index: int, level: float, cause: str) -> None:
        self.kernel.request_channel_amplitude(index, level)
        frame, t_us, wall = self._where()
        self._emit(CommandRecord("channel_intensity", frame, t_us, wall, level,
                                 f"channel {self.profile.channel_numbers[index]}: {cause}"))

    def set_intensity(self, level_ma: float, cause: str = "set") -> None:
        """Set the level directly (restored level, replay); must lie in the patient range."""
        before = self.intensity.level_ma
        b = self.profile.patient
        if not (b.amplitude_min_ma <= level_ma <= b.amplitude_max_ma):
            raise ModeError(f"intensity {level_ma:g} mA outside {b.amplitude_min_ma:g}..{b.amplitude_max_ma:g} mA")
        self.intensity.level_ma = float(level_ma)
        self._apply_intensity(float(level_ma), before, cause)

    def clear_fault(self, person: str, note: str = "") -> None:
        if self._mode != Mode.FAULT:
            raise ModeError("there is no fault to clear")
        if not person.strip():
            raise ModeError("clearing a fault needs the name of the person who checked")
        self._command("clear_fault", detail=person)
        self.supervisor.clear(person.strip(), note)
        self._emit(FaultCleared(person.strip(), note, *self._where()))
        self._after_change("fault cleared")

    def emergency_stop(self, detail: str = "stop key") -> None:
        """Zero output now and latch a USER_STOP fault."""
        self.c.emergency_stop(detail)
        self.poll()

    def finish(self) -> None:
        """End of the session: a burst still open (the loop ended mid-burst; the supervisor
        stopped the stimulator) is recorded as interrupted."""
        self.poll()
        if self._burst is not None:
            self._close_burst(int(self.kernel.t_us), complete=False)

    def note(self, name: str, text: str) -> None:
        """A free-text record (restored intensity, end of session, …)."""
        self._emit(Note(name, text, *self._where()))

    def inject_fault(self, code: int, detail: str = "") -> None:
        """Latch a fault that came from outside the sensor bytes (replay of a logged session)."""
        self.supervisor.latch(Fault(code), detail)
        self.poll()

    # ----- bookkeeping -------------------------------------------------------------------------
    def poll(self) -> None:
        """Notice faults latched outside kernel events (stimulator, stale sensor, stop key)."""
        if len(self.supervisor.faults) != self._faults_seen:
            self._record_new_faults()
        self._after_change("fault" if self.machine.state == S.FAULT else "")

    def _where(self) -> tuple[int, int, float]:
        return int(self.kernel.frames), int(self.kernel.t_us), self.wall()

    def _emit(self, record: Any) -> None:
        for rec in self.recorders:
            rec(record)

    def _command(self, name: str, value: float | None = None, detail: str = "") -> None:
        frame, t_us, wall = self._where()
        self._emit(CommandRecord(name, frame, t_us, wall, value, detail))

    def _trigger(self, trigger: str, *args) -> None:
        try:
            self.machine.trigger(trigger, *args)
        except MachineError as err:  # the table refused: nothing changed
            raise ModeError(f"{trigger} is not possible in state {self.machine.state.value}") from err
        if self._burst is not None and self.machine.state not in _RISING:
            # a pause or stop during a burst: the burst's record says so (it still ramps down)
            self._burst.events.append(trigger)
        self._after_change(trigger)

    def _need_standby_and_zero(self, what: str) -> None:
        if self._mode == Mode.FAULT:
            raise ModeError(f"cannot start {what}: a fault is latched (clear it first)")
        if self._mode != Mode.STANDBY:
            raise ModeError(f"cannot start {what} while in {self._mode.value}: stop first")
        if self.kernel.level != 0.0:
            raise ModeError(f"cannot start {what} yet: the output is still ramping down")

    def _need_sensor(self, what: str) -> None:
        if self.kernel.frames == 0:
            raise ModeError(f"cannot start {what}: no sensor data yet (is the sensor on?)")

    def _set_envelope(self, env: EnvelopeUs) -> None:
        env.apply(self.kernel)
        self.envelope = env

    def _apply_intensity(self, level: float, before: float, cause: str) -> None:
        self.kernel.request_amplitude(level)
        if self.adaptive is not None:
            self.adaptive.on_patient_intensity(level, cause)      # the patient's +/- wins
        frame, t_us, wall = self._where()
        self._emit(CommandRecord("intensity", frame, t_us, wall, level, cause))
        self._emit(IntensityChange(level, before, cause, frame, t_us, wall))

    def _on_adaptive_stride(self, record) -> None:
        """The learning decided the next stride's amplitude: the patient's +/- steps from it."""
        self.intensity.level_ma = record.next_ma
        self._emit(record)

    def _on_delivery(self, t_us: int, current_ma: float) -> None:
        """Supervisor listener: every output that passed the checks (the burst's peak is the
        highest current actually sent)."""
        b = self._burst
        if b is not None and current_ma > b.peak_ma:
            b.peak_ma = float(current_ma)

    def _on_event(self, e) -> None:
        """Controller listener: every kernel event after the machine handled it."""
        name = e.event
        if name == "fault":
            self._record_new_faults()
        b = self._burst
        state = self.machine.state
        starts_new = state in _RISING and state != self._burst_state
        if b is not None and not starts_new:
            b.events.append(name)
            if name == "heel_strike" and b.heel_strike_us is None:
                b.heel_strike_us = e.t_us
            elif name == "timeout":
                b.cut_off = True
            elif name == "ramp_down_done":
                self._close_burst(e.t_us, complete=True)
        self._after_change(name)

    def _after_change(self, cause: str) -> None:
        state = self.machine.state
        mode = mode_of(state)
        t_us = int(self.kernel.t_us)
        if state in _RISING and (self._burst is None or self._burst_state != state):
            # entering a ramp-up: a new burst (a heel-off during a ramp-down ends the previous one)
            if self._burst is not None:
                self._close_burst(t_us, complete=False)
            kind = _RISING[state]
            self._burst = _OpenBurst(kind, t_us, float(self.kernel.current_ma), [cause] if cause else [],
                                     heel_off_us=t_us if kind == "step" else None)
        self._burst_state = state
        if mode == Mode.FAULT and self._burst is not None:
            self._close_burst(t_us, complete=False)
        elif (self._burst is not None and mode in (Mode.STANDBY, Mode.PAUSED)
              and float(self.kernel.level) == 0.0):
            # stopped or paused before the output rose: nothing left to ramp down
            self._close_burst(t_us, complete=True)
        if mode != self._mode:
            previous, self._mode = self._mode, mode
            if previous == Mode.TRAINING and mode == Mode.STANDBY and cause in ("ramp_down_done", "hold_done"):
                self.last_training_done = True
                cause = "training complete"
            elif previous == Mode.TEST and mode == Mode.STANDBY and cause == "ramp_down_done":
                cause = "test burst done"
            frame, _, wall = self._where()
            self._emit(ModeChange(mode, previous, state.value, cause, frame, t_us, wall))
        self._restore_walking_envelope()

    def _close_burst(self, end_us: int, complete: bool) -> None:
        b, self._burst = self._burst, None
        if b is None:
            return
        self.counts[b.kind] += 1
        self._emit(BurstRecord(b.kind, self.counts[b.kind], b.onset_us, end_us, b.peak_ma, tuple(b.events),
                               self.wall(), b.heel_off_us, b.heel_strike_us, b.cut_off, complete))

    def _restore_walking_envelope(self) -> None:
        """After training or a test burst, back to the profile's walking envelope once the
        output is zero (the ramp down keeps the mode's rate until then)."""
        if (self.envelope.name != "walking" and self._mode in (Mode.STANDBY, Mode.FAULT)
                and self.kernel.level == 0.0):
            self._set_envelope(walking_envelope(self.profile))
            self.program = None

    def _record_new_faults(self) -> None:
        faults = self.supervisor.faults
        while self._faults_seen < len(faults):
            f = faults[self._faults_seen]
            self._faults_seen += 1
            frame, _, wall = self._where()
            entry = FaultEntry(Fault(f.reason), f.detail, frame, int(f.t_us), wall, Fault(f.reason) in EXTERNAL_FAULTS)
            self.last_fault = entry
            if entry.external:
                # a replay must latch it again at this frame
                self._emit(CommandRecord("fault", frame, int(f.t_us), wall, float(int(f.reason)), f.detail))
            self._emit(entry)


# ----- replay -----------------------------------------------------------------------------------

@dataclass
class ReplayOutcome:
    """What a replay produced: per-sample time and current, and the controller it ran on."""

    t_us: np.ndarray
    current_ma: np.ndarray
    controller: Any
    modes: PatientModes
    commands_applied: int


class ReplayError(Exception):
    pass


def _replay_channel_intensity(m: PatientModes, c: dict) -> None:
    """A logged ``channel_intensity`` command: value = level mA, detail = "channel N: cause"."""
    where, _, cause = (c.get("detail") or "").partition(":")
    number = int(where.split()[-1])
    m.set_channel_intensity(m.profile.channel_numbers.index(number), float(c["value"]), cause.strip() or "set")


_REPLAY_COMMANDS: dict[str, Callable[[PatientModes, dict], None]] = {
    "walk": lambda m, c: m.walk(),
    "pause": lambda m, c: m.pause(),
    "resume": lambda m, c: m.resume(),
    "stop": lambda m, c: m.stop(c.get("detail") or ""),
    "train": lambda m, c: m.train(),
    "test": lambda m, c: m.test_burst(int(c["value"])),
    "intensity": lambda m, c: m.set_intensity(float(c["value"]), c.get("detail") or "set"),
    "channel_intensity": lambda m, c: _replay_channel_intensity(m, c),
    "clear_fault": lambda m, c: m.clear_fault(c.get("detail") or "replay"),
    "fault": lambda m, c: m.inject_fault(int(c["value"]), c.get("detail") or ""),
}


def replay_session(profile: Profile, raw: bytes, commands: Iterable[dict], *, implementation: str = "auto",
                   max_frames: int | None = None) -> ReplayOutcome:
    """Run logged sensor bytes through a fresh controller, applying each logged command after
    the same number of frames as in the live session. ``commands`` are dicts with ``name``,
    ``frame``, ``value``, ``detail`` (rows of the session log). Returns the per-sample output.

    The bytes go in one frame length at a time, so the kernel never runs past the frame at
    which the next command took effect (a frame needs FRAME_LEN bytes, and after ``process``
    returns nothing the parser holds less than one frame).
    """
    from fescontrol.loop.controller import Controller, TraceCollector

    controller = Controller(profile, implementation=implementation, trace_capacity=4096)
    collector = TraceCollector()
    controller.trace_sink = collector
    modes = PatientModes(controller, wall=lambda: 0.0)
    pending = sorted((dict(c) for c in commands), key=lambda c: (c["frame"], c.get("id", 0)))
    kernel = controller.kernel
    i = 0
    applied = 0

    def apply_due() -> None:
        nonlocal i, applied
        while i < len(pending) and pending[i]["frame"] <= kernel.frames:
            cmd = pending[i]
            if cmd["frame"] < kernel.frames:
                raise ReplayError(f"command {cmd['name']} at frame {cmd['frame']} was passed "
                                  f"(kernel at frame {kernel.frames})")
            try:
                _REPLAY_COMMANDS[cmd["name"]](modes, cmd)
            except ModeError as err:
                raise ReplayError(f"command {cmd['name']} at frame {cmd['frame']} could not be applied: "
                                  f"{err} (the replay no longer follows the log)") from err
            i += 1
            applied += 1

    step = sp.FRAME_LEN
    apply_due()
    view = memoryview(raw)
    for start in range(0, len(view), step):
        if max_frames is not None and kernel.frames >= max_frames:
            break
        ret = kernel.feed(bytes(view[start:start + step]))
        if ret:
            controller.handle(ret)
        while True:
            ret = kernel.process()
            if ret:
                controller.handle(ret)
            apply_due()
            if not ret:
                break
    controller.finish()
    arrays = collector.arrays() if collector.parts else {"t_us": np.zeros(0, np.int64),
                                                          "current_ma": np.zeros(0)}
    return ReplayOutcome(arrays["t_us"], arrays["current_ma"], controller, modes, applied)


@dataclass(frozen=True)
class ReplayComparison:
    """Per-sample output of a replay against the logged one, compared bit for bit."""

    logged_samples: int
    replayed_samples: int
    compared: int
    identical: bool
    first_mismatch: int | None = None
    detail: str = ""


def compare_outputs(logged_t: np.ndarray, logged_ma: np.ndarray, t_us: np.ndarray,
                    current_ma: np.ndarray, *, interrupted: bool = False) -> ReplayComparison:
    """The logged samples must be a prefix of the replayed ones with identical times and
    bit-identical currents (a session killed mid-way logged fewer samples than its bytes give).
    For an ``interrupted`` session (killed, no clean end) the raw bytes and the samples were
    committed independently, so only their common prefix is compared."""
    n = min(len(logged_t), len(t_us))
    lt, lc = np.asarray(logged_t, np.int64)[:n], np.asarray(logged_ma, np.float64)[:n]
    rt, rc = np.asarray(t_us, np.int64)[:n], np.asarray(current_ma, np.float64)[:n]
    bad = np.flatnonzero((lt != rt) | (lc.view(np.uint64) != rc.view(np.uint64)))
    if len(bad):
        i = int(bad[0])
        return ReplayComparison(len(logged_t), len(t_us), n, False, i,
                                f"sample {i}: logged t={lt[i]} µs {lc[i]!r} mA, replayed t={rt[i]} µs {rc[i]!r} mA")
    if len(t_us) < len(logged_t) and not interrupted:
        return ReplayComparison(len(logged_t), len(t_us), n, False, n,
                                f"the replay produced {len(t_us)} samples but {len(logged_t)} were logged")
    detail = "" if n else "no logged samples to compare"
    if n and len(t_us) < len(logged_t):
        detail = (f"session interrupted: its raw bytes give {len(t_us)} samples of the "
                  f"{len(logged_t)} logged; the common {n} were compared")
    return ReplayComparison(len(logged_t), len(t_us), n, n > 0, None, detail)


def replay_from_log(session_log, session_id: int, profile: Profile | None = None,
                    implementation: str = "auto") -> tuple[ReplayOutcome, ReplayComparison, Profile]:
    """Replay a logged session (it must have been logged with its raw frames) and compare."""
    from fescontrol.core.profile import profile_from_dict
    from fescontrol.session.log import SessionLogError
    import json
    row = session_log.session(session_id)
    if not row["frames_logged"]:
        raise SessionLogError(f"session {session_id} was logged without its raw sensor frames "
                              f"(run with --log-frames to make a session replayable)")
    if profile is None:
        profile = profile_from_dict(json.loads(row["profile_json"]), f"session {session_id} profile")
    raw = session_log.raw_frames(session_id)
    commands = session_log.events(session_id, ["command"])
    outcome = replay_session(profile, raw, commands, implementation=implementation,
                             max_frames=row["frames_processed"])
    logged_t, logged_ma = session_log.samples(session_id)
    comparison = compare_outputs(logged_t, logged_ma, outcome.t_us, outcome.current_ma,
                                 interrupted=row["ended_wall"] is None)
    return outcome, comparison, profile
