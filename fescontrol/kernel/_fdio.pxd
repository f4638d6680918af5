# cython: language_level=3
"""The kernel's three system calls in C, for the compiled build of ``core.py``.

``_fdio_py.py`` is the same three in Python (the interpreted build); both return the same
values for the same outcome, so ``core.py`` has one code path. All run without the GIL.
"""
cimport cython
from libc.stdint cimport int64_t, uint8_t
from libc.errno cimport errno, EAGAIN, EINTR
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport read

cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    short POLLIN


cdef inline int64_t now_us() noexcept nogil:
    """Monotonic wall clock, µs (CLOCK_MONOTONIC, as time.monotonic_ns)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


cdef inline int wait_readable(int fd, int64_t timeout_ms) noexcept nogil:
    """Wait until ``fd`` is readable (or hung up) or ``timeout_ms`` passed.
    > 0 readable, 0 timed out, < 0 interrupted."""
    cdef pollfd pfd
    pfd.fd = fd
    pfd.events = POLLIN
    pfd.revents = 0
    return poll(&pfd, 1, <int>timeout_ms)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline int64_t read_into(int fd, uint8_t[::1] buf, int64_t start, int64_t n) noexcept nogil:
    """Read at most ``n`` bytes from ``fd`` into ``buf[start:start + n]``.
    > 0 bytes read, 0 end of file or a read error (the port is gone), -1 try again."""
    cdef long got = read(fd, &buf[start], <size_t>n)
    if got < 0:
        return -1 if (errno == EAGAIN or errno == EINTR) else 0
    return got
