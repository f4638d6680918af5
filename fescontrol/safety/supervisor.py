"""The safety supervisor: the one gate between the control path and a stimulator.

Only this object holds the stimulator. Every output goes through
:meth:`SafetySupervisor.deliver`, which refuses (never clamps) anything outside
the profile and the hard caps of :mod:`fescontrol.core.limits`; any doubt latches a
fault: the kernel output is forced to zero on the same sample, the stimulator
gets zero current and Stop, and the fault stays until a person calls
:meth:`clear`. The per-sample half of the supervision (stale data, sequence
gaps, clock jumps, channel flags, stuck heel, max stimulation time) runs inside
the kernel, which latches its own fault code the same way.

In a batch replay with no stimulator attached (``Controller.feed``), the deliveries of a ramp
are checked and counted in one call (:meth:`SafetySupervisor.begin_batch` /
:meth:`~SafetySupervisor.flush_batch`): the supervisor checks the channel's highest current once
and lets the kernel take currents of 0..that without returning; every check is monotone in the
current, so each value passes exactly as it would singly, and anything else still comes to
``deliver`` on its own sample (tests/test_batch_delivery.py).

Invariants:
  * no current leaves here while a fault is latched, ever: ``deliver`` refuses it, ``_send``
    checks again just before the driver, and every latch also inhibits the driver
    (``Stimulator.inhibit``), which refuses any command with current on its own until a
    person clears the fault;
  * no current above the profile amplitude or the hard cap, no pulse width or
    charge outside their caps, ever reaches ``Stimulator.set_output``, on any channel; nor
    more charge per second summed over the channels than
    ``limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S``. A refusal on any channel zeroes every channel;
  * every fault is recorded with its reason, time and detail.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from fescontrol.core import limits
from fescontrol.core.codes import FAULT_TEXT, Fault
from fescontrol.core.profile import Profile
from fescontrol.drivers.stimulator import ChannelOutput as _ChannelOutput
from fescontrol.drivers.stimulator import StimulationFault as _StimulationFault
from fescontrol.drivers.stimulator import StimulatorError as _StimulatorError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultRecord:
    """One latched fault. ``t_us`` is sensor time (µs, the kernel clock when it latched);
    ``wall_s`` is time.time() for logs, ``monotonic_s`` time.monotonic() (s). Immutable."""

    reason: Fault
    detail: str
    t_us: int
    wall_s: float = field(default_factory=time.time)
    monotonic_s: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """``reason_name: what it means (detail)``, one line for logs and screens."""
        return f"{self.reason.name.lower()}: {FAULT_TEXT.get(self.reason, '')}" + (
            f" ({self.detail})" if self.detail else "")


class SafetySupervisor:
    """Checks and forwards outputs; latches faults; clears them only on request.

    ``kernel`` is the per-sample kernel (compiled or Python build), ``machine`` the gait
    machine, ``stimulator`` a :class:`fescontrol.drivers.stimulator.Stimulator` or None
    (outputs are then only checked and recorded, as in a batch simulation).

    Units: currents mA, pulse widths µs, charge µC, times µs of the sensor clock unless named
    ``_s``. The caps come from ``profile`` (the profile's amplitude of each channel) within
    :mod:`fescontrol.core.limits`; nothing here widens them. It takes no lock: call it from the
    control loop's thread (the live view and the patient UI queue their commands to it).
    Constructing it raises nothing and sends nothing.
    """

    def __init__(self, profile: Profile, kernel, machine, stimulator=None):
        self.profile = profile
        self.kernel = kernel
        self.machine = machine
        self.stimulator = stimulator
        self.faults: list[FaultRecord] = []
        self.deliveries = 0
        self.last_delivered_ma = 0.0
        #: called as listener(t_us, current_ma) after every output that reached the stimulator
        self.delivery_listeners: list = []
        #: called as listener(reason) after every latched fault (output already zero)
        self.fault_listeners: list = []
        self._stimulator_needs_recover = False
        self._stopped = False            # True: stopped and nothing sent since (no second Stop)
        self._batch_ceiling_ma = -1.0     # begin_batch: deliveries of 0..this mA are taken by the kernel
        ch = profile.stimulation
        self._channel = ch.channel
        self._pulse_width_us = ch.pulse_width_us
        self._max_ma = min(ch.amplitude_ma, limits.AMPLITUDE_MAX_MA)
        self._frequency_hz = ch.frequency_hz
        self.channels = (
            (ch.channel, ch.pulse_width_us, self._max_ma),
            *((c.channel, c.pulse_width_us, min(c.amplitude_ma, limits.AMPLITUDE_MAX_MA))
              for c in profile.extra_channels))
        #: per-channel currents (mA, kernel channel order) of the last output that reached the stimulator
        self.last_delivered_channels_ma: tuple[float, ...] = (0.0,) * len(self.channels)
        #: called as listener(t_us, currents_ma) after every output that reached the stimulator,
        #: with one current per channel in ``channels`` order
        self.channel_delivery_listeners: list = []

    @property
    def channels(self) -> tuple[tuple[int, int, float], ...]:
        """(stimulator channel, pulse width µs, highest current mA) per kernel channel index."""
        return self._channels

    @channels.setter
    def channels(self, channels: tuple[tuple[int, int, float], ...]) -> None:
        self._channels = tuple(channels)
        #: deliver()'s fast path (one channel): every current in 0..this passes ``check_outputs``
        #: while no fault is latched, because its top does and every check but the fault one is
        #: monotone in the current (as ``begin_batch`` relies on); -1 when the top itself fails
        self._checked_top_ma = -1.0
        top = self._channels[0][2]
        if (len(self._channels) == 1 and math.isfinite(top) and top >= 0.0
                and self.check_outputs((top,), fault_free=True) is None):
            self._checked_top_ma = top

    @property
    def fault(self) -> FaultRecord | None:
        """The latched fault (the last one recorded while the kernel's fault is set), or None."""
        return self.faults[-1] if self.kernel.fault else None

    # ----- output ---------------------------------------------------------------------
    def check_output(self, current_ma: float, pulse_width_us: int, max_ma: float | None = None, *,
                     fault_free: bool = False) -> str | None:
        """Why this output of one channel is not allowed, or None when it is. ``max_ma`` is the
        channel's own highest current (default: ``stimulation.amplitude_ma`` within the cap).
        Every check but the latched-fault one is monotone in ``current_ma``: a current between
        0 and one that passes passes too (``begin_batch`` relies on it).

        ``current_ma`` mA, ``pulse_width_us`` µs. Checks: finite and ≥ 0, ≤ ``max_ma`` and
        ≤ ``limits.AMPLITUDE_MAX_MA``, pulse width within the limits, charge per phase (µC) within
        its cap, no current while a fault is latched (skipped with ``fault_free``). Pure: changes
        and latches nothing, never raises."""
        max_ma = self._max_ma if max_ma is None else max_ma
        if not math.isfinite(current_ma) or current_ma < 0.0:
            return f"current {current_ma!r} mA is not a finite, non-negative number"
        if current_ma > max_ma or current_ma > limits.AMPLITUDE_MAX_MA:
            return f"current {current_ma:g} mA above the allowed {min(max_ma, limits.AMPLITUDE_MAX_MA):g} mA"
        if not (limits.PULSE_WIDTH_MIN_US <= pulse_width_us <= limits.PULSE_WIDTH_MAX_US):
            return (f"pulse width {pulse_width_us} µs outside {limits.PULSE_WIDTH_MIN_US}.."
                    f"{limits.PULSE_WIDTH_MAX_US} µs")
        if limits.charge_per_phase_uc(current_ma, pulse_width_us) > limits.CHARGE_PER_PHASE_MAX_UC:
            return f"charge {limits.charge_per_phase_uc(current_ma, pulse_width_us):g} µC per phase above cap"
        if current_ma > 0.0 and self.kernel.fault and not fault_free:
            return "current asked for while a fault is latched"
        return None

    def check_outputs(self, currents_ma, *, fault_free: bool = False) -> str | None:
        """Why this output of every channel (mA, kernel channel order) is not allowed, or None:
        each channel's own checks (``check_output``, naming the channel when there are several)
        and the charge per second summed over the channels (µC/s, ≤
        ``limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S``). ``fault_free``: the output was asked for on a
        sample with no fault latched (the batch check of ``flush_batch``). Pure, never raises."""
        several = len(self.channels) > 1
        total_uc_per_s = 0.0
        for (channel, pulse_width_us, max_ma), current_ma in zip(self.channels, currents_ma):
            problem = self.check_output(current_ma, pulse_width_us, max_ma, fault_free=fault_free)
            if problem:
                return f"channel {channel}: {problem}" if several else problem
            total_uc_per_s += limits.charge_rate_uc_per_s(current_ma, pulse_width_us, self._frequency_hz)
        if total_uc_per_s > limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S:
            return (f"{total_uc_per_s:g} µC/s summed over the channels above the cap "
                    f"{limits.TOTAL_CHARGE_RATE_MAX_UC_PER_S:g} µC/s")
        return None

    def present_outputs_ma(self) -> tuple[float, ...]:
        """The kernel's present current of every channel (mA, kernel channel order; one value per
        entry of :attr:`channels`). Never raises."""
        k = self.kernel
        if len(self.channels) == 1:
            return (k.current_ma,)
        return (k.current_ma, *(k.channel_current_ma(i) for i in range(1, len(self.channels))))

    def deliver(self) -> None:
        """Send the kernel's present output to the stimulator, if it passes every check (every
        channel, all together: a refusal on one latches OUTPUT_LIMIT, which zeroes them all).

        The controller calls it when the kernel's ``deliver_due`` is set. Checked, never clamped:
        what reaches ``Stimulator.set_output`` is exactly the kernel's output or nothing. A
        stimulator error latches STIMULATOR instead of raising. Counts :attr:`deliveries` and calls
        the delivery listeners for an output that was passed on; an exception of a listener
        propagates (the controller latches EXCEPTION, which zeroes the output)."""
        k = self.kernel
        current_ma = k.current_ma
        if 0.0 <= current_ma <= self._checked_top_ma and not k.fault:
            # one channel, no fault, within the range checked when ``channels`` was set:
            # check_outputs passes it (monotone checks), so this is the send below without the
            # per-call checks (tests/test_output_path.py proves both paths send the same)
            self._send((current_ma,))
            k.mark_delivered()
            return
        currents = self.present_outputs_ma()
        if k.fault and not any(currents):
            # the fault path already sent zero current and Stop; nothing more goes out
            k.mark_delivered()
            return
        problem = self.check_outputs(currents)
        if problem:
            self.latch(Fault.OUTPUT_LIMIT, problem)
            return
        self._send(currents)
        k.mark_delivered()

    # ----- batch replays: the deliveries of a ramp in one checked call ------------------
    def begin_batch(self) -> bool:
        """Before a batch feed: with no stimulator and no delivery listener attached and one
        channel, check the channel's highest current (``check_outputs``) and let the kernel take
        deliveries of 0..that current without returning (``set_delivery_ceiling``). Every check
        is monotone in the current, so each of those values passes exactly as it would singly;
        anything else (above the ceiling, NaN, a fault latched, a sample that raised an event)
        still comes to :meth:`deliver` on its own sample. Returns True when batching is on.
        Call :meth:`flush_batch` after every kernel call and :meth:`end_batch` at the end."""
        ceiling = -1.0
        self.flush_batch()
        if (self.stimulator is None and not self.delivery_listeners and not self.channel_delivery_listeners
                and len(self.channels) == 1 and not self.kernel.fault):
            top = self.channels[0][2]
            if math.isfinite(top) and top >= 0.0 and self.check_outputs((top,)) is None:
                ceiling = top
        self._batch_ceiling_ma = ceiling
        self.kernel.set_delivery_ceiling(ceiling)
        return ceiling >= 0.0

    def flush_batch(self) -> None:
        """Check and count the deliveries the kernel took since the last call, in one call: their
        lowest and highest current lie within 0..the ceiling ``begin_batch`` checked (so, by
        monotonicity, every one passes ``check_outputs``) and ``deliveries`` grows by their
        number. Anything outside (a kernel that broke its ceiling) latches OUTPUT_LIMIT."""
        if not self.kernel.batched_deliveries:
            return
        n, low_ma, high_ma = self.kernel.take_batched()
        if not (0.0 <= low_ma and high_ma <= self._batch_ceiling_ma):
            problem = (self.check_outputs((low_ma,), fault_free=True)
                       or self.check_outputs((high_ma,), fault_free=True)
                       or f"current {low_ma:g}..{high_ma:g} mA outside the checked 0..{self._batch_ceiling_ma:g} mA")
            self.latch(Fault.OUTPUT_LIMIT, f"{problem} (in a batch of {n} deliveries)")
            return
        self.deliveries += n
        self.last_delivered_ma = self.kernel.delivered_ma
        self.last_delivered_channels_ma = (self.last_delivered_ma,)

    def end_batch(self) -> None:
        """Batching off (every delivery to :meth:`deliver` again), after a last ``flush_batch``."""
        self.kernel.set_delivery_ceiling(-1.0)
        self.flush_batch()

    def _send(self, currents_ma: tuple[float, ...]) -> None:
        k = self.kernel
        if k.fault and any(c > 0.0 for c in currents_ma):
            # last gate before the driver (deliver() already refused it)
            self.latch(Fault.OUTPUT_LIMIT, "current asked for while a fault is latched")
            return
        current_ma = currents_ma[0]
        self.deliveries += 1
        self.last_delivered_ma = current_ma
        self.last_delivered_channels_ma = currents_ma
        stimulator = self.stimulator
        if stimulator is not None:
            self._stopped = False
            try:
                stimulator.set_output([_ChannelOutput(channel, c, pulse_width_us)
                                       for (channel, pulse_width_us, _), c in zip(self.channels, currents_ma)])
            except _StimulatorError as err:
                self._stimulator_needs_recover = True
                self.latch(Fault.STIMULATOR, str(err))
                return
        for listener in self.delivery_listeners:
            listener(k.t_us, current_ma)
        for listener in self.channel_delivery_listeners:
            listener(k.t_us, currents_ma)

    def request_amplitude(self, amplitude_ma: float, low_ma: float, high_ma: float) -> bool:
        """A plateau amplitude asked for by the event level (adaptive stimulation): passed to
        the kernel (which applies it while the output is zero) only when it is finite and
        within [low_ma, high_ma] and the caps; otherwise nothing is changed and OUTPUT_LIMIT
        latches (checked, never clamped). Returns True when passed on. mA; never raises."""
        top = min(high_ma, self._max_ma)
        if not (math.isfinite(amplitude_ma) and low_ma <= amplitude_ma <= top):
            self.latch(Fault.OUTPUT_LIMIT, f"amplitude {amplitude_ma!r} mA asked for, allowed "
                                           f"{low_ma:g}..{top:g} mA")
            return False
        problem = self.check_output(amplitude_ma, self._pulse_width_us)
        if problem:
            self.latch(Fault.OUTPUT_LIMIT, problem)
            return False
        self.kernel.request_amplitude(amplitude_ma)
        return True

    # ----- periodic service from the control loop -------------------------------------
    def service(self) -> None:
        """Read stimulator replies and send the (acknowledged) keep-alive. Call from the
        control loop only: the device keeps stimulating while any packet arrives, so a
        keep-alive must stop when this loop stops. A stimulator that stops answering is a
        STIMULATOR fault within keepalive_ms + ack_timeout_ms (if the loop calls this by
        ``service_due_in_us``). Never raises a stimulator error: each one latches STIMULATOR
        (and the next :meth:`clear` redoes the handshake). No stimulator: does nothing."""
        stimulator = self.stimulator
        if stimulator is None:
            return
        try:
            stimulator.poll()
            if not self.kernel.fault:
                # no keep-alive while faulted: should Stop not have been taken, the device's
                # own watchdog ends any stimulation
                stimulator.keepalive()
        except _StimulationFault as err:
            self._stimulator_needs_recover = True
            self.latch(Fault.STIMULATOR, f"{getattr(err, 'reason', 'error')}: {err}")
        except _StimulatorError as err:
            self._stimulator_needs_recover = True
            self.latch(Fault.STIMULATOR, str(err))

    def service_due_in_us(self, now_s: float | None = None) -> int | None:
        """Microseconds until ``service()`` must run next (an acknowledgement deadline or
        the keep-alive), None when there is no stimulator or nothing is due; ≥ 0. ``now_s``
        time.monotonic() (default: now). The loop bounds its wait by it. Never raises."""
        if self.stimulator is None:
            return None
        due = self.stimulator.next_deadline_s(keepalive=not self.kernel.fault)
        if due is None:
            return None
        now_s = time.monotonic() if now_s is None else now_s
        return max(0, int((due - now_s) * 1e6) + 1)

    # ----- faults ---------------------------------------------------------------------
    def latch(self, reason: Fault, detail: str = "") -> None:
        """Zero output now, stop the stimulator, enter FAULT. First reason wins in the kernel.

        On return: the kernel's output is zero and its fault set; the stimulator got zero and
        Stop (best effort, ``Stimulator.stop`` never raises) and is inhibited, so it refuses
        current on its own too; a :class:`FaultRecord` is kept for the first reason only. Safe to
        call again while latched. The stop and the fault listeners run even when the machine
        raises; a listener's exception is logged, not raised."""
        already = bool(self.kernel.fault)
        self.kernel.latch_fault(int(reason))
        reason = Fault(self.kernel.fault)
        if not already:
            record = FaultRecord(reason, detail, self.kernel.t_us)
            self.faults.append(record)
            log.warning("fault latched: %s", record.text)
        try:
            self.machine.enter_fault(reason)
        finally:
            self._stop_stimulator()
            self._tell_fault(reason)

    def on_kernel_fault(self) -> None:
        """The kernel latched a fault on a sample: record it (with what the kernel measured),
        stop, enter FAULT; the same guarantees as :meth:`latch`."""
        reason = Fault(self.kernel.fault)
        if not self.faults or self.faults[-1].t_us != self.kernel.t_us or self.faults[-1].reason != reason:
            self.faults.append(FaultRecord(reason, self._kernel_fault_detail(reason), self.kernel.t_us))
            log.warning("fault latched: %s", self.faults[-1].text)
        try:
            self.machine.enter_fault(reason)
        finally:
            self._stop_stimulator()
            self._tell_fault(reason)

    def _tell_fault(self, reason: Fault) -> None:
        for listener in self.fault_listeners:
            try:
                listener(reason)
            except Exception:  # noqa: BLE001 - the output is zero and latched whatever a listener does
                log.exception("fault listener failed")

    def _kernel_fault_detail(self, reason: Fault) -> str:
        """What the kernel measured, in words, for the faults that carry a number."""
        k = self.kernel
        if reason == Fault.CLOCK_JUMP:
            step = int(getattr(k, "clock_step_us", 0))
            if step < 0:
                return f"sensor timestamp went backwards by {-step} µs"
            if step == 0:
                return "sensor timestamp stood still (same as the frame before)"
            return f"sensor timestamp leapt forward by {step} µs (more than stale_ms {k.p.stale_us // 1000} ms)"
        if reason == Fault.CLOCK_DRIFT:
            late, rate = int(k.drift_late_us), int(k.drift_rate_us)
            if late > k.p.stale_us:
                return (f"frames arrive {late} µs later than their timestamps say "
                        f"(allowed {k.p.stale_us} µs)")
            from fescontrol.core.limits import DRIFT_MAX_PERCENT, DRIFT_WINDOW_US
            direction = "slow" if rate > 0 else "fast"
            return (f"sensor clock runs {direction}: {abs(rate)} µs per {DRIFT_WINDOW_US // 1000} ms of wall "
                    f"time (allowed {DRIFT_MAX_PERCENT} %)")
        return ""

    def _stop_stimulator(self) -> None:
        self.last_delivered_ma = 0.0
        self.last_delivered_channels_ma = (0.0,) * len(self.channels)
        self.kernel.mark_delivered()
        if self.stimulator is not None:
            if self.kernel.fault:
                self.stimulator.inhibit(f"fault {Fault(self.kernel.fault).name} latched")
            if self._stopped and not self.stimulator.is_running:
                return  # stopped already and nothing sent since: a second Stop only costs time
            self._stopped = True
            self.stimulator.stop()  # zero current, then Stop; best effort, never raises

    def clear(self, person: str, note: str = "") -> None:
        """A person clears the latched fault. The machine returns to STANDBY (output zero).

        ``person`` the name of who cleared it (logged with ``note``). Nothing is latched: does
        nothing. Raises ValueError without a name, and a StimulatorError (StimulatorInitError
        when the stimulator's new handshake fails); in both cases the fault stays latched. A fault never clears by
        itself, and clearing starts no stimulation."""
        if not self.kernel.fault:
            return
        if not person:
            raise ValueError("clearing a fault needs the name of the person who clears it")
        log.warning("fault %s cleared by %s %s", Fault(self.kernel.fault).name, person, note)
        if self.stimulator is not None:
            if self._stimulator_needs_recover or self.stimulator.fault is not None:
                self.stimulator.recover()  # redo the handshake the device needs after its own fault
                self._stimulator_needs_recover = False
            else:
                self.stimulator.clear_inhibit()
        self.kernel.clear_fault()
        self.machine.fault_cleared()
