"""Relay sensor bytes to the control loop through a pipe while keeping a copy.

Used where the raw frames must be kept exactly as the loop read them: the session log
(``fes walk --log-frames``) and the calibration walk (``fes calibrate --sensor``).
"""
from __future__ import annotations

import os
import select
import threading
import time
from typing import Callable

from fescontrol.session.records import RawBytes


class SensorTee:
    """Relays the sensor bytes to the kernel through a pipe, copying them into the log.

    Only used with ``--log-frames``. If the relay stops, the pipe goes silent and the
    kernel's stale-data check stops stimulation; if the sensor closes, the pipe closes and
    the loop sees the sensor closed.
    """

    def __init__(self, src_fd: int, sink: Callable[[RawBytes], None], *, batch_bytes: int = 32768,
                 batch_s: float = 1.0):
        self.src_fd = src_fd
        self.sink = sink
        self.batch_bytes = batch_bytes
        self.batch_s = batch_s
        self.read_fd, self._write_fd = os.pipe()
        self._stop = threading.Event()
        self._stopped = False
        self._batch = 0
        self.bytes_relayed = 0
        self._thread = threading.Thread(target=self._run, name="sensor-tee", daemon=True)

    def start(self) -> "SensorTee":
        self._thread.start()
        return self

    def _run(self) -> None:
        buf = bytearray()
        last = time.monotonic()
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([self.src_fd], [], [], 0.05)
                if readable:
                    try:
                        data = os.read(self.src_fd, 4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        break
                    buf += data
                    view = memoryview(data)
                    while view:
                        written = os.write(self._write_fd, view)
                        view = view[written:]
                    self.bytes_relayed += len(data)
                if buf and (len(buf) >= self.batch_bytes or time.monotonic() - last >= self.batch_s):
                    self._flush(buf)
                    last = time.monotonic()
        except OSError:
            pass
        finally:
            if buf:
                self._flush(buf)
            self._close_write()

    def _flush(self, buf: bytearray) -> None:
        self.sink(RawBytes(self._batch, bytes(buf)))
        self._batch += 1
        buf.clear()

    def _close_write(self) -> None:
        fd, self._write_fd = self._write_fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def stop(self) -> None:
        """Stop relaying; the bytes relayed so far go to the sink. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        try:  # first the reading end: a relay blocked on a full pipe gets EPIPE and finishes
            os.close(self.read_fd)
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._close_write()
