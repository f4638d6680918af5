"""The two builds of the one kernel source (fescontrol/kernel/core.py compiled, and run as
Python) agree sample for sample: batch replays (feed/process) and the real-time path
(run_fd over a real pipe and a real pty). Compared: every trace field, the events the
machine saw, the faults, the parser/guard counters, the final state and the deliveries.
Wall-clock figures (lateness histogram, drift offsets) are measured, not computed, and are
not compared; their effects (faults, cuts) are, in streams where the wall clock cannot
decide anything."""
from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
import tty

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.drivers import sensor_protocol as sp
from fescontrol.core import codes
from fescontrol.core.codes import Fault
from fescontrol.loop.controller import Controller, TraceCollector
from fescontrol.kernel import COMPILED, CyKernel, PyKernel, params

from .conftest import heel_walk, profile_with, stream
from .helpers import run_stream

pytestmark = pytest.mark.skipif(not COMPILED, reason="Cython kernel not built")

IMPLEMENTATIONS = ("python", "cython")


def watch(c: Controller) -> list:
    """Kernel state the event level reads, at every event: the adaptive stimulation's foot
    pitch integrator and the swing it recorded."""
    seen: list = []
    k = c.kernel
    c.event_listeners.append(lambda e: seen.append(
        (e.event, k.foot_pitch_deg, k.foot_flat_age_us, k.swing_n, k.swing_overflow,
         k.swing_pitch[:k.swing_n].tobytes(), k.amplitude_ma, k.heel_delay_us, k.tilt_state, k.stride)))
    return seen


def outcome(c: Controller, trace, at_events: list) -> dict:
    k = c.kernel
    return dict(trace=trace, events=c.events, at_events=at_events,
                faults=[(f.reason, f.t_us) for f in c.supervisor.faults],
                counters=(k.frames, k.crc_errors, k.length_errors, k.garbage_bytes, k.seq_gaps,
                          k.frames_lost, k.overruns, k.wall_cuts, k.clock_step_us),
                state=c.machine.state, deliveries=c.supervisor.deliveries)


def run_both(profile, data):
    out = {}
    for impl in IMPLEMENTATIONS:
        c = Controller(profile, implementation=impl, trace_capacity=1024)
        at_events = watch(c)
        c.start()
        c, trace = run_stream(profile, data, controller=c)
        out[impl] = outcome(c, trace, at_events)
    return out["python"], out["cython"]


def assert_same(py, cy):
    assert py["trace"].keys() == cy["trace"].keys()
    for name in py["trace"]:
        np.testing.assert_array_equal(py["trace"][name], cy["trace"][name], err_msg=name)
    for key in ("events", "at_events", "faults", "counters", "state", "deliveries"):
        assert py[key] == cy[key], key


def test_one_source_two_builds():
    assert CyKernel.implementation == "cython" and PyKernel.implementation == "python"
    assert type(CyKernel.process).__name__ != "function"   # an extension type's method
    assert PyKernel.__module__ == "fescontrol.kernel.core_py"
    import fescontrol.kernel.core as compiled
    import fescontrol.kernel.core_py as interpreted
    assert compiled.COMPILED and not interpreted.COMPILED
    assert os.path.splitext(interpreted.__file__)[0] == os.path.splitext(compiled.__file__.split(".cpython")[0])[0]


def test_constants_come_from_codes_and_the_protocol():
    """The compiled build's C globals hold the values of codes.py, sensor_protocol and params."""
    import fescontrol.kernel.core as compiled
    import fescontrol.kernel.core_py as interpreted
    const = compiled.constants()
    assert const == interpreted.constants()
    for prefix, enum in (("PH_", codes.Phase), ("EV_", codes.Event), ("F_", codes.Fault), ("R_", codes.Ret)):
        for name, value in const.items():
            if name.startswith(prefix):
                assert enum[name[len(prefix):]] == value, name
    for name in ("PAYLOAD_LEN", "FRAME_LEN", "VERSION", "FLAG_HEEL_PRESENT", "FLAG_IMU_PRESENT",
                 "FLAG_IMU_SATURATED", "FLAG_HEEL_FAULT", "HEEL_N_PER_COUNT", "GYRO_DPS_PER_COUNT"):
        assert const[name] == getattr(sp, name), name
    assert const["BUF_BYTES"] == params.INPUT_BUFFER_BYTES and const["QUEUE_LEN"] == params.EVENT_QUEUE_LEN
    assert const["N_BINS"] == params.LATENESS_BINS and const["DRIFT_MAX_PERCENT"] == params.DRIFT_MAX_PERCENT


@pytest.mark.parametrize("base", ["default", "pace_heel", "walkaide_tilt", "combined", "adaptive"])
def test_walk_identical(base):
    py, cy = run_both(profile_with(base), walk_bytes())
    assert len(py["events"]) > 50
    assert_same(py, cy)


def test_light_contact_identical():
    """The light-contact strike (a few steps loading the heel 10-14 N after 400 N ones, with
    sensor noise) takes the same path in both builds: same bursts, events and kernel state."""
    rng = np.random.default_rng(3)
    heel = heel_walk(24, load_n=400.0)
    for k in (8, 9, 15, 20):
        a = 100 + 100 * k
        heel[a:a + 80] = np.minimum(heel[a:a + 80], 10.0 + k % 3 * 2.0)
    heel = heel + rng.normal(0, 1.0, len(heel)).clip(0)
    py, cy = run_both(profile_with("default"), stream(heel, np.zeros(len(heel))))
    assert sum(1 for e in py["events"] if e.event == "heel_off") >= 22
    assert_same(py, cy)


def test_low_reading_sensors_identical():
    """The stress paths of docs/detection.md: a weight shift on an insole reading × 0.5 (the
    walking-peak bound of the floor), a seated foot on a coarse one (a flat plateau waiting for a
    heel strike) and a slow walker's swings on a gyro reading × 0.8 (a swing
    under swing_rate_dps learned at the swing wait) take the same path in both builds."""
    from fescontrol.sim.synthetic import named_scenario
    shift = named_scenario("weight_shift")
    py, cy = run_both(profile_with("default"), stream(0.5 * shift.heel_n, np.zeros(shift.n_samples)))
    assert py["events"]
    assert_same(py, cy)
    sit = named_scenario("sit")       # a seated plateau waiting for a heel strike that never comes
    coarse = 10.0 * np.round(0.5 * sit.heel_n / 10.0)
    py, cy = run_both(profile_with("default"), stream(coarse, np.zeros(sit.n_samples)))
    assert py["events"]
    assert_same(py, cy)
    slow = named_scenario("hemiparetic")
    py, cy = run_both(profile_with("walkaide_tilt"), stream(None, 0.8 * slow.gyro_dps[:, 1]))
    assert sum(1 for e in py["events"] if e.event == "heel_off") >= 30
    assert_same(py, cy)


def walk_bytes(strides: int = 30, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    heel = heel_walk(strides) + rng.normal(0, 4, (strides + 2) * 100).clip(0)
    t = np.arange(len(heel)) / 100
    gyro = -300 * np.sin(2 * np.pi * t) * (heel < 50) + rng.normal(0, 10, len(t))
    return stream(heel, gyro)


segment = st.tuples(st.integers(1, 80), st.floats(0, 900), st.floats(-500, 500))


def random_stream(segments, garbage, drops) -> bytes:
    heel = np.concatenate([np.full(n, h) for n, h, _ in segments])
    gyro = np.concatenate([np.full(n, g) for n, _, g in segments])
    data = bytearray(stream(heel, gyro, drop=tuple(d for d in drops if d < len(heel))))
    for pos, junk in garbage:
        pos %= len(data) + 1
        data[pos:pos] = junk
    return bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(segment, min_size=1, max_size=30),
       base=st.sampled_from(["default", "pace_heel", "walkaide_tilt", "combined", "adaptive"]),
       cutoff=st.sampled_from(["ramp_down", "zero"]),
       garbage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=40)), max_size=4),
       drops=st.lists(st.integers(0, 2000), max_size=6))
def test_random_streams_identical(segments, base, cutoff, garbage, drops):
    profile = profile_with(base, envelope={"cutoff": cutoff, "max_stim_ms": 600, "ramp_up_ms": 100,
                                           "ramp_down_ms": 100})
    py, cy = run_both(profile, random_stream(segments, garbage, drops))
    assert_same(py, cy)


# ----- run_fd: the real-time path, over real file descriptors -------------------------------

def _realtime(profile, impl, fd, *, rate: float = 0.0, should_stop=lambda: False, wake_ms: int = 20):
    c = Controller(profile, implementation=impl, trace_capacity=1024)
    collector = TraceCollector()
    c.trace_sink = collector
    c.at_events = watch(c)
    c.set_sensor_clock_rate(rate)
    c.start()
    c.run(fd, should_stop, wake_ms=wake_ms)
    c.finish()
    trace = collector.arrays() if collector.parts else {k: np.zeros(0) for k in c.kernel.trace}
    return c, trace


def run_fd_over_pipe(profile, impl, data: bytes):
    """The whole stream is in the pipe before the loop starts and the write end is closed, so
    the loop ends at CLOSED and the wall clock cannot decide anything (clock rate 0: no
    drift check; no wait long enough for the stale or back-stop limits)."""
    r, w = os.pipe()
    try:
        size = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, max(len(data), 4096))
        assert size >= len(data), "pipe too small for the test stream"
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
        os.close(w)
        w = -1
        return _realtime(profile, impl, r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def run_fd_both(profile, data):
    out = {}
    for impl in IMPLEMENTATIONS:
        c, trace = run_fd_over_pipe(profile, impl, data)
        # The loop ends at CLOSED, never by a wall-clock decision; corrupt bytes may latch
        # LINK_ERRORS first, which then leaves no room for the port-closed record.
        faults = c.supervisor.faults
        assert faults and (faults[-1].detail == "sensor port closed"
                           or faults[0].reason in (Fault.LINK_ERRORS, Fault.PARSE_ERROR))
        assert not [f for f in faults if f.reason in (Fault.SENSOR_STALE, Fault.CLOCK_DRIFT)
                    and f.detail != "sensor port closed"]
        out[impl] = outcome(c, trace, c.at_events)
    return out["python"], out["cython"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("base", ["default", "walkaide_tilt", "combined", "adaptive"])
def test_run_fd_walk_identical(base):
    py, cy = run_fd_both(profile_with(base), walk_bytes())
    assert len(py["events"]) > 50 and len(py["trace"]["t_us"]) == 3200
    assert_same(py, cy)
    batch, _ = run_both(profile_with(base), walk_bytes())
    np.testing.assert_array_equal(py["trace"]["current_ma"], batch["trace"]["current_ma"])


@pytest.mark.timeout(300)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments=st.lists(segment, min_size=1, max_size=20),
       base=st.sampled_from(["default", "pace_heel", "walkaide_tilt", "combined", "adaptive"]),
       garbage=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=40)), max_size=4),
       drops=st.lists(st.integers(0, 2000), max_size=6))
def test_run_fd_random_streams_identical(segments, base, garbage, drops):
    profile = profile_with(base, envelope={"max_stim_ms": 600, "ramp_up_ms": 100, "ramp_down_ms": 100})
    py, cy = run_fd_both(profile, random_stream(segments, garbage, drops))
    assert_same(py, cy)


@pytest.mark.timeout(120)
def test_run_fd_over_a_pty_identical():
    """Through a real pseudo-terminal (raw mode), written by a thread while the loop reads."""
    profile = profile_with("default", device={"stale_ms": 200})
    data = walk_bytes(12)
    out = {}
    for impl in IMPLEMENTATIONS:
        master, slave = os.openpty()
        tty.setraw(slave)

        def write(master=master):
            view = memoryview(data)
            while view:
                view = view[os.write(master, view[:1024]):]

        writer = threading.Thread(target=write, name="pty-sensor")
        writer.start()
        frames = len(data) // sp.FRAME_LEN
        try:
            c, trace = _realtime(profile, impl, slave, wake_ms=5,
                                 should_stop=lambda frames=frames: c_ref and c_ref[0].kernel.frames >= frames)
        finally:
            writer.join(10)
            os.close(master)
            os.close(slave)
        out[impl] = outcome(c, trace, c.at_events)
    py, cy = out["python"], out["cython"]
    assert len(py["trace"]["t_us"]) == frames and len(py["events"]) > 20
    assert_same(py, cy)


c_ref: list = []   # the controller of the running pty test (its should_stop reads the frame count)


@pytest.fixture(autouse=True)
def _track_controller(monkeypatch):
    original = Controller.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        c_ref[:] = [self]

    monkeypatch.setattr(Controller, "__init__", init)
    yield
    c_ref.clear()


@pytest.mark.timeout(60)
def test_run_fd_silence_and_back_stop_identical():
    """Wall-clock decisions, both builds: a burst under way when the sensor falls silent is
    cut by the wall back-stop (max_stim - one period of wall time: MAX_STIM, the machine's
    "timeout", zero delivered), and the silence then latches SENSOR_STALE (stale_ms after
    the last frame, later than the cut); the same events and faults in the same order."""
    profile = profile_with("pace_heel", envelope={"max_stim_ms": 150, "ramp_up_ms": 0, "ramp_down_ms": 100},
                           device={"stale_ms": 200})
    heel = heel_walk(3, standing_s=1.0)[:366]   # the third burst starts at sample 364: silence in it
    data = stream(heel)
    seen = {}
    for impl in IMPLEMENTATIONS:
        r, w = os.pipe()
        os.write(w, data)          # the write end stays open: silence, not end of file
        try:
            t0 = time.monotonic()
            c, _ = _realtime(profile, impl, r, should_stop=lambda: bool(c_ref and c_ref[0].supervisor.faults))
            elapsed = time.monotonic() - t0
        finally:
            os.close(r)
            os.close(w)
        k = c.kernel
        seen[impl] = ([(e.event, e.state) for e in c.events], [f.reason for f in c.supervisor.faults],
                      k.wall_cuts, k.current_ma, k.frames, c.supervisor.deliveries)
        assert 0.2 <= elapsed < 5
    assert seen["python"] == seen["cython"]
    events, faults, wall_cuts, current, frames, _ = seen["cython"]
    assert frames == len(heel) and wall_cuts == 1 and current == 0.0
    assert faults == [Fault.SENSOR_STALE]
    last_onset = max(i for i, (event, _) in enumerate(events) if event == "heel_off")
    assert events[last_onset:last_onset + 3] == [("heel_off", "ramp_up"), ("ramp_up_done", "swing"),
                                                 ("timeout", "ramp_down")], events[-5:]


@pytest.mark.timeout(120)
def test_compiled_kernel_releases_the_gil():
    """While the compiled kernel processes frames another Python thread runs; the interpreted
    build never lets it (no system call inside ``process``). With a switch interval longer
    than the test the GIL changes hands only when its holder gives it up. ``run_fd`` runs
    the same loop (``_process``) inside the same ``with nogil`` wrapper."""
    rng = np.random.default_rng(3)
    data = stream(500 + rng.normal(0, 4, 1900))   # standing: no event, so process() runs all of it
    ticks = {}
    old = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        for impl in IMPLEMENTATIONS:
            stop = threading.Event()
            count = [0]

            def spin(stop=stop, count=count):
                while not stop.is_set():
                    count[0] += 1
                    time.sleep(0.0001)   # a real sleep: the main thread can take the GIL back

            t = threading.Thread(target=spin)
            t.start()
            time.sleep(0.05)             # the thread is now waiting for the GIL in its loop
            # Only the thread's runs inside process() count. The interpreted build gets one round
            # of 20 kernels; the compiled one gets rounds of fresh kernels until the thread has run
            # once (at most 20): on a loaded machine the woken thread may not get a core within
            # one round, which says nothing about the GIL.
            ticks[impl] = 0
            for _ in range(1 if impl == "python" else 20):
                for k in [Controller(profile_with("default"), implementation=impl).kernel for _ in range(20)]:
                    assert k.feed(data) == 0
                    before = count[0]
                    assert k.process() == 0 and k.frames == 1900
                    ticks[impl] += count[0] - before
                if ticks[impl]:
                    break
            stop.set()
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert ticks["python"] == 0 and ticks["cython"] > 0, ticks


@pytest.mark.timeout(120)
def test_interpreted_build_runs_without_cython():
    """An install without Cython (FES_PURE_PYTHON=1, no compiler) runs core.py on the shim and
    gives what the interpreted build gives here."""
    import subprocess
    code = ("import sys; sys.modules['cython'] = None\n"
            "import fescontrol.kernel as k, fescontrol.kernel.core_py as m\n"
            "assert k.DEFAULT_IMPLEMENTATION == 'python' and m.cython.__name__.endswith('_cython_shim')\n"
            "from tests.conftest import heel_walk, profile_with, stream\n"
            "from tests.helpers import run_stream\n"
            "c, tr = run_stream(profile_with('default'), stream(heel_walk(6)), 'python')\n"
            "print(repr(float(tr['current_ma'].sum())), len(c.events))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=100,
                         env=dict(os.environ, FES_PURE_PYTHON="1", FES_REQUIRE_COMPILED="0"))
    assert out.returncode == 0, out.stderr
    c, tr = run_stream(profile_with("default"), stream(heel_walk(6)), "python")
    assert out.stdout.split() == [repr(float(tr["current_ma"].sum())), str(len(c.events))]
