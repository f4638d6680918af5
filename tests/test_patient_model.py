"""The simulated drop-foot patient (sim/patient, docs/patient-model.md): physics, population,
closed loop through the device's controller, and ``fes sim --patient-model``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fescontrol.core import limits
from fescontrol.cli import main
from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.patient.closed_loop import PatientSimulator, closed_loop_replay
from fescontrol.sim.patient.model import FootPendulum, Muscle, recruitment
from fescontrol.sim.patient.params import (BUNDLED_POPULATIONS, RANGED_FIELDS, PatientModelError, PatientParams,
                                draw_population, load_population_spec, parse_patient_model)
from fescontrol.sim.replay import replay
from fescontrol.sim.scoring import score
from fescontrol.sim.sources import load_recording
from fescontrol.sim.sources.ipol import ipol_data_dir
from fescontrol.sim.synthetic import Stand, Walk, synthesize

pytestmark = pytest.mark.timeout(120)

SPEC = load_population_spec(BUNDLED_POPULATIONS["drop-foot"])
PATIENTS = draw_population(SPEC)
TILT = load_profile(bundled_profile_path("walkaide_tilt"))


@pytest.fixture(scope="module")
def short_walk():
    return synthesize([Stand(2), Walk(15, 105), Stand(2)], seed=4)


@pytest.fixture(scope="module")
def gaitmap():
    return load_recording("gaitmap:imu_sample", side="left")


def test_bundled_population_is_valid_and_sized():
    assert len(PATIENTS) == SPEC.n_patients >= 8
    for p in PATIENTS:
        for name in RANGED_FIELDS:
            r = SPEC.ranges[name]
            assert r.low <= getattr(p, name) <= r.high


@pytest.mark.parametrize("k", range(len(PATIENTS)))
def test_without_stimulation_the_foot_drops(short_walk, k):
    run = closed_loop_replay(short_walk, TILT, PATIENTS[k], SPEC.gait, stimulate=False)
    assert len(run.strides) >= 10
    assert np.all(run.current_ma == 0.0)
    for s in run.strides:
        assert s.toe_drag, s
        assert s.min_late_swing_deg < s.clearance_angle_deg
    rec_mid = np.median([sw.recorded_pitch_deg[sw.mid()] for sw in PatientSimulator(
        short_walk, PATIENTS[k], 250, 33).swings])
    assert np.median([s.mid_swing_deg for s in run.strides]) < rec_mid - 15   # toes well down


def test_with_the_default_tilt_profile_the_foot_lifts(gaitmap):
    for p in PATIENTS:
        off = closed_loop_replay(gaitmap, TILT, p, SPEC.gait, stimulate=False)
        on = closed_loop_replay(gaitmap, TILT, p, SPEC.gait)
        assert on.toe_drag_strides <= 0.25 * len(on.strides), (p, on.toe_drag_strides)
        assert off.toe_drag_strides == len(off.strides)
        lift = np.median([s.mid_swing_deg for s in on.strides]) - np.median([s.mid_swing_deg for s in off.strides])
        assert lift > 20.0
        assert on.current_ma.max() == pytest.approx(TILT.stimulation.amplitude_ma)
        assert not on.replay.faults


def _recall_case(rec):
    base = score(rec, replay(rec, TILT).bursts_s)
    for p in PATIENTS[:3]:
        for stimulate in (False, True):
            run = closed_loop_replay(rec, TILT, p, SPEC.gait, stimulate=stimulate)
            got = score(rec, run.replay.bursts_s)
            assert got.swing_recall >= base.swing_recall - 0.06, (p, stimulate, got.swing_recall)
            assert got.false_onsets <= base.false_onsets + 1


def test_the_patient_imu_still_passes_the_detector_gaitmap(gaitmap):
    _recall_case(gaitmap)


@pytest.mark.skipif(not ipol_data_dir().is_dir(), reason="IPOL recordings not in the shared gait data")
def test_the_patient_imu_still_passes_the_detector_ipol():
    _recall_case(load_recording("ipol:1-1", side="left"))


def test_the_patient_imu_still_passes_the_detector_synthetic(short_walk):
    _recall_case(short_walk)


def test_deterministic_by_seed(short_walk):
    a = closed_loop_replay(short_walk, TILT, PATIENTS[2], SPEC.gait)
    b = closed_loop_replay(short_walk, TILT, draw_population(SPEC, SPEC.seed)[2], SPEC.gait)
    np.testing.assert_array_equal(a.foot_pitch_deg, b.foot_pitch_deg)
    np.testing.assert_array_equal(a.replay.trace["current_ma"], b.replay.trace["current_ma"])
    assert draw_population(SPEC, 99) == draw_population(SPEC, 99)
    assert draw_population(SPEC, 99) != PATIENTS


def test_the_muscle_fatigues_under_stimulation_and_recovers_at_rest():
    m = Muscle(PATIENTS[0], 250, 33, 100.0)
    for _ in range(3000):
        m.step(35.0, 0.01)
    tired = m.fitness
    assert tired < 0.9 and m.activation > 0.5
    for _ in range(20000):
        m.step(0.0, 0.01)
    assert m.fitness > 0.98 > tired
    assert recruitment(PATIENTS[0].threshold_charge_nc / 250 * 0.99, 250, PATIENTS[0]) == 0.0
    assert recruitment(PATIENTS[0].saturation_charge_nc / 250 * 1.01, 250, PATIENTS[0]) == 1.0


def _params_strategy():
    fields = {name: st.floats(SPEC.ranges[name].low, SPEC.ranges[name].high) for name in RANGED_FIELDS}
    return st.fixed_dictionaries(fields).filter(
        lambda d: d["saturation_charge_nc"] > d["threshold_charge_nc"]).map(lambda d: PatientParams(**d))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(p=_params_strategy(),
       currents=st.lists(st.floats(0.0, limits.AMPLITUDE_MAX_MA), min_size=1, max_size=60),
       pulse_width_us=st.integers(limits.PULSE_WIDTH_MIN_US, limits.PULSE_WIDTH_MAX_US),
       frequency_hz=st.floats(limits.FREQUENCY_MIN_HZ, limits.FREQUENCY_MAX_HZ),
       shank_deg=st.floats(-60, 40), shank_acc_dps2=st.floats(-20000, 20000))
def test_physical_sanity_for_any_parameters_and_current(p, currents, pulse_width_us, frequency_hz,
                                                       shank_deg, shank_acc_dps2):
    muscle = Muscle(p, pulse_width_us, frequency_hz, 100.0)
    foot = FootPendulum(p)
    foot.reset(-15.0)
    for i in range(200):
        torque = muscle.step(currents[i % len(currents)], 0.01)
        assert 0.0 <= muscle.activation <= 1.0
        assert p.min_fitness - 1e-12 <= muscle.fitness <= 1.0 + 1e-12
        assert 0.0 <= torque <= p.max_torque_nm
        foot.step(torque, shank_deg, shank_deg, shank_acc_dps2, 0.01)
        assert np.isfinite(foot.ankle_deg) and np.isfinite(foot.ankle_rate_dps)
        assert -120.0 < foot.ankle_deg < 120.0


def test_population_file_errors_are_one_line(tmp_path):
    text = BUNDLED_POPULATIONS["drop-foot"].read_text()
    bad = tmp_path / "p.yaml"
    bad.write_text(text.replace("max_torque_nm:", "max_torque_newton:"))
    with pytest.raises(PatientModelError, match="unknown parameter.*max_torque_newton") as err:
        load_population_spec(bad)
    assert "\n" not in str(err.value)
    bad.write_text(text.replace("{low: 20, high: 50}", "{low: 50, high: 20}"))
    with pytest.raises(PatientModelError, match="reversed"):
        load_population_spec(bad)
    bad.write_text(text.replace("seed: 15", "seed: 15\nseed: 16"))
    with pytest.raises(PatientModelError, match="p.yaml"):
        load_population_spec(bad)
    for spec in ("drop-fot", "drop-foot:seed=x", "drop-foot:level=2", "drop-foot:seed=1:seed=2"):
        with pytest.raises(PatientModelError):
            parse_patient_model(spec)
    choice = parse_patient_model("drop-foot:seed=3:patient=1")
    assert (choice.seed, choice.patient) == (3, 1)


def test_fes_sim_patient_model_cli(tmp_path):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(main, ["sim", "--recording", "gaitmap:imu_sample",
                                    "--patient-model", "drop-foot:seed=15:patient=0", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "toe-drag strides" in res.output and "per stride" in res.output
    data = json.loads(out.read_text())
    for key in ("swing_recall", "swings_reference", "delivered", "faults", "recording", "profile"):
        assert key in data
    pm = data["patient_model"]
    assert pm["seed"] == 15 and len(pm["patients"]) == 1
    strides = pm["patients"][0]["strides_stimulated"]
    assert {"min_late_swing_deg", "mid_swing_deg", "heel_strike_deg", "toe_drag"} <= set(strides[0])
    assert pm["toe_drag_strides_unassisted"] == pm["strides"] > 0
    bad = CliRunner().invoke(main, ["sim", "--recording", "gaitmap:imu_sample", "--patient-model", "drop-fot"])
    assert bad.exit_code == 2 and "unknown model" in bad.output and "Traceback" not in bad.output
