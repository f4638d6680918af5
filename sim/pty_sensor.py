"""A sensor unit on a real pseudo-terminal: writes wire frames at their own pace.

``fes run --sensor <port>`` opens the slave side like a USB-serial device, so a
replay exercises exactly the device's code path. Frames are written at the
recording's rate (each frame at its timestamp, against time.monotonic) or, with
``speed=0``, as fast as the reader takes them.
"""
from __future__ import annotations

import os
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
    """

    def __init__(self, chunks, times_s, *, speed: float = 1.0, keep_times: bool = False,
                 unplug_s: float | None = None):
        self.chunks = [bytes(c) for c in chunks]
        self.frame_times_s = np.asarray(times_s, dtype=float)
        self.speed = float(speed)
        self.unplug_s = unplug_s
        n = len(self.chunks)
        self.t0 = 0.0
        self.master, self._slave, self.port = open_raw_pty()
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
                    due = t0 + self.frame_times_s[i] / self.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                data = self.chunks[i]
                with self._lock:
                    if self.master < 0:
                        return
                    if self.write_times is not None:
                        self.write_times[i] = time.monotonic_ns()
                    os.write(self.master, data)
                self.sent = i + 1
            if self.unplug_s is not None and self.speed > 0:
                delay = t0 + self.unplug_s / self.speed - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                self.unplug()
        except OSError:
            pass
        finally:
            self.done.set()

    def unplug(self) -> None:
        """Stop sending and close the port, like a pulled cable."""
        self._stop.set()
        with self._lock:
            if self.master >= 0:
                os.close(self.master)
                os.close(self._slave)
                self.master = -1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.unplug()

    def __enter__(self) -> "PtySensor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def frames_sensor(frames: np.ndarray, rate_hz: float, **kwargs) -> PtySensor:
    """A PtySensor sending one frame of an (n, FRAME_LEN) array per sample period."""
    return PtySensor([f.tobytes() for f in frames], np.arange(len(frames)) / rate_hz, **kwargs)
