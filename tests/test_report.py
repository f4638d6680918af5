"""Walk reports: the figures match the replay, faults carry reasons, changes are listed."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from fescontrol.calibration import load_walk
from fescontrol.cli import main
from fescontrol.profile import bundled_profile_path, load_profile
from fescontrol.profile_store import ProfileStore
from fescontrol.report import ReportError, replay_with_progress, session_source, step_rows, write_report
from sim.replay import replay


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
    heel[2000:2700] = heel[2000]                 # the heel reading freezes for 7 s mid-walk
    stuck = replace(walk, heel_n=heel)
    rep = write_report(stuck, load_profile(bundled_profile_path("default")), tmp_path, progress=False)
    assert [f["reason"] for f in rep.faults] == ["heel_stuck"]
    assert 19.0 + 4.9 <= rep.faults[0]["t_s"] <= 20.0 + 7.1    # stuck_ms = 5 s (earlier if the swing read 0 N)
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


def test_session_reports_have_a_clear_hook():
    with pytest.raises(ReportError, match="--recording"):
        session_source("42")
    res = CliRunner().invoke(main, ["report", "42", "--out", "x"])
    assert res.exit_code == 2 and "--recording" in res.output
