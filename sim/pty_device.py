"""What every emulated stimulator shares: a device model on a real pseudo-terminal, run by one
background thread, with its records behind one lock.

A subclass models one device's protocol. It sets ``THREAD_NAME``, builds ``self._decoder`` (an
object whose ``feed(bytes)`` yields packets) after calling ``super().__init__``, and defines:

* ``_handle(packet, now)``: one valid packet, called with the lock held;
* ``_timers(now)``: the device's own clocks (watchdog, periodic frames), called every tick with
  the lock held, also when nothing arrived;
* ``_end_all(now)``: end every ongoing pulse train (``self._active``) at ``now``;
* ``summary()``: a human-readable list of what was delivered.

Clients open ``port`` (the pty slave path) as they would the device's USB-serial port. The slave
is in raw mode; bytes pass unchanged. Times are ``time.monotonic()`` seconds. The fault knobs
common to both devices (``ack_enabled``, ``nack_result``, ``corrupt_acks``, ``disconnect()``)
live here; the subclass applies them where its protocol answers.
"""
from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import sys
import threading
import time
import tty
from typing import Any

log = logging.getLogger(__name__)


class PtyDevice:
    """A device model on a pty. ``start()`` / ``stop()``; also a context manager.

    Invariants: every record and every piece of device state is read and written with
    ``self._lock`` held; after ``stop()`` no pulse train is ongoing and the pty is closed.
    """

    THREAD_NAME = "pty-device"
    #: True when a pulled cable also stops stimulation (the device is powered by its USB port).
    STOPS_ON_DISCONNECT = False
    #: True when every frame written is kept in ``sent``.
    RECORDS_SENT = False

    def __init__(self, *, tick_s: float):
        self.tick_s = tick_s
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._port = os.ttyname(self._slave)
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._disconnect_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._decoder: Any = None
        # fault knobs
        self.ack_enabled = True
        self.nack_result: int | None = None
        self.corrupt_acks = False
        # device state and records
        self._active: dict[int, Any] = {}
        self._trains: list[Any] = []
        self._received: list[tuple[float, Any]] = []
        self._sent: list[tuple[float, bytes]] = []
        self._rejected: list[Any] = []
        self._errors: list[str] = []
        self.dropped_tx_bytes = 0
        self.t0_s = time.monotonic()

    # ------------------------------------------------------------------ life cycle

    @property
    def port(self) -> str:
        """The pty slave path for clients to open."""
        return self._port

    def start(self):
        """Start the device thread; returns self."""
        with self._lock:
            self.t0_s = time.monotonic()
            self._on_start(self.t0_s)
        self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    def _on_start(self, now: float) -> None:
        """Called by ``start()`` with the lock held."""

    def stop(self) -> None:
        """Stop the thread, end ongoing trains, close the pty. Idempotent."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            self._end_all(time.monotonic())
            self._close_fds()

    def disconnect(self) -> None:
        """Close the pty as a pulled cable would; clients see an I/O error or EOF."""
        if self._thread is not None and self._thread.is_alive():
            self._disconnect_event.set()
            for _ in range(200):
                with self._lock:
                    if self._master < 0:
                        return
                time.sleep(0.005)
        with self._lock:
            self._close_fds()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _close_fds(self) -> None:
        for name in ("_master", "_slave"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)

    # ------------------------------------------------------------------ public records

    def _snapshot(self, name: str) -> list:
        with self._lock:
            return list(getattr(self, name))

    @property
    def received(self) -> list[tuple[float, Any]]:
        """(monotonic s, packet) of every valid frame received, oldest first."""
        return self._snapshot("_received")

    @property
    def sent(self) -> list[tuple[float, bytes]]:
        """(monotonic s, frame) of every frame sent, as written (corrupted ones included);
        empty unless the device class keeps them (``RECORDS_SENT``)."""
        return self._snapshot("_sent")

    @property
    def rejected(self) -> list[Any]:
        """Frames refused for a bad CRC or length."""
        return self._snapshot("_rejected")

    @property
    def errors(self) -> list[str]:
        """Internal emulator errors (a test should see none)."""
        return self._snapshot("_errors")

    @property
    def stimulating(self) -> bool:
        """True while any channel delivers a pulse train."""
        with self._lock:
            return bool(self._active)

    @property
    def segments(self) -> list:
        """Every pulse train delivered so far (ongoing ones have t_end_s None)."""
        with self._lock:
            return [t.public() for t in self._trains]

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - keep emulating, but make it visible
                log.exception("emulator error")
                with self._lock:
                    self._errors.append(repr(exc))
                time.sleep(self.tick_s)

    def _step(self) -> None:
        if self._disconnect_event.is_set():
            with self._lock:
                if self.STOPS_ON_DISCONNECT:
                    self._end_all(time.monotonic())
                self._close_fds()
            self._disconnect_event.clear()
        master = self._master
        if master < 0:
            time.sleep(self.tick_s)
        else:
            ready, _, _ = select.select([master], [], [], self.tick_s)
            if ready:
                try:
                    data = os.read(master, 4096)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError:        # EIO: no slave open (cannot happen while we hold one)
                    data = b""
                    time.sleep(self.tick_s)
                if data:
                    with self._lock:
                        now = time.monotonic()
                        for packet in self._decoder.feed(data):
                            self._handle(packet, now)
        with self._lock:
            self._timers(time.monotonic())

    def _send(self, frame: bytes) -> None:
        """Write one frame to the client; bytes a full pty does not take are counted in
        ``dropped_tx_bytes`` (a device's UART does not wait for its host either)."""
        if self._master < 0:
            return
        if self.RECORDS_SENT:
            self._sent.append((time.monotonic(), frame))
        try:
            written = os.write(self._master, frame)
        except (BlockingIOError, OSError):
            written = 0
        self.dropped_tx_bytes += len(frame) - written

    # ------------------------------------------------------------------ the subclass's part

    def _handle(self, packet, now: float) -> None:
        raise NotImplementedError

    def _timers(self, now: float) -> None:
        raise NotImplementedError

    def _end_all(self, now: float) -> None:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError


def run_standalone(device_class: type[PtyDevice], prog: str, description: str,
                   argv: list[str] | None = None) -> int:
    """``python -m fescontrol.sim.<device> --pty``: print the port path, emulate until SIGINT or
    SIGTERM, then print the summary of what was delivered. Returns the exit status (0)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--pty", action="store_true", required=True,
                        help="create a pseudo-terminal and print its path (the only mode)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    done = threading.Event()

    def _on_signal(signum, frame):  # noqa: ARG001
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    device = device_class().start()
    print(device.port, flush=True)
    try:
        while not done.wait(0.2):
            pass
    finally:
        device.stop()
    print(device.summary(), flush=True)
    return 0
