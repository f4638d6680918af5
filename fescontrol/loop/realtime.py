"""Real-time hardening of the device loop's process (``fes run --rt``, profile ``device.realtime``).

What each setting buys is in docs/realtime.md. In short:

* :func:`lock_memory` — ``mlockall(MCL_CURRENT | MCL_FUTURE)``: every page the process has
  or will map stays in RAM, so the loop never waits on a page fault or swap-in;
* :func:`set_fifo_priority` — ``SCHED_FIFO`` for the calling thread: when a frame arrives the
  loop runs before every normal (``SCHED_OTHER``) task on that CPU;
* :func:`set_cpu_affinity` — ``sched_setaffinity`` for the calling thread: the loop stays on
  the CPUs given (its cache stays warm, a housekeeping CPU keeps the rest of the system);
* :func:`quiet_gc` — ``gc.freeze()`` then ``gc.disable()`` around the loop: no collector pause
  inside a sample period. Safe only because the steady-state loop allocates nothing that
  outlives a call (measured by ``bench/latency.py``: ``steady_state_blocks``).

Every function returns a :class:`SettingResult` saying what was asked and what the process
got; nothing here raises on a refusal, so the caller decides (``device.realtime.required``
refuses to start). Refusals say what to do about them in one line.

Scheduler and affinity calls act on the *calling thread* (Linux ``pid 0``): call them from
the thread that runs the loop. Memory locking and the collector are process-wide.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import gc
import os
import resource
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

MCL_CURRENT, MCL_FUTURE = 1, 2

_FIFO_HINT = ("grant CAP_SYS_NICE (run as root, or `setcap cap_sys_nice+ep` on the Python binary) "
              "or raise the rtprio limit (`ulimit -r 99`, limits.conf `@fes - rtprio 99`, "
              "systemd LimitRTPRIO=99)")
_LOCK_HINT = ("grant CAP_IPC_LOCK (root, or `setcap cap_ipc_lock+ep`) or raise the locked-memory "
              "limit (`ulimit -l unlimited`, limits.conf `@fes - memlock unlimited`, "
              "systemd LimitMEMLOCK=infinity)")


@dataclass(frozen=True)
class SettingResult:
    """What one setting asked for and what the process got.

    ``granted`` is True when the setting is in effect (or was not asked for: ``requested``
    is then ``"off"``). ``detail`` says what was obtained, or why not and what to do.
    """

    name: str
    requested: str
    granted: bool
    detail: str

    def line(self) -> str:
        """One line for the console, e.g. ``realtime sched_fifo: granted — priority 50``."""
        verdict = "off" if self.requested == "off" else ("granted" if self.granted else "NOT granted")
        return f"realtime {self.name}: {verdict} — {self.detail}"


@dataclass
class RealtimeReport:
    """The results of applying a ``device.realtime`` section, in order."""

    results: list[SettingResult] = field(default_factory=list)

    @property
    def refused(self) -> list[SettingResult]:
        """Settings that were asked for and not granted."""
        return [r for r in self.results if not r.granted]

    def lines(self) -> list[str]:
        return [r.line() for r in self.results]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def lock_memory() -> SettingResult:
    """``mlockall(MCL_CURRENT | MCL_FUTURE)``. Undo with :func:`unlock_memory`."""
    requested = "MCL_CURRENT|MCL_FUTURE"
    try:
        libc = _libc()
    except OSError as err:  # no C library to call: not Linux/glibc-like
        return SettingResult("mlockall", requested, False, f"no C library ({err}); memory may be paged out")
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
        return SettingResult("mlockall", requested, True,
                             f"{_vm_locked_kb()} kB locked now; future mappings are locked too")
    code = ctypes.get_errno()
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} kB"
    return SettingResult("mlockall", requested, False,
                         f"{errno.errorcode.get(code, code)} (memlock limit {limit}, process "
                         f"{_vm_rss_kb()} kB); {_LOCK_HINT}")


def unlock_memory() -> None:
    """``munlockall()``: undo :func:`lock_memory` (tests and benchmarks)."""
    _libc().munlockall()


def set_fifo_priority(priority: int) -> SettingResult:
    """``SCHED_FIFO`` at ``priority`` (1..99) for the calling thread; 0 asks for nothing.

    Raises ValueError for a priority outside 0..99 (a programming error: the profile bounds it).
    """
    if not 0 <= priority <= 99:
        raise ValueError(f"SCHED_FIFO priority {priority} outside 1..99 (0 = off)")
    if priority == 0:
        return SettingResult("sched_fifo", "off", True, "normal scheduler (fifo_priority 0)")
    requested = f"priority {priority}"
    if not hasattr(os, "sched_setscheduler"):
        return SettingResult("sched_fifo", requested, False, "this platform has no sched_setscheduler")
    top = os.sched_get_priority_max(os.SCHED_FIFO)
    if priority > top:
        return SettingResult("sched_fifo", requested, False, f"the system allows at most {top}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
        return SettingResult("sched_fifo", requested, False,
                             f"not permitted (rtprio limit {soft}, no CAP_SYS_NICE): the loop runs on the "
                             f"normal scheduler; {_FIFO_HINT}")
    except OSError as err:
        return SettingResult("sched_fifo", requested, False, f"{err.strerror or err}; {_FIFO_HINT}")
    got = os.sched_getparam(0).sched_priority
    return SettingResult("sched_fifo", requested, os.sched_getscheduler(0) == os.SCHED_FIFO and got == priority,
                         f"priority {got} (RT throttling: {_rt_throttle_text()})")


def set_normal_scheduler() -> None:
    """Return the calling thread to ``SCHED_OTHER`` (undo :func:`set_fifo_priority`)."""
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def set_cpu_affinity(cpus: Sequence[int]) -> SettingResult:
    """Pin the calling thread to ``cpus``; an empty sequence asks for nothing."""
    if not cpus:
        return SettingResult("cpu_affinity", "off", True, f"any of CPUs {_cpu_text(os.sched_getaffinity(0))}")
    wanted = set(cpus)
    requested = f"CPUs {_cpu_text(wanted)}"
    try:
        os.sched_setaffinity(0, wanted)
    except OSError as err:
        online = os.cpu_count() or 0
        return SettingResult("cpu_affinity", requested, False,
                             f"{err.strerror or err}: this machine has CPUs 0..{online - 1}, the process may "
                             f"use {_cpu_text(os.sched_getaffinity(0))}; list CPUs from those in device.realtime.cpus")
    got = os.sched_getaffinity(0)
    return SettingResult("cpu_affinity", requested, got == wanted, f"running on CPUs {_cpu_text(got)}")


@contextmanager
def quiet_gc(enabled: bool = True) -> Iterator[SettingResult]:
    """Collect once, ``gc.freeze()`` and ``gc.disable()`` for the body; restore after.

    Yields the :class:`SettingResult`. The collector is re-enabled (if it was) and the frozen
    objects returned to it on exit, whatever ends the body.
    """
    if not enabled:
        yield SettingResult("gc", "off", True, "collector left running")
        return
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        yield SettingResult("gc", "freeze+disable", True,
                            f"{frozen} objects frozen, collector off while the loop runs")
    finally:
        if was_enabled:
            gc.enable()
        gc.unfreeze()


def apply_thread_settings(settings) -> RealtimeReport:
    """Memory lock, SCHED_FIFO and affinity from a ``device.realtime`` section, for the calling thread.

    ``settings`` is a :class:`fescontrol.core.profile.Realtime`. The collector is separate
    (:func:`quiet_gc`), because it must wrap only the loop.
    """
    report = RealtimeReport()
    report.results.append(lock_memory() if settings.lock_memory
                          else SettingResult("mlockall", "off", True, "memory may be paged out"))
    report.results.append(set_cpu_affinity(settings.cpus))
    report.results.append(set_fifo_priority(settings.fifo_priority))
    return report


class RealtimeRefused(RuntimeError):
    """``device.realtime.required`` is set and a setting was not granted. One line per refusal."""


@contextmanager
def hardened_loop(settings, echo=None) -> Iterator[RealtimeReport]:
    """Apply a ``device.realtime`` section for the body (the loop), then undo it.

    Memory lock, affinity and SCHED_FIFO act on the calling thread (run the loop in it);
    the collector is frozen and disabled for the body. ``echo`` gets one line per setting.
    Raises :class:`RealtimeRefused` (after undoing what was granted) when
    ``settings.required`` and any setting was refused.
    """
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    affinity = os.sched_getaffinity(0)
    report = apply_thread_settings(settings)
    try:
        with quiet_gc(settings.freeze_gc) as gc_result:
            report.results.append(gc_result)
            for line in report.lines():
                if echo is not None:
                    echo(line)
            if settings.required and report.refused:
                raise RealtimeRefused("device.realtime.required is set and "
                                      + "; ".join(f"{r.name} was not granted" for r in report.refused))
            yield report
    finally:
        try:
            os.sched_setscheduler(0, policy, param)
            os.sched_setaffinity(0, affinity)
        except OSError:
            pass  # leaving a thread on its real-time settings is harmless; it is about to end
        if settings.lock_memory:
            unlock_memory()


def _proc_status_kb(key: str) -> int:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _vm_locked_kb() -> int:
    return _proc_status_kb("VmLck:")


def _vm_rss_kb() -> int:
    return _proc_status_kb("VmRSS:")


def _rt_throttle_text() -> str:
    try:
        with open("/proc/sys/kernel/sched_rt_runtime_us", encoding="utf-8") as f:
            runtime = int(f.read())
        with open("/proc/sys/kernel/sched_rt_period_us", encoding="utf-8") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return "unknown"
    if runtime < 0:
        return "off"
    return f"real-time tasks get at most {runtime / period:.0%} of each CPU"


def _cpu_text(cpus) -> str:
    return ",".join(str(c) for c in sorted(cpus)) or "none"
