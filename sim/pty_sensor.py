"""A sensor unit on a real pseudo-terminal: writes wire frames at their own pace.

``fes run --sensor <port>`` opens the slave side like a USB-serial device, so a
replay exercises exactly the device's code path. Frames are written at the
recording's rate (each frame at its timestamp, against time.monotonic) or, with
``speed=0``, as fast as the reader takes them.
"""
from __future__ import annotations

import math
import os
import select
import threading
import time
import tty

import numpy as np


def open_raw_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode (bytes pass unchanged). Returns (master fd, slave fd, slave path).

    Keep the slave fd open until the end: with no slave open, the master side
    reports EIO and written bytes may be lost before the client opens the path.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class PtySensor:
    """Writes byte chunks (normally one frame each) to a pty, each at its time.

    ``times_s`` gives each chunk's send time from the start; ``speed`` 0 sends as fast as
    the reader takes them. ``sent`` counts chunks written; ``write_times`` (monotonic ns)
    is kept per chunk when ``keep_times`` so a benchmark can measure latency. ``unplug()``
    closes the port mid-stream, as a pulled cable would; ``unplug_s`` does it on schedule.

    ValueError at construction for a speed or unplug time that is NaN, infinite or
    negative, or chunks and times of different lengths. ``stop()`` returns within
    ``STOP_TIMEOUT_S`` whatever the reader does: the writer never blocks on a full pty
    (non-blocking writes, waits of at most ``POLL_S`` outside the lock).
    """

    POLL_S = 0.05
    STOP_TIMEOUT_S = 1.0

    def __init__(self, chunks, times_s, *, speed: float = 1.0, keep_times: bool = False,
                 unplug_s: float | None = None):
        self.chunks = [bytes(c) for c in chunks]
        self.frame_times_s = np.asarray(times_s, dtype=float)
        if len(self.frame_times_s) != len(self.chunks):
            raise ValueError(f"{len(self.chunks)} chunks but {len(self.frame_times_s)} send times")
        if not np.all(np.isfinite(self.frame_times_s)):
            raise ValueError("send times must be finite numbers of seconds")
        self.speed = _finite_non_negative("speed", speed, "0 = as fast as the reader takes them, 1 = real time")
        self.unplug_s = None if unplug_s is None else _finite_non_negative("unplug_s", unplug_s, "seconds")
        n = len(self.chunks)
        self.t0 = 0.0
        self.master, self._slave, self.port = open_raw_pty()
        os.set_blocking(self.master, False)
        self.sent = 0
        self.write_times = np.zeros(n, dtype=np.int64) if keep_times else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> "PtySensor":
        self._thread = threading.Thread(target=self._run, name="pty-sensor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = self.t0 = time.monotonic()
        try:
            for i in range(len(self.chunks)):
                if self._stop.is_set():
                    return
                if self.speed > 0:
                    delay = t0 + self.frame_times_s[i] / self.speed - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                if not self._write_all(i, self.chunks[i]):
                    return
                self.sent = i + 1
            if self.unplug_s is not None and self.speed > 0:
                delay = t0 + self.unplug_s / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self.unplug()
        except OSError:
            pass
        finally:
            self.done.set()

    def _write_all(self, i: int, data: bytes) -> bool:
        """Write one chunk; False when stopped or unplugged first. The lock is held only
        for non-blocking writes, so ``unplug``/``stop`` never wait behind a full pty."""
        view = memoryview(data)
        first = True
        while view:
            if self._stop.is_set():
                return False
            with self._lock:
                fd = self.master
                if fd < 0:
                    return False
                if first and self.write_times is not None:
                    self.write_times[i] = time.monotonic_ns()
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    n = 0
            if n:
                view = view[n:]
                first = False
                continue
            try:
                select.select([], [fd], [], self.POLL_S)   # the pty is full: wait for the reader
            except (OSError, ValueError):                  # unplugged meanwhile
                return False
        return True

    def unplug(self) -> None:
        """Stop sending and close the port, like a pulled cable."""
        self._stop.set()
        with self._lock:
            if self.master >= 0:
                os.close(self.master)
                os.close(self._slave)
                self.master = -1

    def stop(self) -> None:
        """Stop the writer thread (within STOP_TIMEOUT_S) and close the port. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.STOP_TIMEOUT_S)
        self.unplug()

    def __enter__(self) -> "PtySensor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _finite_non_negative(name: str, value, allowed: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: allowed a finite number >= 0 ({allowed})") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name}={value!r}: allowed a finite number >= 0 ({allowed})")
    return number


def frames_sensor(frames: np.ndarray, rate_hz: float, **kwargs) -> PtySensor:
    """A PtySensor sending one frame of an (n, FRAME_LEN) array per sample period."""
    return PtySensor([f.tobytes() for f in frames], np.arange(len(frames)) / rate_hz, **kwargs)
