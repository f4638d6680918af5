"""Walk reports: the figures match the replay, faults carry reasons, changes are listed."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from fescontrol.tools.calibration import load_walk
from fescontrol.cli import main
from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.tools.profile_store import ProfileStore
from fescontrol.tools.report import ReportError, replay_with_progress, session_source, step_rows, write_report
from fescontrol.sim.replay import replay


@pytest.fixture(scope="module")
def walk():
    return load_walk("physionet:JuCo01", "left")


def test_report_figures_match_the_replay(tmp_path, walk):
    profile = load_profile(bundled_profile_path("default"))
    rep = write_report(walk, profile, tmp_path, progress=False)
    ref = replay(walk, profile)
    assert rep.stimulations == len(ref.bursts_s) and rep.steps == sum(e.event == "heel_off" for e in ref.events)
    on_s = sum(b - a for a, b in ref.bursts_s)
    assert rep.stimulation_time_s == pytest.approx(on_s, abs=0.02 * len(ref.bursts_s))
    assert 95 <= rep.cadence_spm <= 110          # 1.19 s strides
    assert rep.peak_current_ma == pytest.approx(profile.start_amplitude_ma)
    # onset against the detected heel-off: the next sample; end: extension + ramp down after heel strike
    period_ms = 10.0
    assert rep.onset_delay_ms["median"] == pytest.approx(period_ms, abs=0.5)
    env = profile.envelope
    assert env.extension_ms <= rep.after_strike_ms["median"] <= env.extension_ms + env.ramp_down_ms + 2 * period_ms
    assert len(rep.rows) == rep.steps and rep.faults == []
    assert rep.detection["swings_reference"] == 43 and rep.detection["swing_recall"] > 0.95
    html = (tmp_path / "report.html").read_text()
    assert f'<td id="steps">{rep.steps}</td>' in html and f'<td id="stimulations">{rep.stimulations}</td>' in html
    assert "NOT a cleared medical device" in html and "Detection against the reference events" in html
    for png in ("overview.png", "zoom.png", "timing.png", "onset_error.png"):
        assert (tmp_path / png).stat().st_size > 5000, png
        assert png in html
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["steps"] == rep.steps and len(data["rows"]) == rep.steps


def test_faults_are_reported_with_their_reason(tmp_path, walk):
    heel = np.array(walk.heel_n)
    heel[2016:2716] = heel[2016]                 # the heel reading freezes under load (245 N) for 7 s
    stuck = replace(walk, heel_n=heel)
    rep = write_report(stuck, load_profile(bundled_profile_path("default")), tmp_path, progress=False)
    assert [f["reason"] for f in rep.faults] == ["heel_stuck"]
    assert 20.16 + 4.9 <= rep.faults[0]["t_s"] <= 20.16 + 5.2    # stuck_ms = 5 s
    html = (tmp_path / "report.html").read_text()
    assert "<b>heel_stuck</b>" in html and "heel sensor stuck" in html


def test_long_replays_show_a_progress_bar(capsys, walk):
    profile = load_profile(bundled_profile_path("default"))
    result = replay_with_progress(walk, profile, progress=True)
    err = capsys.readouterr().err
    assert "frame" in err and "replay physionet:JuCo01" in err
    assert len(result.bursts_s) == len(replay(walk, profile).bursts_s)
    assert len(step_rows(result)) == sum(e.event == "heel_off" for e in result.events)


def test_cli_report_lists_profile_changes_and_handles_imu_walks(tmp_path):
    store = ProfileStore(tmp_path / "store")
    base = load_profile(bundled_profile_path("walkaide_tilt")).model_dump(mode="json")
    base["patient_id"] = "P9"
    store.save(base, by="Ann", note="fitting")
    base["trigger"]["tilt"]["onset_rate_dps"] = 40.0
    store.save(base, by="Bob", note="earlier onsets")
    profile = tmp_path / "p.yaml"
    profile.write_text((tmp_path / "store" / "P9" / "v0002.yaml").read_text())
    out = tmp_path / "rep"
    res = CliRunner().invoke(main, ["report", "--recording", "gaitmap:imu_sample", "--side", "right",
                                    "--profile", str(profile), "--out", str(out), "--store",
                                    str(tmp_path / "store"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "steps" in res.output and "report.html" in res.output
    html = (out / "report.html").read_text()
    assert "trigger.tilt.onset_rate_dps 60.0 → 40.0" in html and "earlier onsets" in html and "Bob" in html
    assert "toe-up rate" not in html or (out / "overview.png").exists()


@pytest.fixture(scope="module")
def logged_session(tmp_path_factory):
    """A real patient session: `fes walk --sim` over a pty at 10× speed with the RehaStim2
    emulator, raw frames logged, a stimulator error injected at 8 s of the recording."""
    import subprocess
    import sys
    db = tmp_path_factory.mktemp("sessions") / "sessions.db"
    cmd = [sys.executable, "-m", "fescontrol.cli", "walk", "--sim", "physionet:JuCo01", "--side", "left",
           "--speed", "10", "--duration", "15", "--no-ui", "--db", str(db), "--log-frames",
           "--fault", "stim-error@8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert db.exists(), done.stdout + done.stderr
    return db


def test_session_report_from_the_session_database(tmp_path, logged_session):
    """`fes report SESSION`: the figures come from what the device logged; the database is only read."""
    import hashlib

    from fescontrol.session.log import SessionLog
    before = hashlib.sha256(logged_session.read_bytes()).hexdigest()
    res = CliRunner().invoke(main, ["report", "last", "--db", str(logged_session), "--out", str(tmp_path),
                                    "--store", str(tmp_path / "none")])
    assert res.exit_code == 0, res.output
    assert hashlib.sha256(logged_session.read_bytes()).hexdigest() == before      # read-only
    with SessionLog(logged_session, create=False) as slog:
        sid = slog.last_session_id()
        steps = slog.bursts(sid, "step")
        faults = slog.events(sid, ["fault"])
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["steps"] == len(steps) >= 5 and data["stimulations"] == len(steps)
    assert data["stimulation_time_s"] == pytest.approx(sum(b["duration_ms"] for b in steps) / 1000)
    assert [r["onset_delay_ms"] for r in data["rows"]] == [(b["onset_us"] - b["heel_off_us"]) / 1000 for b in steps]
    assert 90 <= data["cadence_spm"] <= 115
    assert [f["reason"] for f in data["faults"]] == [f["name"] for f in faults] == ["stimulator"]
    assert 8.0 <= data["faults"][0]["t_s"] <= 10.5
    assert data["walking_time_s"] > 5 and data["detection"] is None
    html = (tmp_path / "report.html").read_text()
    assert f"Session {sid} from" in html and "<b>stimulator</b>" in html and "intensity restored" in html
    assert f'<td id="steps">{len(steps)}</td>' in html
    for png in ("overview.png", "timing.png"):
        assert (tmp_path / png).stat().st_size > 5000 and png in html


def test_session_report_refusals_are_clear(tmp_path, logged_session):
    run = CliRunner().invoke
    res = run(main, ["report", "42", "--db", str(logged_session), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no session 42" in res.output
    res = run(main, ["report", "last", "--db", str(tmp_path / "missing.db"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no session database here" in res.output
    assert not (tmp_path / "missing.db").exists()                  # never created
    res = run(main, ["report", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "SESSION" in res.output and "--recording" in res.output
    with pytest.raises(ReportError, match="number"):
        session_source("yesterday", logged_session)
