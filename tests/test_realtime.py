"""Real-time hardening (fescontrol.loop.realtime, profile device.realtime, `fes run --rt`).

Settings are applied for real: in a forked child (memory lock and scheduler are process- or
thread-wide and must not leak into the test process) or in a short-lived thread. Refusals are
real too: the child drops root (and with it CAP_SYS_NICE / CAP_IPC_LOCK) and lowers its own
rtprio and memlock limits, which any process may do.
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import threading

import pytest
import yaml

from fescontrol.loop import realtime as rt
from fescontrol.core.profile import ProfileError, Realtime, bundled_profile_path, load_profile, profile_from_dict
from tests.conftest import profile_with

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduler and mlockall")]

NOBODY = 65534


def _in_child(target, *args):
    """Run ``target(*args)`` in a forked child; return what it returns (picklable)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()

    def body():
        try:
            child.send(("ok", target(*args)))
        except BaseException as err:  # noqa: BLE001 - report to the test
            child.send(("error", f"{type(err).__name__}: {err}"))

    proc = ctx.Process(target=body)
    proc.start()
    status, value = parent.recv()
    proc.join(10)
    assert status == "ok", value
    return value


def _drop_privileges():
    """Become an unprivileged process with rtprio limit 0 and a 64 kB memlock limit."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # leaving uid 0 clears every capability
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))


def _unprivileged_attempts():
    _drop_privileges()
    policy = os.sched_getscheduler(0)
    results = [rt.lock_memory(), rt.set_fifo_priority(20)]
    try:
        with rt.hardened_loop(Realtime(required=True, fifo_priority=20)):
            refused = None
    except rt.RealtimeRefused as err:
        refused = str(err)
    return results, refused, policy == os.sched_getscheduler(0), gc.isenabled()


def test_refusals_say_what_was_not_granted_and_what_to_do():
    (lock, fifo), refused, policy_unchanged, gc_back_on = _in_child(_unprivileged_attempts)
    assert not lock.granted and lock.requested == "MCL_CURRENT|MCL_FUTURE"
    assert "memlock limit 64 kB" in lock.detail and "CAP_IPC_LOCK" in lock.detail
    assert "ulimit -l" in lock.detail
    assert not fifo.granted
    assert "not permitted" in fifo.detail and "CAP_SYS_NICE" in fifo.detail and "rtprio" in fifo.detail
    assert fifo.line().startswith("realtime sched_fifo: NOT granted — ")
    assert "\n" not in fifo.line() and "\n" not in lock.line()
    assert refused == ("device.realtime.required is set and mlockall was not granted; "
                       "sched_fifo was not granted")
    assert policy_unchanged and gc_back_on


def _privileged_settings():
    policy_before = os.sched_getscheduler(0)
    with rt.hardened_loop(Realtime(fifo_priority=10, cpus=[min(os.sched_getaffinity(0))])) as report:
        inside = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, os.sched_getaffinity(0),
                  rt._vm_locked_kb(), gc.isenabled())
    after = (os.sched_getscheduler(0) == policy_before, rt._vm_locked_kb(), gc.isenabled())
    return report.results, inside, after


def _may_use_fifo() -> bool:
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= 10


@pytest.mark.skipif(not _may_use_fifo(), reason="needs root or an rtprio limit ≥ 10 to be granted SCHED_FIFO")
def test_settings_are_applied_reported_and_undone():
    results, inside, after = _in_child(_privileged_settings)
    by_name = {r.name: r for r in results}
    assert list(by_name) == ["mlockall", "cpu_affinity", "sched_fifo", "gc"]
    assert all(r.granted for r in results), [r.line() for r in results]
    policy, priority, cpus, locked_kb, gc_on = inside
    assert policy == os.SCHED_FIFO and priority == 10
    assert by_name["sched_fifo"].detail.startswith("priority 10")
    assert len(cpus) == 1 and by_name["cpu_affinity"].detail == f"running on CPUs {min(cpus)}"
    locked_reported_kb = int(by_name["mlockall"].detail.split(" kB locked now")[0])
    assert locked_kb > 1000 and locked_reported_kb > 1000  # the whole mapped process, resident
    assert not gc_on and "objects frozen" in by_name["gc"].detail
    policy_restored, locked_after_kb, gc_on_after = after
    assert policy_restored and locked_after_kb == 0 and gc_on_after


def test_affinity_to_a_missing_cpu_is_refused_in_one_line():
    out = {}

    def attempt():  # a thread of its own: affinity is per thread, nothing leaks into the test
        out["bad"] = rt.set_cpu_affinity([1023])
        out["ok"] = rt.set_cpu_affinity(sorted(os.sched_getaffinity(0)))

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    bad, ok = out["bad"], out["ok"]
    assert not bad.granted and bad.requested == "CPUs 1023"
    assert "this machine has CPUs 0.." in bad.detail and "device.realtime.cpus" in bad.detail
    assert ok.granted and ok.detail.startswith("running on CPUs ")


def test_settings_not_asked_for_are_reported_off():
    assert rt.set_fifo_priority(0).line() == "realtime sched_fifo: off — normal scheduler (fifo_priority 0)"
    assert rt.set_cpu_affinity(()).requested == "off"
    with pytest.raises(ValueError, match="outside 1..99"):
        rt.set_fifo_priority(100)


def test_quiet_gc_freezes_disables_and_restores_even_on_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with rt.quiet_gc() as result:
            assert not gc.isenabled() and gc.get_freeze_count() > 0
            assert result.granted and result.requested == "freeze+disable"
            raise RuntimeError("the loop ended badly")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with rt.quiet_gc(False) as result:
        assert gc.isenabled() and result.requested == "off"


# ----- the profile section -----------------------------------------------------------------
def test_profile_section_defaults_off_and_round_trips():
    p = load_profile(bundled_profile_path("default"))
    assert p.device.realtime == Realtime()
    assert not p.device.realtime.enabled and p.device.realtime.fifo_priority == 50
    q = profile_with(device={"realtime": {"enabled": True, "cpus": [1], "fifo_priority": 80}})
    assert q.device.realtime.cpus == [1]
    assert profile_from_dict(yaml.safe_load(yaml.safe_dump(q.model_dump(mode="json"))), "rt") == q


@pytest.mark.parametrize("section, expected", [
    ({"fifo_priority": 100}, "device.realtime.fifo_priority = 100: Input should be less than or equal to 99 "
                             "(allowed 0 ≤ x ≤ 99)"),
    ({"cpus": [0, 0]}, "device.realtime: cpus [0, 0] lists a CPU twice"),
    ({"cpus": [-1]}, "device.realtime.cpus = -1: Input should be greater than or equal to 0"),
    ({"mlock": True}, "device.realtime.mlock = True: Extra inputs are not permitted"),
    ({"enabled": "maybe"}, "device.realtime.enabled = 'maybe': Input should be a valid boolean"),
])
def test_profile_section_refuses_bad_values(section, expected):
    with pytest.raises(ProfileError) as info:
        profile_with(device={"realtime": section})
    assert any(expected in p for p in info.value.problems), info.value.problems


# ----- fes run --rt ------------------------------------------------------------------------
def test_fes_run_rt_refuses_when_required_and_not_granted(tmp_path):
    data = load_profile(bundled_profile_path("default")).model_dump(mode="json")
    data["device"]["realtime"] = {"required": True, "cpus": [1023], "fifo_priority": 0, "lock_memory": False}
    path = tmp_path / "rt.yaml"
    path.write_text(yaml.safe_dump(data))
    from fescontrol.sim.pty_sensor import open_raw_pty
    master, slave, port = open_raw_pty()
    try:
        out = subprocess.run([sys.executable, "-m", "fescontrol.cli", "run", "--rt", "--sensor", port,
                              "--stim", "emulator", "--profile", str(path), "--duration", "1",
                              "--allow-pure-python"],
                             capture_output=True, text=True, timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("realtime cpu_affinity: NOT granted — ") for line in lines), out.stdout
    assert "refusing to run: device.realtime.required is set and cpu_affinity was not granted" in lines
    assert "Traceback" not in out.stdout + out.stderr and "running:" not in out.stdout


# ----- no allocation in the steady state -----------------------------------------------------
def test_the_loop_keeps_nothing_per_call_with_the_collector_off():
    """Five minutes of walking through the real loop (pty, compiled or twin kernel, machine,
    supervisor) as fast as it reads, collector frozen and off as under --rt: the blocks the
    process holds do not grow between minute one and the end. An unbounded event list grew by
    ~3 blocks per gait event (~2,500 here)."""
    import numpy as np

    from fescontrol.loop.controller import Controller
    from fescontrol.loop.runner import open_sensor
    from fescontrol.sim.pty_sensor import PtySensor
    from fescontrol.sim.replay import recording_stream
    from fescontrol.sim.synthetic import Stand, Walk, synthesize

    rec = synthesize([Stand(1.0), Walk(300.0, 110)], seed=5)
    frames, _ = recording_stream(rec)
    profile = load_profile(bundled_profile_path("default"))
    controller = Controller(profile, event_history=8)  # full from the start of the window
    controller.set_sensor_clock_rate(0)
    kernel, n = controller.kernel, len(frames)
    sensor = PtySensor([f.tobytes() for f in frames], np.zeros(n), speed=0)
    link = open_sensor(sensor.port)
    marks = {}

    def should_stop():
        if "start" not in marks and kernel.frames >= 60 * rec.rate_hz and len(controller.events) >= 8:
            marks["start"] = (sys.getallocatedblocks(), len(controller.events))
        return kernel.frames >= n or bool(kernel.fault)

    try:
        with rt.quiet_gc():
            controller.start()
            sensor.start()
            controller.run(link.fileno(), should_stop)
            marks["end"] = (sys.getallocatedblocks(), len(controller.events))
    finally:
        sensor.stop()
        link.close()
    assert not controller.supervisor.faults and controller.supervisor.deliveries > 100
    (b0, e0), (b1, e1) = marks["start"], marks["end"]
    print(f"allocated blocks from minute 1 to 5: {b1 - b0:+}")
    assert b1 - b0 <= 100, f"the loop kept {b1 - b0} blocks over four minutes of walking"
    assert e0 == e1 == 8 and kernel.frames == n


def test_event_history_keeps_the_newest_and_listeners_get_all(default_profile):
    from fescontrol.loop.controller import Controller
    from tests.conftest import heel_walk, stream
    bounded = Controller(default_profile, event_history=5)
    full = Controller(default_profile)
    heard = []
    bounded.event_listeners.append(heard.append)
    for c in (bounded, full):
        c.start()
        c.feed(stream(heel_walk(10)))
    assert len(full.events) > 20 and len(heard) == len(full.events)
    assert list(bounded.events) == list(full.events)[-5:]
