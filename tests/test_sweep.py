"""`fes sweep`: grids and samples over profile fields validated by the profile model, batched
tasks on a real LocalCluster, figures identical to one `fes evaluate` per point, subject-wise
cross-validation, Pareto plot, --out only when asked."""
from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from click.testing import CliRunner

from fescontrol.cli import main
from fescontrol.core.profile import bundled_profile_path, load_profile
from fescontrol.sim.evaluate import RecordingItem, evaluate
from fescontrol.sim.sweep import (ParamSpec, SweepError, assign_folds, grid_points, point_profile, sample_points,
                       sweep)

pytestmark = pytest.mark.timeout(300)

FEET = [RecordingItem(f"physionet:{n}", s) for n in ("GaCo01", "GaPt03") for s in ("left", "right")]


def test_param_parsing_grid_and_samples():
    spec = ParamSpec.parse("trigger.heel.off_fraction=0.01:0.05:0.01")
    assert spec.values == (0.01, 0.02, 0.03, 0.04, 0.05) and not spec.integer
    ints = ParamSpec.parse("trigger.heel.debounce_ms=10,20,30")
    assert ints.values == (10, 20, 30) and ints.integer
    assert len(grid_points([spec, ints])) == 15 and grid_points([spec, ints])[1] == {
        "trigger.heel.off_fraction": 0.01, "trigger.heel.debounce_ms": 20}
    lhs = sample_points([spec, ints], 10, "lhs", seed=3)
    assert lhs == sample_points([spec, ints], 10, "lhs", seed=3) and len(lhs) == 10
    strata = sorted(int((p["trigger.heel.off_fraction"] - 0.01) / 0.004) for p in lhs)
    assert strata == list(range(10))            # one point per stratum
    assert all(isinstance(p["trigger.heel.debounce_ms"], int) for p in lhs)
    for bad, what in [("trigger.heel.off_fractoin=0.1:0.2:0.1", "not a profile field"),
                      ("trigger.mode=1,2", "not a number field"),
                      ("trigger.heel.off_fraction=0.2:0.1:0.1", "STOP >= START"),
                      ("trigger.heel.debounce_ms=10.5,20", "whole numbers"), ("trigger.heel.off_fraction", "expected")]:
        with pytest.raises(SweepError, match=what):
            ParamSpec.parse(bad)


def test_points_are_validated_by_the_profile_model():
    base = load_profile(bundled_profile_path("default"))
    assert point_profile(base, {"trigger.heel.off_fraction": 0.03}).trigger.heel.off_fraction == 0.03
    with pytest.raises(ValueError, match="hysteresis"):
        point_profile(base, {"trigger.heel.off_fraction": 0.5})
    folds = assign_folds(["a", "b", "c", "d", "e"], 2, seed=1)
    assert sorted(folds.values()) == [0, 0, 0, 1, 1] and folds == assign_folds(list("edcba"), 2, seed=1)
    with pytest.raises(SweepError, match="at least 3 subjects"):
        assign_folds(["a", "b"], 3)


def test_sweep_equals_evaluate_per_point_and_cross_validates(tmp_path):
    from distributed import Client, LocalCluster
    base = load_profile(bundled_profile_path("default"))
    specs = [ParamSpec.parse("trigger.heel.off_fraction=0.01,0.05,0.3")]   # 0.3 breaks hysteresis
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as c:
        res = sweep(FEET, base, specs, cv_by="subject", folds=2, client=c, block=1, progress=False)
        again = sweep(FEET, base, specs, cv_by="subject", folds=2, client=c, block=2, progress=False)
        reference = evaluate(FEET, point_profile(base, {"trigger.heel.off_fraction": 0.05}), client=c,
                             progress=False)
    assert [p.invalid is None for p in res.points] == [True, True, False]
    assert "on_fraction" in res.points[2].invalid[0]
    for key in ("swings_reference", "swings_detected", "false_onsets", "onset_error_ms", "swing_coverage_median"):
        assert res.points[1].figures[key] == reference.pooled[key]
    assert res.points[1].figures["swing_recall"] == pytest.approx(reference.pooled["swing_recall"], abs=0, rel=0)
    a, b = res.to_json(), again.to_json()
    a.pop("engine"), b.pop("engine")
    assert a == b                                   # whatever the block size and completion order
    assert res.best.index in (0, 1) and res.cv["folds"] == 2 and len(res.cv["per_fold"]) == 2
    held = res.cv["held_out"]
    assert held["swings_reference"] == sum(p["test"]["swings_reference"] for p in res.cv["per_fold"])
    assert 0 < held["swing_recall"] <= 1 and sorted(res.subjects) == ["GaCo01", "GaPt03"]


def test_a_foot_the_profile_cannot_run_is_reported_per_point_and_left_out():
    """A foot whose channels the profile's trigger cannot use (an IMU-only walk under the heel
    profile) gives each point an error and adds nothing: the figures are those without it."""
    base = load_profile(bundled_profile_path("default"))
    specs = [ParamSpec.parse("trigger.heel.off_fraction=0.02,0.05")]
    imu = RecordingItem("gaitmap:imu_sample", "left")
    with_imu = sweep([FEET[0], imu, FEET[1]], base, specs, workers=1, block=1, progress=False)
    without = sweep(FEET[:2], base, specs, workers=1, block=1, progress=False)
    for p, q in zip(with_imu.points, without.points):
        assert len(p.errors) == 1 and "needs a heel force sensor" in p.errors[0] and not q.errors
        assert p.figures == q.figures and p.figures["recordings"] == 2


def test_sweep_command_table_plot_and_out_only_when_asked(tmp_path):
    runner = CliRunner()
    args = ["sweep", "physionet:GaCo01", "--profile", "default", "--side", "left", "--workers", "1",
            "--param", "trigger.heel.off_fraction=0.01:0.03:0.01", "--param", "trigger.heel.debounce_ms=20,30",
            "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "p.png"), "--no-progress"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "best on all data" in res.output and not list(tmp_path.glob("*.yaml"))
    doc = json.loads((tmp_path / "s.json").read_text())
    assert len(doc["points"]) == 6 and doc["best"] is not None and any(p["pareto"] for p in doc["points"])
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "best.yaml"
    res = runner.invoke(main, args[:-5] + ["--samples", "3", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    best = yaml.safe_load(out.read_text())
    assert load_profile(out).trigger.heel.off_fraction == best["trigger"]["heel"]["off_fraction"]
    assert not math.isnan(best["trigger"]["heel"]["off_fraction"])
    res = runner.invoke(main, ["sweep", "physionet:GaCo01", "--param", "trigger.heel.nope=1,2", "--workers", "1"])
    assert res.exit_code == 2 and "not a profile field" in res.output and "Traceback" not in res.output


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 50), st.floats(0, 3)), max_size=30), st.floats(-5, 50), st.floats(0, 5))
def test_coverage_shortcut_is_exact(bursts, a, length):
    """The sweep-speed shortcut in fescontrol.sim.scoring._covered gives bit-identical coverage."""
    from fescontrol.sim.recording import merge_intervals
    from fescontrol.sim.scoring import _covered
    union = merge_intervals([(p, p + d) for p, d in bursts])
    starts, ends = [p for p, _ in union], [q for _, q in union]
    assert _covered(a, a + length, union, starts, ends) == _covered(a, a + length, union)
