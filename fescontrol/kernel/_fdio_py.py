"""The kernel's three system calls in Python, for the interpreted build of ``core.py``.

Same clock, same calls and same return values as the C versions in ``_fdio.pxd``.
"""
from __future__ import annotations

import os
import select
import time


def now_us() -> int:
    """Monotonic wall clock, µs (CLOCK_MONOTONIC)."""
    return time.monotonic_ns() // 1000


def wait_readable(fd: int, timeout_ms: int) -> int:
    """Wait until ``fd`` is readable (or hung up) or ``timeout_ms`` passed.
    > 0 readable, 0 timed out, < 0 interrupted."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        return len(poller.poll(timeout_ms))
    except InterruptedError:
        return -1


def read_into(fd: int, buf: bytearray, start: int, n: int) -> int:
    """Read at most ``n`` bytes from ``fd`` into ``buf[start:start + n]``.
    > 0 bytes read, 0 end of file or a read error (the port is gone), -1 try again."""
    try:
        return os.readv(fd, [memoryview(buf)[start:start + n]])
    except (BlockingIOError, InterruptedError):
        return -1
    except OSError:
        return 0
