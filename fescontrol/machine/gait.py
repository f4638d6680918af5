"""Event-level gait state machine, built with the ``transitions`` library.

The per-sample kernel reports a few events per stride (heel-off, ramp done,
heel strike, hold done, ramp-down done, max-stimulation cut-off, fault); this
machine decides what the envelope does next and tells the kernel through
``set_phase``. The table below is the whole behaviour; ``fes diagram`` draws it.

Besides walking, two programmed modes run on the same machine, driven by the
same kernel envelope events (never by gait events, which are no-ops there):
  * training (seated exercise): ramp up → on → ramp down → rest → … until the
    session time is used up, then STANDBY by itself;
  * test burst (electrode placement): ramp up → on → ramp down → STANDBY.
Their durations and the end of a training session come from a
:class:`BurstProgram` (see :mod:`fescontrol.session.modes`) handed to
``start_training``/``start_test``; its guards decide the two branching edges.

Invalid triggers, deliberately:
  * gait events (heel_off, heel_strike, ramp_up_done, hold_done,
    ramp_down_done, timeout) in a state where they mean nothing are explicit
    internal transitions that change nothing and are counted in ``ignored`` —
    e.g. heel_off while paused never starts stimulation;
  * user commands that do not apply (resume while walking, start while
    faulted, …) raise :class:`transitions.MachineError`, which the user
    interface reports; the state and the output are unchanged;
  * ``fault`` is valid in every state and is the only way into FAULT; only
    ``fault_cleared`` leaves it, to STANDBY.
There is no ``to_<state>`` shortcut (auto_transitions=False): no code can jump
into a stimulating state except through the table. An exception in any
callback forces the kernel output off and latches an EXCEPTION fault.
"""
from __future__ import annotations

import enum
import importlib.util
import logging
import shutil
import subprocess
import sys
from functools import partial
from typing import Protocol

from transitions import Machine, MachineError

from fescontrol.core.codes import Event, Fault, Phase

log = logging.getLogger(__name__)


class GaitState(str, enum.Enum):
    STANDBY = "standby"        # not running; output zero (ramped down)
    STANCE = "stance"          # walking, foot on the ground; output zero
    DELAY = "delay"            # heel-off detected, output still zero for the learned onset delay
    RAMP_UP = "ramp_up"        # pre-swing: heel-off detected, output rising
    SWING = "swing"            # plateau
    EXTENSION = "extension"    # plateau kept for extension_ms after heel strike
    RAMP_DOWN = "ramp_down"    # output falling
    PAUSED = "paused"          # walking paused by the user; output ramped down, no detection
    FAULT = "fault"            # latched; output zero until a person clears it
    # training (seated exercise), detection off
    TRAINING_RAMP_UP = "training_ramp_up"      # contraction: output rising (training ramp)
    TRAINING_ON = "training_on"                # contraction plateau, hold limited by the program
    TRAINING_RAMP_DOWN = "training_ramp_down"  # contraction: output falling
    TRAINING_REST = "training_rest"            # output zero; rest timer on the sensor clock
    # test burst (electrode placement), detection off
    TEST_RAMP_UP = "test_ramp_up"
    TEST_ON = "test_on"
    TEST_RAMP_DOWN = "test_ramp_down"


STIMULATING = (GaitState.RAMP_UP, GaitState.SWING, GaitState.EXTENSION, GaitState.RAMP_DOWN)
WALKING = (GaitState.STANCE, GaitState.DELAY, *STIMULATING)
TRAINING = (GaitState.TRAINING_RAMP_UP, GaitState.TRAINING_ON, GaitState.TRAINING_RAMP_DOWN,
            GaitState.TRAINING_REST)
TESTING = (GaitState.TEST_RAMP_UP, GaitState.TEST_ON, GaitState.TEST_RAMP_DOWN)
PROGRAM_STIMULATING = (GaitState.TRAINING_RAMP_UP, GaitState.TRAINING_ON, GaitState.TRAINING_RAMP_DOWN,
                       *TESTING)

GAIT_EVENTS = ("heel_off", "heel_strike", "ramp_up_done", "hold_done", "ramp_down_done", "timeout")
DISPATCH_CHOICES = ("transitions", "table")
USER_COMMANDS = ("start", "pause", "resume", "stop", "start_training", "start_test", "fault_cleared")

EVENT_TRIGGERS = {
    Event.HEEL_OFF: "heel_off",
    Event.HEEL_STRIKE: "heel_strike",
    Event.RAMP_UP_DONE: "ramp_up_done",
    Event.HOLD_DONE: "hold_done",
    Event.RAMP_DOWN_DONE: "ramp_down_done",
    Event.MAX_STIM: "timeout",
}

# plain ints: Enum lookups cost a microsecond per kernel event (a class attribute of an Enum
# ~0.2 us, on every state entry)
_EV_FAULT = int(Event.FAULT)
_TRIGGER_OF = {int(code): name for code, name in EVENT_TRIGGERS.items()}
_RISE, _HOLD, _FALL = int(Phase.RISE), int(Phase.HOLD), int(Phase.FALL)

S = GaitState
TRANSITIONS = [
    # trigger,         source,                               dest
    ("start",          S.STANDBY,                            S.STANCE),
    ("heel_off",       S.STANCE,                             S.DELAY),           # [delayed]
    ("heel_off",       [S.STANCE, S.RAMP_DOWN],              S.RAMP_UP),
    ("hold_done",      S.DELAY,                              S.RAMP_UP),
    ("heel_strike",    S.DELAY,                              S.STANCE),          # no burst at all
    ("timeout",        S.DELAY,                              S.STANCE),
    ("ramp_up_done",   S.RAMP_UP,                            S.SWING),
    ("heel_strike",    [S.RAMP_UP, S.SWING],                 S.EXTENSION),
    ("hold_done",      S.EXTENSION,                          S.RAMP_DOWN),
    ("timeout",        [S.RAMP_UP, S.SWING, S.EXTENSION],    S.RAMP_DOWN),
    ("ramp_down_done", S.RAMP_DOWN,                          S.STANCE),
    ("pause",          list(WALKING),                        S.PAUSED),
    ("resume",         S.PAUSED,                             S.STANCE),
    ("stop",           [*WALKING, S.PAUSED],                 S.STANDBY),
    # training: a contraction, a rest, again until the program's time is used up
    ("start_training", S.STANDBY,                            S.TRAINING_RAMP_UP),
    ("ramp_up_done",   S.TRAINING_RAMP_UP,                   S.TRAINING_ON),
    ("hold_done",      S.TRAINING_ON,                        S.TRAINING_RAMP_DOWN),
    ("timeout",        [S.TRAINING_RAMP_UP, S.TRAINING_ON],  S.TRAINING_RAMP_DOWN),
    ("ramp_down_done", S.TRAINING_RAMP_DOWN,                 S.TRAINING_REST),   # [time_left]
    ("ramp_down_done", S.TRAINING_RAMP_DOWN,                 S.STANDBY),         # otherwise: done
    ("hold_done",      S.TRAINING_REST,                      S.TRAINING_RAMP_UP),  # [burst_fits]
    ("hold_done",      S.TRAINING_REST,                      S.STANDBY),         # otherwise: done
    ("stop",           list(TRAINING),                       S.STANDBY),
    # test burst: one burst, then standby
    ("start_test",     S.STANDBY,                            S.TEST_RAMP_UP),
    ("ramp_up_done",   S.TEST_RAMP_UP,                       S.TEST_ON),
    ("hold_done",      S.TEST_ON,                            S.TEST_RAMP_DOWN),
    ("timeout",        [S.TEST_RAMP_UP, S.TEST_ON],          S.TEST_RAMP_DOWN),
    ("ramp_down_done", S.TEST_RAMP_DOWN,                     S.STANDBY),
    ("stop",           list(TESTING),                        S.STANDBY),
    ("fault",          [s for s in S if s != S.FAULT],       S.FAULT),
    ("fault_cleared",  S.FAULT,                              S.STANDBY),
]

GUARDS = {
    # (trigger, source, dest): name of the BurstProgram question that must answer True.
    # A guarded edge comes first in TRANSITIONS; the unguarded edge after it is the fallback.
    ("ramp_down_done", S.TRAINING_RAMP_DOWN, S.TRAINING_REST): "time_left",
    ("hold_done", S.TRAINING_REST, S.TRAINING_RAMP_UP): "burst_fits",
    ("heel_off", S.STANCE, S.DELAY): "delayed",
}


class BurstProgram(Protocol):
    """Durations and decisions of a programmed mode (training or test burst), all in µs on
    the sensor clock (``now_us`` is the kernel's ``t_us``)."""

    def plateau_hold_us(self) -> int:
        """How long the plateau of the present burst lasts (> 0)."""
        ...

    def rest_us(self, now_us: int) -> int:
        """How long the rest after a burst lasts (> 0), asked only when ``time_left``."""
        ...

    def time_left(self, now_us: int) -> bool:
        """True while the program has time for a rest (and maybe another burst)."""
        ...

    def burst_fits(self, now_us: int) -> bool:
        """True when a whole burst still fits before the program ends."""
        ...


class KernelCommands(Protocol):
    """What the machine needs from the per-sample kernel."""

    def set_phase(self, phase: int, hold_limit_us: int = 0) -> None: ...
    def set_detection(self, enabled: bool) -> None: ...
    def latch_fault(self, code: int) -> None: ...


def _ignored_gait_events() -> list[tuple[str, list[GaitState]]]:
    """For each gait event, the states in which it is an explicit no-op."""
    handled: dict[str, set] = {e: set() for e in GAIT_EVENTS}
    for trigger, source, _ in TRANSITIONS:
        if trigger in handled:
            handled[trigger].update(source if isinstance(source, list) else [source])
    return [(e, [s for s in S if s not in handled[e]]) for e in GAIT_EVENTS]


class GaitMachine:
    """The gait state machine; ``state`` is a :class:`GaitState`.

    ``extension_ms`` is the hold after heel strike. The kernel is commanded on
    every state entry; callbacks are bound methods so a typo fails at import.
    """

    def __init__(self, kernel: KernelCommands, extension_ms: int, dispatch: str = "transitions"):
        """``dispatch`` "transitions" (the default, the real-time path) fires triggers through
        the ``transitions`` Machine built here; "table" fires them through
        :func:`dispatch_table`, derived once per process from that same Machine (same edges,
        guards, callbacks and their order; no per-instance Machine, a few µs per event, for
        batch replays). ValueError for any other value."""
        self.kernel = kernel
        self.extension_us = int(extension_ms) * 1000
        self.ignored = 0
        self.transitions_done = 0
        self.program: BurstProgram | None = None
        #: zero output this long after a heel-off from STANCE before the ramp starts (µs; set
        #: between strides by the adaptive stimulation's learned onset delay, 0: none, the
        #: heel-off goes straight to RAMP_UP as without it)
        self.onset_delay_us = 0
        self._fault_code = int(Fault.EXCEPTION)
        self.dispatch = dispatch
        if dispatch == "table":
            table = dispatch_table()
            table.bind(self)
            self._fire_event = partial(table.fire_plain, self)
            return
        if dispatch != "transitions":
            raise ValueError(f"dispatch {dispatch!r}; allowed: {', '.join(DISPATCH_CHOICES)}")
        guards = {"time_left": self._time_left, "burst_fits": self._burst_fits, "delayed": self._delayed}
        self.machine = Machine(
            model=self, states=GaitState, initial=GaitState.STANDBY,
            auto_transitions=False, ignore_invalid_triggers=False,
            on_exception=self._on_exception, after_state_change=self._count)
        for trigger, source, dest in TRANSITIONS:
            guard = None if isinstance(source, list) else GUARDS.get((trigger, source, dest))
            self.machine.add_transition(trigger, source, dest,
                                        conditions=[guards[guard]] if guard else None)
        for trigger, states in _ignored_gait_events():
            if states:
                self.machine.add_transition(trigger, states, None, after=self._ignore)
        for state, enter in ((S.STANDBY, self._enter_standby), (S.STANCE, self._enter_stance),
                             (S.DELAY, self._enter_delay), (S.RAMP_UP, self._enter_ramp_up),
                             (S.SWING, self._enter_swing),
                             (S.EXTENSION, self._enter_extension), (S.RAMP_DOWN, self._enter_ramp_down),
                             (S.PAUSED, self._enter_paused), (S.FAULT, self._enter_fault),
                             (S.TRAINING_RAMP_UP, self._enter_program_ramp_up),
                             (S.TRAINING_ON, self._enter_program_on),
                             (S.TRAINING_RAMP_DOWN, self._enter_program_ramp_down),
                             (S.TRAINING_REST, self._enter_training_rest),
                             (S.TEST_RAMP_UP, self._enter_program_ramp_up),
                             (S.TEST_ON, self._enter_program_on),
                             (S.TEST_RAMP_DOWN, self._enter_program_ramp_down)):
            self.machine.get_state(state).add_callback("enter", enter)
        self._fire_event = self.trigger
        for trigger in ("start", "resume"):
            for t in self.machine.get_transitions(trigger):
                t.add_callback("after", self._enable_detection)
        for trigger in ("start_training", "start_test"):
            for t in self.machine.get_transitions(trigger):
                t.add_callback("prepare", self._take_program)

    # ----- callbacks ---------------------------------------------------------------------
    def _count(self, *_args) -> None:
        self.transitions_done += 1

    def _ignore(self, *_args) -> None:
        self.ignored += 1

    def _enable_detection(self) -> None:
        self.kernel.set_detection(True)

    def _enter_standby(self, *_args) -> None:
        self.program = None
        self.kernel.set_detection(False)
        self.kernel.set_phase(_FALL)

    def _enter_stance(self) -> None:
        self.kernel.set_phase(_FALL)

    def _delayed(self, *_args) -> bool:
        return self.onset_delay_us > 0

    def _enter_delay(self) -> None:
        # entered from STANCE only (level zero): a HOLD at level zero is the delay timer on the
        # sensor clock; its HOLD_DONE starts the ramp. The output stays zero meanwhile.
        self.kernel.set_phase(_HOLD, max(1, int(self.onset_delay_us)))

    def _enter_ramp_up(self) -> None:
        self.kernel.set_phase(_RISE)

    def _enter_swing(self) -> None:
        self.kernel.set_phase(_HOLD)

    def _enter_extension(self) -> None:
        # a hold limit of 0 would mean "no limit": an extension of 0 ms holds one sample
        self.kernel.set_phase(_HOLD, max(1, self.extension_us))

    def _enter_ramp_down(self) -> None:
        self.kernel.set_phase(_FALL)

    def _enter_paused(self) -> None:
        self.kernel.set_detection(False)
        self.kernel.set_phase(_FALL)

    def _enter_fault(self, *_args) -> None:
        self.program = None
        self.kernel.latch_fault(self._fault_code)

    # programmed modes: the program passed to start_training/start_test decides the durations
    def _take_program(self, program: BurstProgram | None = None) -> None:
        if program is None:
            raise ValueError("start_training/start_test need the program (fescontrol.session.modes)")
        self.program = program
        self.kernel.set_detection(False)

    def _time_left(self, *_args) -> bool:
        return self.program is not None and self.program.time_left(self.kernel.t_us)

    def _burst_fits(self, *_args) -> bool:
        return self.program is not None and self.program.burst_fits(self.kernel.t_us)

    def _enter_program_ramp_up(self, *_args) -> None:
        self.kernel.set_phase(_RISE)

    def _enter_program_on(self, *_args) -> None:
        self.kernel.set_phase(_HOLD, max(1, int(self.program.plateau_hold_us())))

    def _enter_program_ramp_down(self, *_args) -> None:
        self.kernel.set_phase(_FALL)

    def _enter_training_rest(self, *_args) -> None:
        # output is zero here: a HOLD at level zero is the rest timer on the sensor clock
        self.kernel.set_phase(_HOLD, max(1, int(self.program.rest_us(self.kernel.t_us))))

    def _on_exception(self, *_args, **_kwargs) -> None:
        # called by transitions inside its except block: re-raise what it caught
        err = sys.exc_info()[1]
        if not isinstance(err, MachineError):  # an invalid user command changes nothing
            self.kernel.latch_fault(Fault.EXCEPTION)
        raise err

    # ----- public ------------------------------------------------------------------------
    def on_kernel_event(self, event: int) -> str | None:
        """Fire the trigger for a kernel event code; returns the trigger name (None for FAULT)."""
        if event == _EV_FAULT:
            self.enter_fault(getattr(self.kernel, "fault", Fault.NONE))
            return None
        name = _TRIGGER_OF.get(event)
        if name is None:        # not a gait event: raise as before (Event() or the table)
            name = EVENT_TRIGGERS[Event(event)]
        self._fire_event(name)
        return name

    def enter_fault(self, code: int) -> None:
        """Go to FAULT (the kernel may already have latched; its first reason is kept)."""
        self._fault_code = int(code) if code else int(Fault.EXCEPTION)
        if self.state != GaitState.FAULT:
            self.trigger("fault")

    @property
    def stimulating(self) -> bool:
        return self.state in STIMULATING or self.state in PROGRAM_STIMULATING


class DispatchTable:
    """The ``transitions`` Machine of :class:`GaitMachine` read out into plain tables, so
    that a batch replay can fire triggers without building a Machine per replay and without
    its per-event overhead. Nothing is written by hand here: edges, guards and callbacks are
    taken from a Machine built by ``GaitMachine.__init__`` (:func:`dispatch_table`), and
    :meth:`fire` follows ``transitions.Event._trigger`` step by step (prepare_event; per
    candidate edge: prepare, conditions, before_state_change + before, exit, state change,
    enter, on_final, after + after_state_change; on_exception; finalize_event). Callbacks are
    kept as the model class's functions the Machine's bound methods were made of, called with
    the model and the trigger's arguments (the Machine uses send_event=False): the Machine, too,
    calls the methods it was given when it was built, not what an instance attribute of the same
    name holds later. tests/test_gait_dispatch.py proves both dispatches give the same states,
    kernel commands and counters.

    Raises TypeError when the Machine holds something a table cannot carry (a callback that
    is not a method of the model, queued processing, send_event)."""

    def __init__(self, machine: Machine, template: object):
        if machine.has_queue or machine.send_event:
            raise TypeError("table dispatch needs an unqueued Machine with send_event=False")
        self.model_type = type(template)
        fn = lambda cb: _callback_function(cb, template)  # noqa: E731
        fns = lambda cbs: tuple(fn(cb) for cb in cbs)  # noqa: E731
        self.initial = machine.get_state(machine.initial).value
        self.prepare_event = fns(machine.prepare_event)
        self.finalize_event = fns(machine.finalize_event)
        self.on_exception = fns(machine.on_exception)
        self.on_final = fns(machine.on_final)
        self.ignore_invalid = {st.value: (machine.ignore_invalid_triggers if st.ignore_invalid_triggers is None
                                          else st.ignore_invalid_triggers) for st in machine.states.values()}
        states = {st.name: st for st in machine.states.values()}
        #: trigger -> source state (GaitState) -> candidate edges in the Machine's order; an
        #: edge is (prepare, conditions ((function, target), ...), before, dest or None, exit,
        #: enter, final, after), callbacks as functions of the model's class
        self.events: dict[str, dict] = {}
        for trigger, event in machine.events.items():
            by_source = {}
            for source, edges in event.transitions.items():
                rows = []
                for t in edges:
                    dest = states[t.dest] if t.dest is not None else None
                    rows.append((fns(t.prepare), tuple((fn(c.func), c.target) for c in t.conditions),
                                 fns([*machine.before_state_change, *t.before]),
                                 dest.value if dest is not None else None,
                                 fns(states[source].on_exit) if dest is not None else (),
                                 fns(dest.on_enter) if dest is not None else (),
                                 bool(dest is not None and dest.final),
                                 fns([*t.after, *machine.after_state_change])))
                by_source[states[source].value] = tuple(rows)
            self.events[trigger] = by_source
        self.machine_name = machine.name

    def bind(self, model) -> None:
        """Give ``model`` what the Machine would: ``state`` (initial), ``trigger(name, ...)``
        and one method per trigger. TypeError for a model of another class than the
        template's (its methods are not the ones the table holds)."""
        if type(model) is not self.model_type:
            raise TypeError(f"this dispatch table drives {self.model_type.__name__}, not {type(model).__name__}")
        model.state = self.initial
        if getattr(model, "trigger", None) is None:
            model.trigger = partial(self.fire, model)
        for trigger in self.events:
            if getattr(model, trigger, None) is None:      # as transitions: never override
                setattr(model, trigger, partial(self.fire, model, trigger))

    def fire(self, model, trigger: str, *args, **kwargs) -> bool:
        """Fire ``trigger`` on ``model`` as ``transitions`` does; True when an edge was taken.
        Raises MachineError (no edge from this state) and AttributeError (no such trigger)
        with the Machine's own messages, and whatever a callback raised (after on_exception).
        Without arguments (every kernel event): :meth:`fire_plain`."""
        if not args and not kwargs:
            return self.fire_plain(model, trigger)
        by_source = self.events.get(trigger)
        if by_source is None:
            if self.ignore_invalid[model.state]:
                return False
            raise AttributeError("Do not know event named '%s'." % trigger)
        result = False
        try:
            edges = by_source.get(model.state)
            if edges is None:
                if not self.ignore_invalid[model.state]:
                    raise MachineError("%sCan't trigger event %s from state %s!"
                                       % (self.machine_name, trigger, model.state.name))
            else:
                for cb in self.prepare_event:
                    cb(model, *args, **kwargs)
                for prepare, conditions, before, dest, exit_, enter, final, after in edges:
                    for cb in prepare:
                        cb(model, *args, **kwargs)
                    if conditions and not all(c(model, *args, **kwargs) == target for c, target in conditions):
                        continue
                    for cb in before:
                        cb(model, *args, **kwargs)
                    if dest is not None:
                        for cb in exit_:
                            cb(model, *args, **kwargs)
                        model.state = dest
                        for cb in enter:
                            cb(model, *args, **kwargs)
                        if final:
                            for cb in self.on_final:
                                cb(model, *args, **kwargs)
                    for cb in after:
                        cb(model, *args, **kwargs)
                    result = True
                    break
        except BaseException:
            if not self.on_exception:
                raise
            for cb in self.on_exception:
                cb(model, *args, **kwargs)
        finally:
            try:
                for cb in self.finalize_event:
                    cb(model, *args, **kwargs)
            except BaseException as err:   # as transitions: logged, not raised
                log.error("While executing finalize callbacks a %s occurred: %s.", type(err).__name__, err)
        return result

    def fire_plain(self, model, trigger: str) -> bool:
        """:meth:`fire` of a trigger without arguments, line for line, each callback called
        with the model alone (a call that forwards empty ``*args, **kwargs`` costs about twice
        a plain one, and a kernel event makes three or four)."""
        by_source = self.events.get(trigger)
        if by_source is None:
            if self.ignore_invalid[model.state]:
                return False
            raise AttributeError("Do not know event named '%s'." % trigger)
        result = False
        try:
            edges = by_source.get(model.state)
            if edges is None:
                if not self.ignore_invalid[model.state]:
                    raise MachineError("%sCan't trigger event %s from state %s!"
                                       % (self.machine_name, trigger, model.state.name))
            else:
                for cb in self.prepare_event:
                    cb(model)
                for prepare, conditions, before, dest, exit_, enter, final, after in edges:
                    for cb in prepare:
                        cb(model)
                    if conditions and not all(c(model) == target for c, target in conditions):
                        continue
                    for cb in before:
                        cb(model)
                    if dest is not None:
                        for cb in exit_:
                            cb(model)
                        model.state = dest
                        for cb in enter:
                            cb(model)
                        if final:
                            for cb in self.on_final:
                                cb(model)
                    for cb in after:
                        cb(model)
                    result = True
                    break
        except BaseException:
            if not self.on_exception:
                raise
            for cb in self.on_exception:
                cb(model)
        finally:
            try:
                for cb in self.finalize_event:
                    cb(model)
            except BaseException as err:   # as transitions: logged, not raised
                log.error("While executing finalize callbacks a %s occurred: %s.", type(err).__name__, err)
        return result


def _callback_function(cb, template):
    """The function of ``template``'s class behind a callback (a bound method of the
    template, or a method name)."""
    cls = type(template)
    if isinstance(cb, str) and "." not in cb:
        func = getattr(cls, cb, None)
    elif getattr(cb, "__self__", None) is template:
        func = getattr(cls, cb.__name__, None)
        if getattr(func, "__code__", None) is not getattr(cb.__func__, "__code__", 0):
            func = None
    else:
        func = None
    if not callable(func) or not hasattr(func, "__code__"):
        raise TypeError(f"table dispatch cannot carry the callback {cb!r} (only methods of the model)")
    return func


class _NoKernel:
    """A template GaitMachine is built, never fired: its kernel is never commanded."""

    def __getattr__(self, name):
        raise AssertionError(f"the dispatch-table template machine used its kernel ({name})")


_TABLE: DispatchTable | None = None


def dispatch_table() -> DispatchTable:
    """The table of the gait machine, derived once per process from a ``transitions``
    Machine built exactly as for ``GaitMachine(kernel, extension_ms)``."""
    global _TABLE
    if _TABLE is None:
        template = GaitMachine(_NoKernel(), 0)
        _TABLE = DispatchTable(template.machine, template)
    return _TABLE


def write_diagram(path: str | None = None) -> str:
    """Draw the table: PNG (or any graphviz format by suffix) when graphviz is usable,
    else DOT text. Returns what was written (path) or the DOT text when path is None."""
    dot = diagram_dot()
    if path is None or path.endswith(".dot"):
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(dot)
        return path or dot
    fmt = path.rsplit(".", 1)[-1].lower()
    # transitions' graph extension needs the graphviz Python package (without it, recent
    # versions quietly fall back to mermaid text, which is no PNG): check first
    if importlib.util.find_spec("graphviz") is not None and shutil.which("dot"):
        try:
            from transitions.extensions import GraphMachine

            class _Model:
                pass

            model = _Model()
            GraphMachine(model=model, states=GaitState, initial=GaitState.STANDBY, transitions=[
                {"trigger": _label(t, s, d), "source": s, "dest": d} for t, s, d in TRANSITIONS],
                auto_transitions=False, graph_engine="graphviz", title="fescontrol gait machine")
            model.get_graph().draw(path, prog="dot", format=fmt)
            return path
        except Exception as err:  # a broken graphviz install: fall through
            log.info("transitions graph extension failed (%s)", err)
    if shutil.which("dot"):
        try:
            subprocess.run(["dot", f"-T{fmt}", "-Gdpi=80", "-o", path], input=dot.encode(), check=True,
                           capture_output=True, timeout=30)
            return path
        except (subprocess.SubprocessError, OSError) as err:
            log.info("graphviz dot failed (%s)", err)
    log.info("graphviz not usable; writing DOT text")
    alt = path.rsplit(".", 1)[0] + ".dot"
    with open(alt, "w", encoding="utf-8") as fh:
        fh.write(dot)
    return alt


def diagram_dot() -> str:
    """The transition table as Graphviz DOT text (no graphviz needed)."""
    lines = ["digraph gait {", "  rankdir=LR;", '  node [shape=box, style=rounded];',
             '  fault [color=red];', '  standby [peripheries=2];']
    for trigger, source, dest in TRANSITIONS:
        for s in (source if isinstance(source, list) else [source]):
            lines.append(f'  {s.value} -> {dest.value} [label="{_label(trigger, s, dest)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(trigger: str, source, dest) -> str:
    """Edge label: the trigger, with its guard in brackets, or [else] for a guarded edge's fallback."""
    if not isinstance(source, list) and (trigger, source, dest) in GUARDS:
        return f"{trigger} [{GUARDS[(trigger, source, dest)]}]"
    sources = source if isinstance(source, list) else [source]
    if any(k[0] == trigger and k[1] in sources for k in GUARDS):
        return f"{trigger} [else]"
    return trigger
