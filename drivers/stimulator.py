"""The stimulator interface: one small ABC, a typed error hierarchy, a lazy backend registry.

Over 400 lines: the ABC, its error tree and the backend registry, kept in one module while the
backend work edits all three.

Modelled on python-can's ``BusABC``: the base class owns the public API (open, set_output,
poll, keepalive, stop, recover, close, context manager) and the safety bookkeeping
(acknowledgement deadlines, the keep-alive clock, the latched fault); a backend implements a
handful of private methods (``_handshake``, ``_send_output``, ``_send_keepalive``,
``_send_stop``, ``_handle_bytes``). Backends are found by name in ``BACKENDS`` (merged with the
entry-point group ``fescontrol.stimulators``) and imported only when chosen.

Threading: a Stimulator is not thread-safe. Call it from the control loop only (see
``keepalive`` for why the keep-alive must not move to another thread).

Time: every deadline uses ``time.monotonic()`` (seconds).
"""
from __future__ import annotations

import abc
import array
import fcntl
import importlib
import importlib.metadata
import logging
import math
import os
import termios
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Hashable, Mapping, Sequence

import serial
from serial import serialposix

log = logging.getLogger(__name__)

#: the keep-alive interval may not exceed this: the device watchdog fires after 1.2 s of silence
MAX_KEEPALIVE_INTERVAL_S = 0.5
FAULT_REASONS = ("emergency_switch", "electrode_error", "module_error", "device_reset", "disconnected",
                 "pulse_timeout", "low_current", "device_stopped")


# --------------------------------------------------------------------------- errors

class StimulatorError(Exception):
    """Base of every error a stimulator raises."""


class StimulatorInitError(StimulatorError):
    """The stimulator could not be opened, handshaken or (re)initialised."""


class UnknownStimulatorError(StimulatorInitError, LookupError):
    """No backend of that name is registered."""


class StimulatorOperationError(StimulatorError):
    """The device answered a command with a negative result (NACK).

    ``result`` is the signed result byte (-1 CRC/length, -2 parameter, -3 wrong mode, -8 busy).
    """

    def __init__(self, message: str, result: int):
        super().__init__(message)
        self.result = result


class StimulatorTimeoutError(StimulatorError):
    """An expected acknowledgement did not arrive before its deadline (or a write blocked)."""


class OutputInhibited(StimulatorError):
    """A command with current was refused: the driver is inhibited after an error or a
    latched fault of the application (see ``Stimulator.inhibit``). Zero current and Stop
    still go out."""


class StimulationFault(StimulatorError):
    """The device stopped stimulating on its own, or the link is gone. Latched until ``recover()``.

    ``reason`` is one of "emergency_switch", "electrode_error", "module_error" (unsolicited
    StimulationError), "device_reset" (unsolicited Init: watchdog or power reset),
    "disconnected" (the port failed), "pulse_timeout", "low_current" (a channel's error
    report) or "device_stopped" (a channel that should stimulate is reported off).
    ``channel`` (1-based) names the channel when the device reported one.
    """

    def __init__(self, reason: str, message: str = "", channel: int | None = None):
        if reason not in FAULT_REASONS:
            raise ValueError(f"reason={reason!r}; allowed {', '.join(FAULT_REASONS)}")
        super().__init__(message or reason)
        self.reason = reason
        self.channel = channel


# --------------------------------------------------------------------------- values

@dataclass(frozen=True)
class ChannelOutput:
    """What one channel should deliver: 1-based ``channel``, ``current_ma`` (mA, >= 0, rounded
    DOWN to the device's integer mA when sent) and ``pulse_width_us`` (µs, 0 or the device range)."""
    channel: int  # 1-based
    current_ma: float
    pulse_width_us: int


class _PendingAck:
    """An acknowledgement still expected: ``key``, what was sent (for messages), the deadline
    (time.monotonic() s). ``what`` may be given as ``(format, *args)``: it is then formatted
    with ``%`` only when a message needs it (the loop sends an update every output)."""

    __slots__ = ("key", "deadline_s", "_what")

    def __init__(self, key: Hashable, what: str | tuple, deadline_s: float):
        self.key = key
        self.deadline_s = deadline_s
        self._what = what

    @property
    def what(self) -> str:
        what = self._what
        if not isinstance(what, str):
            what = self._what = what[0] % what[1:]
        return what

    def __repr__(self) -> str:
        return f"_PendingAck({self.key!r}, {self.what!r}, {self.deadline_s!r})"


_NO_LEVEL = (0, 0)   # (current mA, pulse width µs) of a channel an update does not name


def _posix_fd(port: Any) -> int | None:
    """The file descriptor of a plain POSIX pyserial port opened non-blocking (pyserial always
    opens it so), whose reads and writes the driver may do itself with one system call; None for
    any other port (a URL handler, a subclass with its own read/write): it goes through pyserial."""
    cls = type(port)
    if not (isinstance(port, serialposix.Serial) and cls.read is serialposix.Serial.read
            and cls.write is serialposix.Serial.write):
        return None
    try:
        fd = port.fileno()
        return fd if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK else None
    except (OSError, ValueError, serial.SerialException):
        return None


# --------------------------------------------------------------------------- the ABC

class Stimulator(abc.ABC):
    """A multi-channel stimulator on a serial link (any ``serial.serial_for_url`` URL or path).

    Life cycle: ``open()`` (blocking handshake) -> per control-loop iteration
    ``poll()``, maybe ``set_output(...)``, ``keepalive()`` -> ``stop()`` -> ``close()``.
    ``with Stimulator(...) as stim:`` opens (if needed) and on exit calls ``stop()`` then
    ``close()``.

    Errors: ``poll()`` reports what the device said: ``StimulatorOperationError`` (NACK),
    ``StimulatorTimeoutError`` (no acknowledgement within ``ack_timeout_s``) and
    ``StimulationFault`` (device stopped on its own / link lost). A fault is *latched*:
    ``set_output`` refuses until a person has checked the patient and the device and the
    application calls ``recover()``; the driver never re-handshakes by itself.

    ``**options`` are passed to ``serial.serial_for_url`` and override the backend's
    ``SERIAL_SETTINGS`` (unknown options make pyserial raise).
    """

    #: serial_for_url keyword arguments of the backend's link (baud rate, parity, ...)
    SERIAL_SETTINGS: ClassVar[Mapping[str, Any]] = {}
    #: False for a backend that brings its own device (an emulator): it is selected by its
    #: registered name alone (``--stim emulator``) and takes an empty port
    NEEDS_PORT: ClassVar[bool] = True
    #: True: the keep-alive goes out every ``keepalive_interval_s`` even while other commands
    #: flow (a backend whose keep-alive is also how the device reports channel errors, P24);
    #: False: only after ``keepalive_interval_s`` with nothing sent
    KEEPALIVE_WHEN_BUSY: ClassVar[bool] = False

    def __init__(self, port: str, *, channels: Sequence[int] = (1,), frequency_hz: float = 40.0,
                 ack_timeout_s: float = 0.1, keepalive_interval_s: float = 0.3, **options: Any):
        """Configure, do not open (no I/O here: :meth:`open` does the handshake).

        ``port`` a path or ``serial_for_url`` URL ("" for a backend with ``NEEDS_PORT`` False);
        ``channels`` distinct 1-based channel numbers (kept sorted); ``frequency_hz`` the pulse
        frequency, Hz, > 0; ``ack_timeout_s`` how long an acknowledgement may take, s, in
        (0, 1]; ``keepalive_interval_s`` the keep-alive period, s, in (0,
        :data:`MAX_KEEPALIVE_INTERVAL_S`] (the device watchdog fires after 1.2 s of silence).
        Raises ValueError naming the argument and what is allowed.
        """
        chans = tuple(channels)
        if not chans or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in chans):
            raise ValueError(f"channels={list(chans)!r}; allowed a non-empty list of 1-based channel numbers")
        if len(set(chans)) != len(chans):
            raise ValueError(f"channels={list(chans)!r} lists a channel twice")
        if not (isinstance(frequency_hz, (int, float)) and math.isfinite(frequency_hz) and frequency_hz > 0):
            raise ValueError(f"frequency_hz={frequency_hz!r}; allowed a positive number of Hz")
        if not (isinstance(ack_timeout_s, (int, float)) and 0 < ack_timeout_s <= 1.0):
            raise ValueError(f"ack_timeout_s={ack_timeout_s!r}; allowed 0 < t <= 1.0 s")
        if not (isinstance(keepalive_interval_s, (int, float))
                and 0 < keepalive_interval_s <= MAX_KEEPALIVE_INTERVAL_S):
            raise ValueError(f"keepalive_interval_s={keepalive_interval_s!r}; allowed 0 < t <= "
                             f"{MAX_KEEPALIVE_INTERVAL_S} s (the device watchdog fires after 1.2 s)")
        self.port = port
        self.channels: tuple[int, ...] = tuple(sorted(chans))
        self.frequency_hz = float(frequency_hz)
        self.ack_timeout_s = float(ack_timeout_s)
        self.keepalive_interval_s = float(keepalive_interval_s)
        self.serial_options: dict[str, Any] = dict(options)
        self._port: Any = None
        self._fd: int | None = None      # _posix_fd(self._port): reads and writes without pyserial
        self._waiting = array.array("i", [0])   # FIONREAD's answer, written in place
        self._pending: list[_PendingAck] = []
        self._errors: list[StimulatorError] = []
        self._fault: StimulationFault | None = None
        self._last_sent_s: float | None = None
        self._running = False
        self._session_open = False     # handshake completed on this port
        self._inhibited: str | None = None
        self._last_keepalive_s: float | None = None   # last keepalive() that asked the backend

    # ------------------------------------------------------------------ public API

    def open(self) -> None:
        """Open the port and run the backend's handshake (blocking, up to ~1.5 s).

        Raises StimulatorInitError (the port is closed again on failure).
        """
        if self._port is not None:
            raise StimulatorError(f"stimulator on {self.port!r} is already open")
        self._fault = None
        self._errors.clear()
        self._pending.clear()
        self._running = False
        self._open_port()
        try:
            self._handshake()
        except StimulatorInitError:
            self.close()
            raise
        except StimulatorError as exc:
            self.close()
            raise StimulatorInitError(f"handshake with the stimulator on {self.port!r} failed: {exc}") from exc
        self._session_open = True
        log.info("stimulator on %s open: channels %s at %.3g Hz", self.port, self.channels, self.frequency_hz)

    def set_output(self, outputs: Sequence[ChannelOutput]) -> None:
        """Send one update; NON-blocking. Its acknowledgement is checked later by ``poll()``.

        Channels not in ``outputs`` get zero current and zero pulse width. ``current_ma`` is
        converted to the device's integer mA by rounding DOWN (20.9 -> 20): the driver never
        sends more current than asked. ValueError (before anything is sent) for a channel that
        was not configured, a channel given twice, a negative/non-finite current or a value
        outside the device's range. Raises the latched StimulationFault while one is pending.

        Inhibit: once any error was raised (a timeout, a NACK, a fault) or ``inhibit()`` was
        called, an update with current on any channel raises OutputInhibited and nothing is
        sent, until ``recover()`` or ``clear_inhibit()``. Before an update with current the
        acknowledgements already due are checked, so none goes out after one is overdue.
        """
        self._require_session()
        levels: dict[int, tuple[int, int] | None] = dict.fromkeys(self.channels)
        for out in outputs:
            channel = out.channel
            if channel not in levels:
                raise ValueError(f"channel {channel!r} is not configured; configured channels: "
                                 f"{list(self.channels)}")
            if levels[channel] is not None:
                raise ValueError(f"channel {channel} appears twice in one update")
            current = out.current_ma
            if (type(current) is not float and (not isinstance(current, (int, float)) or isinstance(current, bool))
                    or not math.isfinite(current) or current < 0):
                raise ValueError(f"channel {channel}: current_ma={current!r}; allowed a finite value >= 0 mA")
            pulse_width_us = out.pulse_width_us
            if type(pulse_width_us) is not int and (not isinstance(pulse_width_us, int)
                                                    or isinstance(pulse_width_us, bool)):
                raise ValueError(f"channel {channel}: pulse_width_us={pulse_width_us!r}; "
                                 f"allowed an integer number of µs")
            levels[channel] = (math.floor(current), pulse_width_us)
        with_current = False
        for channel, level in levels.items():
            if level is None:
                levels[channel] = _NO_LEVEL
            elif level[0] > 0:
                with_current = True
        if with_current:
            if self._inhibited is None:
                self._service()          # an overdue acknowledgement raises (and inhibits) here
            if self._inhibited is not None:
                raise OutputInhibited(f"output with current refused: {self._inhibited}")
        self._send_output(levels)

    def poll(self) -> None:
        """Non-blocking: read what the device sent and check every pending acknowledgement.

        Raises (most severe first) StimulationFault on an unsolicited StimulationError, an
        unsolicited Init (the device reset) or a failed port; StimulatorOperationError on a
        negative result; StimulatorTimeoutError when an acknowledgement is past its deadline
        (the ack is then dropped from the pending list). Other errors found in the same call
        are logged.
        """
        if self._port is None:
            raise StimulatorError("stimulator is not open")
        self._service()

    def keepalive(self) -> bool:
        """Send the backend's ACKNOWLEDGED keep-alive (RehaStim2: GetStimulationMode) if nothing
        was sent for >= ``keepalive_interval_s``; True if sent. A silent or erroring device is
        therefore reported by ``poll()`` within ``keepalive_interval_s + ack_timeout_s``.

        Call it from the control loop itself, once per iteration. The device keeps stimulating
        at the last parameters for as long as ANY valid packet arrives: a keep-alive thread
        would keep a person stimulated while the control loop hangs. From the loop, a hung or
        dead loop goes silent and the device stops within its 1.2 s watchdog. Does nothing
        before ``open()`` or while a fault is latched.
        """
        if self._port is None or not self._session_open or self._fault is not None:
            return False
        now = time.monotonic()
        if self.KEEPALIVE_WHEN_BUSY:
            if self._last_keepalive_s is None:          # the interval runs from the first call
                self._last_keepalive_s = now
                return False
            if now - self._last_keepalive_s < self.keepalive_interval_s:
                return False
        else:
            if self._last_sent_s is not None and now - self._last_sent_s < self.keepalive_interval_s:
                return False
            if self._last_keepalive_s is not None and now - self._last_keepalive_s < self.keepalive_interval_s:
                return False    # the backend chose not to send last time (nothing to keep alive)
        self._last_keepalive_s = now
        self._send_keepalive()
        return True

    def stop(self) -> None:
        """Best effort, never raises for I/O or device errors: zero current on all channels,
        then stop the channel list, then wait up to ``ack_timeout_s`` for the acknowledgements
        (of these two; older ones still unanswered are summarised in one log line)."""
        if self._port is None:
            return
        try:
            before = len(self._pending)
            self._send_stop()
            deadline = time.monotonic() + self.ack_timeout_s + 0.02
            own = self._pending[before:]
            while any(p in self._pending for p in own) and time.monotonic() < deadline:
                try:
                    self._service(raise_timeouts=False)
                except StimulatorError as exc:
                    log.info("during stop: %s", exc)
                time.sleep(0.001)
            missing = [p for p in own if p in self._pending]
            older = [p for p in self._pending if p not in own]
            if older:
                log.warning("stop: %d earlier command(s) never acknowledged (%s … %s)",
                            len(older), older[0].what, older[-1].what)
            for pending in missing:
                log.warning("stop: no acknowledgement for %s", pending.what)
        except (StimulatorError, OSError) as exc:
            log.warning("stop on %s could not complete: %s", self.port, exc)
        finally:
            self._pending.clear()
            self._errors.clear()
            self._running = False

    def recover(self) -> None:
        """Redo the handshake after a fault (blocking). Call it only when a person has cleared
        the fault (checked the patient, the electrodes and the device). Reopens the port after
        a "disconnected" fault. Raises StimulatorInitError."""
        if self._port is None and (self._fault is None or self._fault.reason != "disconnected"):
            raise StimulatorError("stimulator is not open; call open()")
        fault, self._fault = self._fault, None
        self._errors.clear()
        self._pending.clear()
        self._running = False
        self._inhibited = None
        if fault is not None and fault.reason == "disconnected":
            self._close_port()
            try:
                self._open_port()
            except StimulatorInitError:
                self._fault = fault
                raise
            self._on_reconnect()
        try:
            self._handshake()
        except StimulatorError as exc:
            if self._fault is None:
                self._fault = fault     # still not cleared: keep refusing set_output
            self._errors.clear()
            if isinstance(exc, StimulatorInitError):
                raise
            raise StimulatorInitError(f"recovery of the stimulator on {self.port!r} failed: {exc}") from exc
        self._session_open = True
        log.info("stimulator on %s recovered%s", self.port, f" from {fault.reason}" if fault else "")

    def inhibit(self, reason: str) -> None:
        """Refuse every command with current from now on (zero and Stop still go out) until
        ``recover()`` or ``clear_inhibit()``. The safety supervisor calls it on every latched
        fault; the driver itself on every error it raises. The first reason is kept."""
        if self._inhibited is None:
            self._inhibited = reason or "inhibited"

    def clear_inhibit(self) -> None:
        """A person cleared the fault and the device needs no new handshake."""
        self._inhibited = None

    @property
    def inhibited(self) -> str | None:
        """Why commands with current are refused, or None."""
        return self._inhibited

    def next_deadline_s(self, keepalive: bool = True) -> float | None:
        """time.monotonic() by which ``poll()`` (and ``keepalive()`` when ``keepalive``) must
        next run to keep the ``keepalive_interval_s + ack_timeout_s`` bound: the soonest
        acknowledgement deadline or keep-alive due time; None when there is none."""
        if self._port is None or not self._session_open:
            return None
        due = None
        for pending in self._pending:
            if due is None or pending.deadline_s < due:
                due = pending.deadline_s
        if keepalive and self._last_sent_s is not None and self._fault is None:
            if self.KEEPALIVE_WHEN_BUSY:
                last = self._last_keepalive_s if self._last_keepalive_s is not None else self._last_sent_s
            else:
                last = max(self._last_sent_s, self._last_keepalive_s or 0.0)
            keepalive_due = last + self.keepalive_interval_s
            if due is None or keepalive_due < due:
                due = keepalive_due
        return due

    def close(self) -> None:
        """Close the port (no stop: use ``stop()`` first, or the context manager). Idempotent."""
        self._close_port()
        self._session_open = False
        self._running = False
        self._pending.clear()

    def opened_note(self) -> str | None:
        """One line for the user after ``open()`` (a virtual backend says where its device is);
        None, the default, for hardware. Never raises."""
        return None

    def closed_note(self) -> str | None:
        """One line for the user after ``close()`` (an emulator summarises what it delivered);
        None, the default, for hardware. Never raises."""
        return None

    def __enter__(self) -> "Stimulator":
        if self._port is None:
            self.open()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.stop()
        finally:
            self.close()

    @property
    def is_open(self) -> bool:
        return self._port is not None and self._session_open

    @property
    def is_running(self) -> bool:
        """True from the first update sent until stop() or a fault."""
        return self._running

    @property
    def last_sent_monotonic(self) -> float | None:
        """time.monotonic() of the last packet written, None before the first."""
        return self._last_sent_s

    @property
    def fault(self) -> StimulationFault | None:
        """The latched fault, None when there is none."""
        return self._fault

    @property
    def pending_acks(self) -> int:
        """Number of acknowledgements still expected."""
        return len(self._pending)

    # ------------------------------------------------------------------ for backends

    @abc.abstractmethod
    def _handshake(self) -> None:
        """Blocking: bring the device to the initialised state (used by open and recover;
        up to ~1.5 s). Raises StimulatorInitError, or any StimulatorError (the caller wraps it
        in StimulatorInitError)."""

    @abc.abstractmethod
    def _send_output(self, levels: Mapping[int, tuple[int, int]]) -> None:
        """Send {channel: (current_ma int, pulse_width_us)} for every configured channel.

        Never blocks (register the acknowledgement with ``_expect``; ``poll`` checks it). The
        currents are whole mA already rounded DOWN by ``set_output`` and already checked against
        the inhibit; send exactly them, never more. Raises ValueError (before writing) for a
        value outside the device's range, StimulationFault("disconnected") for a failed port."""

    @abc.abstractmethod
    def _send_keepalive(self) -> None:
        """Send one packet that keeps the device's watchdog alive AND is acknowledged
        (register it with ``_expect``), so a silent device is noticed within the interval."""

    @abc.abstractmethod
    def _send_stop(self) -> None:
        """Send zero current on every channel, then stop; may register acks. Must work while
        inhibited or faulted (a stop is never refused); may raise StimulatorError or OSError
        (``stop`` logs them and carries on)."""

    @abc.abstractmethod
    def _handle_bytes(self, data: bytes) -> None:
        """Decode received bytes (any split, garbage included); call _ack_received /
        _device_fault for what they say. Malformed bytes are counted or logged, not raised."""

    def _on_reconnect(self) -> None:
        """Hook: the port was reopened after a disconnect (reset protocol state)."""
        return None

    def _open_port(self) -> None:
        settings = {**self.SERIAL_SETTINGS, **self.serial_options}
        try:
            self._port = serial.serial_for_url(self.port, **settings)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise StimulatorInitError(f"cannot open stimulator port {self.port!r}: {exc}") from exc
        self._fd = _posix_fd(self._port)

    def _close_port(self) -> None:
        self._fd = None
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # noqa: BLE001 - closing must not raise
                log.debug("closing %s: %s", self.port, exc)

    def _write(self, frame: bytes) -> None:
        """Write one frame; a failed port latches a "disconnected" fault and raises it. On a
        plain POSIX port one ``os.write`` takes the whole frame when the port has room (pyserial
        adds a select and timeout bookkeeping to every write); whatever it does not take goes
        through pyserial, with the port's write timeout."""
        if self._port is None:
            raise StimulatorError("stimulator is not open")
        try:
            fd = self._fd
            written = 0
            if fd is not None:
                try:
                    written = os.write(fd, frame)
                except BlockingIOError:
                    written = 0
            if written < len(frame):
                self._port.write(frame[written:] if written else frame)
        except serial.SerialTimeoutException as exc:
            raise StimulatorTimeoutError(f"write to {self.port!r} blocked: {exc}") from exc
        except (serial.SerialException, OSError) as exc:
            self._link_lost(exc)
            self._errors = [e for e in self._errors if not isinstance(e, StimulationFault)]
            raise StimulationFault("disconnected", f"write to {self.port!r} failed: {exc}") from exc
        self._last_sent_s = time.monotonic()

    def _read_available(self) -> bytes:
        """Whatever bytes are waiting (never blocks); a failed port latches "disconnected".
        On a plain POSIX port as pyserial's ``in_waiting`` + ``read`` do it, without pyserial's
        select and timeout bookkeeping: the waiting count (FIONREAD; a hung-up port fails here),
        then one ``os.read`` of that many bytes (none returned = disconnected, as pyserial says)."""
        fd = self._fd
        if fd is not None:
            try:
                waiting = self._waiting
                fcntl.ioctl(fd, termios.FIONREAD, waiting, True)
                if not waiting[0]:
                    return b""
                data = os.read(fd, waiting[0])
                if not data:
                    raise serial.SerialException("device reports readiness to read but returned no data "
                                                 "(device disconnected or multiple access on port?)")
                return data
            except BlockingIOError:
                return b""
            except (serial.SerialException, OSError) as exc:
                self._link_lost(exc)
                return b""
        try:
            port = self._port
            data = bytearray()
            while True:
                chunk = port.read(max(port.in_waiting, 1))
                data += chunk
                if len(chunk) < 1 or not port.in_waiting:
                    return bytes(data)
        except (serial.SerialException, OSError) as exc:
            self._link_lost(exc)
            return b""

    def _link_lost(self, exc: BaseException) -> None:
        self._running = False
        self._pending.clear()
        self._device_fault("disconnected", f"stimulator link {self.port!r} failed: {exc}")

    def _expect(self, key: Hashable, what: str, timeout_s: float | None = None) -> None:
        """Register an acknowledgement ``key`` due within ``timeout_s`` (default ack_timeout_s)."""
        timeout = self.ack_timeout_s if timeout_s is None else timeout_s
        self._pending.append(_PendingAck(key, what, time.monotonic() + timeout))

    def _is_pending(self, key: Hashable) -> bool:
        return any(p.key == key for p in self._pending)

    def _ack_received(self, key: Hashable, result: int) -> None:
        """Match an acknowledgement to a pending one; a negative result becomes an error."""
        for i, pending in enumerate(self._pending):
            if pending.key == key:
                del self._pending[i]
                if result != 0:
                    self._errors.append(StimulatorOperationError(
                        f"{pending.what} refused by the device: result {result} ({self._describe_result(result)})",
                        result))
                return
        log.warning("unexpected acknowledgement %r (result %d): late or not ours", key, result)

    def _describe_result(self, result: int) -> str:
        """Text for a non-zero result byte (backends with other result codes override it)."""
        return _result_name(result)

    def _device_fault(self, reason: str, message: str, channel: int | None = None) -> None:
        """Latch a fault (the first one wins) and queue it for the next raise."""
        if self._fault is not None:
            log.info("while %s is latched: %s", self._fault.reason, message)
            return
        self._fault = StimulationFault(reason, message, channel)
        self._running = False
        log.error("stimulation fault (%s): %s", reason, message)
        self._errors.append(self._fault)

    def _service(self, raise_timeouts: bool = True) -> None:
        data = self._read_available() if self._port is not None else b""
        if data:
            self._handle_bytes(data)
        if raise_timeouts and self._pending:
            now = time.monotonic()
            for pending in [p for p in self._pending if now > p.deadline_s]:
                self._pending.remove(pending)
                self._errors.append(StimulatorTimeoutError(
                    f"no acknowledgement for {pending.what} within {self.ack_timeout_s * 1000:.0f} ms"))
        self._raise_collected()

    def _raise_collected(self) -> None:
        if not self._errors:
            return
        errors, self._errors = self._errors, []
        self.inhibit(str(errors[0]))
        for kind in (StimulationFault, StimulatorOperationError, StimulatorTimeoutError, StimulatorError):
            first = next((e for e in errors if isinstance(e, kind)), None)
            if first is not None:
                others = [e for e in errors if e is not first]
                for other in others[:3]:
                    log.warning("also: %s", other)
                if len(others) > 3:
                    log.warning("also: %d more, the last: %s", len(others) - 3, others[-1])
                raise first

    def _transact(self, frame: bytes, key: Hashable, what: str) -> None:
        """Blocking: write ``frame`` and wait for acknowledgement ``key`` (raises as poll())."""
        self._write(frame)
        self._expect(key, what)
        while self._is_pending(key):
            self._service()
            time.sleep(0.001)

    def _require_session(self) -> None:
        if self._fault is not None:
            raise StimulationFault(self._fault.reason,
                                   f"fault latched ({self._fault}); call recover() after a person has cleared it")
        if self._port is None or not self._session_open:
            raise StimulatorError("stimulator is not open; call open()")


def _result_name(result: int) -> str:
    return {-1: "CRC/length error", -2: "parameter error", -3: "wrong mode", -8: "busy"}.get(result, "unknown")


# --------------------------------------------------------------------------- registry

#: built-in backends: name -> (module, class); imported only when chosen
BACKENDS: dict[str, tuple[str, str]] = {
    "rehastim2": ("fescontrol.drivers.rehastim2", "RehaStim2"),
    "p24": ("fescontrol.drivers.p24", "P24"),
}
ENTRY_POINT_GROUP = "fescontrol.stimulators"


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # noqa: BLE001 - a broken distribution must not break the registry
        log.warning("cannot read entry points %s: %s", ENTRY_POINT_GROUP, exc)
        return {}
    found = {}
    for ep in eps:
        if ep.name in BACKENDS:
            log.warning("entry point %s=%s ignored: %r is a built-in backend", ep.name, ep.value, ep.name)
        else:
            found[ep.name] = ep
    return found


def known_stimulators() -> list[str]:
    """Names accepted by get_stimulator_class (built-ins and entry points), sorted. Imports
    no backend; never raises."""
    return sorted(set(BACKENDS) | set(_entry_points()))


def get_stimulator_class(name: str) -> type[Stimulator]:
    """The Stimulator subclass registered as ``name``, importing only its module.

    Built-in names win over entry points of the same name. Raises UnknownStimulatorError
    listing the known names, or StimulatorInitError when the backend cannot be imported.
    """
    try:
        if name in BACKENDS:
            module_name, class_name = BACKENDS[name]
            cls = getattr(importlib.import_module(module_name), class_name)
        else:
            ep = _entry_points().get(name)
            if ep is None:
                raise UnknownStimulatorError(
                    f"unknown stimulator {name!r}; known: {', '.join(known_stimulators())}")
            cls = ep.load()
    except StimulatorError:
        raise
    except Exception as exc:
        raise StimulatorInitError(f"stimulator backend {name!r} could not be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Stimulator)):
        raise StimulatorInitError(f"stimulator backend {name!r} is {cls!r}, not a Stimulator subclass")
    return cls
