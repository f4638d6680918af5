"""Detection quality of the bundled profiles: regression floors and causality.

The floors sit just under the figures measured when the detectors were tuned
(docs/detection.md), so a change that makes detection worse fails here. The bundled
recordings need nothing outside the repository; the IPOL test reads ../shared and skips
when it is absent (AGPL: never copied into the project).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fescontrol.core.profile import load_profile
from fescontrol.sim.replay import recording_stream, replay
from fescontrol.sim.run import load_any, score_recordings
from fescontrol.sim.scoring import pooled
from fescontrol.sim.sources import list_available, list_bundled
from fescontrol.sim.synthetic import SCENARIOS

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _reports(config: str, names, sides=("left", "right")):
    reports = score_recordings(load_profile(CONFIGS / config), names, sides=sides)
    assert len(reports) == len(names) * len(sides)  # every foot of every recording scored
    return reports


def _pooled(config: str, names, sides=("left", "right")):
    return pooled(_reports(config, names, sides))


@pytest.mark.timeout(120)
def test_heel_default_on_bundled_physionet():
    report = _pooled("default.yaml", [n for n in list_bundled() if n.startswith("physionet:")])
    assert report.swings_reference > 600
    assert report.swing_recall >= 0.99
    assert report.swing_precision >= 0.975
    assert report.onset_in_window_fraction >= 0.97      # learned onset delay (was 0.95)
    assert report.swing_coverage_median >= 0.99
    # turns on the forefoot look like swings to a heel switch (docs/detection.md): bounded
    assert report.quiet_onsets["total"] <= 10


@pytest.mark.timeout(120)
def test_tilt_on_bundled_gaitmap():
    report = _pooled("walkaide_tilt.yaml", [n for n in list_bundled() if n.startswith("gaitmap:")])
    assert report.swing_recall == 1.0
    assert report.swing_precision >= 0.98
    assert report.onset_in_window_fraction == 1.0
    assert report.quiet_onsets["total"] == 0


@pytest.mark.parametrize("config", ["default.yaml", "walkaide_tilt.yaml", "combined.yaml"])
@pytest.mark.timeout(120)
def test_no_onset_while_standing_sitting_or_shifting_weight(config):
    report = _pooled(config, [f"synthetic:{s}" for s in ("sit", "weight_shift", "turn", "stop_and_go")])
    assert report.false_onsets == 0
    assert report.quiet_onsets["total"] == 0
    assert report.swing_recall == 1.0


@pytest.mark.timeout(120)
def test_combined_mode_on_every_synthetic_scenario():
    report = _pooled("combined.yaml", [f"synthetic:{s}" for s in SCENARIOS], sides=("left",))
    assert report.swing_recall == 1.0
    assert report.swing_precision == 1.0
    assert report.onset_in_window_fraction == 1.0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_heel_on_every_shared_gaitpdb_walk_at_the_cross_validated_level():
    """Floors at the subject-wise cross-validated figures of docs/detection.md (held-out, the
    load-relative gaitpdb reference, with the light contact, a file's first swings not scored:
    recall 0.9943, precision 0.9944, in window 0.983, worst-decile foot 0.964), a little under
    them; and no walk of the shared set ends in a latched fault."""
    names = [n for n in list_available() if n.startswith("physionet:")]
    if len(names) < 100:
        pytest.skip("../shared/gait-data/physionet_gaitpdb (142 walks) not present")
    reports = score_recordings(load_profile(CONFIGS / "default.yaml"), names)
    assert [r.name for r in reports if r.faults] == []
    report = pooled(reports)
    assert report.swing_recall >= 0.993
    assert report.swing_precision >= 0.993
    assert report.onset_in_window_fraction >= 0.975
    recalls = sorted(r.swing_recall for r in reports if r.swings_reference)
    assert np.mean(recalls[:max(1, len(recalls) // 10)]) >= 0.96


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("preload_n, recall_floor", [(20.0, 0.955), (30.0, 0.915)])
def test_heel_with_a_sensor_preload_on_the_shared_gaitpdb_walks(preload_n, recall_floor):
    """A constant preload added to every heel sample (a tight or misfitted insole): the flat
    swing plateau makes it the floor (docs/detection.md: 96.6 % / 92.5 %; before the rule
    71.9 % / 0 % with false heel_stuck faults); no walk ends in a fault."""
    from dataclasses import replace
    from fescontrol.sim.scoring import score
    names = [n for n in list_available() if n.startswith("physionet:")]
    if len(names) < 100:
        pytest.skip("../shared/gait-data/physionet_gaitpdb (142 walks) not present")
    profile = load_profile(CONFIGS / "default.yaml")
    reports = []
    for n in names:
        for side in ("left", "right"):
            rec = load_any(n, side)
            rec = replace(rec, heel_n=rec.heel_n + preload_n)
            res = replay(rec, profile)
            reports.append(score(rec, res.bursts_s, faults=[f.text for f in res.faults]))
    assert [r.name for r in reports if r.faults] == []
    assert pooled(reports).swing_recall >= recall_floor


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tilt_on_ipol_when_shared_data_present():
    names = [n for n in list_available() if n.startswith("ipol:")]
    if not names:
        pytest.skip("../shared/gait-data/ipol_healthy_imu not present (AGPL data, not bundled)")
    reports = _reports("walkaide_tilt.yaml", names)
    report = pooled(reports)
    # floors at the cross-validated level (docs/detection.md, held-out by subject: recall 0.9833,
    # precision 0.9970, in window 0.980, worst-decile foot 0.940, no onset while turning);
    # late onsets of weak and turning steps fall after toe-off, so in-window is under issue 5's 0.994
    assert report.swing_recall >= 0.982
    assert report.swing_precision >= 0.995
    assert report.onset_in_window_fraction >= 0.975
    assert report.quiet_onsets["total"] == 0
    recalls = sorted(r.swing_recall for r in reports if r.swings_reference)
    assert np.mean(recalls[:max(1, len(recalls) // 10)]) >= 0.93


@pytest.mark.parametrize("config,name", [("default.yaml", "physionet:GaCo01"),
                                         ("walkaide_tilt.yaml", "gaitmap:imu_sample"),
                                         ("combined.yaml", "synthetic:mixed")])
@pytest.mark.timeout(120)
def test_detection_is_causal(config, name, kernel_impl):
    """Cutting the future off the stream changes nothing before the cut."""
    rec = load_any(name, "left")
    profile = load_profile(CONFIGS / config)
    frames, _ = recording_stream(rec)
    full = replay(rec, profile, implementation=kernel_impl, stream=b"".join(frames)).trace
    for cut in (len(frames) // 3, 2 * len(frames) // 3):
        part = replay(rec, profile, implementation=kernel_impl, stream=b"".join(frames[:cut])).trace
        n = len(part["t_us"])
        assert n == cut
        np.testing.assert_array_equal(part["current_ma"], full["current_ma"][:n])
        np.testing.assert_array_equal(part["events"], full["events"][:n])
