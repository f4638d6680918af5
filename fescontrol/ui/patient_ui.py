"""The patient's terminal interface and the live session behind it.

Over 400 lines: the patient screen (render, curses and headless UIs) and the PatientSession wiring
behind it; they split along that line (ui/ and session/) once the simulator-devices work has
landed, so that its rebase stays a rename.

:class:`PatientSession` runs one patient session on real ports or on the simulator: it opens
the session log, the stimulator and the sensor (through :mod:`fescontrol.loop.runner`), and
runs the controller's real-time loop in its own thread. The interface never touches the
controller: it queues commands, which the loop applies between two kernel calls (in
``Controller.run``'s ``should_stop`` hook), and it reads a :class:`Status` snapshot that
the loop publishes under a lock. Records go to the session log through the
:class:`~fescontrol.session.log.LogWriter` thread, so the loop never waits for the disk.

:class:`CursesUI` is the screen (plain keys, a status panel, a fault banner with a
terminal bell); :class:`HeadlessUI` prints one line per change for scripts and tests.
:class:`SimulatedDevices` replays a recording over a pseudo-terminal at real-time speed
with the RehaStim2 emulator as the stimulator, so ``fes walk --sim RECORDING`` runs the
device's own loop end to end.
"""
from __future__ import annotations

import curses
import logging
import math
import queue
import signal
import textwrap
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import numpy as np

from fescontrol.drivers import sensor_protocol as sp

from fescontrol.core.codes import Fault
from fescontrol.loop.controller import Controller
from fescontrol.session.modes import (BurstRecord, FaultEntry, IntensityChange, IntensityRefused, Mode, ModeChange,
                                      ModeError, Note, PatientModes, restore_intensity)
from fescontrol.core.profile import Profile
from fescontrol.session.sensor_tee import SensorTee
from fescontrol.core.profile_diff import patient_key
from fescontrol.session.log import LogWriter, SessionLog
from fescontrol.session.records import SampleBatch

# ----- what a patient reads about a fault -------------------------------------------------------

_SENSOR_LOST = (Fault.SENSOR_STALE, Fault.SEQUENCE_GAP, Fault.LINK_ERRORS, Fault.CLOCK_JUMP,
                Fault.PARSE_ERROR, Fault.BUFFER_OVERRUN, Fault.CLOCK_DRIFT)


def patient_fault_message(code: Fault, detail: str = "", profile: Profile | None = None) -> str:
    """A short, plain message: what happened and what to check. Stimulation is always off."""
    code = Fault(code)
    heel = profile is None or profile.trigger.mode.needs_heel
    if code in (Fault.HEEL_SENSOR_FAULT, Fault.HEEL_STUCK) or (code == Fault.CHANNEL_MISSING and heel):
        text = "No footswitch signal: check that the heel sensor is plugged in and under your heel."
    elif code == Fault.CHANNEL_MISSING or code == Fault.IMU_SATURATED:
        text = "Motion sensor problem: check that the sensor is fixed firmly to your foot or leg."
    elif code in _SENSOR_LOST:
        text = "Sensor lost: check that the sensor is switched on, charged and close by."
    elif code == Fault.STIMULATOR:
        if "electrode" in detail:
            text = "Electrode problem: check that the electrodes stick to the skin and the leads are plugged in."
        elif "emergency" in detail:
            text = "The stimulator's emergency switch was pressed."
        elif "disconnected" in detail or "reset" in detail:
            text = "Stimulator disconnected or restarted: check its cable and battery."
        else:
            text = "Stimulator not responding: check its cable and battery."
    elif code == Fault.USER_STOP:
        text = "Stopped with the stop key."
    else:
        text = "Safety stop inside the controller: contact your clinician."
    return text + " Stimulation is off."


# ----- the snapshot the interface reads ---------------------------------------------------------

@dataclass(frozen=True)
class Status:
    profile_name: str = ""
    mode: str = "standby"
    state: str = "standby"
    waiting: str = ""                  # why stimulation waits without a fault (no heel contact)
    intensity_ma: float = 0.0          # the patient's level (applies from the next stimulation)
    active_ma: float = 0.0             # the level the present/last stimulation uses
    adaptive: str = ""                 # what the stride-to-stride learning does ("" when off)
    output_ma: float = 0.0             # present output current
    min_ma: float = 0.0
    max_ma: float = 0.0
    step_ma: float = 1.0
    channels: str = ""                 # several channels: each one's level (and which +/- changes)
    steps_session: int = 0
    steps_today: int = 0
    training_left_s: float | None = None
    training_bursts: int = 0
    sensor: str = "waiting"
    stimulator: str = "none"
    fault_active: bool = False
    fault_message: str = ""
    fault_seq: int = 0                 # increments with each new fault (bell)
    last_fault: str = "none"
    message: str = ""
    message_seq: int = 0
    log: str = ""
    log_failed: bool = False           # writing the session log stopped (disk full, …)
    log_alert_seq: int = 0             # increments when it stops (bell)
    frames: int = 0
    finished: bool = False
    end_reason: str = ""


# ----- the simulator as devices -----------------------------------------------------------------

def seated_frames(seconds: float, rate_hz: float, *, has_heel: bool, has_imu: bool, first_seq: int = 0,
                  t0_us: int = 1_000_000) -> np.ndarray:
    """Frames of a person sitting still (a little heel load that never stays constant)."""
    n = int(seconds * rate_hz)
    idx = np.arange(n)
    heel = 60.0 + 4.0 * np.sin(2 * np.pi * idx / (1.7 * rate_hz)) if has_heel else None
    acc = gyro = None
    if has_imu:
        acc = np.zeros((n, 3))
        acc[:, 2] = 9.81
        gyro = np.zeros((n, 3))
        gyro[:, 1] = 2.0 * np.sin(2 * np.pi * idx / (2.3 * rate_hz))
    flags, heel_c, acc_c, gyro_c = sp.counts_from_units(heel, acc, gyro, n=n)
    t_us = t0_us + np.rint(idx * 1e6 / rate_hz).astype(np.int64)
    return sp.encode_frames(first_seq + idx, t_us, flags, heel_c, acc_c, gyro_c)


def standing_frames(n: int, rate_hz: float, *, heel_n: float | None, has_imu: bool, first_seq: int,
                    t0_us: int) -> np.ndarray:
    """Frames of a person standing still after a walk (heel loaded, no rotation)."""
    idx = np.arange(n)
    heel = None if heel_n is None else heel_n + 3.0 * np.sin(2 * np.pi * idx / (1.3 * rate_hz))
    acc = gyro = None
    if has_imu:
        acc = np.zeros((n, 3))
        acc[:, 2] = 9.81
        gyro = np.zeros((n, 3))
    flags, heel_c, acc_c, gyro_c = sp.counts_from_units(heel, acc, gyro, n=n)
    t_us = t0_us + np.rint(idx * 1e6 / rate_hz).astype(np.int64)
    return sp.encode_frames(first_seq + idx, t_us, flags, heel_c, acc_c, gyro_c)


class SimulatedDevices:
    """A recording replayed over a real pty at ``speed`` × real time; the stimulator is the
    registered ``emulator`` backend unless the session names another (``STIMULATOR``).

    ``activity`` "walk" sends the recording (its first ``seconds`` when given) followed by
    a few seconds of standing; "seated" sends a seated stream as long as ``seconds`` with
    the recording's channels and rate (training and test bursts). ``faults`` are
    ``fescontrol.sim.faults`` specs (``NAME@T``): sensor faults change the stream, stimulator faults
    act at T on the device model of the stimulator given to :meth:`attach_stimulator` (its
    ``emulator`` attribute; a hardware stimulator has none, and they do nothing).
    """

    TAIL_S = 4.0

    def __init__(self, recording, *, side: str = "left", activity: str = "walk",
                 seconds: float | None = None, speed: float = 1.0, faults=(),
                 name: str | None = None):
        from fescontrol.sim.faults import apply_sensor_faults, parse_fault
        if isinstance(recording, str):
            from fescontrol.sim.run import load_any
            name = name or recording
            recording = load_any(recording, side)
        self.recording = rec = recording
        self.name = name or rec.name
        self.speed = float(speed)
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed {speed!r}: allowed a finite number > 0 (1 = real time)")
        specs = [parse_fault(f) for f in faults]
        if activity == "walk":
            from fescontrol.sim.replay import recording_stream
            frames, _ = recording_stream(rec)
            if seconds is not None:
                frames = frames[:max(1, int(seconds * rec.rate_hz))]
            n_main = len(frames)
            heel_n = float(np.nanpercentile(rec.heel_n, 90)) if rec.has_heel else None
            tail = standing_frames(int(self.TAIL_S * rec.rate_hz), rec.rate_hz, heel_n=heel_n,
                                   has_imu=rec.has_imu, first_seq=n_main,
                                   t0_us=1_000_000 + int(round(n_main * 1e6 / rec.rate_hz)))
            frames = np.concatenate([frames, tail])
        else:
            total = (seconds if seconds is not None else 60.0) + self.TAIL_S
            frames = seated_frames(total, rec.rate_hz, has_heel=rec.has_heel, has_imu=rec.has_imu)
            n_main = len(frames) - int(self.TAIL_S * rec.rate_hz)
        self.main_end_s = n_main / rec.rate_hz
        chunks, times_s, unplug_s = apply_sensor_faults(frames, rec.rate_hz, [f for f in specs if f.is_sensor])
        self._times_s = times_s
        from fescontrol.sim.pty_sensor import PtySensor
        self.sensor = PtySensor(chunks, times_s, speed=self.speed, unplug_s=unplug_s)
        self._stim_faults = [f for f in specs if not f.is_sensor]
        self.emulator = None
        self._timers: list[threading.Timer] = []

    #: the ``--stim`` a simulated session uses when none is given: a registered backend name
    STIMULATOR = "emulator"

    @property
    def sensor_port(self) -> str:
        return self.sensor.port

    def attach_stimulator(self, stimulator) -> None:
        """The session's opened stimulator: stimulator faults act on its device model, if it has one."""
        self.emulator = getattr(stimulator, "emulator", None)

    def start_sensor(self) -> None:
        """Start streaming (and the clock of the stimulator faults)."""
        for f in self._stim_faults:
            timer = threading.Timer(f.at_s / self.speed, self._stim_fault, args=(f.name,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        self.sensor.start()

    def _stim_fault(self, name: str) -> None:
        from fescontrol.sim.faults import STIM_FAULT_ACTIONS
        if self.emulator is not None:
            STIM_FAULT_ACTIONS[name](self.emulator)

    @property
    def main_done(self) -> bool:
        """The recording (or the seated stretch) has been sent; only the tail remains."""
        sent = self.sensor.sent
        return sent > 0 and self._times_s[sent - 1] >= self.main_end_s - 1e-9

    @property
    def finished(self) -> bool:
        return self.sensor.done.is_set()

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        self.sensor.stop()


# ----- copying the raw sensor bytes into the log ----------------------------------------------

# ----- the live session ---------------------------------------------------------------------

FIRST_COMMANDS = ("walk", "train", "test", None)


class PatientSession:
    """One patient session on real ports or the simulator; see the module docstring. (The
    orthotist's live view has its own loop session, :class:`fescontrol.tools.live.LiveSession`.)

    ``sensor``/``stim`` are as for ``fes run`` (``stim`` may be a backend name such as "emulator", or None for no
    stimulator); ``sim`` replaces both. ``first`` is the mode to start once sensor data
    arrive. Use :meth:`start`, then :meth:`command` / :meth:`status`, then :meth:`close`.
    """

    STATUS_INTERVAL_S = 0.05
    SAMPLE_FLUSH_S = 0.5
    """With ``log_frames``: the per-sample output and the raw sensor bytes go to the log at
    least this often (and so are committed within about this interval)."""

    def __init__(self, profile: Profile, *, db_path, sensor: str | None = None, stim: str | None = None,
                 sim: SimulatedDevices | None = None, first: str | None = "walk",
                 test_burst_ms: int = 1000, log_frames: bool = False, implementation: str = "auto",
                 exit_when_done: bool = False, duration_s: float | None = None,
                 sensor_baud: int = sp.SENSOR_BAUD_DEFAULT,
                 on_record: Callable[[Any], None] | None = None, on_commit: Callable[[Any], None] | None = None):
        if first not in FIRST_COMMANDS:
            raise ValueError(f"first={first!r}; allowed {FIRST_COMMANDS}")
        if sim is None and sensor is None:
            raise ValueError("a sensor port (or the simulator) is needed")
        self.profile = profile
        self.db_path = db_path
        self.sensor_name = sensor
        self.stim_name = stim
        self.sim = sim
        self.first = first
        self.test_burst_ms = test_burst_ms
        self.log_frames = log_frames
        self.implementation = implementation
        self.exit_when_done = exit_when_done
        self.duration_s = duration_s
        self.sensor_baud = sensor_baud
        self.on_record = on_record
        self.on_commit = on_commit
        self._commands: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._status = Status(profile_name=profile.name)
        self._stack = ExitStack()
        self._thread: threading.Thread | None = None
        self._quit_deadline: float | None = None
        self._terminate_reason: str | None = None
        self._end_reason = ""
        self._message = ("", 0)
        self._fault_seq = 0
        self._last_frames = 0
        self._last_frame_s = 0.0
        self._last_publish = 0.0
        self._last_sample_flush_s = 0.0
        self.tee: SensorTee | None = None
        self._sim_end_handled = False
        self._t_start = 0.0
        self.error: BaseException | None = None
        self.session_id: int | None = None
        self.log_error = ""
        self.log_final = ""
        self.log_failed = False
        self._log_alert_seq = 0
        self._log_failed_steps = 0
        self.on_log_failure: Callable[[str], None] | None = None
        self.commit_stats = None
        #: why the first command (walk, train, test) was refused, if it was: the session then
        #: ends by itself with exit status 1 (a refusal is never a success)
        self.start_refused = ""

    # ----- starting ---------------------------------------------------------------------
    def start(self) -> "PatientSession":
        """Open the log, the stimulator and the sensor, then start the loop. Any failure
        closes what was opened and raises (SessionLogError, StimulatorError, OSError…)."""
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        self._thread = threading.Thread(target=self._loop, name="control-loop", daemon=True)
        self._thread.start()
        return self

    def _open(self) -> None:
        from fescontrol.loop.runner import DEVICE_EVENT_HISTORY, open_sensor, open_stimulator
        stack = self._stack
        slog = SessionLog(self.db_path)
        stack.callback(self._close_log_if_unowned, slog)
        remembered = slog.remembered_intensity(patient_key(self.profile))
        level, restore_note = restore_intensity(self.profile, remembered)
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        self._steps_before = slog.steps_since(midnight)
        stim_port = self.stim_name
        if self.sim is not None:
            stack.callback(self.sim.stop)
            stim_port = stim_port or self.sim.STIMULATOR
        self.stimulator = None
        if stim_port is not None:
            self.stimulator = open_stimulator(self.profile, stim_port)
            self.stimulator.open()
            stack.callback(self.stimulator.close)
            if self.sim is not None:
                self.sim.attach_stimulator(self.stimulator)
        sensor_port = self.sim.sensor_port if self.sim is not None else self.sensor_name
        link = stack.enter_context(open_sensor(sensor_port, self.sensor_baud))
        self.controller = Controller(self.profile, stimulator=self.stimulator, implementation=self.implementation,
                                     trace_capacity=1024 if self.log_frames else 0,
                                     event_history=DEVICE_EVENT_HISTORY)
        if self.sim is not None:
            self.controller.set_sensor_clock_rate(self.sim.speed)   # a replay at N × real time
        self.session_id = slog.begin_session(
            self.profile, kernel=self.controller.implementation,
            sensor=f"sim:{self.sim.name}" if self.sim is not None else sensor_port,
            stimulator=stim_port, sim_recording=self.sim.name if self.sim is not None else None,
            frames_logged=self.log_frames)
        self.writer = LogWriter(slog, self.session_id, self.profile, on_commit=self._committed,
                                on_failure=self._log_stopped)
        fd = link.fileno()
        self.tee = None
        if self.log_frames:
            self.tee = SensorTee(fd, self.writer.put, batch_s=self.SAMPLE_FLUSH_S).start()
            stack.callback(self.tee.stop)
            fd = self.tee.read_fd
            self._samples_written = 0
            self.controller.trace_sink = self._trace_sink
        self._fd = fd
        self.modes = PatientModes(self.controller, start_intensity_ma=level, intensity_cause="restored",
                                  recorders=[self._record])
        self.modes.note("intensity", restore_note)
        self._say(restore_note)
        if self.sim is not None:
            self.sim.start_sensor()
        self._t_start = time.monotonic()
        self._publish(force=True)

    def _close_log_if_unowned(self, slog: SessionLog) -> None:
        if getattr(self, "writer", None) is None:
            slog.close()

    def _trace_sink(self, trace: dict, n: int) -> None:
        self.writer.put(SampleBatch(self._samples_written, np.array(trace["t_us"][:n], copy=True),
                                    np.array(trace["current_ma"][:n], copy=True)))
        self._samples_written += n

    def _committed(self, stats) -> None:
        self.commit_stats = stats
        if self.on_commit is not None:
            self.on_commit(stats)

    def _log_stopped(self, text: str) -> None:
        """The writer thread could not write (disk full, …): say so at once; walking goes on.

        Stimulation does not depend on the log, and stopping it mid-stride would drop the
        patient's foot without warning; so the session continues unlogged, the screen says so
        (and rings) from this moment, and the end of the session repeats it (docs/patient.md)."""
        self.log_error = text
        self.log_failed = True
        self._log_failed_steps = self.modes.steps if getattr(self, "modes", None) is not None else 0
        self._log_alert_seq += 1
        if self.on_log_failure is not None:
            self.on_log_failure(text)

    def _record(self, rec: Any) -> None:
        self.writer.put(rec)
        if isinstance(rec, FaultEntry):
            self._fault_seq += 1
            self._say("")   # what was said before the fault (e.g. "walking: ...") is no longer true
        if self.on_record is not None:
            self.on_record(rec)

    # ----- from the interface (any thread) ------------------------------------------------
    def command(self, name: str, *args) -> None:
        """Queue a command for the loop: walk, pause, resume, toggle_pause, stop, train,
        test [ms], up, down, channel INDEX, clear PERSON, estop, quit."""
        self._commands.put((name, args))

    def terminate(self, reason: str = "terminated") -> None:
        """Stop the loop now (the supervisor zeroes and stops the stimulator on the way out)."""
        self._terminate_reason = reason

    def status(self) -> Status:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout_s: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def close(self) -> str:
        """Stop the loop if it still runs, close the log and the ports. Returns the end reason."""
        if self.running:
            self.terminate("closed")
            self.wait(5.0)
        self._stack.close()
        return self._end_reason

    # ----- the loop thread -------------------------------------------------------------------
    def _loop(self) -> None:
        c = self.controller
        reason = "ended"
        try:
            c.run(self._fd, self._tick, wake_ms=20)
            reason = self._terminate_reason or self._end_reason or (
                "sensor closed" if c.kernel.fault else "ended")
        except BaseException as err:  # noqa: BLE001 - reported to the interface, stimulation is off
            self.error = err
            reason = f"error: {type(err).__name__}: {err}"
        finally:
            try:
                self.modes.finish()
                c.finish()
                if self.tee is not None:
                    self.tee.stop()  # its last batch of raw bytes goes to the log before the end
            except Exception as err:  # noqa: BLE001
                reason += f"; while finishing: {err}"
            self.modes.note("end", reason)
            self._end_reason = reason
            try:
                self.writer.close(reason, int(c.kernel.frames))
            except Exception as err:  # noqa: BLE001
                self.log_final = str(err)       # the whole story, for the end of the session
                if not self.log_failed:
                    self.log_error, self.log_failed = str(err), True
            self._publish(force=True, finished=True)

    def _tick(self) -> bool:
        """Between two kernel calls, in the loop thread: commands, automatic steps, status."""
        m = self.modes
        k = self.controller.kernel
        m.poll()
        now = time.monotonic()
        if k.frames != self._last_frames:
            self._last_frames = k.frames
            self._last_frame_s = now
        while True:
            try:
                name, args = self._commands.get_nowait()
            except queue.Empty:
                break
            self._apply(name, args)
        if self.first is not None and k.frames > 0:
            first, self.first = self.first, None
            if not self._apply(first, (self.test_burst_ms,) if first == "test" else ()):
                self.start_refused = f"could not start {first}: {self._message[0]}"
                if self.exit_when_done:
                    self._quit(now, self.start_refused)
        if self.sim is not None and not self._sim_end_handled and self.sim.main_done:
            self._sim_end_handled = True
            self._say("end of the recording")
            if m.mode in (Mode.WALK, Mode.PAUSED) or (m.mode in (Mode.TRAINING, Mode.TEST)):
                self._apply("stop", (), detail="end of recording")
            if self.exit_when_done:
                self._quit(now, "end of recording")
        if self.exit_when_done and self._quit_deadline is None and self.first is None and (
                m.last_training_done or (m.counts["test"] and m.mode == Mode.STANDBY)):
            self._quit(now, "training complete" if m.last_training_done else "test burst done")
        if self.duration_s is not None and self._quit_deadline is None and now - self._t_start >= self.duration_s:
            if m.mode in (Mode.WALK, Mode.PAUSED, Mode.TRAINING, Mode.TEST):
                self._apply("stop", (), detail="duration reached")
            self._quit(now, "duration reached")
        if self.log_frames and now - self._last_sample_flush_s >= self.SAMPLE_FLUSH_S:
            # per-sample output to the log as it happens, so a kill loses at most this interval
            self._last_sample_flush_s = now
            self.controller.finish()
        self._publish()
        if self._terminate_reason is not None:
            return True
        if self._quit_deadline is not None:
            idle = m.mode in (Mode.STANDBY, Mode.FAULT) and k.level == 0.0
            if idle or now >= self._quit_deadline:
                return True
        return False

    def _quit(self, now: float, reason: str) -> None:
        if self._quit_deadline is None:
            ramp_s = max(self.modes.envelope.ramp_down_us, self.profile.envelope.ramp_down_ms * 1000) / 1e6
            self._quit_deadline = now + ramp_s + 1.0
            self._end_reason = reason

    def _apply(self, name: str, args: tuple, detail: str = "") -> bool:
        """Carry out one command; False (and a message) when it does not apply now."""
        m = self.modes
        try:
            if name == "walk":
                if m.mode == Mode.PAUSED:
                    m.resume()
                else:
                    m.walk()
                self._say("walking: stimulation follows your steps")
            elif name == "pause":
                m.pause()
                self._say("paused")
            elif name == "resume":
                m.resume()
                self._say("walking again")
            elif name == "toggle_pause":
                if m.mode == Mode.PAUSED:
                    m.resume()
                    self._say("walking again")
                else:
                    m.pause()
                    self._say("paused")
            elif name == "stop":
                m.stop(detail)
                self._say("stopped" + (f" ({detail})" if detail else ""))
            elif name == "train":
                m.train()
                self._say(f"training for {self.profile.training.session_min:g} min")
            elif name == "test":
                ms = int(args[0]) if args else self.test_burst_ms
                m.test_burst(ms)
                self._say(f"test burst of {ms} ms")
            elif name in ("up", "down"):
                level = m.intensity_step(1 if name == "up" else -1)
                active = "" if m.kernel.level == 0.0 else " from the next stimulation"
                which = (f"channel {self.profile.channel_numbers[m.selected_channel]} "
                         if self.profile.patient.adjust == "per_channel" else "")
                self._say(f"{which}intensity {level:g} mA{active}")
            elif name == "channel":
                if self.profile.patient.adjust != "per_channel":
                    self._say("+/- changes every channel together (this profile)" if self.profile.extra_channels
                              else "this profile has one channel")
                    return False
                number = m.select_channel(int(args[0]))
                self._say(f"+/- now changes channel {number}")
            elif name == "clear":
                m.clear_fault(args[0] if args else "")
                self._say(f"fault cleared by {args[0].strip()}")
            elif name == "estop":
                m.emergency_stop("stop key")
            elif name == "quit":
                if m.mode in (Mode.WALK, Mode.PAUSED, Mode.TRAINING, Mode.TEST):
                    m.stop("quit")
                self._quit(time.monotonic(), "quit")
            else:
                self._say(f"unknown command {name!r}")
                return False
        except IntensityRefused as err:
            self._say(str(err))
            return False
        except ModeError as err:
            self._say(str(err))
            return False
        return True

    def _channels_text(self) -> str:
        """ch1 30 mA  ch2 25 mA, the one +/- changes marked with * (per_channel)."""
        p, m = self.profile, self.modes
        if not p.extra_channels:
            return ""
        levels = [m.intensity.level_ma] + [c.level_ma for c in m.channel_intensity]
        marks = ["*" if p.patient.adjust == "per_channel" and i == m.selected_channel else ""
                 for i in range(len(levels))]
        return "  ".join(f"ch{n}{mark} {_fmt_ma(level)}" for n, level, mark in zip(p.channel_numbers, levels, marks))

    def _say(self, text: str) -> None:
        self._message = (text, self._message[1] + 1)

    def _publish(self, force: bool = False, finished: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_publish < self.STATUS_INTERVAL_S:
            return
        self._last_publish = now
        m, k, p = self.modes, self.controller.kernel, self.profile
        fault = m.last_fault
        active = m.mode == Mode.FAULT
        if k.frames == 0:
            sensor = "waiting for data"
        elif active and fault is not None and fault.code in _SENSOR_LOST:
            sensor = "LOST"
        elif now - self._last_frame_s > 0.5:
            sensor = "no data"
        else:
            sensor = f"ok ({k.frames} frames)"
        stim = self.stimulator
        if stim is None:
            stim_text = "none (outputs not sent)"
        elif stim.fault is not None:
            stim_text = f"FAULT ({stim.fault.reason})"
        elif stim.is_open:
            stim_text = "connected" + (" (emulator)" if self.sim is not None and self.sim.emulator else "")
        else:
            stim_text = "closed"
        left = m.training_remaining_s()
        log_text = self.log_error or ""
        cs = self.commit_stats
        if self.log_failed:
            log_text = (f"{self.log_error}. Stimulation goes on as before; "
                        f"{m.steps - self._log_failed_steps} steps since then not saved")
        elif not log_text and cs is not None:
            saved_at = datetime.now().timestamp() - (now - cs.last_commit_monotonic)
            log_text = (f"session {self.session_id}: {cs.steps} steps, {cs.events} records saved "
                        f"(last {datetime.fromtimestamp(saved_at):%H:%M:%S})")
        text, seq = self._message
        status = Status(
            profile_name=p.name, mode=m.mode.value, state=m.machine.state.value,
            waiting=self.controller.waiting_reason,
            adaptive=self.controller.adaptive.status if self.controller.adaptive is not None else "",
            intensity_ma=m.intensity.level_ma, active_ma=float(k.amplitude_ma), output_ma=float(k.current_ma),
            min_ma=p.patient.amplitude_min_ma, max_ma=p.patient.amplitude_max_ma, step_ma=p.patient.step_ma,
            channels=self._channels_text(),
            steps_session=m.steps, steps_today=self._steps_before + m.steps, training_left_s=left,
            training_bursts=m.counts["training"], sensor=sensor, stimulator=stim_text, fault_active=active,
            fault_message=patient_fault_message(fault.code, fault.detail, p) if fault is not None else "",
            fault_seq=self._fault_seq,
            last_fault=(f"{datetime.fromtimestamp(fault.wall_s):%H:%M:%S} {fault.code.name.lower()}"
                        if fault is not None else "none"),
            message=text, message_seq=seq, log=log_text, log_failed=self.log_failed,
            log_alert_seq=self._log_alert_seq, frames=int(k.frames),
            finished=finished, end_reason=self._end_reason if finished else "")
        with self._lock:
            self._status = status


# ----- interfaces -----------------------------------------------------------------------------

KEY_HELP = ("keys: w walk  p pause/resume  s stop  t training  b test burst",
            "      +/- intensity  1-4 channel for +/-  x stop NOW  c clear fault  q quit")


def _fmt_ma(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") + " mA"


def render(status: Status, width: int = 80) -> list[tuple[str, str]]:
    """The screen as (text, style) lines; style is "", "title", "bold", "fault" or "dim"."""
    s = status
    lines: list[tuple[str, str]] = [
        (f"fescontrol — patient session   profile {s.profile_name}", "title"),
        ("NOT A CLEARED MEDICAL DEVICE: use only under clinical supervision", "dim"),
        ("", ""),
        (f"Mode        {s.mode.upper():<10} state {s.state}"
         + (f"   ({s.waiting})" if s.waiting else ""), "bold"),
    ]
    pending = "" if abs(s.intensity_ma - s.active_ma) < 1e-9 else "  (from the next stimulation)"
    lines.append((f"Intensity   {_fmt_ma(s.intensity_ma)}{pending}   range {_fmt_ma(s.min_ma)}"
                  f"..{_fmt_ma(s.max_ma)}, step {_fmt_ma(s.step_ma)}", "bold"))
    if s.channels:
        lines.append((f"Channels    {s.channels}", "bold"))
    if s.adaptive:
        lines.append((f"Adaptive    {s.adaptive}", ""))
    lines.append((f"Output      {s.output_ma:5.1f} mA", ""))
    lines.append((f"Steps today {s.steps_today}   (this session {s.steps_session})", ""))
    if s.training_left_s is not None:
        m, sec = divmod(int(round(s.training_left_s)), 60)
        lines.append((f"Training    {m:02d}:{sec:02d} left   contractions {s.training_bursts}", "bold"))
    else:
        lines.append(("Training    -", ""))
    lines.append((f"Sensor      {s.sensor}", ""))
    lines.append((f"Stimulator  {s.stimulator}", ""))
    lines.append((f"Last fault  {s.last_fault}", ""))
    if s.log_failed:
        # wrapped, never cut, in the alarm style: the patient must know nothing is being saved
        for i, text in enumerate(textwrap.wrap(f"LOGGING STOPPED: {s.log}", max(20, width - 13),
                                               break_on_hyphens=False)):
            lines.append((("Log         " if i == 0 else " " * 12) + text, "fault"))
    else:
        lines.append((f"Log         {s.log}", "dim"))
    lines.append(("", ""))
    if s.fault_active:
        # wrapped, never cut: the patient must read the whole message
        for text in textwrap.wrap(f"FAULT: {s.fault_message}", max(20, width - 1)):
            lines.append((text, "fault"))
        lines.append(("Check, then press c and type your name to clear it, or q to quit.", "fault"))
    else:
        lines.append(("", ""))
        lines.append(("", ""))
    lines.append((f"> {s.message}" if s.message else "", ""))
    if s.finished:
        lines.append((f"Session ended ({s.end_reason}). Press q to leave.", "bold"))
    else:
        lines.append(("", ""))
    lines.extend((text, "dim") for text in KEY_HELP)
    return [(text[:max(1, width - 1)], style) for text, style in lines]


KEYMAP = {
    ord("w"): "walk", ord("p"): "toggle_pause", ord(" "): "toggle_pause", ord("s"): "stop",
    ord("t"): "train", ord("b"): "test", ord("+"): "up", ord("="): "up", ord("-"): "down", ord("_"): "down",
    curses.KEY_UP: "up", curses.KEY_RIGHT: "up", curses.KEY_DOWN: "down", curses.KEY_LEFT: "down",
    ord("x"): "estop", ord("q"): "quit",
}
#: keys 1..4 choose the channel +/- changes (patient.adjust: per_channel): kernel index 0..3
CHANNEL_KEYS = {ord(str(n)): n - 1 for n in range(1, 5)}


class CursesUI:
    """The status screen and keys (see :data:`KEY_HELP`). Ctrl-C is an emergency stop."""

    REFRESH_S = 0.1

    def __init__(self, session: PatientSession):
        self.session = session
        self._fault_seq = 0
        self._log_alert_seq = 0
        self.bells = 0

    def run(self) -> int:
        return curses.wrapper(self._main)

    def _main(self, scr) -> int:
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        curses.start_color() if curses.has_colors() else None
        fault_attr = curses.A_REVERSE | curses.A_BOLD
        if curses.has_colors():
            curses.init_pair(1, curses.COLOR_WHITE, curses.COLOR_RED)
            fault_attr = curses.color_pair(1) | curses.A_BOLD
        styles = {"": curses.A_NORMAL, "title": curses.A_BOLD, "bold": curses.A_BOLD, "dim": curses.A_DIM,
                  "fault": fault_attr}
        scr.timeout(int(self.REFRESH_S * 1000))
        quitting = False
        while True:
            status = self.session.status()
            if status.fault_seq != self._fault_seq or status.log_alert_seq != self._log_alert_seq:
                self._fault_seq, self._log_alert_seq = status.fault_seq, status.log_alert_seq
                self.bells += 1
                curses.beep()
            self._draw(scr, status, styles)
            if status.finished and quitting:
                return 0
            try:
                key = scr.getch()
            except KeyboardInterrupt:
                self.session.command("estop")
                quitting = True
                continue
            if key == -1:
                continue
            if key == ord("c"):
                if status.fault_active:
                    # an empty name is sent too: the refusal ("needs the name ...") is the feedback
                    self.session.command("clear", self._ask(scr, "Your name (who checked the device): "))
                else:
                    self.session.command("clear")   # says "there is no fault to clear"
                continue
            if status.finished:
                if key in (ord("q"), ord("x")):
                    return 0
                continue
            if key in CHANNEL_KEYS:
                self.session.command("channel", CHANNEL_KEYS[key])
                continue
            name = KEYMAP.get(key)
            if name == "quit":
                quitting = True
            if name:
                self.session.command(name)

    def _draw(self, scr, status: Status, styles: dict) -> None:
        height, width = scr.getmaxyx()
        scr.erase()
        for row, (text, style) in enumerate(render(status, width)):
            if row >= height:
                break
            try:
                scr.addstr(row, 0, text, styles.get(style, 0))
            except curses.error:
                pass
        scr.refresh()

    def _ask(self, scr, prompt: str) -> str:
        height, width = scr.getmaxyx()
        row = min(height - 1, 17)
        scr.timeout(-1)
        curses.echo()
        try:
            scr.move(row, 0)
            scr.clrtoeol()
            scr.addstr(row, 0, prompt[:width - 1])
            scr.refresh()
            raw = scr.getstr(row, min(len(prompt), width - 2), 60)
        except (curses.error, KeyboardInterrupt):
            raw = b""
        finally:
            curses.noecho()
            scr.timeout(int(self.REFRESH_S * 1000))
        return raw.decode("utf-8", "replace").strip()


class _HeldLogs(logging.Handler):
    """Keeps warnings while the screen is up (the default handler would write over it)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < 200:
            self.lines.append(f"{record.levelname.lower()}: {record.name}: {record.getMessage()}")


class HeadlessUI:
    """One line per change (mode, intensity, burst, fault) for scripts and logs; with
    ``show_commits`` also one per commit of the session log (several per step: off by
    default; the end line says what was saved)."""

    def __init__(self, session: PatientSession, echo: Callable[[str], None] = print, show_commits: bool = False):
        self.session = session
        self.echo = echo
        self.show_commits = show_commits
        session.on_record = self._on_record
        session.on_log_failure = self._on_log_failure
        if show_commits:
            session.on_commit = self._on_commit

    def _on_record(self, rec: Any) -> None:
        e = self.echo
        if isinstance(rec, ModeChange):
            e(f"{rec.t_us / 1e6:10.3f} s  mode {rec.mode.value} ({rec.cause})")
        elif isinstance(rec, IntensityChange):
            e(f"{rec.t_us / 1e6:10.3f} s  intensity {rec.level_ma:g} mA ({rec.cause})")
        elif isinstance(rec, BurstRecord):
            # stamped with its end (when it is known and logged), so lines stay in time order
            flags = (" (cut off)" if rec.cut_off else "") + ("" if rec.complete else " (interrupted)")
            for command in ("pause", "stop"):
                if command in rec.events:
                    flags += f" ({command} during it)"
            e(f"{rec.end_us / 1e6:10.3f} s  {rec.kind} {rec.number} done: onset {rec.onset_us / 1e6:.3f} s, "
              f"{rec.duration_ms:.0f} ms, peak {rec.peak_ma:.1f} mA{flags}")
        elif isinstance(rec, FaultEntry):
            e(f"\aFAULT: {patient_fault_message(rec.code, rec.detail, self.session.profile)} [{rec.text}]")
        elif isinstance(rec, Note):
            e(f"note: {rec.text}")

    def _on_log_failure(self, text: str) -> None:
        self.echo(f"\aLOGGING STOPPED: {text}. Stimulation goes on as before; this session is no longer "
                  f"saved. Tell your clinician.")

    def _on_commit(self, stats) -> None:
        self.echo(f"log: committed {stats.steps} steps, {stats.bursts} bursts, {stats.events} events, "
                  f"{stats.frame_bytes} sensor bytes, {stats.samples} samples")

    def run(self, stop_event: threading.Event | None = None) -> int:
        """Wait for the session to end (SIGTERM/SIGINT stop it). Returns 0, or 1 after a fault."""
        stop_event = stop_event or threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: stop_event.set())
        try:
            while self.session.running:
                if stop_event.wait(0.05):
                    self.session.terminate("interrupted")
                    self.session.wait(5.0)
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status = self.session.status()
        self.echo(f"session ended: {self.session._end_reason or status.end_reason}; "
                  f"{status.steps_session} steps; last fault: {status.last_fault}")
        cs = self.session.commit_stats
        if cs is not None and not self.show_commits:
            self.echo(f"log: session {self.session.session_id} in {self.session.db_path}: {cs.steps} steps, "
                      f"{cs.bursts} bursts, {cs.events} events saved")
        return 1 if status.fault_active or self.session.start_refused else 0


def run_with_ui(session: PatientSession, *, ui: str = "curses", echo: Callable[[str], None] = print,
                verbose: bool = False) -> int:
    """Start the session, run the interface until the patient quits, close everything.
    ``verbose`` (headless only): also a line per commit of the session log."""
    headless = HeadlessUI(session, echo, show_commits=verbose) if ui != "curses" else None
    session.start()
    try:
        if ui == "curses":
            previous = None
            if threading.current_thread() is threading.main_thread():
                previous = signal.signal(signal.SIGTERM, lambda *_: session.terminate("terminated"))
            # log messages must not scribble over the screen: keep them, print them afterwards
            held = _HeldLogs()
            root = logging.getLogger()
            root.addHandler(held)
            try:
                CursesUI(session).run()
            finally:
                root.removeHandler(held)
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
                for line in held.lines:
                    echo(line)
            if session.running:
                session.command("quit")
                session.wait(5.0)
            status = session.status()
            echo(f"session {session.session_id} ended: {session._end_reason or 'quit'}; "
                 f"{status.steps_session} steps; last fault: {status.last_fault}")
            code = 1 if status.fault_active or session.start_refused else 0
        else:
            code = headless.run()
    finally:
        session.close()
    if session.log_error:
        echo(f"WARNING: the session log could not be completed: {session.log_final or session.log_error}")
        code = code or 1
    return code


__all__ = ["PatientSession", "SimulatedDevices", "SensorTee", "Status", "CursesUI", "HeadlessUI", "render",
           "patient_fault_message", "run_with_ui"]
