"""Ties the per-sample kernel, the gait machine and the safety supervisor together.

The kernel runs frames until something needs the event level, then returns a
set of :class:`~fescontrol.core.codes.Ret` flags; :meth:`Controller.handle` turns
kernel events into machine triggers and outputs into supervised deliveries. The
same controller drives a batch replay (:meth:`feed`) and the real-time loop
(:meth:`run`), so the simulator exercises the device's own code path.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fescontrol.machine.adaptive import AdaptiveStimulation
from fescontrol.core.codes import Event, Fault, Ret
from fescontrol.machine.gait import GaitMachine, GaitState
from fescontrol.kernel import make_kernel
from fescontrol.core.profile import Profile
from fescontrol.safety.supervisor import SafetySupervisor

# plain ints: IntFlag arithmetic costs a microsecond per operation on the event path
_EVENT, _TRACE_FULL, _CLOSED = int(Ret.EVENT), int(Ret.TRACE_FULL), int(Ret.CLOSED)
_FAULT_EVENT = int(Event.FAULT)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedEvent:
    """A kernel event as the machine saw it: sensor time (µs), trigger, state after."""

    t_us: int
    event: str
    state: str


class Controller:
    """One device session: kernel + machine + supervisor (+ optional stimulator)."""

    def __init__(self, profile: Profile, *, stimulator=None, implementation: str = "auto",
                 trace_capacity: int = 0, event_history: int | None = None, dispatch: str = "transitions"):
        """``event_history`` bounds :attr:`events` to the newest N (a device running for hours
        must not grow; listeners still see every event); None keeps all (replays, reports);
        0 keeps none (a sweep: no :class:`LoggedEvent` is built unless a listener or the
        adaptive stimulation takes it).
        ``dispatch`` is the gait machine's (:class:`~fescontrol.machine.gait.GaitMachine`):
        "transitions" for the device, "table" (same table, cheaper) for batch replays."""
        self.profile = profile
        self.kernel = make_kernel(profile, implementation, trace_capacity)
        self.machine = GaitMachine(self.kernel, profile.envelope.extension_ms, dispatch)
        self.supervisor = SafetySupervisor(profile, self.kernel, self.machine, stimulator)
        self.events: list[LoggedEvent] | deque[LoggedEvent] = (
            [] if event_history is None else deque(maxlen=event_history))
        self._keep_events = event_history != 0
        #: kernel events taken by the event level, by name (as logged: "heel_off", ...,
        #: "fault"), counted whether or not :attr:`events` keeps them
        self.event_counts: dict[str, int] = {}
        self.event_listeners: list[Callable[[LoggedEvent], None]] = []
        self.trace_sink: Callable[[dict, int], None] | None = None
        self.kernel.request_amplitude(profile.start_amplitude_ma)
        #: stride-to-stride learning of the amplitude (profile.adaptive), None when off
        self.adaptive: AdaptiveStimulation | None = None
        if profile.adaptive.enabled:
            self.adaptive = AdaptiveStimulation(profile, self.kernel, self.supervisor, history=event_history,
                                                machine=self.machine)

    @property
    def implementation(self) -> str:
        return self.kernel.implementation

    @property
    def state(self) -> GaitState:
        return self.machine.state

    @property
    def waiting_reason(self) -> str:
        """Why walking stimulation waits although no fault is latched ("" when it does not):
        a heel unloaded for longer than any burst means the foot is not on its heel
        (sitting, forefoot walking). A state, not a fault: it ends when the heel loads."""
        k = self.kernel
        if k.p.need_heel and k.heel_absent and k.detection_enabled and not k.fault:
            return "no heel contact: waiting for the heel to load"
        return ""

    # ----- user commands ---------------------------------------------------------------
    def start(self) -> None:
        self.begin_walk()
        self.machine.start()

    def begin_walk(self) -> None:
        """A walk is about to start (``start``, or the patient modes' walk command)."""
        if self.adaptive is not None:
            self.adaptive.begin_walk()

    def stop(self) -> None:
        if self.machine.state not in (GaitState.STANDBY, GaitState.FAULT):
            self.machine.stop()

    def emergency_stop(self, detail: str = "") -> None:
        """Zero output now and latch a fault (Ctrl-C, SIGTERM, a person's stop button)."""
        self.supervisor.latch(Fault.USER_STOP, detail)

    # ----- the loop ----------------------------------------------------------------------
    def handle(self, ret: int) -> None:
        """Act on what a kernel call returned. Any exception here latches a fault."""
        try:
            if ret & _EVENT:
                self._drain_events()
            if ret & _TRACE_FULL:
                self._flush_trace()
            if self.kernel.deliver_due:
                self.supervisor.deliver()
        except Exception as err:
            log.exception("exception in the control path")
            self.supervisor.latch(Fault.EXCEPTION, f"{type(err).__name__}: {err}")

    def _drain_events(self) -> None:
        pop_event, on_kernel_event, counts = self.kernel.pop_event, self.machine.on_kernel_event, self.event_counts
        while True:
            code = pop_event()
            if not code:
                return
            if code == _FAULT_EVENT:
                self.supervisor.on_kernel_fault()
                name = "fault"
            else:
                name = on_kernel_event(code)
            counts[name] = counts.get(name, 0) + 1
            if self._keep_events or self.adaptive is not None or self.event_listeners:
                self._log(name)

    def _log(self, name: str) -> None:
        entry = LoggedEvent(self.kernel.t_us, name, self.machine.state._value_)   # _value_: no descriptor
        self.events.append(entry)
        if self.adaptive is not None:
            self.adaptive.on_event(entry)
        for listener in self.event_listeners:
            listener(entry)

    def _flush_trace(self) -> None:
        if self.trace_sink is not None:
            self.trace_sink(self.kernel.trace, self.kernel.trace_len)
        self.kernel.trace_clear()

    FEED_CHUNK_BYTES = 4096
    #: batch path: let the supervisor check and count a ramp's deliveries in one call when no
    #: stimulator is attached (``SafetySupervisor.begin_batch``); False sends each one singly
    BATCH_DELIVERIES = True

    def feed(self, data: bytes) -> None:
        """Batch path: push sensor bytes through the kernel and act on everything they cause."""
        view = memoryview(data)
        sup, kernel, handle, chunk = self.supervisor, self.kernel, self.handle, self.FEED_CHUNK_BYTES
        process = kernel.process
        batch = self.BATCH_DELIVERIES and sup.begin_batch()
        try:
            for start in range(0, len(view), chunk):
                ret = kernel.feed(bytes(view[start:start + chunk]))
                if ret:
                    if batch and kernel.batched_deliveries:
                        sup.flush_batch()
                    handle(ret)
                while True:
                    ret = process()
                    if not ret:
                        break
                    # the counts are current whenever the event level runs (flush_batch does
                    # nothing without batched deliveries: not called then, one call per event less)
                    if batch and kernel.batched_deliveries:
                        sup.flush_batch()
                    handle(ret)
        finally:
            if batch:
                sup.end_batch()

    def finish(self) -> None:
        """Flush what is left of the trace."""
        if self.kernel.trace_capacity and self.kernel.trace_len:
            self._flush_trace()

    def set_sensor_clock_rate(self, rate: float) -> None:
        """Sensor seconds per wall second in the real-time loop: 1 on a device (the default);
        a replay at N × real time sets N, one as fast as the reader goes sets 0 (no drift
        check). See ``PyKernel.set_clock_rate``. ValueError for NaN, inf or < 0."""
        self.kernel.set_clock_rate(float(rate))

    def run(self, sensor_fd: int, should_stop: Callable[[], bool], wake_ms: int = 20) -> None:
        """Real-time loop on a sensor file descriptor until ``should_stop()`` or EOF.

        Each wait for sensor bytes ends at the latest after ``wake_ms``, at the next
        acknowledgement deadline or keep-alive of the stimulator, or (inside the kernel) at
        the wall-clock burst limit, so those deadlines are kept with no frame arriving.
        Stimulation always ends zero: on exit the supervisor stops the stimulator.
        """
        wake_us = wake_ms * 1000
        try:
            while not should_stop():
                due_us = self.supervisor.service_due_in_us()
                ret = self.kernel.run_fd(sensor_fd, wake_us if due_us is None else min(wake_us, due_us))
                if ret & _CLOSED:
                    self.supervisor.latch(Fault.SENSOR_STALE, "sensor port closed")
                    return
                self.handle(ret)
                self.supervisor.service()
        except BaseException as err:
            self.supervisor.latch(Fault.EXCEPTION if isinstance(err, Exception) else Fault.USER_STOP,
                                  f"{type(err).__name__}: {err}")
            raise
        finally:
            self.supervisor._stop_stimulator()


class TraceCollector:
    """Collects the kernel trace of a whole replay into growing numpy arrays: every field, or
    only ``fields`` (names of the kernel trace) when given."""

    def __init__(self, fields=None):
        self.parts: dict[str, list[np.ndarray]] = {}
        self.fields = None if fields is None else tuple(fields)

    def __call__(self, trace: dict, n: int) -> None:
        for name in (trace if self.fields is None else self.fields):
            self.parts.setdefault(name, []).append(np.array(trace[name][:n], copy=True))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}
