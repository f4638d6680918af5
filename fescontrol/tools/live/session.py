"""The control-loop side of the live view: the real loop in a thread, changes at safe points.

Over 400 lines: one job, the live view's loop thread and the safe-point queue of changes it
applies; the checks stay next to the loop that applies them.

NOT A CLEARED MEDICAL DEVICE.

:class:`LiveSession` runs :meth:`fescontrol.loop.controller.Controller.run` (the device's own
real-time loop) on a sensor file descriptor — a real port, or a pseudo-terminal that
replays a recording at real-time speed (:class:`fescontrol.sim.pty_sensor.PtySensor`). Between two
returns of the kernel (at most ``WAKE_MS`` apart) the loop thread, and only it:

* moves the new kernel trace into a :class:`LiveBuffer` that the web server reads;
* applies a pending profile change at the next **safe point**: the kernel output is zero
  (level 0) and the gait machine is in stance, standby or paused — never mid-ramp, never
  mid-burst, never while a fault is latched (a fault holds the change until a person
  clears it). Amplitude (``patient.amplitude_max_ma``), ramps, extension and
  ``max_stim_ms`` are applied to the running kernel and machine; any other change
  (thresholds, ``stimulation.*``) replaces the controller with one built from the new
  profile (fresh detectors that wait for a stance before the next onset, and the
  supervisor's caps from the new profile);
* runs a test burst at a safe point: walking detection stops, the gait machine's test-burst
  mode runs the patient's test-burst program (:class:`fescontrol.session.modes.TestBurstProgram`:
  ramp up, a plateau that ends early enough for the ramp down to complete inside the burst
  limit, ramp down) (or, on a machine without that mode, the machine is
  paused and the kernel ramps), with the kernel's own max-stimulation cut-off set to
  ``duration_ms`` (≤ the hard cap :data:`fescontrol.core.limits.TEST_BURST_MS_MAX`) so it ends in
  time whatever else happens; a wall-clock guard latches a fault if the output is not back
  to zero ``TEST_BURST_GUARD_MS`` later. Walking detection resumes after it. Every output
  still goes through the safety supervisor.

Every change is validated (:func:`fescontrol.core.profile.profile_from_dict`) when it is asked
for, refused whole with the validator's messages, and logged (who, what, when asked, when
applied, at which sensor time and machine state).
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fescontrol.drivers.sensor_protocol import SENSOR_BAUD_DEFAULT

from fescontrol.core.profile_diff import Change, profile_changes
from fescontrol.core.codes import FAULT_TEXT, Fault, Phase
from fescontrol.loop.controller import Controller, LoggedEvent
from fescontrol.kernel.params import KernelParams
from fescontrol.machine.gait import GaitState
from fescontrol.session.modes import ModeError, TestBurstProgram, test_burst_envelope
from fescontrol.core.profile import Profile, ProfileError, _allowed, _field_info, profile_from_dict

log = logging.getLogger(__name__)

WAKE_MS = 10
BUFFER_SECONDS = 60.0
TEST_BURST_GUARD_MS = 500
CLEAR_WATCH_S = 0.5             # a fault that latches again this soon after a clear is reported with it
SAFE_STATES = (GaitState.STANCE, GaitState.STANDBY, GaitState.PAUSED)
#: Fields the live page may change (dotted profile paths).
EDITABLE = (
    "stimulation.amplitude_ma", "patient.amplitude_max_ma", "patient.amplitude_min_ma",
    "envelope.ramp_up_ms", "envelope.ramp_down_ms", "envelope.extension_ms", "envelope.max_stim_ms",
    "trigger.heel.off_fraction", "trigger.heel.on_fraction", "trigger.heel.off_min_n",
    "trigger.heel.on_min_n", "trigger.heel.debounce_ms",
    "trigger.tilt.onset_rate_dps", "trigger.tilt.swing_rate_dps", "trigger.tilt.strike_rate_dps",
    "trigger.tilt.stance_rate_dps", "trigger.tilt.min_stance_ms", "trigger.tilt.debounce_ms",
)
#: Changes the running kernel and machine take in place (at a safe point).
IN_PLACE = {"patient.amplitude_max_ma", "patient.amplitude_min_ma", "envelope.ramp_up_ms",
            "envelope.ramp_down_ms", "envelope.extension_ms", "envelope.max_stim_ms"}


class LiveError(ValueError):
    """A live request was refused. ``problems`` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


def check_number(path: str, value: Any) -> str | None:
    """Why ``value`` is not a plain finite number for the field ``path`` (None when it is).

    JSON ``true``/``false``, strings, null, lists and objects are refused rather than coerced
    (pydantic would read ``true`` as 1 mA), and so are NaN and ±infinity.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        info = _field_info(Profile, tuple(path.split(".")))
        allowed = _allowed(info)
        try:
            shown = json.dumps(value)
        except (TypeError, ValueError):
            shown = repr(value)
        return (f"{path}: {shown[:40]} is not a number; give a plain number"
                + (f" ({allowed})" if allowed else ""))
    if not math.isfinite(value):
        return f"{path}: {value!r} is not a finite number"
    return None


def person(by: Any, what: str) -> str:
    """The non-empty name of the person asking for ``what``; raises :class:`LiveError`."""
    if not isinstance(by, str) or not by.strip():
        raise LiveError(f"{what} needs the name of the person who asks for it (by: a non-empty text)")
    name = " ".join(by.split())
    if len(name) > 80:
        raise LiveError(f"{what}: the name is longer than 80 characters")
    return name


@dataclass
class ActionRecord:
    """A fault clear or a test burst asked for on the live page: who, when, what came of it."""

    id: int
    kind: str                          # clear fault | test burst
    by: str
    asked_wall_s: float
    detail: str = ""
    outcome: str = "pending"           # pending | done | refused | no fault latched …
    done_wall_s: float | None = None
    done_t_s: float | None = None

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "by": self.by, "asked_wall_s": self.asked_wall_s,
                "detail": self.detail, "outcome": self.outcome, "done_wall_s": self.done_wall_s,
                "done_t_s": self.done_t_s}


# ----------------------------------------------------------------------------- data
class LiveBuffer:
    """Per-sample signals of the last ``BUFFER_SECONDS`` for the web page (thread-safe).

    Samples are numbered from 0 for the whole session; a reader keeps the number of the
    next sample it wants (``cursor``).
    """

    FIELDS = ("t_s", "heel_n", "pitch_rate_dps", "current_ma", "thr_off_n", "thr_on_n")

    def __init__(self, max_samples: int):
        self._lock = threading.Lock()
        self.max_samples = int(max_samples)
        self._chunks: list[tuple[int, dict[str, np.ndarray]]] = []
        self.total = 0
        self.events: list[dict] = []
        self.produced_wall_s = 0.0   # when the newest sample left the sensor (or reached the loop)

    def append(self, arrays: dict[str, np.ndarray], produced_wall_s: float) -> None:
        n = len(arrays["t_s"])
        if not n:
            return
        with self._lock:
            self._chunks.append((self.total, arrays))
            self.total += n
            self.produced_wall_s = produced_wall_s
            while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]["t_s"]) < self.total - self.max_samples:
                self._chunks.pop(0)

    def add_event(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)
            if len(self.events) > 2000:
                del self.events[:1000]

    def since(self, cursor: int, max_samples: int = 4000) -> tuple[int, dict[str, list], float]:
        """Samples numbered >= cursor (at most the newest ``max_samples``); returns the new cursor."""
        with self._lock:
            parts = [(start, arr) for start, arr in self._chunks if start + len(arr["t_s"]) > cursor]
            total, produced = self.total, self.produced_wall_s
        cursor = max(cursor, total - max_samples)
        out: dict[str, list] = {k: [] for k in self.FIELDS}
        for start, arr in parts:
            skip = max(0, cursor - start)
            for k in self.FIELDS:
                out[k].extend(np.round(arr[k][skip:], 3).tolist())
        return total, out, produced

    def events_since(self, index: int) -> tuple[int, list[dict]]:
        with self._lock:
            return len(self.events), self.events[index:] if index < len(self.events) else []


@dataclass
class ChangeRecord:
    """A change asked for on the live page, and when it took effect."""

    id: int
    by: str
    changes: list[Change]
    asked_wall_s: float
    status: str = "pending"            # pending | applied | superseded
    applied_wall_s: float | None = None
    applied_t_s: float | None = None   # sensor time (s from the session start)
    applied_state: str | None = None
    applied_level: float | None = None
    how: str = ""                      # in place | new controller

    def to_json(self) -> dict:
        return {"id": self.id, "by": self.by, "status": self.status, "how": self.how,
                "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in self.changes],
                "asked_wall_s": self.asked_wall_s, "applied_wall_s": self.applied_wall_s,
                "applied_t_s": self.applied_t_s, "applied_state": self.applied_state,
                "applied_level": self.applied_level}


@dataclass
class TestBurstRequest:
    """A test burst asked for on the live page: who, when, and what became of it."""

    duration_ms: int
    asked_wall_s: float
    by: str = ""
    status: str = "pending"            # pending | running | done | refused
    started_t_s: float | None = None
    ended_t_s: float | None = None
    peak_ma: float = 0.0
    resumed_walking: bool = False
    started_mono: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"duration_ms": self.duration_ms, "by": self.by, "status": self.status,
                "started_t_s": self.started_t_s,
                "ended_t_s": self.ended_t_s, "peak_ma": self.peak_ma}


# ----------------------------------------------------------------------------- session
class LiveSession:
    """The real control loop plus the live page's requests (see module doc).

    ``open_fd`` is called once in :meth:`start` and returns ``(fd, produced_wall)``: the
    sensor file descriptor and a function mapping a sensor time in s (from the first
    sample) to the wall-clock time the sample left the sensor (None when unknown).
    """

    def __init__(self, profile: Profile, open_fd: Callable[[], tuple[int, Callable[[float], float | None] | None]],
                 *, stimulator=None, implementation: str = "auto", store=None, patient_id: str | None = None,
                 source: str = "", close: Callable[[], None] | None = None):
        self.profile = profile
        self.start_profile = profile
        self._open_fd = open_fd
        self._close = close
        self.stimulator = stimulator
        self.implementation = implementation
        self.store = store
        self.patient_id = patient_id or profile.patient_id
        self.source = source
        rate = profile.device.sample_rate_hz
        self.buffer = LiveBuffer(int(BUFFER_SECONDS * max(rate, 100.0) * 2.1))
        self.changes: list[ChangeRecord] = []
        self.test_bursts: list[TestBurstRequest] = []
        self.saved_versions: list[dict] = []
        self.actions: list[ActionRecord] = []     # fault clears and test bursts, who and when
        self._clear_action: ActionRecord | None = None
        self._clear_watch: tuple[ActionRecord, float] | None = None   # a clear just done, watched
        self._lock = threading.Lock()
        self._pending: Profile | None = None
        self._pending_ids: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.controller: Controller | None = None
        self.error: str | None = None
        self.loop_ended = threading.Event()
        self.controllers_built = 0
        self._t0_us: int | None = None
        self._produced_wall: Callable[[float], float | None] | None = None
        self._burst: TestBurstRequest | None = None
        self._fault_seen = 0
        self.started_wall_s = 0.0

    # ----- requests from the web side (any thread) ------------------------------------------
    def request_change(self, changes: dict[str, Any], by: str = "orthotist") -> ChangeRecord:
        """Validate a change against the hard caps and queue it for the next safe point.

        Raises :class:`LiveError` (with the validator's messages) and queues nothing when any
        field is unknown or the changed profile is refused.
        """
        if not isinstance(changes, dict) or not changes:
            raise LiveError("no change given")
        unknown = [k for k in changes if k not in EDITABLE]
        if unknown:
            raise LiveError(f"not editable here: {', '.join(unknown)}",
                            [f"{k}: not editable on the live page (editable: {', '.join(EDITABLE)})"
                             for k in unknown])
        loose = [p for p in (check_number(k, v) for k, v in changes.items()) if p]
        if loose:
            raise LiveError("refused: " + "; ".join(loose), loose)
        if not isinstance(by, str):
            raise LiveError("by: the name of the person asking must be a text")
        with self._lock:
            base = self._pending or self.profile
            data = base.model_dump(mode="json")
            for path, value in changes.items():
                *head, last = path.split(".")
                node = data
                for part in head:
                    node = node[part]
                node[last] = value
            try:
                candidate = profile_from_dict(data, "live change")
            except ProfileError as err:
                raise LiveError("refused: " + "; ".join(err.problems), err.problems) from None
            diff = profile_changes(base, candidate)
            if not diff:
                raise LiveError("no change: the values are the ones in use")
            record = ChangeRecord(len(self.changes) + 1, by, diff, time.time())
            self.changes.append(record)
            self._pending = candidate
            self._pending_ids.append(record.id)
        log.info("live change %d asked by %s: %s", record.id, by,
                 ", ".join(f"{c.path} {c.old}->{c.new}" for c in diff))
        return record

    def _period_us(self) -> int:
        """The sample period (µs) of the kernel the current profile builds (device.sample_rate_hz
        is not editable live, so it is the running kernel's too)."""
        return KernelParams(self.profile).period_us

    def request_test_burst(self, duration_ms: int, by: str) -> TestBurstRequest:
        """Queue one test burst of ``duration_ms`` (ramps of the current profile included),
        asked for by the person ``by`` (required). Logged with who and when.

        The burst runs the patient's test-burst program
        (:class:`fescontrol.session.modes.TestBurstProgram`). Raises :class:`LiveError` for a
        missing name, a duration that is not an integer number of ms (booleans refused) or that
        ``fes test-burst`` refuses (:func:`fescontrol.session.modes.test_burst_envelope`: the ramps
        plus the plateau margin ≤ x ≤ the hard cap), or a burst already under way.
        """
        name = person(by, "a test burst")
        if isinstance(duration_ms, bool) or not isinstance(duration_ms, int):
            raise LiveError(f"test burst duration_ms = {duration_ms!r}; allowed an integer number of ms")
        try:
            test_burst_envelope(self.profile, duration_ms, self._period_us())
        except ModeError as err:
            raise LiveError(f"test burst duration_ms = {duration_ms!r}: {err}") from None
        with self._lock:
            if self._burst is not None and self._burst.status in ("pending", "running"):
                raise LiveError("a test burst is already running")
            burst = TestBurstRequest(duration_ms, time.time(), by=name)
            self._burst = burst
            self.test_bursts.append(burst)
            action = ActionRecord(len(self.actions) + 1, "test burst", name, burst.asked_wall_s,
                                  f"{duration_ms} ms")
            self.actions.append(action)
            burst.extra["action"] = action
        log.warning("live test burst of %d ms asked by %s", duration_ms, name)
        return burst

    def clear_fault(self, by: str) -> ActionRecord:
        """A person clears the latched fault (asked from the page); walking starts again.

        Raises :class:`LiveError` without a name, when no fault is latched, or when a clear
        is already waiting for the loop. Logged with who and when.
        """
        name = person(by, "clearing a fault")
        c = self.controller
        with self._lock:
            if c is None or not c.kernel.fault:
                raise LiveError("no fault is latched; nothing to clear")
            if self._clear_action is not None:
                raise LiveError(f"a clear by {self._clear_action.by} is already being applied")
            fault = c.supervisor.fault
            action = ActionRecord(len(self.actions) + 1, "clear fault", name, time.time(),
                                  fault.text if fault is not None else "")
            self.actions.append(action)
            self._clear_action = action
        log.warning("live fault clear asked by %s (%s)", name, action.detail)
        return action

    def save_version(self, by: str, note: str) -> dict:
        """Store the profile in use as a new version (needs a store)."""
        if self.store is None:
            raise LiveError("no profile store: start `fes live` with --store DIR (and --patient ID)")
        with self._lock:
            profile = self.profile
            applied = [c for c in self.changes if c.status == "applied"]
        summary = "; ".join(f"{c.path} {c.old}->{c.new}" for r in applied for c in r.changes)
        full_note = note.strip() or "live session"
        if summary:
            full_note += f" [live changes: {summary}]"
        from fescontrol.tools.profile_store import StoreError
        try:
            self.store.ensure_baseline(self.start_profile, by=by, source=f"live session ({self.source})",
                                       patient_id=self.patient_id)
            v = self.store.save(profile, by=by, note=full_note, action="live", patient_id=self.patient_id)
        except (StoreError, ProfileError) as err:
            raise LiveError(str(err)) from None
        info = {"patient_id": v.patient_id, "version": v.version, "file": v.file, "at": v.at}
        self.saved_versions.append(info)
        return info

    def snapshot(self) -> dict:
        """State for the page (thread-safe enough: plain reads of numbers)."""
        c = self.controller
        with self._lock:
            pending = [r.id for r in self.changes if r.status == "pending"]
            burst = self._burst.to_json() if self._burst else None
        fault = c.supervisor.fault if c is not None else None
        return {"state": c.state.value if c is not None else "starting",
                "fault": fault.text if fault is not None else None,
                "waiting": c.waiting_reason if c is not None else "",
                "adaptive": c.adaptive.status if c is not None and c.adaptive is not None else "",
                "amplitude_ma": float(c.kernel.amplitude_ma) if c is not None else 0.0,
                "level": float(c.kernel.level) if c is not None else 0.0,
                "pending": pending, "test_burst": burst, "error": self.error,
                "loop_ended": self.loop_ended.is_set(), "kernel": c.implementation if c else "",
                "controllers_built": self.controllers_built}

    # ----- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "LiveSession":
        self.started_wall_s = time.time()
        fd, self._produced_wall = self._open_fd()
        self._fd = fd
        self._thread = threading.Thread(target=self._run, name="fes-live-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self._close is not None:
            self._close()
            self._close = None

    # ----- the loop thread -----------------------------------------------------------------------
    def _new_controller(self, profile: Profile) -> Controller:
        from fescontrol.loop.runner import DEVICE_EVENT_HISTORY
        c = Controller(profile, stimulator=self.stimulator, implementation=self.implementation,
                       trace_capacity=2048, event_history=DEVICE_EVENT_HISTORY)
        # a replay source says how fast its sensor clock runs against the wall (recording_source)
        c.set_sensor_clock_rate(getattr(self._open_fd, "sensor_clock_rate", 1.0))
        c.trace_sink = self._on_trace
        c.event_listeners.append(self._on_event)
        self.controllers_built += 1
        return c

    def _run(self) -> None:
        try:
            self.controller = self._new_controller(self.profile)
            self.controller.start()
            swap: dict = {}

            def should_stop() -> bool:
                self.controller.finish()
                self._between_samples(swap)
                return self._stop.is_set() or bool(swap)

            while not self._stop.is_set():
                swap.clear()
                self.controller.run(self._fd, should_stop, wake_ms=WAKE_MS)
                self.controller.finish()
                if not swap:
                    break          # the sensor closed or stop was asked for
                self._swap(swap["profile"], swap["ids"])
        except Exception as err:  # shown on the page; the supervisor already zeroed the output
            log.exception("live loop failed")
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.loop_ended.set()

    def _swap(self, profile: Profile, ids: list[int]) -> None:
        old = self.controller
        self.profile = profile
        self.controller = self._new_controller(profile)
        self.controller.start()
        self._mark_applied(ids, old, "new controller")

    def _on_trace(self, trace: dict, n: int) -> None:
        if not n:
            return
        k = self.controller.kernel
        t_us = np.array(trace["t_us"][:n], dtype=np.int64)
        if self._t0_us is None:
            self._t0_us = int(t_us[0])
        t_s = (t_us - self._t0_us) / 1e6
        heel = self.profile.trigger.heel
        peak = float(k.heel_peak)
        arrays = {"t_s": t_s, "heel_n": np.array(trace["heel_n"][:n]),
                  "pitch_rate_dps": np.array(trace["pitch_rate_dps"][:n]),
                  "current_ma": np.array(trace["current_ma"][:n]),
                  "thr_off_n": np.full(n, max(heel.off_min_n, heel.off_fraction * peak)),
                  "thr_on_n": np.full(n, max(heel.on_min_n, heel.on_fraction * peak))}
        produced = self._produced_wall(float(t_s[-1])) if self._produced_wall else None
        self.buffer.append(arrays, produced if produced is not None else time.time())
        if self._burst is not None and self._burst.status == "running":
            self._burst.peak_ma = max(self._burst.peak_ma, float(arrays["current_ma"].max()))

    def _sensor_t_s(self) -> float | None:
        if self._t0_us is None or self.controller is None:
            return None
        return (int(self.controller.kernel.t_us) - self._t0_us) / 1e6

    def _on_event(self, e: LoggedEvent) -> None:
        t_s = None if self._t0_us is None else (e.t_us - self._t0_us) / 1e6
        self.buffer.add_event({"t_s": t_s, "event": e.event, "state": e.state})

    def _safe(self) -> bool:
        c = self.controller
        return (not c.kernel.fault and c.kernel.level == 0.0 and c.kernel.current_ma == 0.0
                and c.state in SAFE_STATES and (self._burst is None or self._burst.status != "running"))

    def _between_samples(self, swap: dict) -> None:
        """Runs in the loop thread between kernel returns: faults, changes, test bursts."""
        c = self.controller
        with self._lock:
            action, self._clear_action = self._clear_action, None
        watch = self._clear_watch
        if watch is not None and (c.kernel.fault or time.monotonic() - watch[1] > CLEAR_WATCH_S):
            self._clear_watch = None
            if c.kernel.fault:        # the cause was still there (e.g. the sensor still silent)
                fault = c.supervisor.fault
                watch[0].outcome = "done, but the fault latched again at once" + (
                    f": {fault.text}" if fault is not None else "")
        if action is not None:
            if c.kernel.fault:
                c.supervisor.clear(action.by, "from the live page")
                c.start()
                action.outcome = "done"
                self._clear_watch = (action, time.monotonic())
                self.buffer.add_event({"t_s": self._sensor_t_s(), "event": f"fault cleared by {action.by}",
                                       "state": c.state.value})
            else:
                action.outcome = "no fault latched"
            action.done_wall_s, action.done_t_s = time.time(), self._sensor_t_s()
        self._service_burst()
        with self._lock:
            pending, ids = self._pending, list(self._pending_ids)
        if pending is None or not self._safe():
            return
        changed = {ch.path for ch in profile_changes(self.profile, pending)}
        with self._lock:
            self._pending, self._pending_ids = None, []
        if changed <= IN_PLACE:
            env = pending.envelope
            c.kernel.set_envelope(env.ramp_up_ms * 1000, env.ramp_down_ms * 1000, env.max_stim_ms * 1000)
            c.machine.extension_us = env.extension_ms * 1000
            c.kernel.request_amplitude(pending.start_amplitude_ma)
            c.profile = pending
            self._mark_applied(ids, c, "in place", pending)
        else:
            swap["profile"], swap["ids"] = pending, ids

    def _mark_applied(self, ids: list[int], c: Controller, how: str, profile: Profile | None = None) -> None:
        if profile is not None:
            self.profile = profile
        t_s = None if self._t0_us is None else (int(c.kernel.t_us) - self._t0_us) / 1e6
        now = time.time()
        with self._lock:
            for r in self.changes:
                if r.id in ids:
                    r.status, r.applied_wall_s, r.applied_t_s = "applied", now, t_s
                    r.applied_state, r.applied_level, r.how = c.state.value, float(c.kernel.level), how
        self.buffer.add_event({"t_s": t_s, "event": f"change {', '.join(map(str, ids))} applied ({how})",
                               "state": c.state.value})
        log.info("live changes %s applied (%s) at %s s in %s", ids, how, t_s, c.state.value)

    def _service_burst(self) -> None:
        """Start, follow and end a test burst (loop thread only).

        With the machine's test-burst mode (``start_test``: test_ramp_up → test_on →
        test_ramp_down → standby) the machine drives it; without it the machine is paused
        and the kernel is told to rise. Either way the kernel's max-stimulation cut-off is
        set to the burst duration, so the burst ends in time even if nothing else acts.
        """
        b, c = self._burst, self.controller
        if b is None or b.status in ("done", "refused"):
            return
        k = c.kernel
        env = self.profile.envelope
        action = b.extra.get("action")
        if b.status == "pending":
            if k.fault:
                b.status = "refused"
                b.extra["reason"] = "a fault is latched"
                if action is not None:
                    action.outcome, action.done_wall_s = "refused: a fault is latched", time.time()
                return
            if not (k.level == 0.0 and c.state in SAFE_STATES):
                return          # wait for the safe point
            try:       # a change applied since the request may have made the ramps too long for it
                envelope = test_burst_envelope(self.profile, b.duration_ms, self._period_us())
            except ModeError as err:
                b.status = "refused"
                b.extra["reason"] = str(err)
                if action is not None:
                    action.outcome, action.done_wall_s = f"refused: {err}", time.time()
                return
            b.resumed_walking = c.state == GaitState.STANCE
            envelope.apply(k)
            if hasattr(c.machine, "start_test"):
                if c.state != GaitState.STANDBY:
                    c.machine.stop()
                c.machine.start_test(TestBurstProgram(envelope, self._period_us()))
                b.extra["via"] = "machine"
            else:
                if b.resumed_walking:
                    c.machine.pause()
                k.set_phase(Phase.RISE)
                b.extra["via"] = "kernel"
            b.status, b.started_t_s, b.started_mono = "running", self._sensor_t_s(), time.monotonic()
            self.buffer.add_event({"t_s": b.started_t_s, "event": f"test burst {b.duration_ms} ms by {b.by}",
                                   "state": c.state.value})
            return
        # running: done once the output is back to zero and the burst has left its rise
        if b.extra["via"] == "machine":
            done = k.level == 0.0 and c.state in (GaitState.STANDBY, GaitState.FAULT)
        else:
            done = k.level == 0.0 and (bool(k.fault) or k.phase != Phase.RISE)
        if done:
            k.set_envelope(env.ramp_up_ms * 1000, env.ramp_down_ms * 1000, env.max_stim_ms * 1000)
            b.status, b.ended_t_s = "done", self._sensor_t_s()
            if b.resumed_walking and not k.fault:
                if c.state == GaitState.PAUSED:
                    c.machine.resume()
                elif c.state == GaitState.STANDBY:
                    c.start()
            if action is not None:
                action.outcome = f"done, peak {b.peak_ma:g} mA"
                action.done_wall_s, action.done_t_s = time.time(), b.ended_t_s
            self.buffer.add_event({"t_s": b.ended_t_s, "event": "test burst ended", "state": c.state.value})
        elif (time.monotonic() - b.started_mono) * 1000 > b.duration_ms + TEST_BURST_GUARD_MS:
            c.supervisor.latch(Fault.OUTPUT_LIMIT, f"test burst still on after {b.duration_ms} ms "
                                                   f"+ {TEST_BURST_GUARD_MS} ms")


def fault_text(code: int) -> str:
    return FAULT_TEXT.get(Fault(code), "")


# ----------------------------------------------------------------------------- sources
def recording_source(recording, *, start_s: float = 0.0, speed: float = 1.0):
    """``(open_fd, close)`` for a LiveSession replaying ``recording`` over a real pty at
    ``speed`` × real time from ``start_s``, through a pyserial port like a device."""
    from fescontrol.sim.pty_sensor import PtySensor
    from fescontrol.sim.replay import recording_stream

    from fescontrol.loop.runner import open_sensor

    frames, idx = recording_stream(recording)
    first = int(round(start_s * recording.rate_hz))
    if not 0 <= first < len(frames) - 1:
        raise LiveError(f"start {start_s:g} s is outside the recording ({recording.duration_s:.1f} s)")
    frames = frames[first:]
    times = (idx[first:] - first) / recording.rate_hz
    state: dict[str, Any] = {}

    def open_fd():
        sensor = PtySensor([f.tobytes() for f in frames], times, speed=speed)
        link = open_sensor(sensor.port)
        sensor.start()
        state["sensor"], state["link"] = sensor, link

        def produced_wall(t_s: float) -> float | None:
            if not sensor.t0:
                return None
            return time.time() - time.monotonic() + sensor.t0 + t_s / (speed or 1.0)
        return link.fileno(), produced_wall

    def close():
        if "sensor" in state:
            state["sensor"].stop()
            state["link"].close()

    # No drift check on this replay: its "sensor" is a thread of this same process (next to the
    # web server and a browser's load), so its lateness is the simulator's, not a sensor clock's.
    # The wall-clock back-stop still bounds every burst; `fes run`/`fes walk` keep the check.
    open_fd.sensor_clock_rate = 0.0
    return open_fd, close


def port_source(port: str, baudrate: int = SENSOR_BAUD_DEFAULT):
    """``(open_fd, close)`` for a LiveSession on a sensor port (device path, pty or URL)."""
    from fescontrol.loop.runner import open_sensor
    state: dict[str, Any] = {}

    def open_fd():
        state["link"] = open_sensor(port, baudrate)
        return state["link"].fileno(), None

    def close():
        if "link" in state:
            state["link"].close()

    return open_fd, close
