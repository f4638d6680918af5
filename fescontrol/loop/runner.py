"""``fes run``: the device loop on real ports.

Opens the sensor port (device path, pty or pyserial URL), opens the profile's
stimulator backend, and runs the controller's real-time loop until the
duration ends, the sensor closes, or Ctrl-C / SIGTERM. Whatever ends it, the
supervisor stops stimulation first (zero current, then Stop), then it exits.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import ExitStack
from typing import Callable

import serial

from fescontrol.drivers.sensor_protocol import SENSOR_BAUD_DEFAULT

from fescontrol.loop.controller import Controller
from fescontrol.core.profile import Profile
from fescontrol.loop.realtime import RealtimeRefused, hardened_loop

#: events a device session keeps in memory (the newest; listeners and the session log get all)
DEVICE_EVENT_HISTORY = 1000


PORT_HELP = ("a serial device such as /dev/ttyUSB0, a pseudo-terminal, a pyserial URL with a file descriptor, "
             "or fessim://RECORDING?side=left&speed=1 (a recorded walk, docs/simulator.md)")


class PortError(ValueError):
    """The sensor port cannot be opened or is not a serial port; the message names it and what is allowed."""


def open_sensor(port: str, baudrate: int = SENSOR_BAUD_DEFAULT) -> serial.SerialBase:
    """Open the sensor link non-blocking; the kernel reads its file descriptor directly.

    Raises :class:`PortError` when the port does not exist, cannot be opened, or is not a
    serial port (a regular file, /dev/null, a URL handler without a file descriptor).
    """
    try:
        link = serial.serial_for_url(port, baudrate=baudrate, timeout=0, exclusive=None)
    except (serial.SerialException, OSError, ValueError) as err:
        code = getattr(err, "errno", None)
        reason = os.strerror(code) if isinstance(code, int) else str(err)
        if "Inappropriate ioctl" in str(err):
            reason = "not a serial port"
        raise PortError(f"--sensor {port!r}: cannot open it ({reason}); give {PORT_HELP}") from err
    try:
        link.fileno()
    except Exception as err:  # URL handlers without a file descriptor
        link.close()
        raise PortError(f"--sensor {port!r} has no file descriptor; give {PORT_HELP}") from err
    return link


#: URL schemes pyserial knows that contain a colon but are ports, not BACKEND:PORT
_URL_PREFIXES = ("/", "loop:", "spy:", "socket:", "rfc2217:", "fessim:")


def stimulator_choice(profile: Profile, stim: str) -> tuple[str, str]:
    """(backend name, port) that ``--stim`` selects: the name of a registered backend alone
    (one that brings its own device, e.g. ``emulator``; the port is then ""), BACKEND:PORT,
    or PORT for the profile's ``device.stimulator`` backend. Never raises."""
    from fescontrol.drivers.stimulator import known_stimulators
    if stim in known_stimulators():
        return stim, ""
    if ":" in stim and not stim.startswith(_URL_PREFIXES):
        backend, port = stim.split(":", 1)
        return backend, port
    return profile.device.stimulator, stim


def open_stimulator(profile: Profile, stim: str):
    """The (unopened) stimulator ``stim`` selects (see :func:`stimulator_choice`), found
    through the drivers registry only, with the profile's channel, frequency and timing.

    Raises UnknownStimulatorError (no such backend: the message lists the known ones) or
    StimulatorInitError (a backend that needs a port was named alone, or one that brings its
    own device was given a port, or it cannot be imported)."""
    from fescontrol.drivers.stimulator import StimulatorInitError, get_stimulator_class
    backend, port = stimulator_choice(profile, stim)
    cls = get_stimulator_class(backend)
    if cls.NEEDS_PORT and not port:
        raise StimulatorInitError(f"--stim {stim!r}: the {backend} backend needs a port; give {backend}:PORT "
                                  f"or the port alone")
    if not cls.NEEDS_PORT and port:
        raise StimulatorInitError(f"--stim {stim!r}: the {backend} backend brings its own device and takes "
                                  f"no port; give --stim {backend}")
    return cls(port, channels=profile.channel_numbers, frequency_hz=profile.stimulation.frequency_hz,
               ack_timeout_s=profile.device.ack_timeout_ms / 1000,
               keepalive_interval_s=profile.device.keepalive_ms / 1000)


STIM_HELP = ("the stimulator's serial port (e.g. /dev/ttyUSB1), BACKEND:PORT, or a backend that brings its own "
             "device ('emulator', 'p24-emulator')")


def open_checked(stimulator, stim: str) -> None:
    """Open ``stimulator``; a port that cannot be opened raises StimulatorInitError naming
    ``--stim`` and what it accepts."""
    from fescontrol.drivers.stimulator import StimulatorInitError
    try:
        stimulator.open()
    except StimulatorInitError as err:
        cause = err.__cause__
        code = getattr(cause, "errno", None)
        if isinstance(code, int):
            reason = os.strerror(code)
        elif cause is not None and "Inappropriate ioctl" in str(cause):
            reason = "not a serial port"
        else:
            raise StimulatorInitError(f"--stim {stim!r}: {err}; give {STIM_HELP}") from err
        raise StimulatorInitError(f"--stim {stim!r}: cannot open the stimulator port ({reason}); "
                                  f"give {STIM_HELP}") from err


def run_device(profile: Profile, sensor: str, stim: str, *, duration_s: float | None = None,
               sensor_baud: int = SENSOR_BAUD_DEFAULT, echo: Callable[[str], None] = print,
               stop_event: threading.Event | None = None, realtime: bool = False) -> int:
    """Run until done; returns the process exit code (0 ok, 1 fault latched, 2 refused, 130 interrupted).

    ``realtime`` (``fes run --rt``) or ``profile.device.realtime.enabled`` applies the profile's
    real-time settings to this thread for the loop (:mod:`fescontrol.loop.realtime`), one line each.
    """
    stop_event = stop_event or threading.Event()
    with ExitStack() as stack:
        stimulator = open_stimulator(profile, stim)
        open_checked(stimulator, stim)
        stack.callback(_echo_note, echo, stimulator.closed_note)
        stack.callback(stimulator.close)
        _echo_note(echo, stimulator.opened_note)
        link = stack.enter_context(open_sensor(sensor, sensor_baud))
        controller = Controller(profile, stimulator=stimulator, event_history=DEVICE_EVENT_HISTORY)
        controller.event_listeners.append(
            lambda e: echo(f"{e.t_us / 1e6:10.3f} s  {e.event:<15} -> {e.state}"))
        # A replayed sensor (fessim://) says what a hardware port cannot: its clock runs at N ×
        # wall time, and when its recording is over (then the run ends as at --duration; on
        # hardware, silence stays a fault).
        clock_rate = getattr(link, "sensor_clock_rate", None)
        if clock_rate is not None:
            controller.set_sensor_clock_rate(clock_rate)
        recording_over = getattr(link, "recording_over", None) or (lambda: False)
        if realtime or profile.device.realtime.enabled:
            try:
                stack.enter_context(hardened_loop(profile.device.realtime, echo))
            except RealtimeRefused as err:
                echo(f"refusing to run: {err}")
                return 2
        # Signals only set a flag that the loop reads at its next wake-up (≤ one wake interval):
        # an exception raised asynchronously inside the stimulator's I/O could leave its
        # state half-updated. A second Ctrl-C raises KeyboardInterrupt as usual (a hung loop).
        interrupts: list[int] = []

        def on_signal(signum, _frame):
            if signum == signal.SIGINT:
                if interrupts:
                    raise KeyboardInterrupt
                interrupts.append(signum)
            stop_event.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} \
            if threading.current_thread() is threading.main_thread() else {}
        t_end = None if duration_s is None else time.monotonic() + duration_s
        controller.start()
        echo(f"running: profile {profile.name!r}, {controller.implementation} kernel; Ctrl-C stops")
        interrupted = False
        try:
            controller.run(link.fileno(), lambda: stop_event.is_set() or (
                t_end is not None and time.monotonic() >= t_end) or bool(controller.kernel.fault)
                or recording_over())
        except KeyboardInterrupt:
            interrupted = True
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        interrupted = interrupted or bool(interrupts)
        k = controller.kernel
        echo(f"stopped: {k.frames} frames, {k.frames_lost} lost, {k.crc_errors} CRC errors, "
             f"{controller.supervisor.deliveries} outputs, {k.missed_deadlines} missed deadlines")
        fault = controller.supervisor.fault
        if fault is not None and not interrupted:
            echo(f"FAULT: {fault.text}")
            return 1
        return 130 if interrupted else 0


def _echo_note(echo: Callable[[str], None], note: Callable[[], str | None]) -> None:
    text = note()
    if text:
        echo(text)
