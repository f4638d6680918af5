"""Deterministic replay: a session logged with its raw frames re-runs bit for bit."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.cli import main
from fescontrol.session.modes import CommandRecord, ModeError, compare_outputs, replay_from_log, replay_session
from fescontrol.ui.patient_ui import PatientSession, SimulatedDevices
from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.session.log import SessionLog

from .conftest import profile_with
from .test_modes import TRAINING, Rig, walking_bytes


def _commands(records) -> list[dict]:
    return [{"name": r.name, "frame": r.frame, "value": r.value, "detail": r.detail, "id": i}
            for i, r in enumerate(records) if isinstance(r, CommandRecord)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(st.tuples(st.integers(1, 150),
                               st.sampled_from(["walk", "pause", "resume", "stop", "up", "down", "test", "estop",
                                                "clear"])), min_size=1, max_size=25))
def test_replay_of_random_commands_is_bit_identical(plan):
    p = profile_with(training=TRAINING)
    data = walking_bytes(10, seed=5)
    rig = Rig(p, data, start_ma=26.0)
    rig.feed(3)
    for frames, name in plan:
        rig.feed(frames)
        rig.clock.now_s += 0.4
        try:
            if name in ("up", "down"):
                rig.m.intensity_step(1 if name == "up" else -1)
            elif name == "test":
                rig.m.test_burst(700)
            elif name == "estop":
                rig.m.emergency_stop("key")
            elif name == "clear":
                rig.m.clear_fault("nurse")
            else:
                getattr(rig.m, name)()
        except ModeError:
            pass
    rig.feed()
    live = rig.trace()
    out = replay_session(p, data, _commands(rig.records))
    cmp = compare_outputs(live["t_us"], live["current_ma"], out.t_us, out.current_ma)
    assert cmp.identical, cmp.detail
    assert cmp.compared == len(live["t_us"]) == rig.c.kernel.frames
    assert out.modes.steps == rig.m.steps and out.modes.mode == rig.m.mode


def test_a_command_that_no_longer_applies_is_reported():
    from fescontrol.session.modes import ReplayError
    p = profile_with()
    with pytest.raises(ReplayError, match="pause at frame 3 could not be applied: pause works while walking"):
        replay_session(p, walking_bytes(2), [{"name": "walk", "frame": 5, "value": None, "detail": ""},
                                             {"name": "pause", "frame": 3, "value": None, "detail": ""}])


@pytest.fixture(scope="module")
def live_db(tmp_path_factory) -> Path:
    """A real-time walk over the simulator with intensity changes and a pause/resume, frames logged."""
    db = tmp_path_factory.mktemp("replay") / "s.db"
    profile = load_profile(bundled_profile_path("default"))
    sim = SimulatedDevices("physionet:GaCo01", seconds=10, speed=2.0)
    session = PatientSession(profile, db_path=db, sim=sim, first="walk", log_frames=True, exit_when_done=True)
    session.start()
    try:
        def wait_steps(n: int) -> None:
            deadline = time.monotonic() + 30
            while session.status().steps_session < n:
                assert time.monotonic() < deadline and session.running, session.status()
                time.sleep(0.02)
        wait_steps(1)
        session.command("down")
        time.sleep(0.4)
        session.command("down")
        wait_steps(2)
        session.command("toggle_pause")
        time.sleep(0.6)
        session.command("toggle_pause")
        wait_steps(3)
        session.command("up")
        assert session.wait(30)
    finally:
        session.close()
    assert not session.log_error
    return db


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_live_session_replays_bit_for_bit_on_both_kernels(live_db, kernel_impl):
    with SessionLog(live_db, create=False) as slog:
        names = [c["name"] for c in slog.events(1, ["command"])]
        assert names.count("intensity") == 4 and "pause" in names and "resume" in names
        outcome, cmp, _ = replay_from_log(slog, 1, implementation=kernel_impl)
        t_us, current_ma = slog.samples(1)
        frames = slog.session(1)["frames_processed"]
    assert cmp.identical, cmp.detail
    assert cmp.compared == len(t_us) == frames > 500
    assert np.array_equal(outcome.current_ma.view(np.uint64), current_ma.view(np.uint64))
    levels = np.unique(current_ma)
    # the first step at 30 mA (its plateau may end one float ulp short when heel strike comes
    # right at the end of the ramp), later ones at the lowered 28 mA
    assert np.isclose(levels, 30.0, rtol=0, atol=1e-9).any() and np.isclose(levels, 28.0, rtol=0, atol=1e-9).any()
    assert levels.max() <= 30.0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fes_replay_command_identical_and_different_profile(live_db, tmp_path):
    res = CliRunner().invoke(main, ["replay", "1", "--db", str(live_db)])
    assert res.exit_code == 0, res.output
    assert "identical:" in res.output and "bit for bit" in res.output
    other = profile_with(envelope={"ramp_up_ms": 200})
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other.model_dump(mode="json")))
    res = CliRunner().invoke(main, ["replay", "1", "--db", str(live_db), "--profile", str(path)])
    assert res.exit_code == 1
    assert "differs from the logged profile" in res.output
    assert "DIFFERENT: sample" in res.output and "logged t=" in res.output


def test_a_session_without_frames_cannot_be_replayed(tmp_path, default_profile):
    with SessionLog(tmp_path / "s.db") as slog:
        slog.begin_session(default_profile, kernel="python", frames_logged=False)
    res = CliRunner().invoke(main, ["replay", "1", "--db", str(tmp_path / "s.db")])
    assert res.exit_code == 1 and "--log-frames" in res.output
