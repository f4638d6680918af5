"""Calibration from a short walk: never worse than the current profile, always within the caps."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from fescontrol.calibration import (AXES, Axis, CalibrationError, Calibrator, gait_structure, load_walk,
                                    record_walk, recording_from_frames)
from fescontrol.cli import main
from fescontrol.profile import (TriggerMode, bundled_profile_path, default_profile_for, load_profile,
                                profile_from_dict)
from fescontrol.profile_store import ProfileStore
from sim.replay import recording_stream, replay
from sim.scoring import ScoringRules, score
from sim.sources import list_bundled


#: One foot of every bundled recording for the reference test, the other foot for the
#: structure test (both feet in both tests take ~25 s; docs/orthotist.md has all ten).
REFERENCE_FEET = {"physionet:GaCo01": "right", "physionet:GaPt03": "right", "physionet:JuCo01": "left",
                  "physionet:SiPt02": "right", "gaitmap:imu_sample": "left"}


@pytest.fixture(scope="module")
def bundled_walks():
    """Every bundled recording: (foot for the reference test, other foot)."""
    names = list_bundled()
    assert set(names) == set(REFERENCE_FEET), "a new bundled recording: pick its feet above"
    other = {"left": "right", "right": "left"}
    return [(load_walk(n, REFERENCE_FEET[n]), load_walk(n, other[REFERENCE_FEET[n]])) for n in names]


def _default_for(rec):
    return load_profile(default_profile_for(rec.has_heel, rec.has_imu))


def _reference_objective(rec, profile) -> tuple[float, object]:
    """The reference objective recomputed from scratch: replay + sim.scoring, nothing shared."""
    rep = score(rec, replay(rec, profile).bursts_s)
    lo, hi = ScoringRules().in_window_ms
    errs = np.asarray(rep.onset_errors_ms_all)
    timely = int(np.sum((errs >= lo) & (errs <= hi)))
    return (timely + 0.5 * (len(errs) - timely) - rep.false_onsets) / rep.swings_reference, rep


def _without_reference(rec):
    return replace(rec, toe_off_s=np.zeros(0), heel_strike_s=np.zeros(0),
                   heel_off_s=None if rec.heel_off_s is None else np.zeros(0), quiet_intervals_s=(),
                   unscored_intervals_s=())


def test_calibrated_profiles_score_at_least_as_well_as_the_defaults(bundled_walks):
    """Every bundled recording, reference objective (the walks have reference events)."""
    rows, pooled = [], {"before": [0, 0, 0], "after": [0, 0, 0]}
    for rec, _ in bundled_walks:
        default = _default_for(rec)
        cal = Calibrator(default).fit(rec)
        assert cal.objective_ == "reference"
        j_before, rep_before = _reference_objective(rec, default)
        j_after, rep_after = _reference_objective(rec, cal.proposed_)
        assert math.isclose(j_before, cal.before_.objective) and math.isclose(j_after, cal.after_.objective)
        assert j_after >= j_before, (rec, cal.changes_)
        for key, rep in (("before", rep_before), ("after", rep_after)):
            pooled[key][0] += rep.swings_detected
            pooled[key][1] += rep.false_onsets
            pooled[key][2] += rep.swings_reference
        rows.append(f"{rec.name} {rec.side}: {j_before:.3f} -> {j_after:.3f} "
                    f"({len(cal.changes_)} changes, {cal.evaluated_} replays, {cal.elapsed_s_:.2f} s)")
    print("\n".join(rows))
    # pooled over all walks: no fewer swings caught, no more false onsets
    assert pooled["after"][0] >= pooled["before"][0]
    assert pooled["after"][1] <= pooled["before"][1]


def test_structure_objective_without_reference_events_does_not_make_things_worse(bundled_walks):
    """With the reference hidden the gait's own structure is the objective; scored afterwards with
    the hidden reference, the proposal is never worse than the default on these walks."""
    gains = []
    for _, rec in bundled_walks:
        default = _default_for(rec)
        cal = Calibrator(default).fit(_without_reference(rec))
        assert cal.objective_ == "structure" and math.isnan(cal.after_.recall)
        j_before, _ = _reference_objective(rec, default)
        j_after, _ = _reference_objective(rec, cal.proposed_)
        assert j_after >= j_before - 1e-9, (rec, cal.changes_)
        gains.append(j_after - j_before)
    assert sum(gains) > 0.03     # and it does find the improvements that are there


def test_weight_shifting_is_not_mistaken_for_steps():
    """A heel-only walk with rhythmic weight shifting: the structure objective must not trade
    false onsets while standing for 'regular' steps."""
    rec = load_walk("synthetic:weight_shift")
    default = load_profile(bundled_profile_path("default"))
    cal = Calibrator(default, objective="structure").fit(_without_reference(rec))
    rep = score(rec, replay(rec, cal.proposed_).bursts_s)
    assert rep.quiet_onsets["total"] == 0 and rep.false_onsets == 0


def test_heel_and_tilt_mode_is_calibrated_on_both_detectors():
    rec = load_walk("synthetic:mixed")
    combined = load_profile(bundled_profile_path("combined"))
    assert combined.trigger.mode == TriggerMode.HEEL_AND_TILT
    cal = Calibrator(combined).fit(rec)
    paths = {a.path for a in AXES[TriggerMode.HEEL_AND_TILT]}
    assert any(p.startswith("trigger.heel.") for p in paths) and any(p.startswith("trigger.tilt.") for p in paths)
    assert all(c.path.startswith("trigger.") for c in cal.changes_)
    assert cal.after_.objective >= cal.before_.objective
    assert cal.after_.recall >= cal.before_.recall


def test_candidates_outside_the_caps_are_refused_never_proposed():
    rec = load_walk("physionet:JuCo01", "right")
    default = load_profile(bundled_profile_path("default"))
    axes = (Axis("off fraction", "trigger.heel.off_fraction", (0.01, 0.06, 0.95), partner="trigger.heel.on_fraction"),
            Axis("debounce", "trigger.heel.debounce_ms", (-10, 20, 500)),
            Axis("hysteresis", "trigger.heel.on_fraction", (-0.1, 0.2), gap_of="trigger.heel.off_fraction"))
    cal = Calibrator(default, axes=axes, passes=2).fit(rec)
    assert cal.rejected_ >= 4            # 0.01 and 0.95 fractions, -10 and 500 ms, no hysteresis
    heel = cal.proposed_.trigger.heel
    assert 0.02 <= heel.off_fraction <= 0.9 and 0 <= heel.debounce_ms <= 100 and heel.on_fraction > heel.off_fraction
    profile_from_dict(cal.proposed_.model_dump(mode="json"))   # still valid
    assert cal.changes_ and {c.path for c in cal.changes_} <= {"trigger.heel.off_fraction",
                                                               "trigger.heel.on_fraction",
                                                               "trigger.heel.debounce_ms"}


def test_a_walk_without_walking_is_refused():
    rec = load_walk("physionet:JuCo01", "left")
    still = replace(_without_reference(rec), heel_n=np.full(rec.n_samples, 300.0))
    with pytest.raises(CalibrationError, match="no walking"):
        gait_structure(still, TriggerMode.HEEL)


def test_raw_frames_become_a_recording():
    rec = load_walk("synthetic:walk")
    frames, _ = recording_stream(rec)
    kept = np.delete(frames, [100, 101, 102], axis=0)
    back = recording_from_frames(kept.tobytes() + b"\x00garbage", name="walk", side="left")
    assert back.n_samples == rec.n_samples and back.rate_hz == pytest.approx(100.0)
    assert not back.valid[100:103].any() and back.valid[:100].all()
    ok = back.valid
    assert np.allclose(back.heel_n[ok], rec.heel_n[ok], atol=0.051)
    assert np.allclose(back.gyro_dps[ok], rec.gyro_dps[ok], atol=0.051)
    assert not back.reference_swings()


def test_record_walk_from_a_sensor_port_through_the_real_loop(tmp_path):
    """A walk recorded from a real pseudo-terminal (6× speed), saved raw and calibrated."""
    from sim.pty_sensor import PtySensor
    rec = load_walk("synthetic:walk")
    frames, _ = recording_stream(rec)
    part = frames[200:1400]                       # 12 s of walking
    profile = load_profile(bundled_profile_path("default"))
    with PtySensor([f.tobytes() for f in part], np.arange(len(part)) / 100.0, speed=6.0) as sensor:
        walk, raw, events = record_walk(sensor.port, 2.4, profile, save_to=str(tmp_path / "w.fesraw"),
                                        echo=lambda _: None)
    assert len(raw) >= 0.95 * part.nbytes
    assert walk.duration_s > 11 and not walk.reference_swings()
    assert sum(e.event == "heel_off" for e in events) >= 9        # the live loop detected the steps
    again = load_walk(str(tmp_path / "w.fesraw"))
    assert again.n_samples == walk.n_samples
    cal = Calibrator(profile).fit(again)
    assert cal.objective_ == "structure" and cal.after_.steps_detected >= 9


def test_cli_stores_only_what_the_orthotist_accepts(tmp_path):
    profile = tmp_path / "p.yaml"
    text = bundled_profile_path("default").read_text().replace("name: default", "name: default\npatient_id: P7")
    profile.write_text(text)
    store = tmp_path / "store"
    args = ["calibrate", "--recording", "physionet:JuCo01", "--side", "right", "--profile", str(profile),
            "--store", str(store)]
    run = CliRunner().invoke
    res = run(main, args, input="n\n")
    assert res.exit_code == 0, res.output
    assert "proposed changes" in res.output and "not accepted" in res.output and "recall" in res.output
    assert ProfileStore(store).history("P7") == []
    res = run(main, args + ["--yes"])
    assert res.exit_code == 2 and "--by" in res.output
    res = run(main, args + ["--note", "gait lab"], input="y\nJane Doe\n")
    assert res.exit_code == 0, res.output
    hist = ProfileStore(store).history("P7")
    assert [(v.version, v.action, v.by) for v in hist] == [(1, "save", "Jane Doe"), (2, "calibration", "Jane Doe")]
    assert "gait lab" in hist[1].note and hist[1].changes
    stored = ProfileStore(store).load("P7")
    assert stored.trigger.heel != load_profile(profile).trigger.heel
